//! The `hearth` command line, specified by running the real binary on real
//! temporary data directories.
//!
//! Owns: the observable contract of the CLI — output, exit codes (0 ok,
//! 1 not found, 2 bad input, 3 store/IO failure), messages, and that a
//! failing command never loses a document. Must never: depend on timing or
//! on any data directory outside its own temporary one.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use support::Env;

// ---------------------------------------------------------------- documents

#[test]
fn put_then_get_prints_the_document() {
    let env = Env::new();
    let put = env
        .hearth(&["put", "user:1", r#"{"name":"Alice","age":30}"#])
        .ok();
    assert!(put.stdout.starts_with("ok user:1 (seq "), "{put:?}");
    let got = env.hearth(&["get", "user:1"]).ok();
    let v: Value = serde_json::from_str(&got.stdout).expect("get prints JSON");
    assert_eq!(v, json!({"name": "Alice", "age": 30}));
}

#[test]
fn put_replaces_the_whole_document() {
    let env = Env::new();
    env.hearth(&["put", "a", r#"{"x":1,"y":2}"#]).ok();
    env.hearth(&["put", "a", r#"{"z":3}"#]).ok();
    let v: Value = serde_json::from_str(&env.hearth(&["get", "a"]).ok().stdout).unwrap();
    assert_eq!(v, json!({"z": 3}));
}

#[test]
fn patch_merges_fields_and_null_removes_one() {
    let env = Env::new();
    env.hearth(&["put", "a", r#"{"x":1,"y":2}"#]).ok();
    env.hearth(&["patch", "a", r#"{"y":null,"z":3}"#]).ok();
    let v: Value = serde_json::from_str(&env.hearth(&["get", "a"]).ok().stdout).unwrap();
    assert_eq!(v, json!({"x": 1, "z": 3}));
}

#[test]
fn delete_removes_the_document() {
    let env = Env::new();
    env.hearth(&["put", "a", r#"{"x":1}"#]).ok();
    let del = env.hearth(&["delete", "a"]).ok();
    assert!(del.stdout.starts_with("deleted a (seq "), "{del:?}");
    env.hearth(&["get", "a"]).fails_with(1);
}

#[test]
fn sequence_numbers_grow_with_each_write() {
    let env = Env::new();
    let seq = |args: &[&str]| -> u64 {
        let r = env.hearth(&[&["--json"], args].concat()).ok();
        let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
        v["seq"].as_u64().expect("a seq")
    };
    let a = seq(&["put", "a", "{}"]);
    let b = seq(&["patch", "a", r#"{"x":1}"#]);
    let c = seq(&["delete", "a"]);
    assert!(a < b && b < c, "{a} {b} {c}");
}

#[test]
fn put_reads_the_document_from_stdin_when_given_dash() {
    let env = Env::new();
    env.hearth_stdin(&["put", "a", "-"], br#"{"from":"stdin"}"#)
        .ok();
    let v: Value = serde_json::from_str(&env.hearth(&["get", "a"]).ok().stdout).unwrap();
    assert_eq!(v, json!({"from": "stdin"}));
}

#[test]
fn documents_survive_between_runs_with_fsync_durability() {
    let env = Env::new();
    env.hearth(&["--durability", "fsync", "put", "a", r#"{"x":1}"#])
        .ok();
    env.hearth(&["get", "a"]).ok();
}

#[test]
fn the_data_dir_comes_from_hearth_data_dir_when_no_flag_is_given() {
    let env = Env::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["put", "a", "{}"])
        .env("HEARTH_DATA_DIR", env.data())
        .env_remove("HEARTH_LOG")
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{out:?}");
    env.hearth(&["get", "a"]).ok();
}

// ------------------------------------------------------------- not found: 1

#[test]
fn get_of_a_missing_id_exits_1_and_says_so() {
    let env = Env::new();
    env.seed();
    let r = env.hearth(&["get", "user:404"]).fails_with(1);
    assert!(r.stderr.starts_with("hearth: error: "), "{r:?}");
    assert!(r.stderr.contains("user:404"), "{r:?}");
    assert!(r.stderr.contains("hearth list"), "says what to do: {r:?}");
    env.assert_seed_kept();
}

#[test]
fn delete_of_a_missing_id_exits_1() {
    let env = Env::new();
    env.seed();
    let r = env.hearth(&["delete", "user:404"]).fails_with(1);
    assert!(r.stderr.contains("user:404"), "{r:?}");
    env.assert_seed_kept();
}

// ----------------------------------------------------------- bad input: 2

#[test]
fn invalid_json_exits_2_naming_line_and_column() {
    let env = Env::new();
    env.seed();
    let r = env
        .hearth(&["put", "keep:1", "{\n  \"a\": }"])
        .fails_with(2);
    assert!(r.stderr.contains("line 2, column"), "{r:?}");
    env.assert_seed_kept();
}

#[test]
fn a_json_value_that_is_not_an_object_exits_2() {
    let env = Env::new();
    env.seed();
    for text in ["[1,2]", "42", "\"s\"", "null"] {
        let r = env.hearth(&["put", "keep:1", text]).fails_with(2);
        assert!(r.stderr.contains("must be a JSON object"), "{r:?}");
        let r = env.hearth(&["patch", "keep:1", text]).fails_with(2);
        assert!(r.stderr.contains("must be a JSON object"), "{r:?}");
    }
    env.assert_seed_kept();
}

#[test]
fn an_empty_id_exits_2() {
    let env = Env::new();
    env.seed();
    let r = env.hearth(&["put", "", "{}"]).fails_with(2);
    assert!(r.stderr.contains("empty"), "{r:?}");
    env.hearth(&["get", ""]).fails_with(2);
    env.assert_seed_kept();
}

#[test]
fn an_id_of_513_bytes_exits_2_and_512_bytes_is_fine() {
    let env = Env::new();
    env.seed();
    let long = "x".repeat(513);
    let r = env.hearth(&["put", &long, "{}"]).fails_with(2);
    assert!(r.stderr.contains("513 bytes"), "{r:?}");
    env.hearth(&["put", &"x".repeat(512), "{}"]).ok();
    env.assert_seed_kept();
}

#[test]
fn an_id_with_a_nul_in_an_import_line_exits_2() {
    let env = Env::new();
    env.seed();
    let file = env.file("nul.jsonl");
    std::fs::write(&file, "{\"id\":\"a\\u0000b\",\"data\":{}}\n").unwrap();
    let r = env
        .hearth(&["import", file.to_str().unwrap()])
        .fails_with(2);
    assert!(r.stderr.contains("line 1"), "{r:?}");
    assert!(r.stderr.contains("NUL"), "{r:?}");
    env.assert_seed_kept();
}

#[test]
fn a_document_over_the_limit_exits_2_with_both_sizes() {
    let env = Env::new();
    env.seed();
    let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(100));
    let r = env
        .hearth(&["--max-doc-bytes", "64", "put", "keep:1", &big])
        .fails_with(2);
    assert!(r.stderr.contains("108 bytes"), "{r:?}");
    assert!(r.stderr.contains("64 bytes"), "{r:?}");
    env.assert_seed_kept();
}

#[test]
fn a_document_over_the_limit_on_stdin_exits_2() {
    let env = Env::new();
    env.seed();
    let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(100));
    env.hearth_stdin(
        &["--max-doc-bytes", "64", "put", "keep:1", "-"],
        big.as_bytes(),
    )
    .fails_with(2);
    env.assert_seed_kept();
}

#[test]
fn a_query_filter_without_equals_exits_2() {
    let env = Env::new();
    let r = env.hearth(&["query", "name"]).fails_with(2);
    assert!(r.stderr.contains("FIELD=VALUE"), "{r:?}");
}

#[test]
fn an_unknown_subcommand_exits_2() {
    let env = Env::new();
    env.hearth(&["frobnicate"]).fails_with(2);
}

#[test]
fn importing_a_missing_file_exits_2_without_creating_anything() {
    let env = Env::new();
    let missing = env.file("missing.jsonl");
    let r = env
        .hearth(&["import", missing.to_str().unwrap()])
        .fails_with(2);
    assert!(r.stderr.contains("no such file"), "{r:?}");
    assert!(!env.data().exists(), "the data directory was not created");
}

// ------------------------------------------------- store and I/O failures: 3

#[test]
fn a_data_dir_that_is_a_file_exits_3_and_says_so() {
    let env = Env::new();
    let file = env.file("not-a-dir");
    std::fs::write(&file, b"precious").unwrap();
    let r = env
        .hearth_in(&file, &["put", "a", "{}"], None)
        .fails_with(3);
    assert!(r.stderr.contains("--data-dir must be a directory"), "{r:?}");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
}

#[test]
fn an_unwritable_data_dir_exits_3() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let dir = env.file("readonly");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    let probe = dir.join("probe");
    let r = if std::fs::write(&probe, b"").is_err() {
        env.hearth_in(&dir, &["put", "a", "{}"], None)
    } else {
        // Root ignores permissions. Run the binary as `nobody` instead when
        // setpriv is there; otherwise there is nothing to check.
        let _ = std::fs::remove_file(&probe);
        let has_setpriv = std::process::Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_setpriv {
            eprintln!("skipped: this user can write to a 0500 directory and setpriv is missing");
            return;
        }
        // `nobody` must be able to reach the directory and run the binary.
        std::fs::set_permissions(env.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_hearth"))
            .arg("--data-dir")
            .arg(&dir)
            .args(["put", "a", "{}"]);
        support::run(cmd, None)
    };
    let r = r.fails_with(3);
    assert!(r.stderr.contains("writable"), "{r:?}");
    assert!(r.stderr.contains("readonly"), "names the directory: {r:?}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn a_data_dir_held_by_another_process_exits_3_naming_its_pid() {
    let env = Env::new();
    env.seed();
    let held = hearth_store::Store::open(env.data(), hearth_store::Options::default())
        .expect("the test holds the store");
    let r = env
        .hearth(&["put", "keep:1", r#"{"keep":false}"#])
        .fails_with(3);
    let pid = std::process::id().to_string();
    assert!(r.stderr.contains(&pid), "names pid {pid}: {r:?}");
    assert!(r.stderr.contains("in use"), "{r:?}");
    let r = env.hearth(&["--json", "get", "keep:1"]).fails_with(3);
    let err: Value = serde_json::from_str(r.stderr.trim()).expect("JSON error");
    assert_eq!(err["error"]["code"], "locked");
    drop(held);
    // A child another test spawns at this moment holds a copy of the lock's
    // descriptor until it execs (close-on-exec), and the lock with it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while env.hearth(&["get", "keep:1"]).code == 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was never let go"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    env.assert_seed_kept();
}

#[test]
fn a_corrupted_database_exits_3_and_is_left_untouched() {
    let env = Env::new();
    env.seed();
    let db = env.data().join("hearth.db");
    let garbage: Vec<u8> = (0..16384u32).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    let r = env.hearth(&["get", "keep:1"]).fails_with(3);
    assert!(r.stderr.contains("hearth.db"), "{r:?}");
    assert!(r.stderr.contains("damaged"), "{r:?}");
    env.hearth(&["put", "other", "{}"]).fails_with(3);
    env.hearth(&["repair"]).fails_with(3);
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "file untouched");
}

#[test]
fn a_damaged_journal_refuses_to_open_and_repair_sets_the_damage_aside() {
    let env = Env::new();
    env.seed();
    env.hearth(&["put", "b", r#"{"n":2}"#]).ok();
    env.hearth(&["put", "c", r#"{"n":3}"#]).ok();
    let segment = only_journal_segment(&env);
    let mut bytes = std::fs::read(&segment).unwrap();
    // Flip a byte inside the first record's body (header is 16 bytes, the
    // record header 8 more): records follow it, so this is corruption.
    bytes[16 + 8 + 4] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();

    let r = env.hearth(&["get", "c"]).fails_with(3);
    assert!(r.stderr.contains("hearth repair"), "says what to do: {r:?}");
    assert_eq!(std::fs::read(&segment).unwrap(), bytes, "left untouched");

    let r = env.hearth(&["--json", "repair"]).ok();
    let report: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let aside = report["set_aside"].as_array().expect("a list");
    assert_eq!(aside.len(), 1, "{report}");
    assert!(std::path::Path::new(aside[0].as_str().unwrap()).exists());
    // The writes had reached the database before the damage: none is lost.
    env.assert_seed_kept();
    env.hearth(&["get", "b"]).ok();
    env.hearth(&["get", "c"]).ok();
}

#[test]
fn repair_of_an_intact_directory_says_there_is_nothing_to_do() {
    let env = Env::new();
    env.seed();
    let r = env.hearth(&["repair"]).ok();
    assert!(r.stdout.contains("nothing to repair"), "{r:?}");
    env.assert_seed_kept();
}

#[test]
fn a_torn_last_journal_record_is_dropped_with_a_notice() {
    let env = Env::new();
    env.seed();
    let segment = only_journal_segment(&env);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    // A record header claiming 100 bytes, followed by only 3: a crash mid-write.
    f.write_all(&100u32.to_le_bytes()).unwrap();
    f.write_all(&[0, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    let r = env.hearth(&["get", "keep:1"]).ok();
    assert!(r.stderr.contains("hearth: notice: "), "{r:?}");
    assert!(r.stderr.contains("11 bytes"), "{r:?}");
    env.assert_seed_kept();
}

#[test]
fn a_torn_record_notice_is_json_in_json_mode() {
    let env = Env::new();
    env.seed();
    let segment = only_journal_segment(&env);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    f.write_all(&[9, 9, 9]).unwrap();
    drop(f);
    let r = env.hearth(&["--json", "get", "keep:1"]).ok();
    let notice: Value = serde_json::from_str(r.stderr.trim()).expect("a JSON notice");
    assert_eq!(notice["notice"]["torn_tail_bytes"], 3);
}

fn only_journal_segment(env: &Env) -> std::path::PathBuf {
    let segments: Vec<_> = std::fs::read_dir(env.data().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments.into_iter().next().unwrap()
}

// ------------------------------------------------------------------- reads

fn people(env: &Env) {
    let docs = [
        (
            "user:1",
            r#"{"type":"User","name":"Alice","age":30,"admin":true}"#,
        ),
        (
            "user:2",
            r#"{"type":"User","name":"Bob","age":25,"admin":false}"#,
        ),
        (
            "user:3",
            r#"{"type":"User","name":"Carol","age":30,"admin":false}"#,
        ),
        ("org:1", r#"{"type":"Org","name":"Acme"}"#),
        ("note:1", r#"{"type":"Note","text":"Alice met Bob"}"#),
    ];
    let lines: String = docs
        .iter()
        .map(|(id, data)| format!("{{\"id\":\"{id}\",\"data\":{data}}}\n"))
        .collect();
    env.hearth_stdin(&["import", "-"], lines.as_bytes()).ok();
}

#[test]
fn list_prints_every_document_in_id_order() {
    let env = Env::new();
    people(&env);
    let r = env.hearth(&["list"]).ok();
    assert_eq!(r.ids(), ["note:1", "org:1", "user:1", "user:2", "user:3"]);
    assert!(r.stdout.contains(r#"user:1  {"#), "{r:?}");
}

#[test]
fn list_filters_by_prefix() {
    let env = Env::new();
    people(&env);
    let r = env.hearth(&["list", "--prefix", "user:"]).ok();
    assert_eq!(r.ids(), ["user:1", "user:2", "user:3"]);
}

#[test]
fn list_filters_by_type() {
    let env = Env::new();
    people(&env);
    let r = env.hearth(&["list", "--type", "Org"]).ok();
    assert_eq!(r.ids(), ["org:1"]);
}

#[test]
fn list_stops_at_the_limit_and_resumes_after_an_id() {
    let env = Env::new();
    people(&env);
    let first = env
        .hearth(&["list", "--prefix", "user:", "--limit", "2"])
        .ok();
    assert_eq!(first.ids(), ["user:1", "user:2"]);
    let rest = env
        .hearth(&["list", "--prefix", "user:", "--after", "user:2"])
        .ok();
    assert_eq!(rest.ids(), ["user:3"]);
}

#[test]
fn query_matches_numbers_strings_and_booleans() {
    let env = Env::new();
    people(&env);
    let r = env.hearth(&["query", "age=30"]).ok();
    assert_eq!(r.ids(), ["user:1", "user:3"]);
    let r = env.hearth(&["query", "name=Bob"]).ok();
    assert_eq!(r.ids(), ["user:2"]);
    let r = env.hearth(&["query", "age=30", "admin=false"]).ok();
    assert_eq!(r.ids(), ["user:3"]);
    let r = env.hearth(&["query", "age=30", "--limit", "1"]).ok();
    assert_eq!(r.ids(), ["user:1"]);
    let r = env.hearth(&["query", "age=99"]).ok();
    assert!(r.stdout.is_empty(), "{r:?}");
}

#[test]
fn search_ranks_the_better_match_first() {
    let env = Env::new();
    env.hearth(&[
        "put",
        "a",
        r#"{"text":"rust is a language; rust rust rust"}"#,
    ])
    .ok();
    env.hearth(&[
        "put",
        "b",
        r#"{"text":"a long text about many other things and once rust"}"#,
    ])
    .ok();
    env.hearth(&["put", "c", r#"{"text":"nothing relevant here"}"#])
        .ok();
    let r = env.hearth(&["--json", "search", "rust"]).ok();
    let hits = r.json_lines();
    let ids: Vec<&str> = hits.iter().map(|h| h["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(hits[0]["score"].as_f64() > hits[1]["score"].as_f64());
    let r = env.hearth(&["search", "rust", "--limit", "1"]).ok();
    assert_eq!(r.ids(), ["a"]);
}

#[test]
fn stats_counts_documents_and_tombstones() {
    let env = Env::new();
    people(&env);
    env.hearth(&["delete", "org:1"]).ok();
    let r = env.hearth(&["--json", "stats"]).ok();
    let s: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(s["documents"], 4);
    assert_eq!(s["tombstones"], 1);
    let r = env.hearth(&["stats"]).ok();
    let documents = r
        .stdout
        .lines()
        .find(|l| l.starts_with("documents "))
        .expect("a documents row");
    assert!(documents.ends_with(" 4"), "{documents:?}");
}

// ---------------------------------------------------------- import/export

#[test]
fn importing_10000_lines_then_exporting_gives_the_same_documents() {
    let env = Env::new();
    let input = env.file("in.jsonl");
    let mut expected = BTreeMap::new();
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        for i in 0..10_000 {
            let id = format!("item:{i:05}");
            let data = json!({"type": "Item", "n": i, "name": format!("thing {i}")});
            writeln!(f, "{}", json!({"id": id, "data": data})).unwrap();
            expected.insert(id, data);
        }
    }
    let r = env.hearth(&["import", input.to_str().unwrap()]).ok();
    assert!(r.stdout.contains("imported 10000 documents from"), "{r:?}");
    let output = env.file("out.jsonl");
    let r = env.hearth(&["export", output.to_str().unwrap()]).ok();
    assert!(r.stdout.contains("exported 10000 documents"), "{r:?}");
    let exported: BTreeMap<String, Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), v["data"].clone())
        })
        .collect();
    assert_eq!(exported, expected);
}

#[test]
fn export_without_a_file_writes_json_lines_to_stdout() {
    let env = Env::new();
    people(&env);
    let r = env.hearth(&["export"]).ok();
    let lines = r.json_lines();
    assert_eq!(lines.len(), 5);
    assert_eq!(
        lines[0],
        json!({"id": "note:1", "data": {"type":"Note","text":"Alice met Bob"}})
    );
}

#[test]
fn import_stops_at_a_bad_line_naming_it_and_keeps_the_lines_before() {
    let env = Env::new();
    env.seed();
    let file = env.file("bad.jsonl");
    let mut text = String::new();
    for i in 1..=5 {
        text.push_str(&format!("{{\"id\":\"ok:{i}\",\"data\":{{\"i\":{i}}}}}\n"));
    }
    text.push_str("{\"id\":\"broken\",\"data\":{\"i\": }\n"); // line 6
    text.push_str("{\"id\":\"after\",\"data\":{}}\n"); // line 7
    std::fs::write(&file, text).unwrap();
    let r = env
        .hearth(&["import", file.to_str().unwrap()])
        .fails_with(2);
    assert!(r.stderr.contains("line 6"), "{r:?}");
    assert!(r.stderr.contains("invalid JSON"), "{r:?}");
    assert!(r.stderr.contains("Imported 5 documents"), "{r:?}");
    let listed = env.hearth(&["list", "--prefix", "ok:"]).ok();
    assert_eq!(listed.ids().len(), 5);
    env.hearth(&["get", "after"]).fails_with(1);
    env.assert_seed_kept();
}

#[test]
fn import_names_each_kind_of_bad_line() {
    let env = Env::new();
    env.seed();
    for (line, what) in [
        (r#"[1]"#, "not an object"),
        (r#"{"data":{}}"#, "\"id\" is missing"),
        (r#"{"id":"x","data":[]}"#, "not an object"),
        (r#"{"id":"","data":{}}"#, "empty"),
    ] {
        let r = env
            .hearth_stdin(&["import", "-"], format!("\n{line}\n").as_bytes())
            .fails_with(2);
        assert!(r.stderr.contains("line 2 of standard input"), "{r:?}");
        assert!(r.stderr.contains(what), "{what}: {r:?}");
    }
    env.assert_seed_kept();
}

#[test]
fn import_refuses_a_document_over_the_limit_naming_its_line() {
    let env = Env::new();
    env.seed();
    let line = format!(
        "{{\"id\":\"ok\",\"data\":{{}}}}\n{{\"id\":\"big\",\"data\":{{\"s\":\"{}\"}}}}\n",
        "x".repeat(200)
    );
    let r = env
        .hearth_stdin(&["--max-doc-bytes", "100", "import", "-"], line.as_bytes())
        .fails_with(2);
    assert!(r.stderr.contains("line 2"), "{r:?}");
    assert!(r.stderr.contains("limit is 100 bytes"), "{r:?}");
    env.hearth(&["get", "ok"]).ok();
    env.assert_seed_kept();
}

#[test]
fn import_skips_blank_lines() {
    let env = Env::new();
    let r = env
        .hearth_stdin(
            &["import", "-"],
            b"\n{\"id\":\"a\",\"data\":{}}\n   \n\r\n{\"id\":\"b\",\"data\":{}}\n\n",
        )
        .ok();
    assert!(
        r.stdout
            .contains("imported 2 documents from standard input"),
        "{r:?}"
    );
}

#[test]
fn a_file_without_a_final_newline_imports_its_last_line() {
    let env = Env::new();
    env.hearth_stdin(&["import", "-"], br#"{"id":"a","data":{"x":1}}"#)
        .ok();
    env.hearth(&["get", "a"]).ok();
}

// ---------------------------------------------------------------- --json

#[test]
fn every_json_mode_output_line_parses_as_json() {
    let env = Env::new();
    people(&env);
    for args in [
        &["--json", "put", "z", r#"{"a":1}"#][..],
        &["--json", "patch", "z", r#"{"b":2}"#],
        &["--json", "get", "z"],
        &["--json", "list"],
        &["--json", "query", "type=User"],
        &["--json", "search", "alice"],
        &["--json", "export"],
        &["--json", "stats"],
        &["--json", "repair"],
        &["--json", "delete", "z"],
    ] {
        let r = env.hearth(args).ok();
        assert!(!r.stdout.is_empty(), "{args:?} printed nothing");
        r.json_lines();
        assert!(r.stderr.is_empty(), "{args:?}: {r:?}");
    }
}

#[test]
fn json_mode_list_lines_carry_id_and_data() {
    let env = Env::new();
    people(&env);
    let r = env.hearth(&["--json", "list", "--prefix", "org:"]).ok();
    assert_eq!(
        r.json_lines(),
        [json!({"id": "org:1", "data": {"type": "Org", "name": "Acme"}})]
    );
}

#[test]
fn json_mode_errors_are_json_on_stderr_with_a_code() {
    let env = Env::new();
    let r = env.hearth(&["--json", "get", "nope"]).fails_with(1);
    assert!(r.stdout.is_empty());
    let err: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(err["error"]["code"], "not_found");
    assert!(err["error"]["message"].as_str().unwrap().contains("nope"));

    let r = env.hearth(&["--json", "put", "a", "[]"]).fails_with(2);
    let err: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(err["error"]["code"], "invalid_input");

    let r = env
        .hearth(&["--json", "--max-doc-bytes", "4", "put", "a", r#"{"a":1}"#])
        .fails_with(2);
    let err: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(err["error"]["code"], "too_large");
}

#[test]
fn json_mode_usage_errors_are_json_too() {
    let env = Env::new();
    let r = env.hearth(&["--json", "get"]).fails_with(2);
    let err: Value = serde_json::from_str(r.stderr.trim()).expect("JSON usage error");
    assert_eq!(err["error"]["code"], "invalid_input");
}

fn items(env: &Env, n: usize) {
    let lines: String = (0..n)
        .map(|i| {
            format!("{{\"id\":\"item:{i:05}\",\"data\":{{\"type\":\"Item\",\"n\":{i},\"pad\":\"{}\"}}}}\n", "p".repeat(40))
        })
        .collect();
    env.hearth_stdin(&["import", "-"], lines.as_bytes()).ok();
}

#[test]
fn query_returns_every_match_across_pages() {
    let env = Env::new();
    items(&env, 2500);
    let r = env.hearth(&["query", "type=Item"]).ok();
    let ids = r.ids();
    assert_eq!(ids.len(), 2500);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "in id order, no repeats"
    );
    let r = env.hearth(&["query", "type=Item", "--limit", "1500"]).ok();
    assert_eq!(r.ids().len(), 1500);
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let env = Env::new();
    items(&env, 5000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--data-dir")
        .arg(env.data())
        .arg("export")
        .env_remove("HEARTH_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader (like `head -1`) is dropped here, closing the pipe.
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with("{\"id\":\"item:00000\""), "{first:?}");
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("error"),
        "{out:?}"
    );
}
