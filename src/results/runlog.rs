//! Run-directory bookkeeping that must stay cheap and safe at any scale: the exclusive writer
//! lock (`.lock`) and the append-only cell status log (`status.jsonl`).
//!
//! Why a log: rewriting `manifest.json` (and the summaries) after every cell costs O(cells) per
//! cell, ~200 ms at 10,000 cells. Instead each status change appends one line to `status.jsonl`
//! (O(1)); `manifest.json` is rewritten only when the run starts and when it ends, and the log
//! is then emptied. [`super::RunDir::read_manifest`] applies the log on top of the manifest, so
//! readers always see current statuses, including after a `kill -9` (a torn last line — the one
//! append that was cut off — is ignored).
//!
//! Why a lock: two `sweep --resume` on one directory would run the same cell twice, each
//! measured while competing for the CPU with the other. The lock is an advisory `flock` on
//! `<run_dir>/.lock`, released by the kernel when the holder exits, however it exits.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{io, ResultsError};
use crate::engine::EngineInfo;
use crate::measure::CellStatus;

/// The status log's file name.
pub const STATUS_LOG: &str = "status.jsonl";
/// The lock file's name.
pub const LOCK_FILE: &str = ".lock";

/// One line of `status.jsonl`: a cell's new status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusLine {
    /// Cell key.
    pub key: String,
    /// New status.
    pub status: CellStatus,
    /// Why skipped, failed or interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The engine that ran, on the first completed cell (the manifest's `engine`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineInfo>,
    /// `(repeats done, repeats planned)` of a cell with measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats: Option<(u32, u32)>,
}

/// Exclusive hold on a run directory; released on drop or process exit.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Take the lock of `run_dir` without waiting; a clear error when another process holds it.
    pub fn acquire(run_dir: &Path) -> Result<RunLock, ResultsError> {
        let path = run_dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open lock file", &path))?;
        if !try_lock_exclusive(&file).map_err(io("lock", &path))? {
            return Err(ResultsError::Locked {
                path: run_dir.display().to_string(),
            });
        }
        Ok(RunLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
fn try_lock_exclusive(file: &File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a file descriptor we own for the duration of the call; no memory is
    // passed to the kernel.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(err)
    }
}

#[cfg(not(unix))]
fn try_lock_exclusive(_file: &File) -> std::io::Result<bool> {
    // No advisory locks wired up off Unix: a second writer is not detected there.
    Ok(true)
}

/// Append one status line (one `write` of a whole line, then fsync of the data).
pub fn append_status(run_dir: &Path, line: &StatusLine) -> Result<(), ResultsError> {
    let path = run_dir.join(STATUS_LOG);
    let mut text = serde_json::to_string(line).map_err(|e| ResultsError::Serialize {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    text.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io("open", &path))?;
    f.write_all(text.as_bytes())
        .map_err(io("append to", &path))?;
    f.sync_data().map_err(io("sync", &path))
}

/// Read the status log (empty when absent). Every complete line must parse; an unterminated
/// last line is the append a crash cut short and is ignored.
pub fn read_status_log(run_dir: &Path) -> Result<Vec<StatusLine>, ResultsError> {
    let path = run_dir.join(STATUS_LOG);
    let text = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", &path)(e)),
    };
    let complete = match text.iter().rposition(|&b| b == b'\n') {
        Some(end) => &text[..=end],
        None => &[][..],
    };
    let mut lines = Vec::new();
    for (i, raw) in complete.split(|&b| b == b'\n').enumerate() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line: StatusLine = serde_json::from_slice(raw).map_err(|e| ResultsError::Corrupt {
            path: format!("{}:{}", path.display(), i + 1),
            message: e.to_string(),
        })?;
        lines.push(line);
    }
    Ok(lines)
}

/// Empty the log once the manifest holds every status in it.
pub fn clear_status_log(run_dir: &Path) -> Result<(), ResultsError> {
    let path = run_dir.join(STATUS_LOG);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", &path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_round_trips_and_ignores_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_status_log(dir.path()).unwrap().is_empty());
        let line = StatusLine {
            key: "sha256:ab".into(),
            status: CellStatus::Completed,
            reason: None,
            engine: None,
            repeats: None,
        };
        append_status(dir.path(), &line).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(STATUS_LOG))
            .unwrap();
        f.write_all(b"{\"key\":\"sha256:cd\",\"sta").unwrap();
        assert_eq!(read_status_log(dir.path()).unwrap(), vec![line]);
        std::fs::write(dir.path().join(STATUS_LOG), "garbage\n").unwrap();
        let err = read_status_log(dir.path()).unwrap_err().to_string();
        assert!(err.contains("status.jsonl:1"), "{err}");
        clear_status_log(dir.path()).unwrap();
        clear_status_log(dir.path()).unwrap();
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let held = RunLock::acquire(dir.path()).unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("in use by another ferrum-bench process"),
            "{err}"
        );
        drop(held);
        RunLock::acquire(dir.path()).unwrap();
    }
}
