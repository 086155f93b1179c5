//! Results are sealed when they are made and signed when they leave.
//!
//! An ed25519 signature costs ~20 µs, a tenth of a node's CPU per uncached
//! call, yet most results never leave the node that ran them. So an
//! execution only *seals* its record: a keyed BLAKE3 hash of what a
//! signature covers, with a key only this node holds (derived from its
//! libp2p key), so `nebula fsck` can still tell an altered record. A record
//! is signed on its way to a peer ([`OutgoingSigner`]), after its seal is
//! checked; peers see nothing new. A seal is 32 bytes and a signature 64, so
//! a sealed record that reached a peer unsigned is refused there like any
//! bad signature.

use std::sync::Arc;

use libp2p::identity::Keypair;
use nebula_protocol::wire::{Request, Response};
use nebula_protocol::{CallKey, ExecutionRecord};

/// Bytes of a seal (a BLAKE3 hash).
const SEAL_BYTES: usize = 32;

/// Signatures made for records leaving the node, by seal: the same result
/// often leaves several times (to each of its other owners, to callers).
const REMEMBERED_SIGNATURES: usize = 4096;

/// Seals and checks seals of the results this node runs.
#[derive(Clone)]
pub struct Sealer {
    key: [u8; 32],
    node_id: Arc<str>,
}

impl Sealer {
    pub fn new(identity: &Keypair) -> Self {
        let secret = identity.to_protobuf_encoding().expect("an ed25519 key encodes");
        Sealer {
            key: blake3::derive_key("nebula 2026-12 execution record seal", &secret),
            node_id: Arc::from(identity.public().to_peer_id().to_string()),
        }
    }

    /// Seals `record`, run here, as the answer to `key`, in place.
    pub fn seal(&self, key: &CallKey, record: &mut ExecutionRecord) {
        record.signature = self.seal_of(key, record).to_vec();
    }

    /// Whether `record` carries this node's seal, unaltered.
    pub fn holds(&self, key: &CallKey, record: &ExecutionRecord) -> bool {
        record.executed_by == *self.node_id && record.signature.as_slice() == self.seal_of(key, record)
    }

    fn seal_of(&self, key: &CallKey, record: &ExecutionRecord) -> [u8; SEAL_BYTES] {
        *blake3::keyed_hash(&self.key, &record.signed_content(key)).as_bytes()
    }
}

/// Signs the sealed records in what the node sends to peers.
pub struct OutgoingSigner {
    identity: Keypair,
    sealer: Sealer,
    made: quick_cache::unsync::Cache<[u8; SEAL_BYTES], Vec<u8>>,
}

impl OutgoingSigner {
    pub fn new(identity: Keypair) -> Self {
        OutgoingSigner {
            sealer: Sealer::new(&identity),
            identity,
            made: quick_cache::unsync::Cache::new(REMEMBERED_SIGNATURES),
        }
    }

    pub fn sign_request(&mut self, request: &mut Request) {
        if let Request::Store(results) = request {
            for stored in results {
                self.sign(&stored.key, &mut stored.record);
            }
        }
    }

    /// `fetched` is the key a `Request::FetchResult` asked for: its
    /// answer does not repeat it.
    pub fn sign_response(&mut self, response: &mut Response, fetched: Option<&CallKey>) {
        match (response, fetched) {
            (Response::Call(Ok(answer)), _) => self.sign(&answer.key, &mut answer.record),
            (Response::Result(Some(record)), Some(key)) => self.sign(key, record),
            _ => {}
        }
    }

    /// Replaces this node's seal on `record` with its signature. Records of
    /// other nodes, and ones signed already, pass as they are; a seal that
    /// does not hold (the record changed since) is never signed, so the
    /// peer refuses the record rather than this node vouching for it.
    fn sign(&mut self, key: &CallKey, record: &mut ExecutionRecord) {
        if record.signature.len() != SEAL_BYTES || record.executed_by != *self.sealer.node_id {
            return;
        }
        let Ok(seal) = <[u8; SEAL_BYTES]>::try_from(record.signature.as_slice()) else { return };
        if let Some(signature) = self.made.get(&seal) {
            record.signature = signature.clone();
            return;
        }
        if !self.sealer.holds(key, record) {
            tracing::warn!(call = %key.to_hex(), "a result's seal does not hold: it is sent unsigned");
            return;
        }
        crate::signing::sign(&self.identity, key, record);
        self.made.insert(seal, record.signature.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nebula_protocol::wire::{RemoteAnswer, StoredResult};
    use nebula_protocol::{CacheStatus, ModuleId, Outcome};

    fn sealed_record(identity: &Keypair, key: &CallKey) -> ExecutionRecord {
        let mut record = crate::signing::record_run_by(identity);
        Sealer::new(identity).seal(key, &mut record);
        record
    }

    #[test]
    fn a_seal_is_no_signature_and_breaks_with_any_change() {
        let identity = Keypair::generate_ed25519();
        let key = CallKey::new(&ModuleId::of_bytes(b"m"), b"10");
        let record = sealed_record(&identity, &key);
        let sealer = Sealer::new(&identity);
        assert!(sealer.holds(&key, &record));
        // Peers cannot take a seal for a signature.
        assert!(crate::signing::verify(&key, &record).is_err());
        let mut altered = record.clone();
        altered.outcome = Outcome::Success { stdout: b"66".to_vec() };
        assert!(!sealer.holds(&key, &altered));
        assert!(!sealer.holds(&CallKey::new(&ModuleId::of_bytes(b"m"), b"11"), &record));
        assert!(!Sealer::new(&Keypair::generate_ed25519()).holds(&key, &record));
    }

    #[test]
    fn results_run_here_leave_signed_and_others_leave_as_they_came() {
        let (identity, other) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let mut signer = OutgoingSigner::new(identity.clone());
        let (key, other_key) =
            (CallKey::new(&ModuleId::of_bytes(b"m"), b"10"), CallKey::new(&ModuleId::of_bytes(b"m"), b"11"));
        let mut theirs = sealed_record(&other, &other_key);
        crate::signing::sign(&other, &other_key, &mut theirs);
        let mut request = Request::Store(vec![
            StoredResult { key, record: sealed_record(&identity, &key) },
            StoredResult { key: other_key, record: theirs.clone() },
        ]);
        signer.sign_request(&mut request);
        let Request::Store(results) = &request else { unreachable!() };
        assert_eq!(crate::signing::verify(&key, &results[0].record), Ok(()));
        assert_eq!(results[1].record, theirs);

        let answer = RemoteAnswer { key, cache: CacheStatus::Miss, record: sealed_record(&identity, &key) };
        let mut response = Response::Call(Ok(answer));
        signer.sign_response(&mut response, None);
        let Response::Call(Ok(answer)) = &response else { unreachable!() };
        assert_eq!(crate::signing::verify(&key, &answer.record), Ok(()));

        let mut fetched = Response::Result(Some(sealed_record(&identity, &key)));
        signer.sign_response(&mut fetched, Some(&key));
        let Response::Result(Some(record)) = &fetched else { unreachable!() };
        assert_eq!(crate::signing::verify(&key, record), Ok(()));
    }

    #[test]
    fn a_record_whose_seal_broke_is_not_signed() {
        let identity = Keypair::generate_ed25519();
        let mut signer = OutgoingSigner::new(identity.clone());
        let key = CallKey::new(&ModuleId::of_bytes(b"m"), b"10");
        let mut record = sealed_record(&identity, &key);
        record.outcome = Outcome::Success { stdout: b"altered".to_vec() };
        let mut response = Response::Result(Some(record.clone()));
        signer.sign_response(&mut response, Some(&key));
        assert_eq!(response, Response::Result(Some(record)));
    }
}
