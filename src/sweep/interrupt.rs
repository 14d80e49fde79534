//! Ctrl-C handling. The first Ctrl-C raises a shared stop flag; the sweep loop checks it before
//! every engine run and between cells, marks the running cell `interrupted`, writes what is
//! complete (every file goes through temp + rename, so nothing is half-written) and exits. A
//! second Ctrl-C exits at once with status 130 — the files on disk are still whole, because
//! renames are atomic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::engine::Cancel;

/// The shared stop flag (Ctrl-C or an exhausted time budget); engines poll the same signal.
pub type StopFlag = Cancel;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Install the process-wide Ctrl-C handler once and return its flag (later calls return the same
/// flag; `ctrlc` allows a single handler per process).
pub fn install_ctrlc() -> Result<StopFlag, ctrlc::Error> {
    if let Some(flag) = FLAG.get() {
        return Ok(Cancel::from_flag(flag.clone()));
    }
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            // Second Ctrl-C: the user insists.
            std::process::exit(130);
        }
    })?;
    Ok(Cancel::from_flag(FLAG.get_or_init(|| flag).clone()))
}
