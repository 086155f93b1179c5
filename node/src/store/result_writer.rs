//! Writes cached results on a thread of its own, many per transaction, so a
//! call never waits for the disk and a burst of calls costs few commits.
//! Results become durable within [`FLUSH_AFTER`]; losing the newest ones in a
//! crash only means computing them again.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use nebula_protocol::{CallKey, ExecutionRecord};

use super::ResultLog;

pub const FLUSH_AFTER: Duration = Duration::from_secs(1);
const MAX_BATCH: usize = 4096;
/// After the first result of a batch, the writer sleeps this long before
/// taking the others: senders do not wake a thread that sleeps, so a busy
/// node pays one wake-up and one transaction per batch instead of per result
/// (waking this thread per result cost a busy node about a fifth of its CPU).
/// The results are in the memory cache meanwhile.
const GATHER: Duration = Duration::from_millis(10);

enum Message {
    Store(CallKey, Arc<ExecutionRecord>),
    Flush(Sender<anyhow::Result<()>>),
}

pub struct ResultWriter {
    /// `None` only while dropping.
    sender: Option<Sender<Message>>,
    thread: Option<JoinHandle<()>>,
}

impl ResultWriter {
    /// The thread ends when the writer is dropped, after writing what it was given.
    pub fn start(log: Arc<ResultLog>) -> Self {
        let (sender, receiver) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("nebula-results".into())
            .spawn(move || write_until_closed(&log, &receiver))
            .expect("spawning the result writer");
        Self { sender: Some(sender), thread: Some(thread) }
    }

    fn send(&self, message: Message) -> Result<(), mpsc::SendError<Message>> {
        self.sender.as_ref().expect("sender lives until drop").send(message)
    }

    pub fn submit(&self, key: CallKey, record: Arc<ExecutionRecord>) {
        // A send fails only once the thread is gone, at shutdown.
        let _ = self.send(Message::Store(key, record));
    }

    /// Waits until everything submitted so far is durable.
    pub fn flush(&self) -> anyhow::Result<()> {
        let (done, wait) = mpsc::channel();
        self.send(Message::Flush(done)).map_err(|_| anyhow::anyhow!("the result writer has stopped"))?;
        wait.recv().map_err(|_| anyhow::anyhow!("the result writer stopped while flushing"))?
    }
}

/// Writes what is queued, makes it durable, and waits for the thread to let
/// go of the index, so the data directory can be reopened at once.
impl Drop for ResultWriter {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_until_closed(log: &ResultLog, receiver: &Receiver<Message>) {
    let mut dirty = false;
    loop {
        // Sleep without a timeout while there is nothing to make durable.
        let first = match dirty {
            false => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
            true => receiver.recv_timeout(FLUSH_AFTER),
        };
        let first = match first {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => {
                dirty = !flush(log);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                if dirty {
                    flush(log);
                }
                return;
            }
        };
        if matches!(first, Message::Store(..)) {
            thread::sleep(GATHER);
        }
        let mut batch = Vec::new();
        let mut flush_waiters = Vec::new();
        for message in std::iter::once(first).chain(receiver.try_iter().take(MAX_BATCH)) {
            match message {
                Message::Store(key, record) => batch.push((key, record)),
                Message::Flush(waiter) => flush_waiters.push(waiter),
            }
        }
        if !batch.is_empty() {
            match log.append(&batch) {
                Ok(()) => dirty = true,
                Err(error) => tracing::warn!(%error, results = batch.len(), "could not store results on disk"),
            }
        }
        if !flush_waiters.is_empty() {
            let result = log.sync();
            dirty = result.is_err();
            for waiter in flush_waiters {
                let _ = waiter.send(result.as_ref().map(|_| ()).map_err(|error| anyhow::anyhow!("{error:#}")));
            }
        }
    }
}

/// Returns true if the flush succeeded.
fn flush(log: &ResultLog) -> bool {
    log.sync().inspect_err(|error| tracing::warn!(%error, "making cached results durable failed")).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nebula_protocol::{ModuleId, Outcome, Timings};

    fn record(n: u8) -> Arc<ExecutionRecord> {
        Arc::new(ExecutionRecord {
            module: ModuleId::of_bytes(b"m"),
            outcome: Outcome::Success { stdout: vec![n] },
            fuel_used: 1,
            timings: Timings::default(),
            executed_by: "test".into(),
            signature: Vec::new(),
        })
    }

    #[test]
    fn submitted_results_are_written_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<CallKey> = (0..10u8).map(|n| CallKey::new(&ModuleId::of_bytes(b"m"), &[n])).collect();
        {
            let log = Arc::new(ResultLog::open(dir.path(), u64::MAX).unwrap());
            let writer = ResultWriter::start(log.clone());
            for (n, key) in keys.iter().enumerate() {
                writer.submit(*key, record(n as u8));
            }
            writer.flush().unwrap();
            assert_eq!(log.len(), 10);
            writer.submit(CallKey::new(&ModuleId::of_bytes(b"m"), b"last"), record(99));
            // Dropping the writer writes what is queued, durably.
        }
        let log = ResultLog::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(log.len(), 11);
        assert_eq!(log.get(&keys[3]).unwrap().unwrap(), *record(3));
    }
}
