//! Channel names and where their sockets live.
//!
//! Owns: channel-name validation, the socket directory
//! (`$XDG_RUNTIME_DIR/hearth`, else `/tmp/hearth-$UID`) and the checks that
//! it is private to this user, the socket path, and the channel lock file
//! (`NAME.lock`, flock + pid) that makes a second server fail at once.
//! Must never: use a directory another user owns or can write, follow a
//! symlink planted in place of the directory, or remove a socket that a live
//! server (the lock holder) still serves.

use crate::error::IpcError;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The longest channel name.
pub const MAX_CHANNEL_NAME: usize = 100;

/// The longest socket path a Unix socket address holds (108 bytes of
/// `sun_path` less the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Checks a channel name: 1 to 100 characters from `A-Z a-z 0-9 . _ -`.
///
/// ```
/// use hearth_ipc::validate_channel_name;
/// assert!(validate_channel_name("my-app").is_ok());
/// assert!(validate_channel_name("my.app_2").is_ok());
/// assert!(validate_channel_name("").is_err());
/// assert!(validate_channel_name("../etc").is_err());
/// assert!(validate_channel_name(&"a".repeat(101)).is_err());
/// ```
pub fn validate_channel_name(name: &str) -> Result<(), IpcError> {
    let refuse = |reason: String| IpcError::InvalidChannelName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(refuse("it is empty".into()));
    }
    if name.len() > MAX_CHANNEL_NAME {
        return Err(refuse(format!("it is {} bytes long", name.len())));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(refuse(format!("it contains {c:?}")));
    }
    if name == "." || name == ".." {
        return Err(refuse("it names a directory".into()));
    }
    Ok(())
}

/// This process's effective user id.
///
/// Learned without `unsafe` and without a libc binding: the credentials of
/// a freshly made socket pair are our own. Computed once.
pub(crate) fn current_uid() -> Result<u32, IpcError> {
    static UID: OnceLock<u32> = OnceLock::new();
    if let Some(uid) = UID.get() {
        return Ok(*uid);
    }
    // A throwaway single-threaded runtime on a fresh thread, so this works
    // whatever runtime context (if any) the caller is in.
    let uid = std::thread::spawn(|| -> std::io::Result<u32> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        rt.block_on(async {
            let (a, _b) = tokio::net::UnixStream::pair()?;
            Ok(a.peer_cred()?.uid())
        })
    })
    .join()
    .map_err(|_| IpcError::Protocol("finding this process's uid panicked".into()))?
    .map_err(|e| IpcError::io("finding this process's uid (socketpair credentials)", e))?;
    Ok(*UID.get_or_init(|| uid))
}

/// The directory holding channel sockets for this user:
/// `$HEARTH_SOCKET_DIR` when set and non-empty (as `hearth --socket-dir`
/// would take it), else `$XDG_RUNTIME_DIR/hearth` when `XDG_RUNTIME_DIR`
/// is set and non-empty, else `/tmp/hearth-$UID`. Servers and clients of
/// every kind (the CLI, Rust, Node) read the same variables, so that a
/// server started with `HEARTH_SOCKET_DIR` is found by clients that have
/// it too.
///
/// ```
/// let dir = hearth_ipc::socket_dir().unwrap();
/// assert!(dir.to_string_lossy().contains("hearth"));
/// ```
pub fn socket_dir() -> Result<PathBuf, IpcError> {
    let given = |name| std::env::var_os(name).filter(|v: &std::ffi::OsString| !v.is_empty());
    match default_dir(given("HEARTH_SOCKET_DIR"), given("XDG_RUNTIME_DIR")) {
        Some(dir) => Ok(dir),
        None => Ok(PathBuf::from(format!("/tmp/hearth-{}", current_uid()?))),
    }
}

/// [`socket_dir`]'s choice from its variables (each `None` when unset or
/// empty); `None` for `/tmp/hearth-$UID`.
fn default_dir(
    hearth_socket_dir: Option<std::ffi::OsString>,
    xdg_runtime_dir: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    hearth_socket_dir
        .map(PathBuf::from)
        .or_else(|| xdg_runtime_dir.map(|dir| PathBuf::from(dir).join("hearth")))
}

/// The socket path of a channel: `socket_dir()/NAME.sock`.
///
/// ```
/// let path = hearth_ipc::socket_path("my-app").unwrap();
/// assert!(path.ends_with("my-app.sock"));
/// assert!(hearth_ipc::socket_path("bad/name").is_err());
/// ```
pub fn socket_path(name: &str) -> Result<PathBuf, IpcError> {
    validate_channel_name(name)?;
    Ok(socket_dir()?.join(format!("{name}.sock")))
}

/// The lock file of a channel: `socket_dir()/NAME.lock`.
pub(crate) fn lock_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.lock"))
}

/// Checks that a socket path fits in a Unix socket address.
pub(crate) fn check_path_len(path: &Path) -> Result<(), IpcError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(IpcError::InvalidInput(format!(
            "the socket path {} is {len} bytes; Unix sockets allow at most {MAX_SOCKET_PATH}: use a shorter channel name or point XDG_RUNTIME_DIR at a shorter directory",
            path.display()
        )));
    }
    Ok(())
}

/// What a directory's metadata says, for [`check_dir_policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirFacts {
    pub(crate) is_dir: bool,
    pub(crate) is_symlink: bool,
    pub(crate) owner: u32,
    pub(crate) mode: u32,
}

/// The rule for the socket directory, with no I/O: a real directory (not a
/// symlink), owned by `uid`, with no permission bits for group or others.
pub(crate) fn check_dir_policy(facts: DirFacts, uid: u32) -> Result<(), String> {
    if facts.is_symlink {
        return Err(
            "it is a symbolic link; choose another socket directory (--socket-dir, HEARTH_SOCKET_DIR or XDG_RUNTIME_DIR), or, if it is a stale link hearth's directory should replace, remove it".into(),
        );
    }
    if !facts.is_dir {
        return Err(
            "it is not a directory; choose another socket directory (--socket-dir, HEARTH_SOCKET_DIR or XDG_RUNTIME_DIR), or, if it is a stale file hearth's directory should replace, remove it".into(),
        );
    }
    if facts.owner != uid {
        return Err(format!(
            "it is owned by uid {}, not by this user (uid {uid}): it holds another user's channels, or another user planted it; use a socket directory of your own (--socket-dir, HEARTH_SOCKET_DIR or XDG_RUNTIME_DIR), or remove it if nobody should have made it",
            facts.owner
        ));
    }
    let mode = facts.mode & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "its mode is {mode:o}, open to group or others; run `chmod 700` on it"
        ));
    }
    Ok(())
}

fn dir_facts(path: &Path) -> std::io::Result<DirFacts> {
    let meta = std::fs::symlink_metadata(path)?;
    Ok(DirFacts {
        is_dir: meta.is_dir(),
        is_symlink: meta.file_type().is_symlink(),
        owner: meta.uid(),
        mode: meta.mode(),
    })
}

/// Checks (and with `create`, makes with mode 0700) the private socket
/// directory. Returns `Ok(false)` when it does not exist and `create` is
/// false.
pub(crate) fn ensure_private_dir(dir: &Path, create: bool) -> Result<bool, IpcError> {
    let uid = current_uid()?;
    let facts = match dir_facts(dir) {
        Ok(facts) => facts,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Ok(false);
            }
            if let Some(parent) = dir.parent()
                && !parent.as_os_str().is_empty()
                && !parent.exists()
            {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| {
                        IpcError::io(format!("creating directory {}", parent.display()), e)
                    })?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                // Another server created it at the same moment: check it below.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(IpcError::io(
                        format!("creating socket directory {}", dir.display()),
                        e,
                    ));
                }
            }
            dir_facts(dir).map_err(|e| IpcError::io(format!("reading {}", dir.display()), e))?
        }
        Err(e) => return Err(IpcError::io(format!("reading {}", dir.display()), e)),
    };
    check_dir_policy(facts, uid).map_err(|reason| IpcError::UnsafeDirectory {
        path: dir.to_path_buf(),
        reason,
    })?;
    Ok(true)
}

/// The held lock of a channel. Dropping it releases the channel.
#[derive(Debug)]
pub(crate) struct ChannelLock {
    _file: File,
}

impl ChannelLock {
    /// Takes the channel's lock file or fails naming the holder's pid.
    pub(crate) fn acquire(dir: &Path, name: &str) -> Result<ChannelLock, IpcError> {
        let path = lock_path(dir, name);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| IpcError::io(format!("opening lock file {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(IpcError::ChannelInUse {
                    channel: name.to_string(),
                    pid: text.trim().parse().unwrap_or(0),
                    path,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(IpcError::io(format!("locking {}", path.display()), e));
            }
        }
        let write_pid = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            file.flush()
        };
        write_pid(&mut file)
            .map_err(|e| IpcError::io(format!("writing pid to {}", path.display()), e))?;
        Ok(ChannelLock { _file: file })
    }
}

use std::os::unix::fs::OpenOptionsExt;

/// With the channel lock held, removes a socket file left by a server that
/// died. Refuses to remove anything that is not a socket.
pub(crate) fn remove_stale_socket(path: &Path) -> Result<bool, IpcError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| {
                IpcError::io(format!("removing stale socket {}", path.display()), e)
            })?;
            Ok(true)
        }
        Ok(_) => Err(IpcError::UnsafeDirectory {
            path: path.to_path_buf(),
            reason: "it is not a socket; remove it by hand if it is not needed".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(IpcError::io(format!("reading {}", path.display()), e)),
    }
}

/// Makes the socket file readable and writable by its owner only.
pub(crate) fn restrict_socket(path: &Path) -> Result<(), IpcError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| IpcError::io(format!("setting mode 0600 on {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(is_dir: bool, is_symlink: bool, owner: u32, mode: u32) -> DirFacts {
        DirFacts {
            is_dir,
            is_symlink,
            owner,
            mode,
        }
    }

    #[test]
    fn hearth_socket_dir_comes_before_xdg_runtime_dir() {
        let both = default_dir(Some("/run/app".into()), Some("/run/user/1000".into()));
        assert_eq!(both, Some(PathBuf::from("/run/app")));
        let xdg = default_dir(None, Some("/run/user/1000".into()));
        assert_eq!(xdg, Some(PathBuf::from("/run/user/1000/hearth")));
        assert_eq!(default_dir(None, None), None);
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_refused_without_telling_to_delete_it_first() {
        let e = check_dir_policy(facts(false, false, 1000, 0o100644), 1000).unwrap_err();
        assert!(e.contains("choose another socket directory"), "{e}");
        let e = check_dir_policy(facts(false, true, 1000, 0o120777), 1000).unwrap_err();
        assert!(e.contains("choose another socket directory"), "{e}");
    }

    #[test]
    fn a_private_directory_of_ours_is_accepted() {
        assert!(check_dir_policy(facts(true, false, 1000, 0o40700), 1000).is_ok());
    }

    #[test]
    fn a_directory_of_another_user_is_refused_naming_both_uids() {
        let e = check_dir_policy(facts(true, false, 1001, 0o700), 1000).unwrap_err();
        assert!(e.contains("1001") && e.contains("1000"), "{e}");
        assert!(e.contains("a socket directory of your own"), "{e}");
    }

    #[test]
    fn group_or_other_permissions_are_refused() {
        for mode in [0o750, 0o705, 0o777, 0o710] {
            let e = check_dir_policy(facts(true, false, 7, mode), 7).unwrap_err();
            assert!(e.contains("chmod 700"), "{e}");
        }
    }

    #[test]
    fn symlinks_and_files_are_refused() {
        assert!(check_dir_policy(facts(false, true, 7, 0o700), 7).is_err());
        assert!(check_dir_policy(facts(false, false, 7, 0o600), 7).is_err());
    }

    #[test]
    fn channel_names_follow_the_documented_alphabet() {
        for good in ["a", "A-Z_0.9", &"x".repeat(100)] {
            assert!(validate_channel_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", "a\0", &"x".repeat(101)] {
            assert!(validate_channel_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_uid_is_the_owner_of_files_we_create() {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::fs::metadata(dir.path()).unwrap();
        assert_eq!(current_uid().unwrap(), meta.uid());
    }

    #[test]
    fn a_directory_is_created_private_and_an_open_one_refused() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("hearth");
        assert!(!ensure_private_dir(&dir, false).unwrap());
        assert!(ensure_private_dir(&dir, true).unwrap());
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            ensure_private_dir(&dir, true),
            Err(IpcError::UnsafeDirectory { .. })
        ));
    }

    #[test]
    fn a_second_lock_on_a_channel_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = ChannelLock::acquire(dir.path(), "chan").unwrap();
        match ChannelLock::acquire(dir.path(), "chan") {
            Err(IpcError::ChannelInUse { pid, .. }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected ChannelInUse, got {other:?}"),
        }
        drop(first);
        assert!(ChannelLock::acquire(dir.path(), "chan").is_ok());
    }

    #[test]
    fn overlong_socket_paths_are_refused_with_advice() {
        let long = PathBuf::from(format!("/tmp/{}.sock", "x".repeat(120)));
        let e = check_path_len(&long).unwrap_err().to_string();
        assert!(e.contains("XDG_RUNTIME_DIR"), "{e}");
        assert!(check_path_len(Path::new("/tmp/a.sock")).is_ok());
    }
}
