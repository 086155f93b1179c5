//! The cryptography the core relies on, supplied by its shell: whether a
//! result was signed by the node it names for the call it answers. What to
//! do about a record that fails is the core's decision.

use crate::ids::CallKey;
use crate::outcome::ExecutionRecord;

pub trait Signatures: Send {
    /// `Ok` if `record.signature` was made by `record.executed_by` over
    /// `record.signed_content(key)`; otherwise why not.
    fn verify(&self, key: &CallKey, record: &ExecutionRecord) -> Result<(), String>;

    /// `verify` for each of `records` (a batch a peer sent at once), in
    /// order. A shell may check them together when that is cheaper, as long
    /// as each answer is the one `verify` would give.
    fn verify_all(&self, records: &[(&CallKey, &ExecutionRecord)]) -> Vec<Result<(), String>> {
        records.iter().map(|(key, record)| self.verify(key, record)).collect()
    }
}

/// Signatures modelled for the simulator and tests: a node's key is derived
/// from its name, so anyone *could* compute it; the simulator's liar plays an
/// attacker without other nodes' private keys by signing only with its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelledSignatures;

impl ModelledSignatures {
    fn key_of(executor: &str) -> [u8; 32] {
        *blake3::hash(format!("nebula modelled signing key of {executor}").as_bytes()).as_bytes()
    }

    /// Signs `record` for `key` as `signer` (normally its own `executed_by`).
    pub fn sign_as(signer: &str, key: &CallKey, record: &mut ExecutionRecord) {
        let signature = blake3::keyed_hash(&Self::key_of(signer), &record.signed_content(key));
        record.signature = signature.as_bytes().to_vec();
    }

    pub fn sign(key: &CallKey, record: &mut ExecutionRecord) {
        let signer = record.executed_by.clone();
        Self::sign_as(&signer, key, record);
    }
}

impl Signatures for ModelledSignatures {
    fn verify(&self, key: &CallKey, record: &ExecutionRecord) -> Result<(), String> {
        let expected = blake3::keyed_hash(&Self::key_of(&record.executed_by), &record.signed_content(key));
        match record.signature.as_slice() == expected.as_bytes() {
            true => Ok(()),
            false => Err(format!("the signature is not {}'s over this call", record.executed_by)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ModuleId;
    use crate::outcome::{Outcome, Timings};

    #[test]
    fn a_modelled_signature_holds_only_for_its_signer_and_call() {
        let module = ModuleId::of_bytes(b"m");
        let key = CallKey::new(&module, b"1");
        let mut record = ExecutionRecord {
            module,
            outcome: Outcome::Success { stdout: b"1".to_vec() },
            fuel_used: 1,
            timings: Timings::default(),
            executed_by: "honest".into(),
            signature: Vec::new(),
        };
        ModelledSignatures::sign(&key, &mut record);
        assert_eq!(ModelledSignatures.verify(&key, &record), Ok(()));
        assert!(ModelledSignatures.verify(&CallKey::new(&module, b"2"), &record).is_err(), "a replay");
        let mut forged = record.clone();
        ModelledSignatures::sign_as("liar", &key, &mut forged);
        assert!(ModelledSignatures.verify(&key, &forged).is_err(), "pinned on another node");
        let mut altered = record;
        altered.outcome = Outcome::Success { stdout: b"2".to_vec() };
        assert!(ModelledSignatures.verify(&key, &altered).is_err(), "altered");
    }
}
