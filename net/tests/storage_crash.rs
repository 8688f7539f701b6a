//! Crash safety of storage: a writer process is killed (SIGKILL) in the middle of repeated
//! writes; after reopening, every write it acknowledged is there, intact, and the database
//! opens cleanly and accepts more writes.
//!
//! The writer is this test binary itself, re-executed with [`CHILD_ENV`] set so that only
//! [`crash_child`] does anything.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::Rng;
use tieline_net::storage::{FIRST_HEIGHT, Storage, WriteBatch};

/// Set to the database path in the child process.
const CHILD_ENV: &str = "TIELINE_STORAGE_CRASH_CHILD";
/// Records per batch in the child.
const RECORDS_PER_BATCH: u64 = 200;
/// How many times a writer is started and killed.
const ROUNDS: usize = 4;
/// The longest wait for one line of the child's output.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

fn record_bytes(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().repeat(16)
}

fn block_bytes(height: u64) -> Vec<u8> {
    height.to_le_bytes().repeat(128)
}

/// The writer: appends batches (records and one block each) until it is killed, printing
/// `acked <next_record> <last_height>` after each commit returns.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return; // Only meaningful as the child of the test below.
    };
    let storage = Storage::open(&path).expect("child opens the database");
    let stdout = std::io::stdout();
    loop {
        let first = storage.next_record();
        let height = storage.last_height().map_or(FIRST_HEIGHT, |h| h + 1);
        let batch = WriteBatch {
            records: (first..first + RECORDS_PER_BATCH)
                .map(record_bytes)
                .collect(),
            blocks: vec![(height, block_bytes(height))],
            meta: vec![("last".into(), Some(height.to_be_bytes().to_vec()))],
            prune_records_before: None,
        };
        let c = storage.write(&batch).expect("child writes");
        let mut out = stdout.lock();
        writeln!(out, "acked {} {}", c.next_record, c.last_height.unwrap()).unwrap();
        out.flush().unwrap();
    }
}

fn temp_db() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tieline-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.redb");
    let _ = std::fs::remove_file(&path);
    path
}

/// Runs one writer, kills it after `acks` acknowledged writes plus a random moment, and
/// returns the last acknowledgement it printed.
fn run_and_kill(path: &Path, acks: usize) -> (u64, u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("acked ") {
                let mut parts = rest.split(' ').map(|p| p.parse::<u64>().unwrap());
                let ack = (parts.next().unwrap(), parts.next().unwrap());
                if tx.send(ack).is_err() {
                    break;
                }
            }
        }
    });
    let mut last = (0, 0);
    for _ in 0..acks {
        last = rx
            .recv_timeout(LINE_TIMEOUT)
            .expect("the writer acknowledges writes");
    }
    // Land the kill at an arbitrary point of a transaction.
    std::thread::sleep(Duration::from_micros(rand::thread_rng().gen_range(0..3000)));
    child.kill().expect("kill the writer");
    child.wait().unwrap();
    reader.join().unwrap();
    // Acknowledgements printed before the kill count too.
    while let Ok(ack) = rx.try_recv() {
        last = ack;
    }
    last
}

#[test]
fn killed_writer_loses_no_acknowledged_write() {
    let path = temp_db();
    for round in 0..ROUNDS {
        let (acked_next, acked_height) = run_and_kill(&path, 5 + 7 * round);
        let storage = Storage::open(&path)
            .unwrap_or_else(|e| panic!("round {round}: the database must reopen: {e}"));
        // Everything acknowledged is there; a write in flight at the kill is wholly there or
        // wholly absent.
        let next = storage.next_record();
        let height = storage.last_height().expect("blocks were acknowledged");
        assert!(
            next >= acked_next,
            "round {round}: records lost: {next} < {acked_next}"
        );
        assert!(height >= acked_height, "round {round}: blocks lost");
        assert!(
            next <= acked_next + RECORDS_PER_BATCH,
            "round {round}: more than one batch unacknowledged"
        );
        assert_eq!(
            next,
            height * RECORDS_PER_BATCH,
            "round {round}: records and blocks of one batch commit together"
        );
        let records = storage.records().unwrap();
        assert_eq!(records.len() as u64, next);
        for (i, (seq, bytes)) in records.iter().enumerate() {
            assert_eq!(*seq, i as u64);
            assert_eq!(
                *bytes,
                record_bytes(*seq),
                "round {round}: record {seq} damaged"
            );
        }
        let blocks = storage.blocks(FIRST_HEIGHT, u64::MAX).unwrap();
        assert_eq!(blocks.len() as u64, height);
        for (h, bytes) in &blocks {
            assert_eq!(*bytes, block_bytes(*h), "round {round}: block {h} damaged");
        }
        assert_eq!(storage.meta("last").unwrap().unwrap(), height.to_be_bytes());
        // The next round's writer continues from here.
    }
    std::fs::remove_file(&path).unwrap();
}
