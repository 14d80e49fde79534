//! Summary rows (one per cell), `summary.csv`, `summary.md`, the final ranked table and the
//! dry-run listing.

use std::collections::BTreeMap;
use std::time::Duration;

use tabled::builder::Builder;
use tabled::settings::Style;

use crate::measure::{CellStatus, LoadPoint};
use crate::metric::{Metric, E2E_P50, METRICS, OUTPUT_TOK_S, TPOT_P50, TTFT_P50};
use crate::results::{Manifest, StatsFile};
use crate::stats::Aggregate;
use crate::sweep::Cell;

/// One cell's line in `summary.csv`, `summary.md` and the final table.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// Cell directory name.
    pub name: String,
    /// Cell key.
    pub key: String,
    /// Status.
    pub status: CellStatus,
    /// Why skipped / failed / interrupted.
    pub reason: Option<String>,
    /// Knob assignment.
    pub knobs: BTreeMap<String, String>,
    /// Load.
    pub load: LoadPoint,
    /// The cell's stats when it completed.
    pub stats: Option<StatsFile>,
}

impl SummaryRow {
    fn output_tps(&self) -> Option<&Aggregate> {
        self.stats
            .as_ref()
            .and_then(|s| s.aggregate.output_tokens_per_s.as_ref())
    }
}

/// Rows for every manifest cell, in plan order, with the stats of completed cells (by key).
pub fn summary_rows(manifest: &Manifest, stats: &BTreeMap<String, StatsFile>) -> Vec<SummaryRow> {
    manifest
        .cells
        .iter()
        .map(|c| SummaryRow {
            name: c.name.clone(),
            key: c.key.clone(),
            status: c.status,
            reason: c.reason.clone(),
            knobs: c.knobs.clone(),
            load: c.load,
            stats: stats.get(&c.key).filter(|_| c.has_stats()).cloned(),
        })
        .collect()
}

fn status_text(s: CellStatus) -> &'static str {
    match s {
        CellStatus::Pending => "pending",
        CellStatus::Completed => "completed",
        CellStatus::Partial => "partial",
        CellStatus::Skipped => "skipped",
        CellStatus::Failed => "failed",
        CellStatus::Interrupted => "interrupted",
    }
}

/// `(mean, ci95 half-width)` columns; the CI is empty with fewer than 3 repeats.
fn mean_ci(a: Option<&Aggregate>) -> [String; 2] {
    match a {
        Some(a) => [
            a.mean.to_string(),
            a.ci95
                .half_width()
                .map(|h| h.to_string())
                .unwrap_or_default(),
        ],
        None => [String::new(), String::new()],
    }
}

/// `summary.csv`: one row per cell. Columns: `cell, key, status, reason`, one column per swept
/// knob, `load, concurrency, request_rate, repeats`, then `<field>_mean, <field>_ci95` for every
/// metric of the one metric list ([`crate::metric::METRICS`], in its order; `<field>` is the
/// metric's `stats.json` aggregate field, except that output tok/s keeps its historical column
/// name `output_tok_s`), then `output_tok_s_cv` and `unsuccessful_requests`, then the ranking columns `p_best,
/// tie_with_best, steady_output_tok_s_mean, steady_output_tok_s_ci95, noisy_repeats` (see
/// [`super::ranking`]). `_ci95` is the 95 % half-width, empty with fewer than 3 repeats.
pub fn summary_csv(knob_names: &[String], rows: &[SummaryRow]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = ["cell", "key", "status", "reason"]
        .map(String::from)
        .to_vec();
    header.extend(knob_names.iter().cloned());
    header.extend(["load", "concurrency", "request_rate", "repeats"].map(String::from));
    for m in METRICS {
        header.push(format!("{}_mean", csv_column(m)));
        header.push(format!("{}_ci95", csv_column(m)));
    }
    header.extend(["output_tok_s_cv", "unsuccessful_requests"].map(String::from));
    header.extend(RANKING_COLUMNS.map(String::from));
    w.write_record(&header)?;
    let done = ranked(rows);
    let pb = ranking_of(&done);
    for r in rows {
        let mut rec = vec![
            r.name.clone(),
            r.key.clone(),
            status_text(r.status).into(),
            r.reason.clone().unwrap_or_default(),
        ];
        rec.extend(
            knob_names
                .iter()
                .map(|k| r.knobs.get(k).cloned().unwrap_or_default()),
        );
        let (c, rate) = match r.load {
            LoadPoint::Closed { concurrency } => (concurrency.to_string(), String::new()),
            LoadPoint::Open { request_rate, .. } => (String::new(), request_rate.to_string()),
        };
        rec.extend([r.load.label(), c, rate]);
        rec.push(
            r.stats
                .as_ref()
                .map(|s| s.aggregate.repeats.to_string())
                .unwrap_or_default(),
        );
        for m in METRICS {
            rec.extend(mean_ci(r.stats.as_ref().and_then(|s| m.of(s))));
        }
        rec.push(
            r.output_tps()
                .and_then(|a| a.cv)
                .map(|v| v.to_string())
                .unwrap_or_default(),
        );
        rec.push(
            r.stats
                .as_ref()
                .map(|s| s.aggregate.unsuccessful_requests.to_string())
                .unwrap_or_default(),
        );
        rec.extend(ranking_cells(r, &done, pb.as_ref()));
        w.write_record(&rec)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The `summary.csv` column prefix of a metric: its `stats.json` field, except the first
/// columns ever written, `output_tok_s` and `total_tok_s`, which keep their names.
fn csv_column(m: &Metric) -> &'static str {
    match m.field {
        "output_tokens_per_s" => "output_tok_s",
        "total_tokens_per_s" => "total_tok_s",
        field => field,
    }
}

/// `summary.csv`'s ranking columns (after `unsuccessful_requests`): P(best), tie-set
/// membership (`star`, `tie` or empty), the steady-state output tok/s (mean, CI) and the noise
/// monitor's flagged repeats (`2/3 (load)`).
const RANKING_COLUMNS: [&str; 5] = [
    "p_best",
    "tie_with_best",
    "steady_output_tok_s_mean",
    "steady_output_tok_s_ci95",
    "noisy_repeats",
];

fn ranking_cells(
    r: &SummaryRow,
    done: &[&SummaryRow],
    pb: Option<&crate::stats::PBest>,
) -> [String; 5] {
    let pos = done.iter().position(|d| d.key == r.key);
    let p = pos
        .and_then(|i| pb.and_then(|pb| pb.p_best.get(i).copied().flatten()))
        .map(|p| p.to_string())
        .unwrap_or_default();
    let tie = match (pos, pb) {
        (Some(i), Some(pb)) if pb.best == i => "star",
        (Some(i), Some(pb)) if pb.tie_set.contains(&i) => "tie",
        _ => "",
    };
    let [m, ci] = mean_ci(
        r.stats
            .as_ref()
            .and_then(|s| s.aggregate.steady_output_tokens_per_s.as_ref()),
    );
    [
        p,
        tie.to_string(),
        m,
        ci,
        r.stats
            .as_ref()
            .map(super::ranking::noise_text)
            .unwrap_or_default(),
    ]
}

/// `mean ± ci` with `decimals`, or `mean (no CI, n=2)` when there is no interval.
fn fmt_agg(a: Option<&Aggregate>, decimals: usize) -> String {
    match a {
        Some(a) => match a.ci95.half_width() {
            Some(h) => format!("{:.*} ± {:.*}", decimals, a.mean, decimals, h),
            None => format!("{:.*} (no CI, n={})", decimals, a.mean, a.n),
        },
        None => "–".to_string(),
    }
}

/// Completed rows ranked by mean output tok/s (descending; ties by name).
fn ranked(rows: &[SummaryRow]) -> Vec<&SummaryRow> {
    let mut done: Vec<&SummaryRow> = rows.iter().filter(|r| r.output_tps().is_some()).collect();
    done.sort_by(|a, b| {
        let (x, y) = (
            a.output_tps().map_or(0.0, |s| s.mean),
            b.output_tps().map_or(0.0, |s| s.mean),
        );
        y.total_cmp(&x).then_with(|| a.name.cmp(&b.name))
    });
    done
}

/// Rank labels: `N ★` for the cell with the highest P(best), `N ≈★` for the other members of
/// its tie set (not separated from ★ by `compare`'s verdict rule on output tok/s: paired over
/// shared rounds, else Welch; no tie claims below 3 repeats); see [`super::ranking`].
fn rank_labels(done: &[&SummaryRow]) -> Vec<String> {
    let pb = ranking_of(done);
    done.iter()
        .enumerate()
        .map(|(i, _)| {
            let mark = match &pb {
                Some(pb) if pb.best == i => " ★",
                Some(pb) if pb.tie_set.contains(&i) => " ≈★",
                _ => "",
            };
            format!("{}{mark}", i + 1)
        })
        .collect()
}

/// P(best) and the tie set of ranked rows (indices into `done`).
fn ranking_of(done: &[&SummaryRow]) -> Option<crate::stats::PBest> {
    let stats: Vec<&StatsFile> = done.iter().filter_map(|r| r.stats.as_ref()).collect();
    (stats.len() == done.len())
        .then(|| super::ranking::rank_stats(&stats))
        .flatten()
}

fn table_rows(rows: &[SummaryRow]) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let done = ranked(rows);
    let labels = rank_labels(&done);
    let pb = ranking_of(&done);
    let mut ranked_rows = Vec::new();
    for (i, r) in done.iter().enumerate() {
        let s = r.stats.as_ref();
        let agg = |m: &Metric| fmt_agg(s.and_then(|s| m.of(s)), m.decimals);
        ranked_rows.push(vec![
            labels[i].clone(),
            r.name.clone(),
            agg(OUTPUT_TOK_S),
            super::ranking::p_text(pb.as_ref().and_then(|p| p.p_best.get(i).copied().flatten())),
            fmt_agg(
                s.and_then(|s| s.aggregate.steady_output_tokens_per_s.as_ref()),
                OUTPUT_TOK_S.decimals,
            ),
            agg(TTFT_P50),
            agg(TPOT_P50),
            agg(E2E_P50),
            s.map(|s| s.aggregate.unsuccessful_requests.to_string())
                .unwrap_or_default(),
            s.map(super::ranking::noise_text).unwrap_or_default(),
        ]);
    }
    let others = rows
        .iter()
        .filter(|r| r.output_tps().is_none())
        .map(|r| {
            vec![
                r.name.clone(),
                status_text(r.status).to_string(),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    (ranked_rows, others)
}

/// Legend under the ranked table.
const TIE_NOTE: &str = "★ highest P(best) (seeded bootstrap over rounds); ≈★ its tie set: not distinguishable from ★ (p ≥ 0.05 or the change CI reaches within ±3 %; paired test over interleaved rounds, else Welch; needs ≥ 3 repeats); steady = output tok/s while all C slots are busy (whole-run output tok/s ranks); noise = repeats the noise monitor flagged (↻N: N re-measured by --rerun-noisy)\n";

/// The sentence under the table: the winner, or why there is none.
fn verdict_text(rows: &[SummaryRow]) -> String {
    let done = ranked(rows);
    let names: Vec<&str> = done.iter().map(|r| r.name.as_str()).collect();
    ranking_of(&done)
        .map(|pb| format!("{}\n", super::ranking::verdict_line(&names, &pb)))
        .unwrap_or_default()
}

const RANK_HEADER: [&str; 10] = [
    "rank",
    "cell",
    "output tok/s",
    "P(best)",
    "steady tok/s",
    "TTFT p50 ms",
    "TPOT p50 ms",
    "E2E p50 ms",
    "unsuccessful",
    "noise",
];

/// The final terminal table: completed cells ranked by output tok/s (mean ± 95 % CI), the best
/// marked ★ and cells statistically tied with it ≈★, then every skipped, failed, interrupted or pending cell with its reason.
pub fn ranked_table(rows: &[SummaryRow]) -> String {
    let (ranked_rows, others) = table_rows(rows);
    let mut out = String::new();
    if let Some(note) = rows_engine_note(rows) {
        out.push_str(note);
        out.push('\n');
    }
    if ranked_rows.is_empty() {
        out.push_str("no cell completed\n");
    } else {
        let mut b = Builder::default();
        b.push_record(RANK_HEADER);
        for r in ranked_rows {
            b.push_record(r);
        }
        out.push_str(&b.build().with(Style::rounded()).to_string());
        out.push('\n');
        out.push_str(TIE_NOTE);
        out.push_str(&verdict_text(rows));
    }
    if !others.is_empty() {
        let mut b = Builder::default();
        b.push_record(["cell", "status", "reason"]);
        for r in others {
            b.push_record(r);
        }
        out.push_str(&b.build().with(Style::rounded()).to_string());
        out.push('\n');
    }
    out
}

/// The reference engine's label when any completed cell ran on it (see [`super::label`]).
fn rows_engine_note(rows: &[SummaryRow]) -> Option<&'static str> {
    rows.iter()
        .filter_map(|r| r.stats.as_ref())
        .find_map(|s| super::label::engine_note(&s.engine.kind))
}

/// `summary.md`: header with preset, workload, seeds and hashes, the ranked table and the other
/// cells, as GitHub Markdown.
pub fn summary_markdown(manifest: &Manifest, rows: &[SummaryRow]) -> String {
    let (ranked_rows, others) = table_rows(rows);
    let mut md = format!(
        "# ferrum-bench run `{}`\n\n- preset: `{}` (`{}`)\n- workload: `{}`, {} measured + {} warmup requests per repeat, {} repeat(s), seed {}\n- workload hash: `{}`\n- harness: {} {} (`{}`)\n- host: {}, {} cores\n- started: {}, finished: {}\n",
        manifest.run_id,
        manifest.preset.name,
        manifest.preset.hash,
        manifest.workload.name,
        manifest.workload.spec.requests,
        manifest.workload.spec.warmup_requests,
        manifest.run.repeats,
        manifest.seeds.base_seed,
        manifest.workload.workload_hash,
        manifest.harness.name,
        manifest.harness.version,
        manifest.harness.git_commit,
        manifest.host.cpu_model,
        manifest.host.cores,
        manifest.started_at,
        manifest.finished_at.as_deref().unwrap_or("not finished"),
    );
    if let Some(e) = &manifest.engine {
        md.push_str(&format!("- engine: {} {}\n", e.kind, e.version));
    }
    md.push('\n');
    if let Some(note) = manifest
        .engine
        .as_ref()
        .and_then(|e| super::label::engine_note(&e.kind))
    {
        md.push_str(&format!("> {note}\n\n"));
    }
    if manifest.run.repeats < crate::stats::MIN_REPEATS_FOR_CI as u32 {
        md.push_str("> ⚠ fewer than 3 repeats: no confidence intervals.\n\n");
    }
    if ranked_rows.is_empty() {
        md.push_str("No cell completed.\n");
    } else {
        md.push_str("## Cells ranked by output tok/s (mean ± 95 % CI)\n\n");
        md.push_str(&md_table(&RANK_HEADER, &ranked_rows));
        md.push('\n');
        md.push_str(TIE_NOTE);
        md.push('\n');
        md.push_str(&verdict_text(rows));
    }
    if !others.is_empty() {
        md.push_str("\n## Cells not measured\n\n");
        md.push_str(&md_table(&["cell", "status", "reason"], &others));
    }
    md
}

fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut s = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for r in rows {
        s.push_str(&format!(
            "| {} |\n",
            r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
        ));
    }
    s
}

/// `--dry-run` listing: cells to run, cells the resolver would skip (with reasons), and the
/// duration estimate.
pub fn dry_run_listing(
    to_run: &[&Cell],
    skipped: &[(&Cell, String)],
    estimate: Duration,
) -> String {
    let mut b = Builder::default();
    b.push_record(["#", "cell", "key"]);
    for c in to_run {
        b.push_record([
            c.index.to_string(),
            c.name.clone(),
            c.key["sha256:".len().."sha256:".len() + 12].to_string(),
        ]);
    }
    let mut out = format!(
        "{} cell(s) to run:\n{}\n",
        to_run.len(),
        b.build().with(Style::rounded())
    );
    if !skipped.is_empty() {
        let mut b = Builder::default();
        b.push_record(["cell", "reason"]);
        for (c, reason) in skipped {
            b.push_record([c.name.clone(), reason.clone()]);
        }
        out.push_str(&format!(
            "{} cell(s) skipped by the resolver:\n{}\n",
            skipped.len(),
            b.build().with(Style::rounded())
        ));
    }
    let secs = estimate.as_secs();
    out.push_str(&format!(
        "estimated duration: {}m{:02}s (rough: assumes the default engine speed)\n",
        secs / 60,
        secs % 60
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_lists_cells_skips_and_estimate() {
        let cell = |i: usize, name: &str| Cell {
            index: i,
            name: name.to_string(),
            key: format!("sha256:{:012x}{}", 0xabc + i, "0".repeat(52)),
            knobs: BTreeMap::new(),
            load: LoadPoint::Closed { concurrency: 32 },
        };
        let a = cell(0, "c32__PAGED_MAX_SEQS=8");
        let b = cell(1, "c32__PAGED_MAX_SEQS=64");
        let text = dry_run_listing(
            &[&a],
            &[(&b, "max_batched_tokens 32 < max_sequences 64".into())],
            Duration::from_secs(125),
        );
        assert!(text.starts_with("1 cell(s) to run:"));
        assert!(text.contains("c32__PAGED_MAX_SEQS=8") && text.contains("000000000abc"));
        assert!(
            text.contains("1 cell(s) skipped by the resolver:")
                && text.contains("max_batched_tokens 32 < max_sequences 64")
        );
        assert!(
            text.ends_with("estimated duration: 2m05s (rough: assumes the default engine speed)\n")
        );
    }

    #[test]
    fn ties_with_the_best_cell_are_marked() {
        let row = |name: &str, xs: &[f64]| {
            let mut agg = crate::measure::aggregate_repeats(&[]);
            agg.output_tokens_per_s = crate::stats::aggregate(xs);
            SummaryRow {
                name: name.into(),
                key: name.into(),
                status: CellStatus::Completed,
                reason: None,
                knobs: BTreeMap::new(),
                load: LoadPoint::Closed { concurrency: 32 },
                stats: Some({
                    let mut s: StatsFile =
                        serde_json::from_str(include_str!("../../tests/golden/stats.json"))
                            .unwrap();
                    let template = s.repeats[0].clone();
                    // P(best) and the tie set read the per-repeat values.
                    s.repeats = xs
                        .iter()
                        .enumerate()
                        .map(|(i, &x)| {
                            let mut r = template.clone();
                            r.repeat = i as u32;
                            r.output_tokens_per_s = x;
                            r
                        })
                        .collect();
                    StatsFile {
                        aggregate: agg,
                        ..s
                    }
                }),
            }
        };
        // The README example: 1280.0 ± 28.5 vs 1246.1 ± 159.5 is a tie; 425 ± 36 is not.
        let rows = [
            row("best", &[1268.0, 1280.0, 1292.0]),
            row("noisy", &[1180.0, 1246.0, 1312.0]),
            row("slow", &[410.0, 425.0, 440.0]),
        ];
        let done = ranked(&rows);
        assert_eq!(rank_labels(&done), ["1 ★", "2 ≈★", "3"]);
        // Fewer than 3 repeats: no tie marks.
        let rows = [row("a", &[100.0, 101.0]), row("b", &[99.0, 100.0])];
        assert_eq!(rank_labels(&ranked(&rows)), ["1 ★", "2"]);
        // The table shows P(best) and says that no single winner is claimed.
        let rows = [
            row("best", &[1268.0, 1280.0, 1292.0]),
            row("noisy", &[1180.0, 1246.0, 1312.0]),
            row("slow", &[410.0, 425.0, 440.0]),
        ];
        let table = ranked_table(&rows);
        assert!(table.contains("P(best)"), "{table}");
        assert!(
            table.contains("no single winner: ★ best") && table.contains("1 other cell(s): noisy"),
            "{table}"
        );
        let csv = summary_csv(&[], &rows).unwrap();
        let header = csv.lines().next().unwrap();
        assert!(header.ends_with(",p_best,tie_with_best,steady_output_tok_s_mean,steady_output_tok_s_ci95,noisy_repeats"), "{header}");
        let slow_line = csv.lines().find(|l| l.starts_with("slow,")).unwrap();
        assert!(slow_line.contains(",0,,"), "{slow_line}");
        assert!(csv
            .lines()
            .any(|l| l.starts_with("best,") && l.contains(",star,")));
    }

    #[test]
    fn reference_engine_tables_carry_the_label_and_real_engines_do_not() {
        let row = |kind: &str| {
            let mut stats: StatsFile =
                serde_json::from_str(include_str!("../../tests/golden/stats.json")).unwrap();
            stats.engine.kind = kind.to_string();
            SummaryRow {
                name: "c".into(),
                key: "c".into(),
                status: CellStatus::Completed,
                reason: None,
                knobs: BTreeMap::new(),
                load: LoadPoint::Closed { concurrency: 32 },
                stats: Some(stats),
            }
        };
        let table = ranked_table(&[row("reference")]);
        assert_eq!(
            table.lines().next(),
            Some(crate::report::label::REFERENCE_NOTE)
        );
        let table = ranked_table(&[row("server")]);
        assert!(!table.contains("not Ferrum"), "{table}");
        assert!(table.starts_with('╭'), "{table}");
    }

    #[test]
    fn aggregates_format_with_or_without_ci() {
        let with = crate::stats::aggregate(&[10.0, 12.0, 14.0]).unwrap();
        assert_eq!(fmt_agg(Some(&with), 1), "12.0 ± 5.0");
        let without = crate::stats::aggregate(&[10.0, 12.0]).unwrap();
        assert_eq!(fmt_agg(Some(&without), 1), "11.0 (no CI, n=2)");
        assert_eq!(fmt_agg(None, 1), "–");
    }
}
