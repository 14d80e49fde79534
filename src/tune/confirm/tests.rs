//! The confirmation on constructed values: the reserve, the finalist choice and how the budget
//! shrinks it, the seeded round orders (every finalist once per round, the same repeat index
//! for a round), and the paired verdict — a clearly best finalist wins alone even under a drift
//! that dwarfs its lead, identical finalists tie, and fewer than 3 rounds judge no tie set.

use super::*;
use crate::tune::driver::{Answer, Driver};
use crate::tune::strategy::tests::{objective, space};
use crate::tune::strategy::{build, StrategyKind};

/// A history where configuration i has the objective repeats `points[i]`.
fn history(points: &[&[f64]]) -> History {
    let mut h = History::new(objective(), points.len());
    for (i, reps) in points.iter().enumerate() {
        h.configs[i].repeats = reps.iter().map(|&v| vec![Some(v)]).collect();
    }
    h
}

/// An interleaved grid tune of `n` configurations to the end: configuration i in repeat index
/// r measures `value(i, r)` (a search trial's repeats are indices `have..have + repeats`).
fn drive(n: usize, budget: usize, seed: u64, value: &dyn Fn(usize, usize) -> f64) -> Driver {
    let strategy = build(StrategyKind::Grid, n, seed, 3);
    let mut d = Driver::new(space(n), objective(), strategy, budget).interleaved(seed);
    while let Some(ask) = d.next_trial() {
        let first = ask
            .round
            .map_or(d.history.repeats(ask.config), |r| r as usize);
        let v = (first..first + ask.repeats)
            .map(|r| vec![Some(value(ask.config, r))])
            .collect();
        d.record(&ask, Answer::Measured(v), "test");
        assert!(d.runs_used() <= budget, "the budget is never exceeded");
    }
    d
}

#[test]
fn the_reserve_keeps_room_for_two_finalists_where_the_budget_allows() {
    assert_eq!(
        reserve(16),
        6,
        "the default m3 budget: 2 finalists × 3 rounds"
    );
    assert_eq!(reserve(24), 6);
    assert_eq!(reserve(36), 9, "one more finalist per 12 runs of budget");
    assert_eq!(reserve(54), 12);
    assert_eq!(reserve(1000), 12, "at most 4 finalists");
    assert_eq!(reserve(7), 3, "never more than half the budget");
    assert_eq!(reserve(4), 3, "but room for the incumbent's 3 rounds");
    assert_eq!(reserve(3), 2, "and at least one run of search");
    assert_eq!(reserve(1), 0);
}

#[test]
fn finalists_are_the_incumbent_and_its_closest_challengers_best_first() {
    // 0 leads; 1 and 3 are within 10 %; 2 is far behind; 4 failed.
    let mut h = history(&[&[100.0], &[95.0], &[50.0], &[92.0], &[]]);
    h.configs[4].failure = Some("engine did not start".into());
    let plan = choose(&h, 0, 12);
    assert_eq!(plan.finalists, vec![0, 1, 3]);
    assert_eq!((plan.rounds, plan.note.clone()), (3, None));
    // Nobody close: the runner-up is still a finalist, so the winner is checked against it.
    let h = history(&[&[100.0], &[50.0], &[40.0]]);
    assert_eq!(choose(&h, 0, 12).finalists, vec![0, 1]);
    // A single measured configuration: the incumbent alone.
    let h = history(&[&[100.0], &[], &[]]);
    assert_eq!(choose(&h, 0, 12).finalists, vec![0]);
}

#[test]
fn the_budget_shrinks_the_finalists_and_then_the_rounds() {
    let h = history(&[&[100.0], &[99.0], &[98.0], &[97.0], &[96.0], &[95.0]]);
    let k = |left: usize| choose(&h, 0, left).finalists.len();
    assert_eq!(k(100), MAX_FINALISTS, "at most 4 finalists");
    assert_eq!(k(12), 4);
    assert_eq!(k(11), 3, "K × 3 rounds never exceeds the runs left");
    assert_eq!(k(6), 2);
    assert_eq!(k(5), 1);
    let plan = choose(&h, 0, 5);
    assert!(
        plan.note
            .as_deref()
            .unwrap()
            .contains("1 finalist(s) of the 4 wanted"),
        "{plan:?}"
    );
    let plan = choose(&h, 0, 2);
    assert_eq!((plan.finalists.len(), plan.rounds), (1, 2));
    assert!(plan
        .note
        .unwrap()
        .contains("2 confirmation round(s) instead of 3"));
}

#[test]
fn round_orders_are_seeded_and_run_every_finalist_once_per_round() {
    let plan = FinalPlan {
        finalists: vec![4, 1, 7, 2],
        rounds: 3,
        note: None,
    };
    let a = Confirmation::new(plan.clone(), 5, 42);
    let b = Confirmation::new(plan.clone(), 5, 42);
    assert_eq!(a.orders, b.orders, "deterministic from the seed");
    assert_eq!(a.seed, order_seed(42));
    for (r, order) in a.orders.iter().enumerate() {
        assert_eq!(order, &round_order(4, a.seed, r as u32));
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3], "every finalist once in round {r}");
    }
    assert_ne!(
        a.orders,
        Confirmation::new(plan, 5, 43).orders,
        "another seed, other orders"
    );
    let schedule = a.schedule(&space(8));
    assert_eq!(schedule.first_round, 5);
    assert_eq!(schedule.rounds.len(), 3);
    assert_eq!(
        schedule.rounds[0],
        a.orders[0]
            .iter()
            .map(|&p| format!("x{}", [4, 1, 7, 2][p]))
            .collect::<Vec<_>>()
    );
    // The driver hands the slots out round by round, each round in its recorded order, at the
    // same repeat index for every finalist of the round.
    let d = drive(4, 18, 9, &|i, _| 100.0 + i as f64);
    let c = d.confirm.as_ref().unwrap();
    let conf: Vec<(usize, u32)> = d
        .trials
        .iter()
        .filter_map(|t| t.round.map(|r| (t.config, r)))
        .collect();
    let want: Vec<(usize, u32)> = c
        .orders
        .iter()
        .enumerate()
        .flat_map(|(r, o)| {
            o.iter()
                .map(move |&p| (c.plan.finalists[p], (c.first_round + r) as u32))
        })
        .collect();
    assert_eq!(conf, want);
    assert!(d
        .trials
        .iter()
        .filter(|t| t.round.is_some())
        .all(|t| t.first_repeat == t.round.unwrap() as usize && t.repeats == 1));
}

#[test]
fn a_clearly_best_finalist_wins_alone_despite_a_drift_that_dwarfs_its_lead() {
    // Grid of 4 (3 repeats each = 12 runs), then 2 finalists × 3 rounds = 6 (budget 18). The
    // machine slows by 30 % per repeat index: back to back, the drift is far larger than the
    // gaps; within a round it hits both finalists alike, and 3 is 4.3 % ahead of 2 in every
    // round (beyond the 3 % threshold).
    let drift = |r: usize| 1000.0 * 0.7f64.powi(r as i32);
    let d = drive(4, 18, 1, &|i, r| drift(r) * (1.0 + 0.05 * i as f64));
    let c = d.confirm.as_ref().unwrap();
    assert_eq!(c.plan.finalists, vec![3, 2]);
    assert_eq!(c.first_round, 3, "past the grid's 3 repeats");
    let v = c.verdict().unwrap();
    assert_eq!(
        (v.best, v.tie_set.clone(), v.rounds_complete),
        (3, vec![3], 3)
    );
    assert_eq!(d.incumbent(), Some(3));
    assert_eq!(d.runs_used(), 18);
    let doc = c.doc(&d.history, &d.space);
    assert!(doc.single_winner);
    assert_eq!(
        doc.method,
        "paired over 3 interleaved confirmation round(s)"
    );
    assert!(doc.finalists[0].p_best.unwrap() > 0.99);
}

#[test]
fn identical_finalists_make_a_tie_set_of_all_and_no_single_winner() {
    // Budget 36: the reserve is 9 (3 finalists), so the grid (4 × 3 = 12 runs) runs to its end
    // and the 3 identical configurations are confirmed (0 is 10 times slower).
    let d = drive(4, 36, 2, &|i, _| if i == 0 { 10.0 } else { 100.0 });
    let c = d.confirm.as_ref().unwrap();
    assert_eq!(c.plan.finalists.len(), 3);
    let v = c.verdict().unwrap();
    let mut ties = v.tie_set.clone();
    ties.sort_unstable();
    assert_eq!(ties, vec![1, 2, 3]);
    let doc = c.doc(&d.history, &d.space);
    assert!(!doc.single_winner);
    let ps: Vec<f64> = doc.finalists.iter().map(|f| f.p_best.unwrap()).collect();
    assert!(ps.iter().all(|p| (p - 1.0 / 3.0).abs() < 1e-9), "{ps:?}");
}

#[test]
fn fewer_than_three_rounds_claim_no_tie_set_and_a_sequential_driver_never_confirms() {
    // Budget 3, reserve 2: one search run, then the incumbent alone for 2 rounds.
    let d = drive(3, 3, 4, &|i, _| 100.0 + i as f64);
    let c = d.confirm.as_ref().unwrap();
    assert_eq!((c.plan.finalists.len(), c.plan.rounds), (1, 2));
    assert_eq!(c.first_round, 1);
    let doc = c.doc(&d.history, &d.space);
    assert!(!doc.single_winner, "2 rounds cannot judge a tie set");
    assert_eq!(d.runs_used(), 3);
    // The sequential driver keeps today's behaviour: no confirmation, the winner topped up.
    let strategy = build(StrategyKind::Grid, 4, 1, 3);
    let mut s = Driver::new(space(4), objective(), strategy, 18);
    while let Some(ask) = s.next_trial() {
        assert!(ask.round.is_none());
        let v = vec![vec![Some(ask.config as f64)]; ask.repeats];
        s.record(&ask, Answer::Measured(v), "test");
    }
    assert!(s.confirm.is_none() && s.schedule().is_none());
    assert_eq!(s.runs_used(), 12);
}
