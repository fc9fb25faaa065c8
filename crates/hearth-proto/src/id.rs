//! Document id validation.
//!
//! Owns: the one definition of a valid document id (1..=512 bytes of UTF-8,
//! no NUL). Must never: normalise or rewrite an id; an id is stored exactly
//! as given or refused.

use thiserror::Error;

/// The longest id accepted, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 512;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("document id is empty; use a non-empty id such as \"user:1\"")]
    Empty,
    /// The id is longer than [`MAX_ID_BYTES`].
    #[error("document id is {len} bytes; ids are at most {MAX_ID_BYTES} bytes")]
    TooLong {
        /// The id's length in bytes.
        len: usize,
    },
    /// The id contains a NUL character.
    #[error("document id contains a NUL character at byte {at}; remove it")]
    Nul {
        /// Byte offset of the first NUL.
        at: usize,
    },
}

/// Checks that `id` is a valid document id.
///
/// ```
/// use hearth_proto::{validate_id, IdError};
/// assert!(validate_id("user:1").is_ok());
/// assert_eq!(validate_id(""), Err(IdError::Empty));
/// assert!(validate_id("a\0b").is_err());
/// assert!(validate_id(&"x".repeat(513)).is_err());
/// ```
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong { len: id.len() });
    }
    if let Some(at) = id.bytes().position(|b| b == 0) {
        return Err(IdError::Nul { at });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_id_of_exactly_the_maximum_length_is_accepted() {
        assert!(validate_id(&"é".repeat(MAX_ID_BYTES / 2)).is_ok());
    }

    #[test]
    fn an_id_one_byte_over_the_maximum_is_refused_with_its_length() {
        assert_eq!(
            validate_id(&"x".repeat(MAX_ID_BYTES + 1)),
            Err(IdError::TooLong {
                len: MAX_ID_BYTES + 1
            })
        );
    }

    #[test]
    fn a_nul_anywhere_is_refused_with_its_position() {
        assert_eq!(validate_id("ab\0"), Err(IdError::Nul { at: 2 }));
    }

    proptest! {
        #[test]
        fn any_short_string_without_nul_is_valid(s in "[^\u{0}]{1,100}") {
            prop_assert!(validate_id(&s).is_ok());
        }
    }
}
