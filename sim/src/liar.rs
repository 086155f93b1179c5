//! The lying node of the `lying-node` scenario: its own runs give wrong
//! outputs (signed, as its own), it serves module slices that do not verify
//! (caught on the first one a node asks it for), and what it answers its
//! peers it tampers with, in every way a peer can lie: a signed lie, an
//! altered record, a replay of another call's record, a record pinned on
//! another node, and an answer of the wrong kind. All but the
//! signed lie are the core's to catch; the signed lie takes `--verify-remote`.

use std::collections::BTreeMap;

use nebula_protocol::wire::{RemoteAnswer, Response};
use nebula_protocol::{CallKey, ExecutionRecord, ModelledSignatures, Outcome};
use rand::RngExt;
use rand_pcg::Pcg64Mcg;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Lie {
    /// Another output, signed by the liar as its own run.
    OwnSigned,
    /// Another output under the original signature.
    Altered,
    /// A correctly signed record of another call.
    Replayed,
    /// Another output, named as another node's run, signed by the liar.
    PinnedOnAnother,
    /// An answer of another kind than the question.
    WrongKind,
}

impl Lie {
    const ALL: [Lie; 5] = [Lie::OwnSigned, Lie::Altered, Lie::Replayed, Lie::PinnedOnAnother, Lie::WrongKind];

    fn label(self) -> &'static str {
        match self {
            Lie::OwnSigned => "signed_lie",
            Lie::Altered => "altered",
            Lie::Replayed => "replayed",
            Lie::PinnedOnAnother => "pinned_on_another",
            Lie::WrongKind => "wrong_kind",
        }
    }
}

/// What the liar told, by kind.
#[derive(Debug, Default)]
pub struct Lies {
    told: BTreeMap<Lie, u64>,
    pub bad_module_bytes: u64,
}

impl Lies {
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> =
            self.told.iter().map(|(lie, count)| (lie.label().to_owned(), *count)).collect();
        if self.bad_module_bytes > 0 {
            counts.insert("bad_module_bytes".into(), self.bad_module_bytes);
        }
        counts
    }

    /// The liar's version of `response` to a request about the call `key`.
    /// `liar` is its own name, `other` another node's, and `replay` a record
    /// it holds for another call (if any).
    pub fn tamper(
        &mut self,
        rng: &mut Pcg64Mcg,
        response: Response,
        key: &CallKey,
        liar: &str,
        other: &str,
        replay: Option<ExecutionRecord>,
    ) -> Response {
        let lie = Lie::ALL[rng.random_range(0..Lie::ALL.len())];
        let (record, remote) = match response {
            Response::Result(Some(record)) => (record, None),
            Response::Call(Ok(answer)) => (answer.record.clone(), Some(answer)),
            honest => return honest,
        };
        let lied = match lie {
            Lie::WrongKind => {
                *self.told.entry(lie).or_default() += 1;
                return match remote {
                    Some(_) => Response::Result(Some(record)),
                    None => Response::Told,
                };
            }
            Lie::Replayed => match replay {
                Some(other_record) => other_record,
                None => return wrap(record, remote),
            },
            Lie::Altered => ExecutionRecord { outcome: flipped(&record.outcome), ..record },
            Lie::OwnSigned | Lie::PinnedOnAnother => {
                let executor = if lie == Lie::OwnSigned { liar } else { other };
                let mut lied =
                    ExecutionRecord { outcome: flipped(&record.outcome), executed_by: executor.into(), ..record };
                ModelledSignatures::sign_as(liar, key, &mut lied);
                lied
            }
        };
        *self.told.entry(lie).or_default() += 1;
        wrap(lied, remote)
    }
}

fn wrap(record: ExecutionRecord, remote: Option<RemoteAnswer>) -> Response {
    match remote {
        Some(answer) => Response::Call(Ok(RemoteAnswer { record, ..answer })),
        None => Response::Result(Some(record)),
    }
}

/// The wrong output the liar gives for `outcome`.
pub fn flipped(outcome: &Outcome) -> Outcome {
    match outcome {
        Outcome::Success { stdout } => {
            let mut stdout = stdout.clone();
            match stdout.first_mut() {
                Some(first) => *first ^= 0xff,
                None => stdout.push(b'?'),
            }
            Outcome::Success { stdout }
        }
        failed => failed.clone(),
    }
}
