//! Strategy bookkeeping on constructed histories: who survives each halving rung and how many
//! repeats each gets, grid and random coverage, model's neighbourhood moves, and the driver's
//! final repeats for the winner.

use std::collections::BTreeMap;

use super::*;
use crate::measure::LoadPoint;
use crate::metric::{Direction, Metric};
use crate::sweep::Cell;
use crate::tune::driver::{Answer, Driver};
use crate::tune::history::Objective;

/// A 1-D space of `n` cells (knob FERRUM_X = 0..n).
pub(crate) fn space(n: usize) -> Space {
    Space::new(
        (0..n)
            .map(|i| Cell {
                index: i,
                name: format!("x{i}"),
                key: format!("k{i}"),
                knobs: BTreeMap::from([("FERRUM_X".to_string(), i.to_string())]),
                load: LoadPoint::Closed { concurrency: 1 },
            })
            .collect(),
    )
}

/// Maximise output tok/s, no constraints.
pub(crate) fn objective() -> Objective {
    Objective {
        metric: Metric::by_name("output_tok_s").unwrap(),
        direction: Direction::HigherIsBetter,
        constraints: Vec::new(),
    }
}

/// Run `strategy` to the end where configuration i always measures `value(i)`.
fn drive(
    strategy: Box<dyn Strategy>,
    n: usize,
    budget: usize,
    value: &dyn Fn(usize) -> f64,
) -> Driver {
    let mut d = Driver::new(space(n), objective(), strategy, budget);
    while let Some(ask) = d.next_trial() {
        let v = (0..ask.repeats)
            .map(|_| vec![Some(value(ask.config))])
            .collect();
        d.record(&ask, Answer::Measured(v), "test");
        assert!(d.runs_used() <= budget, "the budget is never exceeded");
    }
    d
}

#[test]
fn halving_keeps_the_best_third_each_rung_and_raises_their_repeats() {
    // 9 candidates, value = index: rung 0 measures all 9 once, keeps 8,7,6 (⌈9/3⌉ = 3) and
    // raises them to 3 repeats; 3 finalists ≤ η with 3 repeats ends the search.
    let mut h = Halving::new((0..9).collect(), 3);
    let mut d = Driver::new(
        space(9),
        objective(),
        Box::new(Halving::new(vec![], 3)),
        1000,
    );
    let mut rungs = Vec::new();
    while let Some(ask) = h.ask(&d.history, &d.space, 1000) {
        rungs.push((h.state().0, ask.config, ask.repeats));
        let v = (0..ask.repeats)
            .map(|_| vec![Some(ask.config as f64)])
            .collect();
        d.record(&ask, Answer::Measured(v), "test");
    }
    let rung0: Vec<usize> = rungs.iter().filter(|r| r.0 == 0).map(|r| r.1).collect();
    assert_eq!(rung0, (0..9).collect::<Vec<_>>(), "every candidate once");
    assert!(rungs.iter().filter(|r| r.0 == 0).all(|r| r.2 == 1));
    let rung1: Vec<(usize, usize)> = rungs
        .iter()
        .filter(|r| r.0 == 1)
        .map(|r| (r.1, r.2))
        .collect();
    assert_eq!(
        rung1,
        vec![(8, 2), (7, 2), (6, 2)],
        "the best third, +2 repeats each"
    );
    assert_eq!(h.state(), (1, &[8, 7, 6][..]));
    let reps: Vec<usize> = (0..9).map(|i| d.history.repeats(i)).collect();
    assert_eq!(reps, vec![1, 1, 1, 1, 1, 1, 3, 3, 3]);
    assert_eq!(d.runs_used(), 9 + 6);
}

#[test]
fn halving_runs_more_rungs_while_more_than_eta_finalists_remain() {
    // 18 candidates: 18 × 1, keep 6 → 3 repeats (+12), keep 2 → 5 repeats (+4) = 34 runs.
    let d = drive(
        Box::new(Halving::new((0..18).collect(), 3)),
        18,
        1000,
        &|i| i as f64,
    );
    assert_eq!(d.runs_used(), 34);
    assert_eq!(d.history.repeats(17), 5);
    assert_eq!(d.history.repeats(16), 5);
    assert_eq!(d.history.repeats(15), 3);
    assert_eq!(d.history.repeats(11), 1);
    assert_eq!(d.history.incumbent(), Some(17));
}

#[test]
fn halving_never_promotes_a_failed_candidate() {
    let mut h = Halving::new((0..6).collect(), 3);
    let mut d = Driver::new(
        space(6),
        objective(),
        Box::new(Halving::new(vec![], 3)),
        100,
    );
    while let Some(ask) = h.ask(&d.history, &d.space, 100) {
        let answer = if ask.config == 5 {
            Answer::Failed("engine did not start".into())
        } else {
            Answer::Measured(vec![vec![Some(ask.config as f64)]; ask.repeats])
        };
        d.record(&ask, answer, "test");
    }
    assert_eq!(
        h.state().1,
        &[4, 3],
        "5 failed and is out; the best two of the rest survive"
    );
    assert_eq!(d.history.repeats(5), 0);
}

#[test]
fn grid_measures_everything_three_times_in_plan_order() {
    let d = drive(build(StrategyKind::Grid, 4, 1, 3), 4, 100, &|i| i as f64);
    assert_eq!(d.runs_used(), 12);
    let order: Vec<usize> = d.trials.iter().map(|t| t.config).collect();
    assert_eq!(order, vec![0, 1, 2, 3]);
}

#[test]
fn random_tries_each_configuration_once_in_a_seeded_order_then_confirms_the_winner() {
    let a = drive(build(StrategyKind::Random, 6, 7, 3), 6, 100, &|i| i as f64);
    let b = drive(build(StrategyKind::Random, 6, 7, 3), 6, 100, &|i| i as f64);
    let order = |d: &Driver| d.trials.iter().map(|t| t.config).collect::<Vec<_>>();
    assert_eq!(order(&a), order(&b), "same seed, same order");
    assert_eq!(
        a.runs_used(),
        6 + 2,
        "all once, then the winner to 3 repeats"
    );
    assert_eq!(a.history.repeats(5), 3);
    assert!(a.trials.last().unwrap().reason.starts_with("finalist"));
}

#[test]
fn model_walks_to_the_optimum_of_a_smooth_ordinal_space_without_trying_everything() {
    // A single peak at 15 of 30 values: the neighbourhood search climbs to it.
    let d = drive(build(StrategyKind::Model, 30, 3, 3), 30, 40, &|i| {
        100.0 - (i as f64 - 15.0).abs()
    });
    assert_eq!(d.history.incumbent(), Some(15));
    assert!(d.history.repeats(15) >= FINAL_REPEATS);
    assert!(d.runs_used() <= 40);
    assert!(d.trials.iter().any(|t| t.reason.contains("main effects")));
}

#[test]
fn the_driver_keeps_room_to_confirm_the_winner_within_the_budget() {
    // Budget 5 on 10 configurations: the strategy gets 3 draws, the winner its 3 repeats.
    let d = drive(build(StrategyKind::Random, 10, 1, 3), 10, 5, &|i| i as f64);
    assert_eq!(d.runs_used(), 5);
    let best = d.history.incumbent().unwrap();
    assert_eq!(d.history.repeats(best), 3);
}

#[test]
fn auto_is_the_grid_when_it_fits_and_the_model_search_otherwise() {
    assert_eq!(StrategyKind::Auto.resolve(10, 30), StrategyKind::Grid);
    assert_eq!(StrategyKind::Auto.resolve(10, 29), StrategyKind::Model);
    assert_eq!(StrategyKind::Halving.resolve(10, 5), StrategyKind::Halving);
}
