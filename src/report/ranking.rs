//! The ranking's P(best), tie set and noise columns, shared by the terminal table,
//! `summary.csv`, `summary.md`, `--format json` and `report.html`: every one of them reads
//! [`rank_stats`], so they agree cell for cell.
//!
//! The objective is [`Metric::ranking`] (whole-run output tok/s). Each cell's per-round values
//! are its repeats' objective; round r is repeat r, or the interleaved round the repeat ran in
//! (`repeats[i].round`). Cells **share rounds** when every completed cell's repeats carry a
//! round (an interleaved run): then P(best) resamples rounds jointly and ties use the paired
//! test ([`crate::stats::paired`]); otherwise each cell is resampled alone and ties use Welch.

use crate::metric::Metric;
use crate::results::StatsFile;
use crate::stats::pbest::{p_best, seed_for_run, PBest, PBestOptions, DEFAULT_RESAMPLES};
use crate::stats::DEFAULT_ALPHA;

/// The objective of every round of a cell: index = round, `None` where the cell has no repeat
/// in that round.
pub fn round_values(stats: &StatsFile) -> Vec<Option<f64>> {
    let index = |r: &crate::measure::RepeatSummary| r.round.unwrap_or(r.repeat) as usize;
    let len = stats
        .repeats
        .iter()
        .map(|r| index(r) + 1)
        .max()
        .unwrap_or(0);
    let mut v = vec![None; len];
    for r in &stats.repeats {
        v[index(r)] = Some(r.output_tokens_per_s);
    }
    v
}

/// True when every one of these cells' repeats records its interleaved round.
pub fn shares_rounds<'a>(stats: impl IntoIterator<Item = &'a StatsFile>) -> bool {
    let mut any = false;
    for s in stats {
        any = true;
        if s.repeats.is_empty() || s.repeats.iter().any(|r| r.round.is_none()) {
            return false;
        }
    }
    any
}

/// P(best) and the tie set over `cells` (completed cells' stats, in any order; the result's
/// indices refer to this slice). The bootstrap seed derives from the first cell's base seed, so
/// the figures are a pure function of the run directory.
pub fn rank_stats(cells: &[&StatsFile]) -> Option<PBest> {
    let first = cells.first()?;
    let metric = Metric::ranking();
    let values: Vec<Vec<Option<f64>>> = cells.iter().map(|s| round_values(s)).collect();
    p_best(
        &values,
        &PBestOptions {
            seed: seed_for_run(first.workload.base_seed),
            resamples: DEFAULT_RESAMPLES,
            direction: metric.direction,
            paired: shares_rounds(cells.iter().copied()),
            alpha: DEFAULT_ALPHA,
            threshold: metric.default_threshold(),
        },
    )
}

/// `0.93` style P(best) text (`<0.01` for tiny non-zero values).
pub fn p_text(p: Option<f64>) -> String {
    match p {
        None => "–".into(),
        Some(p) if p > 0.0 && p < 0.005 => "<0.01".into(),
        Some(p) => format!("{p:.2}"),
    }
}

/// `2/3 (load)` style text of a cell's flagged repeats, with ` ↻N` when `--rerun-noisy`
/// re-measured N of them; empty when none was flagged or re-measured, or the repeats carry no
/// noise readings.
pub fn noise_text(stats: &StatsFile) -> String {
    let flagged: Vec<&crate::measure::RepeatSummary> = stats
        .repeats
        .iter()
        .filter(|r| r.noise.as_ref().is_some_and(|n| !n.flags.is_empty()))
        .collect();
    let remeasured = stats
        .repeats
        .iter()
        .filter(|r| r.superseded.is_some())
        .count();
    let rerun = if remeasured > 0 {
        format!(" ↻{remeasured}")
    } else {
        String::new()
    };
    if flagged.is_empty() {
        return if remeasured > 0 {
            format!("0/{}{rerun}", stats.repeats.len())
        } else {
            String::new()
        };
    }
    let mut kinds: Vec<crate::noise::NoiseFlag> = flagged
        .iter()
        .flat_map(|r| r.noise.as_ref().map_or(&[][..], |n| &n.flags[..]))
        .copied()
        .collect();
    kinds.sort();
    kinds.dedup();
    format!(
        "{}/{} ({}){rerun}",
        flagged.len(),
        stats.repeats.len(),
        kinds
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join("+")
    )
}

/// The sentence under a ranked table: who is ★ and whether a single winner can be claimed.
pub fn verdict_line(names: &[&str], pb: &PBest) -> String {
    let star = names.get(pb.best).copied().unwrap_or("?");
    let p = p_text(pb.p_best.get(pb.best).copied().flatten());
    let how = if pb.method.paired {
        "paired over interleaved rounds"
    } else {
        "repeats resampled per cell (sequential order: no shared rounds)"
    };
    if pb.tie_set.len() <= 1 {
        format!(
            "best: {star} (P(best) {p}; bootstrap {how}, seed {})",
            pb.method.seed
        )
    } else {
        let others: Vec<&str> = pb
            .tie_set
            .iter()
            .skip(1)
            .filter_map(|&i| names.get(i).copied())
            .collect();
        format!(
            "no single winner: ★ {star} (P(best) {p}) is not distinguishable from {} other cell(s): {} (bootstrap {how}, seed {})",
            others.len(),
            others.join(", "),
            pb.method.seed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(values: &[f64], rounds: Option<&[u32]>) -> StatsFile {
        let mut s: StatsFile =
            serde_json::from_str(include_str!("../../tests/golden/stats.json")).unwrap();
        let template = s.repeats[0].clone();
        s.repeats = values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let mut r = template.clone();
                r.repeat = i as u32;
                r.round = rounds.map(|rs| rs[i]);
                r.output_tokens_per_s = v;
                r
            })
            .collect();
        s
    }

    #[test]
    fn round_values_follow_the_recorded_round() {
        let s = stats(&[10.0, 20.0], Some(&[2, 0]));
        assert_eq!(round_values(&s), vec![Some(20.0), None, Some(10.0)]);
        let s = stats(&[10.0, 20.0], None);
        assert_eq!(round_values(&s), vec![Some(10.0), Some(20.0)]);
    }

    #[test]
    fn rounds_are_shared_only_when_every_cell_records_them() {
        let a = stats(&[1.0, 2.0, 3.0], Some(&[0, 1, 2]));
        let b = stats(&[1.0, 2.0, 3.0], None);
        assert!(shares_rounds([&a, &a]));
        assert!(!shares_rounds([&a, &b]));
        assert!(!shares_rounds(std::iter::empty::<&StatsFile>()));
    }

    #[test]
    fn ties_and_single_winner_sentences() {
        let best = stats(&[1268.0, 1280.0, 1292.0], None);
        let noisy = stats(&[1180.0, 1246.0, 1312.0], None);
        let slow = stats(&[410.0, 425.0, 440.0], None);
        let pb = rank_stats(&[&best, &noisy, &slow]).unwrap();
        assert_eq!(pb.best, 0);
        assert_eq!(pb.tie_set, vec![0, 1]);
        assert!(!pb.method.paired);
        let line = verdict_line(&["best", "noisy", "slow"], &pb);
        assert!(line.starts_with("no single winner: ★ best"), "{line}");
        assert!(line.contains("noisy") && !line.contains("slow"), "{line}");
        let pb = rank_stats(&[&best, &slow]).unwrap();
        assert_eq!(pb.p_best, vec![Some(1.0), Some(0.0)]);
        assert!(verdict_line(&["best", "slow"], &pb).starts_with("best: best (P(best) 1.00"));
        assert_eq!(p_text(Some(0.001)), "<0.01");
        assert_eq!(p_text(Some(0.0)), "0.00");
    }

    #[test]
    fn noise_text_counts_flagged_repeats() {
        let mut s = stats(&[1.0, 2.0, 3.0], None);
        assert_eq!(noise_text(&s), "");
        let sample = |flags| crate::noise::NoiseSample {
            steal_pct: None,
            iowait_pct: None,
            other_cpu_pct: Some(30.0),
            loadavg_1m: None,
            cores: 2,
            cpu_mhz: None,
            calibration_ms: None,
            calibration_best_ms: None,
            gpu_sm_mhz: None,
            gpu_slowdown_reasons: None,
            flags,
        };
        use crate::noise::NoiseFlag::*;
        s.repeats[0].noise = Some(sample(vec![OtherProcesses]));
        s.repeats[1].noise = Some(sample(vec![]));
        s.repeats[2].noise = Some(sample(vec![Load, OtherProcesses]));
        assert_eq!(noise_text(&s), "2/3 (other_processes+load)");
    }
}
