//! Results carry their executor's signature, made with the node's libp2p key.
//! An ed25519 peer id embeds its public key, so anyone can check a record
//! against the `executed_by` it names, with no key distribution: a peer that
//! passes a result on can neither alter it nor pin it on another node.

use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};
use nebula_protocol::{CallKey, ExecutionRecord, Signatures};

/// The multihash code of an inlined ("identity") key, as ed25519 peer ids use.
const IDENTITY_MULTIHASH: u64 = 0;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the record names no executor")]
    NoExecutor,
    #[error("executed_by '{0}' is not a peer id that carries its public key")]
    UnknownKey(String),
    #[error("the signature does not match the record and its executor")]
    Invalid,
}

/// Signs `record` as the answer to `key`, in place.
pub fn sign(identity: &Keypair, key: &CallKey, record: &mut ExecutionRecord) {
    record.signature = identity.sign(&record.signed_content(key)).expect("ed25519 signing cannot fail");
}

/// Checks that `record`, as an answer to `key`, was signed by the node it names.
pub fn verify(key: &CallKey, record: &ExecutionRecord) -> Result<(), SignatureError> {
    if record.executed_by.is_empty() {
        return Err(SignatureError::NoExecutor);
    }
    let public =
        public_key_of(&record.executed_by).ok_or_else(|| SignatureError::UnknownKey(record.executed_by.clone()))?;
    match public.verify(&record.signed_content(key), &record.signature) {
        true => Ok(()),
        false => Err(SignatureError::Invalid),
    }
}

/// The signature check the core relies on: ed25519, against the key the
/// executor's peer id carries.
pub struct Ed25519Signatures;

impl Signatures for Ed25519Signatures {
    fn verify(&self, key: &CallKey, record: &ExecutionRecord) -> Result<(), String> {
        verify(key, record).map_err(|error| error.to_string())
    }
}

fn public_key_of(peer: &str) -> Option<PublicKey> {
    let peer: PeerId = peer.parse().ok()?;
    let multihash = peer.as_ref();
    (multihash.code() == IDENTITY_MULTIHASH).then(|| PublicKey::try_decode_protobuf(multihash.digest()).ok())?
}

/// A record of module `m` run by `identity`, neither signed nor sealed (tests).
#[cfg(test)]
pub(crate) fn record_run_by(identity: &Keypair) -> ExecutionRecord {
    use nebula_protocol::{ModuleId, Outcome, Timings};
    ExecutionRecord {
        module: ModuleId::of_bytes(b"m"),
        outcome: Outcome::Success { stdout: b"55".to_vec() },
        fuel_used: 9,
        timings: Timings::default(),
        executed_by: identity.public().to_peer_id().to_string(),
        signature: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nebula_protocol::{ModuleId, Outcome};

    fn signed_record(identity: &Keypair, key: &CallKey) -> ExecutionRecord {
        let mut record = record_run_by(identity);
        sign(identity, key, &mut record);
        record
    }

    #[test]
    fn a_signed_record_verifies_and_any_change_breaks_it() {
        let identity = Keypair::generate_ed25519();
        let key = CallKey::new(&ModuleId::of_bytes(b"m"), b"10");
        let record = signed_record(&identity, &key);
        assert_eq!(verify(&key, &record), Ok(()));

        let mut altered = record.clone();
        altered.outcome = Outcome::Success { stdout: b"66".to_vec() };
        assert_eq!(verify(&key, &altered), Err(SignatureError::Invalid));
        // The same record replayed as the answer to another input.
        let other_key = CallKey::new(&ModuleId::of_bytes(b"m"), b"11");
        assert_eq!(verify(&other_key, &record), Err(SignatureError::Invalid));
        // Pinned on another node.
        let mut framed = record.clone();
        framed.executed_by = Keypair::generate_ed25519().public().to_peer_id().to_string();
        assert_eq!(verify(&key, &framed), Err(SignatureError::Invalid));
        let mut unsigned = record.clone();
        unsigned.signature.clear();
        assert_eq!(verify(&key, &unsigned), Err(SignatureError::Invalid));
        // Timings are informational and not signed.
        let mut timed = record;
        timed.timings.run_us = 12345;
        assert_eq!(verify(&key, &timed), Ok(()));
    }

    #[test]
    fn records_naming_no_key_are_refused() {
        let key = CallKey::new(&ModuleId::of_bytes(b"m"), b"10");
        let mut record = signed_record(&Keypair::generate_ed25519(), &key);
        record.executed_by = "node-7".into();
        assert!(matches!(verify(&key, &record), Err(SignatureError::UnknownKey(_))));
        record.executed_by.clear();
        assert_eq!(verify(&key, &record), Err(SignatureError::NoExecutor));
        assert!(Ed25519Signatures.verify(&key, &record).is_err());
    }
}
