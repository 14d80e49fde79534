//! The strategy evaluation on synthetic noisy grids with a known truth, so the conclusion drawn
//! from the recorded m3 grid is checked on landscapes it was not tuned on. Each landscape has the
//! m3 sweep's shape (6 × 3 ordered values): a smooth peak somewhere on each axis, a small random
//! interaction, and 5 recorded repeats per cell with ±15 % uniform noise (the shared machine's
//! spread). Strategies replay the noisy recording and are scored against the noise-free truth.
//! Everything is seeded: the numbers are deterministic, not timings.

use std::collections::BTreeMap;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::measure::LoadPoint;
use crate::metric::Metric;
use crate::sweep::Cell;

const AXES: [usize; 2] = [6, 3];
const RECORDED: usize = 5;
const NOISE: f64 = 0.15;

fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn space() -> Space {
    let mut cells = Vec::new();
    for t in 0..AXES[0] {
        for s in 0..AXES[1] {
            let i = cells.len();
            cells.push(Cell {
                index: i,
                name: format!("t{t}s{s}"),
                key: format!("k{i}"),
                knobs: BTreeMap::from([
                    ("FERRUM_A".to_string(), t.to_string()),
                    ("FERRUM_B".to_string(), s.to_string()),
                ]),
                load: LoadPoint::Closed { concurrency: 1 },
            });
        }
    }
    Space::new(cells)
}

fn objective() -> Objective {
    Objective {
        metric: Metric::by_name("output_tok_s").unwrap(),
        direction: Direction::HigherIsBetter,
        constraints: Vec::new(),
    }
}

/// Landscape `seed`: (truth history, recorded noisy values) over [`space`].
fn landscape(seed: u64, space: &Space) -> (History, Vec<Result<Vec<RepeatValues>, String>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let peak: Vec<usize> = AXES
        .iter()
        .map(|&n| (rng.next_u64() % n as u64) as usize)
        .collect();
    let slope = [
        0.01 + 0.07 * uniform(&mut rng),
        0.02 + 0.13 * uniform(&mut rng),
    ];
    let truth_values: Vec<f64> = space
        .coords
        .iter()
        .map(|c| {
            let mut v = 1000.0;
            for a in 0..AXES.len() {
                v *= 1.0 - slope[a] * c[a].abs_diff(peak[a]) as f64;
            }
            v * (1.0 + 0.04 * (uniform(&mut rng) - 0.5))
        })
        .collect();
    let mut truth = History::new(objective(), space.len());
    for (i, &v) in truth_values.iter().enumerate() {
        truth.configs[i].repeats = vec![vec![Some(v)]; 3];
    }
    let recorded = truth_values
        .iter()
        .map(|&v| {
            Ok((0..RECORDED)
                .map(|_| vec![Some(v * (1.0 + NOISE * (2.0 * uniform(&mut rng) - 1.0)))])
                .collect())
        })
        .collect();
    (truth, recorded)
}

/// Per strategy over `landscapes` × `seeds`: (median of the per-landscape median runs to within
/// 2 % — misses count as the budget + 1, mean success rate within the budget).
fn evaluate_landscapes(
    landscapes: u64,
    seeds: u64,
    budget: usize,
) -> Vec<(StrategyKind, f64, f64)> {
    let space = space();
    let kinds = [
        StrategyKind::Random,
        StrategyKind::Halving,
        StrategyKind::Model,
    ];
    let mut per: Vec<(Vec<f64>, f64)> = vec![(Vec::new(), 0.0); kinds.len()];
    for l in 0..landscapes {
        let (truth, values) = landscape(1000 + l, &space);
        let rows = evaluate_against(
            &truth,
            &space,
            &values,
            &kinds,
            seeds,
            budget,
            3,
            crate::execute::rounds::Order::Sequential,
            None,
        );
        for (k, r) in rows.iter().enumerate() {
            per[k].0.push(r.median_runs.unwrap_or(budget as f64 + 1.0));
            per[k].1 += r.success_rate / landscapes as f64;
        }
    }
    kinds
        .iter()
        .zip(per)
        .map(|(&k, (mut medians, rate))| {
            medians.sort_by(f64::total_cmp);
            (k, medians[medians.len() / 2], rate)
        })
        .collect()
}

#[test]
fn on_synthetic_noisy_grids_the_model_reaches_the_best_sooner_than_random() {
    // 30 % of the 54-run grid, as the default budget of the m3 preset.
    let rows = evaluate_landscapes(20, 50, 16);
    for (k, median, rate) in &rows {
        println!(
            "synthetic: {:8} median runs to within 2 % {median:.1}, reached within 16 runs {:.0} %",
            k.as_str(),
            100.0 * rate
        );
    }
    let get = |kind| rows.iter().find(|r| r.0 == kind).unwrap();
    let (random, model) = (get(StrategyKind::Random), get(StrategyKind::Model));
    assert!(model.2 > random.2, "{rows:?}");
    assert!(model.1 <= random.1, "{rows:?}");
}
