//! Ctrl-C handling. The first Ctrl-C is acknowledged on stderr at once and raises a shared stop
//! flag, which the engine's scheduler polls every step: the running cell stops at the next step
//! (not at the end of its run), is marked `interrupted`, what is complete is written (every file
//! goes through temp + rename, so nothing is half-written) and the process exits 130. A second
//! Ctrl-C exits at once with status 130 — the files on disk are still whole: the manifest exists
//! from the run's first moment and each status change is one appended line.

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
            eprintln!("\ninterrupted again: exiting now (completed cells are on disk)");
            std::process::exit(130);
        }
        // The handler runs on ctrlc's own thread, so printing here is safe and immediate.
        eprintln!(
            "\ninterrupt: stopping the running cell at the next engine step and saving what is complete (Ctrl-C again to exit at once)"
        );
    })?;
    Ok(Cancel::from_flag(FLAG.get_or_init(|| flag).clone()))
}
