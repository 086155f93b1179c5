//! Names are mutable pointers to modules: last-writer-wins registers ordered by
//! (version, publisher), so every node that has seen the same records agrees.

use serde::{Deserialize, Serialize};

use crate::ids::{MIN_PREFIX_LEN, ModuleId, looks_like_hex};

pub const MAX_NAME_LEN: usize = 64;

#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRecord {
    pub name: String,
    pub module: ModuleId,
    /// Incremented by each re-point; the newest version wins a merge.
    pub version: u64,
    /// Identity of the node that published this version; breaks version ties.
    pub publisher: String,
}

impl NameRecord {
    /// True if `self` should replace `current` in a last-writer-wins merge.
    pub fn supersedes(&self, current: &NameRecord) -> bool {
        (self.version, &self.publisher) > (current.version, &current.publisher)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("a name must be 1 to {MAX_NAME_LEN} characters long")]
    Length,
    #[error("a name may hold only a-z, 0-9, '-', '_' and '.', and must start with a letter or digit")]
    Characters,
    #[error("a name of {MIN_PREFIX_LEN} or more hex digits would be read as a module hash prefix")]
    LooksLikeHash,
}

pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(NameError::Length);
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.');
    if !name.bytes().all(allowed) || !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(NameError::Characters);
    }
    // Names win over hash prefixes when resolving, so a hex-only name long
    // enough to be a prefix would shadow every module whose hash starts with it.
    if looks_like_hex(name) && name.len() >= MIN_PREFIX_LEN {
        return Err(NameError::LooksLikeHash);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: u64, publisher: &str) -> NameRecord {
        NameRecord {
            name: "fib".into(),
            module: ModuleId::of_bytes(publisher.as_bytes()),
            version,
            publisher: publisher.into(),
        }
    }

    #[test]
    fn newer_version_wins_and_publisher_breaks_ties() {
        assert!(record(2, "a").supersedes(&record(1, "z")));
        assert!(!record(1, "z").supersedes(&record(2, "a")));
        assert!(record(1, "b").supersedes(&record(1, "a")));
        assert!(!record(1, "a").supersedes(&record(1, "a")));
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(validate_name("fibonacci"), Ok(()));
        assert_eq!(validate_name("prime-number.v2"), Ok(()));
        assert_eq!(validate_name(""), Err(NameError::Length));
        assert_eq!(validate_name("Fib"), Err(NameError::Characters));
        assert_eq!(validate_name("-x"), Err(NameError::Characters));
        assert_eq!(validate_name("<script>"), Err(NameError::Characters));
        assert_eq!(validate_name("beef"), Err(NameError::LooksLikeHash));
        assert_eq!(validate_name("add"), Ok(()), "too short to be a hash prefix");
    }
}
