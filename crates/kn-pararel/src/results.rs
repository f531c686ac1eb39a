//! The results files: JSONL, one record per fact (or relation), appended so that a run killed at
//! any moment loses at most the record being written, and a restart neither repeats nor skips one.
//! `run`, `known`, `edit` and `erase` all write their records through [`JsonlFile`].

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{de::DeserializeOwned, Serialize};

use crate::evaluate::FactResult;

/// A record of a results file, identified by its key (a fact's id, a relation's name).
pub trait Record: Serialize + DeserializeOwned {
    /// The key no two records of one file share.
    fn key(&self) -> &str;
}

impl Record for FactResult {
    fn key(&self) -> &str {
        &self.uuid
    }
}

/// An open results file of `run` records.
pub type ResultsFile = JsonlFile<FactResult>;

/// An open results file.
pub struct JsonlFile<T: Record> {
    file: File,
    path: PathBuf,
    /// Keys already in the file.
    pub done: BTreeSet<String>,
    /// The records already in the file, in file order.
    pub records: Vec<T>,
}

impl<T: Record> JsonlFile<T> {
    /// Opens (creating) `path` and locks it for this process (a second process on the same
    /// shard file is refused); a torn last line (a kill during a write) is cut off first.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                bail!("{} is being written by another kn-pararel process (one process per shard)", path.display())
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        let (mut done, mut records) = (BTreeSet::new(), Vec::new());
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for (n, line) in bytes[..complete].split(|&b| b == b'\n').enumerate().filter(|(_, l)| !l.is_empty()) {
            let r: T = serde_json::from_slice(line)
                .with_context(|| format!("{}:{}: not a result record", path.display(), n + 1))?;
            if !done.insert(r.key().to_string()) {
                bail!("{}:{}: {} appears twice", path.display(), n + 1, r.key());
            }
            records.push(r);
        }
        if complete < bytes.len() {
            file.set_len(complete as u64).with_context(|| format!("truncating {}", path.display()))?;
        }
        Ok(Self { file, path: path.to_path_buf(), done, records })
    }

    /// Appends one record as a single write, then flushes it to disk.
    pub fn append(&mut self, r: T) -> Result<()> {
        let mut line = serde_json::to_vec(&r)?;
        line.push(b'\n');
        self.file.write_all(&line).with_context(|| format!("writing {}", self.path.display()))?;
        self.file.sync_data().with_context(|| format!("syncing {}", self.path.display()))?;
        self.done.insert(r.key().to_string());
        self.records.push(r);
        Ok(())
    }
}

/// Reads every `run` record of a results file (complete lines only).
pub fn read_results(path: &Path) -> Result<Vec<FactResult>> {
    read_records(path)
}

/// Reads every record of a results file (complete lines only); a key twice is an error.
pub fn read_records<T: Record>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    let records: Vec<T> = complete
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}: not a result record", path.display(), n + 1))
        })
        .collect::<Result<_>>()?;
    let mut seen = BTreeSet::new();
    if let Some(r) = records.iter().find(|r| !seen.insert(r.key())) {
        bail!("{}: {} appears twice (a report would count it twice)", path.display(), r.key());
    }
    Ok(records)
}
