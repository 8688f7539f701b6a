//! Durable storage of a management node: the chain, the log of consensus records, and a few
//! named values, in one redb file.
//!
//! # Tables
//! - `blocks`: height -> the block's canonical bytes; heights are consecutive from
//!   [`FIRST_HEIGHT`], never overwritten.
//! - `records`: sequence -> bytes; an append-only log of what the consensus core asked to
//!   persist (votes, locks, bid batches...), read back in order on restart. Sequences are
//!   assigned here, increase by one, and are never reused, even after pruning.
//! - `meta`: name -> bytes, for small values the node replaces whole.
//!
//! # Group commit
//! One [`Storage::write`] call is one durable transaction, whatever it carries: the runtime
//! gathers everything the core asked to persist since the last write into one [`WriteBatch`],
//! so one `fsync` covers many records.
//!
//! Writes block the calling thread for at least one `fsync` (milliseconds): call them from a
//! dedicated thread or `tokio::task::spawn_blocking`, never directly on an async task.
//!
//! # Crash safety
//! Every transaction commits with [`Durability::Immediate`] and two-phase commit: redb writes the
//! new pages and a new commit slot, `fsync`s, flips the active-slot bit, and `fsync`s again
//! before `commit` returns. So:
//! - **Durability.** When [`Storage::write`] returns `Ok`, the batch is on stable storage (as far
//!   as the device honours `fsync`): a node may send a vote once the record of it is written.
//! - **Atomicity.** A crash at any point leaves the file holding either the whole batch or none
//!   of it; redb never updates live pages in place (copy-on-write), and the previous commit
//!   slot stays valid until the new one is complete.
//! - **Recovery.** Opening after a crash repairs redb's allocator state from the last valid
//!   commit; [`Storage::open`] then checks this module's own invariants (consecutive heights,
//!   record sequence) and refuses a file that breaks them with [`StorageError::Corrupt`].
//!
//! The crash test in `net/tests/storage_crash.rs` kills a writer process mid-stream and checks
//! that every acknowledged write survives.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

/// The height of the first block of a chain.
pub const FIRST_HEIGHT: u64 = 1;
/// The most records, blocks or named values one batch may carry, so a single transaction stays
/// bounded.
pub const MAX_BATCH_ITEMS: usize = 1_000_000;
/// The layout version this code writes and reads.
pub const SCHEMA_VERSION: u64 = 1;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// This module's own bookkeeping: the schema version and the next record sequence.
const INTERNAL: TableDefinition<&str, u64> = TableDefinition::new("internal");
const KEY_SCHEMA: &str = "schema_version";
const KEY_NEXT_RECORD: &str = "next_record";

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file cannot be opened or created (missing directory, permissions, locked by another
    /// process, not a redb file...).
    #[error("cannot open the node database {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// The cause.
        source: Box<redb::Error>,
    },
    /// The file opened but its content breaks the storage invariants.
    #[error("the node database {path} is corrupt: {detail}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The file was written by another layout version.
    #[error(
        "the node database {path} has layout version {found}; this build reads version {SCHEMA_VERSION}"
    )]
    Schema {
        /// The file.
        path: String,
        /// The version found.
        found: u64,
    },
    /// A read or a transaction failed; a failed write left the database as it was.
    #[error("node database {path}: {source}")]
    Database {
        /// The file.
        path: String,
        /// The cause.
        source: Box<redb::Error>,
    },
    /// A block's height does not follow the last stored height. Nothing of the batch was
    /// written.
    #[error("block height {got} refused: the next height is {expected}")]
    HeightGap {
        /// The height that would be consecutive.
        expected: u64,
        /// The height offered.
        got: u64,
    },
    /// Pruning would remove records that do not exist yet. Nothing of the batch was written.
    #[error("cannot prune records before {before}: the next record is {next}")]
    PruneBeyondEnd {
        /// The requested bound.
        before: u64,
        /// The next record sequence after the batch.
        next: u64,
    },
    /// The batch carries more than [`MAX_BATCH_ITEMS`] of something.
    #[error("a batch of {items} items exceeds the limit of {MAX_BATCH_ITEMS}")]
    BatchTooLarge {
        /// The count.
        items: usize,
    },
}

/// What one durable transaction writes. Applied in this order: records appended, blocks
/// appended, named values set, then records pruned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Records to append to the log, in order.
    pub records: Vec<Vec<u8>>,
    /// Blocks to append: `(height, canonical bytes)`, consecutive after the last stored height.
    pub blocks: Vec<(u64, Vec<u8>)>,
    /// Named values to set (`Some`) or remove (`None`).
    pub meta: Vec<(String, Option<Vec<u8>>)>,
    /// Remove every record whose sequence is below this (after appending this batch's).
    pub prune_records_before: Option<u64>,
}

impl WriteBatch {
    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.blocks.is_empty()
            && self.meta.is_empty()
            && self.prune_records_before.is_none()
    }
}

/// What a committed batch was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The sequence of the batch's first record (equal to `next_record` if it had none).
    pub first_record: u64,
    /// The sequence the next record will get.
    pub next_record: u64,
    /// The last stored height, if any block is stored.
    pub last_height: Option<u64>,
}

/// The positions that writes depend on, kept in memory and in step with the file.
#[derive(Clone, Copy, Debug)]
struct Tip {
    next_record: u64,
    last_height: Option<u64>,
}

/// A node's database. Share it by reference (or `Arc`): reads run concurrently with a write;
/// writes are serialised.
pub struct Storage {
    db: Database,
    path: PathBuf,
    tip: Mutex<Tip>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({})", self.path.display())
    }
}

impl Storage {
    /// Opens the database at `path`, creating it if absent, repairing it if the last run
    /// crashed, and checking its invariants.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path).map_err(|e| StorageError::Open {
            path: path.display().to_string(),
            source: Box::new(e.into()),
        })?;
        let mut storage = Storage {
            db,
            path,
            tip: Mutex::new(Tip {
                next_record: 0,
                last_height: None,
            }),
        };
        let tip = storage.initialise()?;
        storage.tip = Mutex::new(tip);
        Ok(storage)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self, e: impl Into<redb::Error>) -> StorageError {
        let source = e.into();
        match source {
            redb::Error::Corrupted(detail) => self.corrupt(detail),
            source => StorageError::Database {
                path: self.path.display().to_string(),
                source: Box::new(source),
            },
        }
    }

    fn corrupt(&self, detail: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            path: self.path.display().to_string(),
            detail: detail.into(),
        }
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction, StorageError> {
        let mut tx = self.db.begin_write().map_err(|e| self.db_err(e))?;
        tx.set_durability(Durability::Immediate);
        tx.set_two_phase_commit(true);
        Ok(tx)
    }

    /// Creates the tables of a new file, or checks an existing one; returns its tip.
    fn initialise(&self) -> Result<Tip, StorageError> {
        let tx = self.begin_write()?;
        let tip = {
            let mut internal = tx.open_table(INTERNAL).map_err(|e| self.db_err(e))?;
            let blocks = tx.open_table(BLOCKS).map_err(|e| self.db_err(e))?;
            let records = tx.open_table(RECORDS).map_err(|e| self.db_err(e))?;
            tx.open_table(META).map_err(|e| self.db_err(e))?;

            let schema = internal
                .get(KEY_SCHEMA)
                .map_err(|e| self.db_err(e))?
                .map(|v| v.value());
            match schema {
                Some(SCHEMA_VERSION) => {}
                Some(found) => {
                    return Err(StorageError::Schema {
                        path: self.path.display().to_string(),
                        found,
                    });
                }
                None if blocks.is_empty().map_err(|e| self.db_err(e))?
                    && records.is_empty().map_err(|e| self.db_err(e))? =>
                {
                    internal
                        .insert(KEY_SCHEMA, SCHEMA_VERSION)
                        .map_err(|e| self.db_err(e))?;
                }
                None => return Err(self.corrupt("data without a layout version")),
            }

            let first = blocks.first().map_err(|e| self.db_err(e))?;
            let last = blocks.last().map_err(|e| self.db_err(e))?;
            let count = blocks.len().map_err(|e| self.db_err(e))?;
            let last_height = match (first, last) {
                (None, None) => None,
                (Some((f, _)), Some((l, _))) => {
                    let (f, l) = (f.value(), l.value());
                    if f != FIRST_HEIGHT || l - f + 1 != count {
                        return Err(self.corrupt(format!(
                            "blocks are not consecutive from height {FIRST_HEIGHT}: \
                             {count} blocks between heights {f} and {l}"
                        )));
                    }
                    Some(l)
                }
                _ => return Err(self.corrupt("blocks table has a first but no last entry")),
            };

            let stored_next = internal
                .get(KEY_NEXT_RECORD)
                .map_err(|e| self.db_err(e))?
                .map(|v| v.value())
                .unwrap_or(0);
            if let Some((last, _)) = records.last().map_err(|e| self.db_err(e))? {
                if last.value() >= stored_next {
                    return Err(self.corrupt(format!(
                        "record {} is at or beyond the next record sequence {stored_next}",
                        last.value()
                    )));
                }
            }
            Tip {
                next_record: stored_next,
                last_height,
            }
        };
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(tip)
    }

    /// Writes `batch` in one durable transaction: when this returns `Ok`, all of it is on disk;
    /// when it returns an error, none of it is.
    pub fn write(&self, batch: &WriteBatch) -> Result<Committed, StorageError> {
        let items = batch
            .records
            .len()
            .max(batch.blocks.len())
            .max(batch.meta.len());
        if items > MAX_BATCH_ITEMS {
            return Err(StorageError::BatchTooLarge { items });
        }
        let mut tip = self.tip.lock().expect("storage tip lock");

        // Check everything before writing anything.
        let next_height = tip.last_height.map_or(FIRST_HEIGHT, |h| h + 1);
        for (expected, &(height, _)) in (next_height..).zip(&batch.blocks) {
            if height != expected {
                return Err(StorageError::HeightGap {
                    expected,
                    got: height,
                });
            }
        }
        let first_record = tip.next_record;
        let next_record = first_record + batch.records.len() as u64;
        if let Some(before) = batch.prune_records_before {
            if before > next_record {
                return Err(StorageError::PruneBeyondEnd {
                    before,
                    next: next_record,
                });
            }
        }
        let last_height = batch.blocks.last().map(|&(h, _)| h).or(tip.last_height);

        let tx = self.begin_write()?;
        {
            let mut records = tx.open_table(RECORDS).map_err(|e| self.db_err(e))?;
            for (seq, r) in (first_record..).zip(&batch.records) {
                records
                    .insert(seq, r.as_slice())
                    .map_err(|e| self.db_err(e))?;
            }
            if let Some(before) = batch.prune_records_before {
                records
                    .retain_in(..before, |_, _| false)
                    .map_err(|e| self.db_err(e))?;
            }
            let mut blocks = tx.open_table(BLOCKS).map_err(|e| self.db_err(e))?;
            for (height, b) in &batch.blocks {
                blocks
                    .insert(*height, b.as_slice())
                    .map_err(|e| self.db_err(e))?;
            }
            let mut meta = tx.open_table(META).map_err(|e| self.db_err(e))?;
            for (key, value) in &batch.meta {
                match value {
                    Some(v) => meta.insert(key.as_str(), v.as_slice()),
                    None => meta.remove(key.as_str()),
                }
                .map_err(|e| self.db_err(e))?;
            }
            if next_record != first_record {
                let mut internal = tx.open_table(INTERNAL).map_err(|e| self.db_err(e))?;
                internal
                    .insert(KEY_NEXT_RECORD, next_record)
                    .map_err(|e| self.db_err(e))?;
            }
        }
        tx.commit().map_err(|e| self.db_err(e))?;
        *tip = Tip {
            next_record,
            last_height,
        };
        Ok(Committed {
            first_record,
            next_record,
            last_height,
        })
    }

    /// The sequence the next record will get.
    pub fn next_record(&self) -> u64 {
        self.tip.lock().expect("storage tip lock").next_record
    }

    /// The last stored height, if any block is stored.
    pub fn last_height(&self) -> Option<u64> {
        self.tip.lock().expect("storage tip lock").last_height
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, StorageError> {
        self.db.begin_read().map_err(|e| self.db_err(e))
    }

    /// The entries of `table` with keys in `range`, in order.
    fn collect(
        &self,
        table: TableDefinition<u64, &[u8]>,
        range: impl std::ops::RangeBounds<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let tx = self.begin_read()?;
        let table = tx.open_table(table).map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for entry in table.range(range).map_err(|e| self.db_err(e))? {
            let (k, v) = entry.map_err(|e| self.db_err(e))?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Every record not pruned, with its sequence, in order.
    pub fn records(&self) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        self.records_from(0)
    }

    /// The records from sequence `from` on, in order.
    pub fn records_from(&self, from: u64) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        self.collect(RECORDS, from..)
    }

    /// The blocks of heights `from..=to` that are stored, in order.
    pub fn blocks(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        if from > to {
            return Ok(Vec::new());
        }
        self.collect(BLOCKS, from..=to)
    }

    /// The block at `height`, if stored.
    pub fn block(&self, height: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.begin_read()?;
        let table = tx.open_table(BLOCKS).map_err(|e| self.db_err(e))?;
        let value = table.get(height).map_err(|e| self.db_err(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// The named value `key`, if set.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.begin_read()?;
        let table = tx.open_table(META).map_err(|e| self.db_err(e))?;
        let value = table.get(key).map_err(|e| self.db_err(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tieline-storage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    fn records(n: u64, from: u64) -> Vec<Vec<u8>> {
        (from..from + n)
            .map(|i| format!("record-{i}").into_bytes())
            .collect()
    }

    #[test]
    fn writes_survive_reopen() {
        let path = temp_path("reopen.redb");
        {
            let s = Storage::open(&path).unwrap();
            assert_eq!(s.last_height(), None);
            let c = s
                .write(&WriteBatch {
                    records: records(3, 0),
                    blocks: vec![(1, b"block-1".to_vec()), (2, b"block-2".to_vec())],
                    meta: vec![("view".into(), Some(b"7".to_vec()))],
                    prune_records_before: None,
                })
                .unwrap();
            assert_eq!(
                c,
                Committed {
                    first_record: 0,
                    next_record: 3,
                    last_height: Some(2)
                }
            );
        }
        let s = Storage::open(&path).unwrap();
        assert_eq!(s.next_record(), 3);
        assert_eq!(s.last_height(), Some(2));
        let got: Vec<_> = s.records().unwrap().into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, records(3, 0));
        assert_eq!(s.block(2).unwrap().unwrap(), b"block-2");
        assert_eq!(s.block(3).unwrap(), None);
        assert_eq!(s.blocks(1, 10).unwrap().len(), 2);
        assert_eq!(s.meta("view").unwrap().unwrap(), b"7");
        assert_eq!(s.meta("other").unwrap(), None);
    }

    #[test]
    fn group_commit_assigns_consecutive_sequences() {
        let path = temp_path("group.redb");
        let s = Storage::open(&path).unwrap();
        let a = s
            .write(&WriteBatch {
                records: records(1000, 0),
                ..Default::default()
            })
            .unwrap();
        let b = s
            .write(&WriteBatch {
                records: records(500, 1000),
                ..Default::default()
            })
            .unwrap();
        assert_eq!((a.first_record, a.next_record), (0, 1000));
        assert_eq!((b.first_record, b.next_record), (1000, 1500));
        let all = s.records().unwrap();
        assert_eq!(all.len(), 1500);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, (seq, r))| *seq == i as u64 && *r == format!("record-{i}").into_bytes())
        );
        assert_eq!(s.records_from(1490).unwrap().len(), 10);
    }

    #[test]
    fn height_gap_and_overwrite_refused_and_batch_left_unwritten() {
        let path = temp_path("gap.redb");
        let s = Storage::open(&path).unwrap();
        let gap = s.write(&WriteBatch {
            records: records(1, 0),
            blocks: vec![(2, b"b".to_vec())],
            ..Default::default()
        });
        assert!(matches!(
            gap,
            Err(StorageError::HeightGap {
                expected: 1,
                got: 2
            })
        ));
        assert_eq!(s.records().unwrap(), vec![]);
        s.write(&WriteBatch {
            blocks: vec![(1, b"b1".to_vec())],
            ..Default::default()
        })
        .unwrap();
        for bad in [1, 3] {
            let e = s
                .write(&WriteBatch {
                    blocks: vec![(bad, b"x".to_vec())],
                    ..Default::default()
                })
                .unwrap_err();
            assert!(matches!(e, StorageError::HeightGap { expected: 2, got } if got == bad));
        }
        let e = s
            .write(&WriteBatch {
                blocks: vec![(2, b"b2".to_vec()), (4, b"b4".to_vec())],
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("height 4 refused: the next height is 3")
        );
        assert_eq!(s.last_height(), Some(1));
        assert_eq!(s.block(2).unwrap(), None);
    }

    #[test]
    fn prune_keeps_later_records_and_sequences_never_reused() {
        let path = temp_path("prune.redb");
        {
            let s = Storage::open(&path).unwrap();
            s.write(&WriteBatch {
                records: records(10, 0),
                ..Default::default()
            })
            .unwrap();
            let c = s
                .write(&WriteBatch {
                    records: records(1, 10),
                    prune_records_before: Some(10),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(c.first_record, 10);
            assert_eq!(s.records().unwrap(), vec![(10, b"record-10".to_vec())]);
            let beyond = s.write(&WriteBatch {
                prune_records_before: Some(12),
                ..Default::default()
            });
            assert!(matches!(
                beyond,
                Err(StorageError::PruneBeyondEnd {
                    before: 12,
                    next: 11
                })
            ));
            s.write(&WriteBatch {
                prune_records_before: Some(11),
                ..Default::default()
            })
            .unwrap();
            assert!(s.records().unwrap().is_empty());
        }
        let s = Storage::open(&path).unwrap();
        assert_eq!(s.next_record(), 11);
        let c = s
            .write(&WriteBatch {
                records: records(1, 11),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(c.first_record, 11);
    }

    #[test]
    fn open_errors_name_the_file() {
        let path = temp_path("garbage.redb");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let e = Storage::open(&path).unwrap_err();
        assert!(matches!(e, StorageError::Open { .. }), "{e:?}");
        assert!(e.to_string().contains("garbage.redb"), "{e}");

        let missing = temp_path("no-such-dir").join("x.redb");
        let e = Storage::open(&missing).unwrap_err();
        assert!(e.to_string().contains("no-such-dir"), "{e}");
    }

    #[test]
    fn meta_set_and_remove() {
        let path = temp_path("meta.redb");
        let s = Storage::open(&path).unwrap();
        s.write(&WriteBatch {
            meta: vec![("lock".into(), Some(vec![1, 2]))],
            ..Default::default()
        })
        .unwrap();
        s.write(&WriteBatch {
            meta: vec![("lock".into(), None)],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.meta("lock").unwrap(), None);
    }
}
