//! Progress on stderr — the only terminal drawing in the crate. With a terminal and without
//! `--quiet`: an indicatif bar of cells done / total with ETA and a bar of the running cell's
//! requests with live output tok/s. Otherwise one plain line per finished cell.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::EngineEvent;
use crate::measure::{CellStatus, MeasureEvent};

/// Progress of a sweep.
pub struct SweepProgress {
    bars: Option<Bars>,
    total: usize,
    done: usize,
    cell_tokens: usize,
    cell_started: Instant,
}

struct Bars {
    _multi: MultiProgress,
    sweep: ProgressBar,
    cell: ProgressBar,
}

impl SweepProgress {
    /// Bars when stderr is a terminal and `quiet` is false; plain lines otherwise.
    pub fn new(total_cells: usize, quiet: bool) -> SweepProgress {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let sweep = multi.add(ProgressBar::new(total_cells as u64));
            sweep.set_style(
                ProgressStyle::with_template("cells {pos}/{len} [{bar:30}] eta {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            let cell = multi.add(ProgressBar::new(0));
            cell.set_style(
                ProgressStyle::with_template("  {prefix} requests {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            Bars {
                _multi: multi,
                sweep,
                cell,
            }
        });
        SweepProgress {
            bars,
            total: total_cells,
            done: 0,
            cell_tokens: 0,
            cell_started: Instant::now(),
        }
    }

    /// A cell starts: `repeats × requests` measured requests will follow.
    pub fn cell_started(&mut self, name: &str, repeats: u32, requests_per_repeat: usize) {
        self.cell_tokens = 0;
        self.cell_started = Instant::now();
        if let Some(b) = &self.bars {
            b.cell.reset();
            b.cell
                .set_length(u64::from(repeats) * requests_per_repeat as u64);
            b.cell.set_prefix(name.to_string());
            b.cell.set_message("");
        }
    }

    /// Feed a measurement event (request counts, live tok/s).
    pub fn on_event(&mut self, event: &MeasureEvent) {
        let Some(b) = &self.bars else { return };
        match event {
            MeasureEvent::RepeatStarted { .. } => {
                self.cell_tokens = 0;
                self.cell_started = Instant::now();
            }
            MeasureEvent::WarmupStarted { repeat, .. } => b
                .cell
                .set_message(format!("(warmup, repeat {})", repeat + 1)),
            MeasureEvent::Engine(EngineEvent::Tokens { count }) => {
                self.cell_tokens += count;
                let secs = self.cell_started.elapsed().as_secs_f64();
                if secs > 0.0 {
                    b.cell
                        .set_message(format!("{:.0} tok/s", self.cell_tokens as f64 / secs));
                }
            }
            MeasureEvent::Engine(EngineEvent::RequestDone { .. }) => b.cell.inc(1),
            MeasureEvent::RepeatDone { .. } => {}
        }
    }

    /// A cell ended (completed, skipped, failed, interrupted); `detail` is a short result or reason.
    pub fn cell_finished(&mut self, name: &str, status: CellStatus, detail: &str) {
        self.done += 1;
        let line = format!(
            "[{}/{}] {name}: {} {detail}",
            self.done,
            self.total,
            status_word(status)
        );
        match &self.bars {
            Some(b) => {
                b.sweep.inc(1);
                b.sweep.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// A one-line note for the user (above the bars, or as a plain line).
    pub fn note(&mut self, line: &str) {
        match &self.bars {
            Some(b) => b.sweep.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Clear the bars.
    pub fn finish(&mut self) {
        if let Some(b) = &self.bars {
            b.cell.finish_and_clear();
            b.sweep.finish_and_clear();
        }
    }
}

/// The plain per-cell log line, e.g. `[3/18] c32__PAGED_MAX_SEQS=8: completed 1234.5 output tok/s`.
pub fn cell_line(
    done: usize,
    total: usize,
    name: &str,
    status: CellStatus,
    detail: &str,
) -> String {
    format!("[{done}/{total}] {name}: {} {detail}", status_word(status))
        .trim_end()
        .to_string()
}

fn status_word(s: CellStatus) -> &'static str {
    match s {
        CellStatus::Pending => "pending",
        CellStatus::Completed => "completed",
        CellStatus::Partial => "partial",
        CellStatus::Skipped => "skipped",
        CellStatus::Failed => "failed",
        CellStatus::Interrupted => "interrupted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_name_the_cell_status_and_detail() {
        assert_eq!(
            cell_line(
                3,
                18,
                "c32__PAGED_MAX_SEQS=8",
                CellStatus::Failed,
                "engine panicked: boom"
            ),
            "[3/18] c32__PAGED_MAX_SEQS=8: failed engine panicked: boom"
        );
        assert_eq!(
            cell_line(1, 1, "c1", CellStatus::Completed, ""),
            "[1/1] c1: completed"
        );
        // Quiet progress never draws bars; feeding it events is harmless.
        let mut p = SweepProgress::new(2, true);
        assert!(p.bars.is_none());
        p.cell_started("c1", 1, 4);
        p.on_event(&MeasureEvent::Engine(EngineEvent::Tokens { count: 3 }));
        p.finish();
    }
}
