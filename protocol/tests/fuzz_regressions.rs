//! Replays every input kept under `fuzz/regressions/<target>/` (what the
//! fuzzer once crashed on) and `fuzz/seeds/<target>/` through the same check
//! the fuzz target runs, so a fixed crash stays fixed in `cargo test`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use nebula_protocol::fuzzing;

fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz").join(kind);
    let Ok(targets) = std::fs::read_dir(&root) else { return Vec::new() };
    let mut inputs = Vec::new();
    for target in targets {
        let target = target.expect("readable directory entry").path();
        if !target.is_dir() {
            continue;
        }
        let name = target.file_name().and_then(|name| name.to_str()).expect("a UTF-8 target name").to_owned();
        for file in std::fs::read_dir(&target).expect("readable target directory") {
            let file = file.expect("readable directory entry").path();
            if file.is_file() && file.extension().is_none_or(|extension| extension != "md") {
                inputs.push((name.clone(), file));
            }
        }
    }
    inputs.sort();
    inputs
}

/// Runs every input of `fuzz/<kind>/` through its target's check; returns how many ran.
fn replay(kind: &str) -> usize {
    let inputs = inputs(kind);
    let mut failures = Vec::new();
    for (target, file) in &inputs {
        let Some(check) = fuzzing::target(target) else {
            failures.push(format!("{}: no fuzz target is called {target}", file.display()));
            continue;
        };
        let data = std::fs::read(file).expect("readable input");
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failures.push(format!("{} fails the {target} check", file.display()));
        }
    }
    assert!(failures.is_empty(), "{} of {} inputs fail:\n{}", failures.len(), inputs.len(), failures.join("\n"));
    inputs.len()
}

#[test]
fn every_crash_the_fuzzer_found_stays_fixed() {
    replay("regressions");
}

#[test]
fn every_seed_passes_its_check() {
    let seeds = replay("seeds");
    assert!(seeds >= fuzzing::TARGETS.len(), "fuzz/seeds/ holds {seeds} inputs: expected some for every target");
}

/// Writes the seed corpora under `fuzz/seeds/`: encoded sample messages for
/// the decoders, fixed byte patterns for the structured targets. Run with
/// `cargo test -p nebula-protocol --test fuzz_regressions -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes fuzz/seeds/; run by hand when the wire format changes"]
fn write_fuzz_seeds() {
    use nebula_protocol::wire::{self, Gossip, Load, RemoteAnswer, Request, StoredResult, SyncRequest, SyncResponse};
    use nebula_protocol::{
        CacheStatus, CallError, CallKey, ExecutionRecord, Failure, Limits, ModuleId, NameRecord, Outcome,
    };

    let module = ModuleId::of_bytes(b"\0asm");
    let key = CallKey::new(&module, b"10");
    let record = ExecutionRecord {
        module,
        outcome: Outcome::Success { stdout: b"55".to_vec() },
        fuel_used: 1234,
        timings: Default::default(),
        executed_by: "12D3KooWpeer".into(),
        signature: vec![7; 64],
    };
    let trap = ExecutionRecord {
        outcome: Outcome::Failed(Failure::Trap { message: "unreachable".into(), stderr_tail: "x".into() }),
        ..record.clone()
    };
    let name = NameRecord { name: "fib".into(), module, version: 3, publisher: "12D3KooWpeer".into() };
    let load = Load { executing: 1, capacity: 2 };
    let gossip = [
        Gossip::ModuleAvailable { module, size: 4096 },
        Gossip::Name(name.clone()),
        Gossip::Load { executing: 1, capacity: 4 },
        Gossip::Member { addresses: vec!["/ip4/10.0.0.7/tcp/4001".into()] },
    ];
    let sync = SyncRequest { modules_digest: [1; 32], names_digest: [2; 32], load };
    let requests = [
        Request::FetchSlice { module, slice: wire::SliceIndex::Last },
        Request::FetchSlice { module, slice: wire::SliceIndex::At(3) },
        Request::FetchResult { key },
        Request::Call { reference: "fib".into(), input: b"10".to_vec(), limits: Limits::default(), hops: 1 },
        Request::Sync(sync),
        Request::Tell(gossip[0].clone()),
        Request::Store(vec![StoredResult { key, record: record.clone() }]),
    ];
    let responses = [
        wire::Response::Slice(Some(wire::ModuleSlice { size: 8, index: 0, encoded: b"\0asm\x01\0\0\0".to_vec() })),
        wire::Response::Slice(None),
        wire::Response::Result(Some(trap.clone())),
        wire::Response::Call(Ok(RemoteAnswer { key, cache: CacheStatus::Miss, record: record.clone() })),
        wire::Response::Call(Err(CallError::AmbiguousPrefix { prefix: "abcd".into(), matches: vec![module, module] })),
        wire::Response::Sync(SyncResponse {
            modules: Some(vec![(module, 4096)]),
            names: Some(vec![name.clone()]),
            load,
        }),
        wire::Response::Refused("no".into()),
        wire::Response::Told,
        wire::Response::Stored,
    ];

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let write = |target: &str, seeds: Vec<Vec<u8>>| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (index, seed) in seeds.into_iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{index:02}")), seed).unwrap();
        }
    };
    write("wire_gossip", gossip.iter().map(wire::encode).collect());
    write("wire_request", requests.iter().map(wire::encode).collect());
    write("wire_response", responses.iter().map(wire::encode).collect());
    let mut stored: Vec<Vec<u8>> = [&record, &trap].iter().map(|r| postcard::to_stdvec(r).unwrap()).collect();
    stored.push(postcard::to_stdvec(&name).unwrap());
    stored.extend(requests.iter().map(|request| wire::encode_frame(request).unwrap()));
    stored.extend(responses.iter().map(|response| wire::encode_frame(response).unwrap()));
    write("stored_records", stored);
    // The structured targets read their input as `arbitrary` choices: any
    // bytes are valid, so a few patterns and pseudo-random runs will do.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut random = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    let patterns = |random: &mut dyn FnMut(usize) -> Vec<u8>, len: usize| {
        vec![vec![0; len], vec![0xff; len], (0..len).map(|i| i as u8).collect(), random(len), random(len)]
    };
    write("wire_roundtrip", patterns(&mut random, 256));
    write("core_peer_messages", patterns(&mut random, 2048));
    write("http_input", patterns(&mut random, 512));
}
