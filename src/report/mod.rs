//! Human and tabular output of a run, built only from the serialized result types
//! (`results::Manifest`, `results::StatsFile`): the ranked `tabled` table, `summary.csv`,
//! `summary.md`, the `--dry-run` listing, (in [`progress`]) the only terminal drawing, and (in
//! [`html`]) the self-contained `report.html`.

pub mod html;
pub mod label;
pub mod progress;
pub mod ranking;
mod summary;

pub use summary::{
    dry_run_listing, ranked_table, summary_csv, summary_markdown, summary_rows, SummaryRow,
};
