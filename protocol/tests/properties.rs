//! Property tests, in the normal test run: the fuzz targets' checks on
//! proptest-generated inputs (arbitrary, mutated and truncated bytes, and
//! structured values built with `arbitrary`), plus name and limit invariants.
//! Case counts stay modest: the suite runs on small machines.

use arbitrary::{Arbitrary, Unstructured};
use nebula_protocol::wire::{self, DecodeError, Gossip, MAX_FRAME_BYTES, MAX_GOSSIP_BYTES, Request, Response};
use nebula_protocol::{ExecutionRecord, LimitOverrides, Limits, NameError, NameRecord, fuzzing, validate_name};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A structured value built from proptest's bytes (None if they run short).
fn build<T: for<'a> Arbitrary<'a>>(bytes: &[u8]) -> Option<T> {
    T::arbitrary_take_rest(Unstructured::new(bytes)).ok()
}

/// Every decoder on the same bytes, as messages and as a frame.
fn decode_all(bytes: &[u8]) {
    fuzzing::wire_gossip(bytes);
    fuzzing::wire_request(bytes);
    fuzzing::wire_response(bytes);
    fuzzing::stored_records(bytes);
}

/// Each strict prefix is refused; one flipped byte never panics.
fn damaged_encodings_are_handled<T>(message: &T, flip: usize, xor: u8)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = wire::encode(message);
    for cut in 0..bytes.len() {
        assert!(wire::decode::<T>(&bytes[..cut], MAX_FRAME_BYTES).is_err(), "a prefix of {cut} bytes decoded");
    }
    let mut mutated = bytes.clone();
    let at = flip % mutated.len();
    mutated[at] ^= xor.max(1);
    decode_all(&mutated);
}

fn sample_gossip() -> Vec<u8> {
    wire::encode(&Gossip::Load { executing: 3, capacity: 4 })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
        // The same bytes behind a valid version byte get further into the decoders.
        let mut versioned = vec![wire::WIRE_VERSION];
        versioned.extend_from_slice(&bytes);
        decode_all(&versioned);
    }

    #[test]
    fn structured_messages_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        fuzzing::wire_roundtrip(&bytes);
    }

    #[test]
    fn truncated_and_mutated_messages_are_refused_or_round_trip(
        bytes in proptest::collection::vec(any::<u8>(), 16..1024),
        flip in any::<usize>(),
        xor in any::<u8>(),
    ) {
        if let Some(gossip) = build::<Gossip>(&bytes) {
            damaged_encodings_are_handled(&gossip, flip, xor);
        }
        if let Some(request) = build::<Request>(&bytes) {
            damaged_encodings_are_handled(&request, flip, xor);
        }
        if let Some(response) = build::<Response>(&bytes) {
            damaged_encodings_are_handled(&response, flip, xor);
        }
        if let Some(record) = build::<ExecutionRecord>(&bytes) {
            let stored = postcard::to_stdvec(&record).unwrap();
            for cut in 0..stored.len() {
                prop_assert!(postcard::from_bytes::<ExecutionRecord>(&stored[..cut]).is_err());
            }
        }
    }

    #[test]
    fn oversized_messages_are_refused_before_decoding(extra in 1usize..64) {
        let bytes = sample_gossip();
        let limit = bytes.len().saturating_sub(extra);
        prop_assert_eq!(wire::decode::<Gossip>(&bytes, limit), Err(DecodeError::TooLarge(bytes.len(), limit)));
        prop_assert!(bytes.len() <= MAX_GOSSIP_BYTES);
    }

    #[test]
    fn frame_lengths_over_the_limit_are_refused(length in any::<u32>()) {
        let header = length.to_be_bytes();
        match wire::frame_length(header, MAX_FRAME_BYTES) {
            Ok(accepted) => prop_assert!(accepted == length as usize && accepted <= MAX_FRAME_BYTES),
            Err(error) => prop_assert_eq!(error, DecodeError::TooLarge(length as usize, MAX_FRAME_BYTES)),
        }
    }

    #[test]
    fn user_names_are_accepted_unless_they_look_like_a_hash(name in "[a-z0-9][a-z0-9._-]{0,63}") {
        let hex_only = name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let expected = match hex_only && name.len() >= 4 {
            true => Err(NameError::LooksLikeHash),
            false => Ok(()),
        };
        prop_assert_eq!(validate_name(&name), expected);
    }

    #[test]
    fn names_with_other_characters_are_refused(name in "[a-z]{0,8}[^a-z0-9._-][a-z]{0,8}") {
        prop_assert!(validate_name(&name).is_err());
    }

    #[test]
    fn name_merges_agree_in_any_order(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let Some(records) = build::<Vec<NameRecord>>(&bytes) else { return Ok(()) };
        // The winner's (version, publisher): two records equal in both (one
        // publisher re-using a version) may differ in module, and then the
        // first one seen stays.
        let winner = |records: &mut dyn Iterator<Item = &NameRecord>| {
            let mut current: Option<&NameRecord> = None;
            for record in records {
                if current.is_none_or(|current| record.supersedes(current)) {
                    current = Some(record);
                }
            }
            current.map(|record| (record.version, record.publisher.clone()))
        };
        let same: Vec<&NameRecord> = records.iter().filter(|r| r.name == records[0].name).collect();
        prop_assert_eq!(winner(&mut same.iter().copied()), winner(&mut same.iter().rev().copied()));
    }

    #[test]
    fn limits_never_exceed_the_maximum(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let Some((defaults, overrides, maximum)) = build::<(Limits, LimitOverrides, Limits)>(&bytes) else {
            return Ok(());
        };
        let limits = defaults.with_overrides(&overrides, &maximum);
        prop_assert_eq!(limits.clamped_to(&maximum), limits);
        prop_assert!(limits.input_bytes <= defaults.input_bytes, "a caller raised its own input limit");
    }

    #[test]
    fn http_input_checks_hold(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::http_input(&bytes);
    }
}

proptest! {
    // Each case drives a mesh core through up to 256 steps: fewer cases.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_core_survives_hostile_peers(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        fuzzing::core_peer_messages(&bytes);
    }
}
