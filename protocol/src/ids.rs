//! Content addresses: a module is the BLAKE3 hash of its bytes, a call is the
//! BLAKE3 hash of (domain tag, module, purity-profile version, input).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Version of the purity profile (what a guest can observe: arguments,
/// clocks, random stream, NaN canonicalisation, stack size, wasm features).
/// Bumping it changes every [`CallKey`], so results computed under an older
/// profile are never reused. 2: every call sees one fixed argument 0.
pub const PROFILE_VERSION: u32 = 2;

/// Shortest hash prefix accepted, so a typo does not silently pick a module.
pub const MIN_PREFIX_LEN: usize = 4;

const CALL_KEY_DOMAIN: &[u8] = b"nebula/call-key/v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdParseError {
    #[error("expected 64 hex characters, got {0}")]
    Length(usize),
    #[error("not a hex string")]
    NotHex,
}

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        /// Hex in human-readable formats (JSON), 32 raw bytes in binary ones (postcard).
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.serialize_str(&self.to_hex())
                } else {
                    self.0.serialize(serializer)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let text = String::deserialize(deserializer)?;
                    text.parse().map_err(serde::de::Error::custom)
                } else {
                    <[u8; 32]>::deserialize(deserializer).map(Self)
                }
            }
        }

        impl $name {
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 12 hex characters, for logs and tables.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..6])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 64 {
                    return Err(IdParseError::Length(s.len()));
                }
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(s, &mut bytes).map_err(|_| IdParseError::NotHex)?;
                Ok(Self(bytes))
            }
        }
    };
}

hash_id!(
    /// BLAKE3 of a module's wasm bytes.
    ModuleId
);
hash_id!(
    /// Keys the result cache and in-flight deduplication.
    CallKey
);

impl ModuleId {
    pub fn of_bytes(wasm: &[u8]) -> Self {
        Self(*blake3::hash(wasm).as_bytes())
    }
}

/// Bytes hashed before a call's input: domain tag, module, profile version and
/// the input's length (a length prefix, so (module, input) pairs can never
/// collide by shifting bytes across the boundary).
const CALL_KEY_HEADER_LEN: usize = CALL_KEY_DOMAIN.len() + 32 + 4 + 8;

/// Inputs up to this size are hashed in one piece from the stack: one BLAKE3
/// call instead of five updates, a third of a cached call's hashing time.
const SMALL_INPUT: usize = 256;

impl CallKey {
    pub fn new(module: &ModuleId, input: &[u8]) -> Self {
        let mut preimage = [0u8; CALL_KEY_HEADER_LEN + SMALL_INPUT];
        let (domain, rest) = preimage.split_at_mut(CALL_KEY_DOMAIN.len());
        domain.copy_from_slice(CALL_KEY_DOMAIN);
        rest[..32].copy_from_slice(module.as_bytes());
        rest[32..36].copy_from_slice(&PROFILE_VERSION.to_le_bytes());
        rest[36..44].copy_from_slice(&(input.len() as u64).to_le_bytes());
        if input.len() <= SMALL_INPUT {
            preimage[CALL_KEY_HEADER_LEN..][..input.len()].copy_from_slice(input);
            return Self(*blake3::hash(&preimage[..CALL_KEY_HEADER_LEN + input.len()]).as_bytes());
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(&preimage[..CALL_KEY_HEADER_LEN]);
        hasher.update(input);
        Self(*hasher.finalize().as_bytes())
    }
}

/// True if `s` could be a (possibly abbreviated) lowercase hex module id.
pub fn looks_like_hex(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_id_round_trips_through_hex() {
        let id = ModuleId::of_bytes(b"\0asm");
        let parsed: ModuleId = id.to_hex().parse().unwrap();
        assert_eq!(parsed, id);
        assert_eq!(id.short().len(), 12);
    }

    #[test]
    fn bad_hex_is_rejected() {
        assert_eq!("abc".parse::<ModuleId>(), Err(IdParseError::Length(3)));
        assert_eq!("z".repeat(64).parse::<ModuleId>(), Err(IdParseError::NotHex));
    }

    #[test]
    fn call_key_depends_on_module_and_input() {
        let a = ModuleId::of_bytes(b"a");
        let b = ModuleId::of_bytes(b"b");
        assert_eq!(CallKey::new(&a, b"1"), CallKey::new(&a, b"1"));
        assert_ne!(CallKey::new(&a, b"1"), CallKey::new(&a, b"2"));
        assert_ne!(CallKey::new(&a, b"1"), CallKey::new(&b, b"1"));
    }

    #[test]
    fn call_keys_hash_domain_module_profile_length_and_input_whatever_the_size() {
        let module = ModuleId::of_bytes(b"m");
        for size in [0, 1, SMALL_INPUT - 1, SMALL_INPUT, SMALL_INPUT + 1, 100_000] {
            let input: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut hasher = blake3::Hasher::new();
            hasher.update(b"nebula/call-key/v1");
            hasher.update(module.as_bytes());
            hasher.update(&PROFILE_VERSION.to_le_bytes());
            hasher.update(&(size as u64).to_le_bytes());
            hasher.update(&input);
            assert_eq!(CallKey::new(&module, &input).0, *hasher.finalize().as_bytes(), "{size} bytes");
        }
    }

    #[test]
    fn ids_are_hex_in_json_and_raw_in_postcard() {
        let id = ModuleId::of_bytes(b"x");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ModuleId>(&json).unwrap(), id);
        let binary = postcard::to_stdvec(&id).unwrap();
        assert_eq!(binary.len(), 32);
        assert_eq!(postcard::from_bytes::<ModuleId>(&binary).unwrap(), id);
    }

    #[test]
    fn hex_detection() {
        assert!(looks_like_hex("3f2a9c"));
        assert!(!looks_like_hex("fib"));
        assert!(!looks_like_hex("3F2A"));
        assert!(!looks_like_hex(""));
    }
}
