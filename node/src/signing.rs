//! Results carry their executor's signature, made with the node's libp2p key.
//! An ed25519 peer id embeds its public key, so anyone can check a record
//! against the `executed_by` it names, with no key distribution: a peer that
//! passes a result on can neither alter it nor pin it on another node.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
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
    let public = verifying_key(&record.executed_by)?;
    check(&public, key, record)
}

fn check(public: &VerifyingKey, key: &CallKey, record: &ExecutionRecord) -> Result<(), SignatureError> {
    let signature = Signature::from_slice(&record.signature).map_err(|_| SignatureError::Invalid)?;
    public.verify(&record.signed_content(key), &signature).map_err(|_| SignatureError::Invalid)
}

/// The key an ed25519 peer id carries, named as the executor of a record.
fn verifying_key(executor: &str) -> Result<VerifyingKey, SignatureError> {
    if executor.is_empty() {
        return Err(SignatureError::NoExecutor);
    }
    let unknown = || SignatureError::UnknownKey(executor.to_owned());
    let peer: PeerId = executor.parse().map_err(|_| unknown())?;
    let multihash = peer.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH {
        return Err(unknown());
    }
    let public = PublicKey::try_decode_protobuf(multihash.digest()).map_err(|_| unknown())?;
    let ed25519 = public.try_into_ed25519().map_err(|_| unknown())?;
    VerifyingKey::from_bytes(&ed25519.to_bytes()).map_err(|_| unknown())
}

/// Executors' keys kept decoded: base58, protobuf and point decompression
/// cost about a third of a verify, and a mesh has few executors.
const KEYS_KEPT: usize = 4096;

/// The signature check the core relies on: ed25519, against the key the
/// executor's peer id carries. A batch a peer sent at once is checked in one
/// go (ed25519 batch verification, about half the cost per signature); if
/// the batch fails, each record is checked alone, so only the forged ones are
/// refused.
pub struct Ed25519Signatures {
    keys: quick_cache::sync::Cache<String, VerifyingKey>,
}

impl Default for Ed25519Signatures {
    fn default() -> Self {
        Self { keys: quick_cache::sync::Cache::new(KEYS_KEPT) }
    }
}

impl Ed25519Signatures {
    fn key_of(&self, executor: &str) -> Result<VerifyingKey, SignatureError> {
        if let Some(public) = self.keys.get(executor) {
            return Ok(public);
        }
        let public = verifying_key(executor)?;
        self.keys.insert(executor.to_owned(), public);
        Ok(public)
    }

    fn check(&self, key: &CallKey, record: &ExecutionRecord) -> Result<(), SignatureError> {
        check(&self.key_of(&record.executed_by)?, key, record)
    }

    /// The whole batch, if every record in it has a well-formed key and
    /// signature and they verify together.
    fn batch_holds(&self, records: &[(&CallKey, &ExecutionRecord)]) -> bool {
        let mut keys = Vec::with_capacity(records.len());
        let mut signatures = Vec::with_capacity(records.len());
        let mut messages = Vec::with_capacity(records.len());
        for (key, record) in records {
            let (Ok(public), Ok(signature)) =
                (self.key_of(&record.executed_by), Signature::from_slice(&record.signature))
            else {
                return false;
            };
            keys.push(public);
            signatures.push(signature);
            messages.push(record.signed_content(key));
        }
        let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
    }
}

impl Signatures for Ed25519Signatures {
    fn verify(&self, key: &CallKey, record: &ExecutionRecord) -> Result<(), String> {
        self.check(key, record).map_err(|error| error.to_string())
    }

    fn verify_all(&self, records: &[(&CallKey, &ExecutionRecord)]) -> Vec<Result<(), String>> {
        if records.len() > 1 && self.batch_holds(records) {
            return vec![Ok(()); records.len()];
        }
        records.iter().map(|(key, record)| self.verify(key, record)).collect()
    }
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
    fn a_batch_is_accepted_whole_or_each_record_is_judged_alone() {
        let (alice, bob) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let keys: Vec<CallKey> = (0..6).map(|i| CallKey::new(&ModuleId::of_bytes(b"m"), &[i])).collect();
        let mut records: Vec<ExecutionRecord> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| signed_record(if i % 2 == 0 { &alice } else { &bob }, key))
            .collect();
        let signatures = Ed25519Signatures::default();
        let judged = |records: &[ExecutionRecord]| {
            let batch: Vec<(&CallKey, &ExecutionRecord)> = keys.iter().zip(records).collect();
            signatures.verify_all(&batch).iter().map(Result::is_ok).collect::<Vec<_>>()
        };
        assert_eq!(judged(&records), [true; 6]);

        records[1].outcome = Outcome::Success { stdout: b"forged".to_vec() };
        records[4].executed_by = "node-7".into();
        records[5].signature.truncate(10);
        assert_eq!(judged(&records), [true, false, true, true, false, false]);
        // The keys kept decoded change nothing: a framed record still fails.
        records[0].executed_by = bob.public().to_peer_id().to_string();
        assert_eq!(judged(&records)[..4], [false, false, true, true]);
    }

    #[test]
    fn records_naming_no_key_are_refused() {
        let key = CallKey::new(&ModuleId::of_bytes(b"m"), b"10");
        let mut record = signed_record(&Keypair::generate_ed25519(), &key);
        record.executed_by = "node-7".into();
        assert!(matches!(verify(&key, &record), Err(SignatureError::UnknownKey(_))));
        record.executed_by.clear();
        assert_eq!(verify(&key, &record), Err(SignatureError::NoExecutor));
        assert!(Ed25519Signatures::default().verify(&key, &record).is_err());
    }
}
