//! Cell expansion, cell identity and duration estimates.
//!
//! Cell order (deterministic; shards and resume rely on it): knob combinations in grid order
//! (knob names sorted; the first name varies slowest) or zip order, each crossed with the load
//! axis (concurrencies ascending as written, then request rates), load varying fastest.
//! Cell name: `<load label>__<KNOB without FERRUM_>=<value>__…` with knobs sorted, characters
//! outside `[A-Za-z0-9._=+-]` replaced by `-`; names longer than 100 characters are cut and get
//! `__<key prefix>` appended, as do names that would collide.
//! Cell key: `"sha256:"` + SHA-256 of the compact JSON
//! `{"v":1,"preset":…,"set":{…},"knobs":{…},"load":{…},"workload":{…},"seed":…}` (maps sorted),
//! so the same cell has the same key in every run and on every commit.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::settings::validate_load;
use super::table::value_text;
use super::{RunSettings, Shard, SweepError, SweepMode, SweepTable};
use crate::measure::LoadPoint;
use crate::workload::{hex, WorkloadSpec};

/// Rough output tokens/s at concurrency 32 used by `--dry-run` estimates when nothing better is
/// known (the CPU reference engine does roughly 1000–3000).
pub const DEFAULT_ASSUMED_OUTPUT_TOKENS_PER_S: f64 = 1500.0;
/// Rough engine start-up time per cell, s.
pub const DEFAULT_ENGINE_START_S: f64 = 2.0;
const MAX_NAME_LEN: usize = 100;
/// Default limit on the cells of one sweep (`--max-cells` raises it): a typo such as a
/// 1000×1000 grid should be an error, not hours of expansion.
pub const DEFAULT_MAX_CELLS: usize = 10_000;

/// One cell of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// Position in the plan (0-based); shards select by it.
    pub index: usize,
    /// Readable directory name, e.g. `c32__MOE_BATCH_THRESHOLD=4__PAGED_MAX_SEQS=32`.
    pub name: String,
    /// Stable identity across runs and commits (`sha256:…`).
    pub key: String,
    /// The sweep's knob assignment (canonical values), sorted by name.
    pub knobs: BTreeMap<String, String>,
    /// The cell's load.
    pub load: LoadPoint,
}

/// The expanded sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Preset name.
    pub preset: String,
    /// How knob lists combined.
    pub mode: SweepMode,
    /// `--set` knobs applied to every cell (part of every key).
    pub set: BTreeMap<String, String>,
    /// Swept knob names, sorted (the knob columns of `summary.csv`).
    pub knob_names: Vec<String>,
    /// Cells in plan order.
    pub cells: Vec<Cell>,
    /// Combinations dropped by `exclude` rules.
    pub excluded: usize,
    /// Values or cells listed twice that are the same after canonicalisation (e.g. `2` and
    /// `"02"`), one sentence each; each such cell runs once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicates: Vec<String>,
}

/// Expand `sweep` for `preset_name` under `run`. `set` are the `--set K=V` knobs applied to every
/// cell (canonical values; they enter the cell key). `knob_check(name, value)` validates a knob
/// and returns its canonical value (the config module's `canonical_value`); its error message is
/// quoted in [`SweepError::Knob`]. Resolution of whole cells (which may *skip* a cell) is the
/// caller's next step.
pub fn plan(
    preset_name: &str,
    run: &RunSettings,
    sweep: &SweepTable,
    set: &[(String, String)],
    knob_check: &dyn Fn(&str, &str) -> Result<String, String>,
) -> Result<Plan, SweepError> {
    plan_with_limit(preset_name, run, sweep, set, knob_check, DEFAULT_MAX_CELLS)
}

/// [`plan`] with an explicit cell limit: the cell count is computed from the list lengths
/// before anything is expanded, so an oversized sweep costs nothing.
pub fn plan_with_limit(
    preset_name: &str,
    run: &RunSettings,
    sweep: &SweepTable,
    set: &[(String, String)],
    knob_check: &dyn Fn(&str, &str) -> Result<String, String>,
    max_cells: usize,
) -> Result<Plan, SweepError> {
    let mode = sweep.mode.unwrap_or_default();
    let load_len = (sweep.concurrency.as_ref().map_or(0, Vec::len)
        + sweep.request_rate.as_ref().map_or(0, Vec::len))
    .max(1) as u128;
    let lens = sweep.knobs.iter().flatten().map(|(_, v)| v.len() as u128);
    let combos_upper = match mode {
        SweepMode::Grid => lens.fold(1u128, |acc, n| acc.saturating_mul(n)),
        SweepMode::Zip => lens.max().unwrap_or(1),
    };
    let upper = combos_upper.saturating_mul(load_len);
    if upper > max_cells as u128 {
        return Err(SweepError::TooManyCells {
            cells: upper,
            limit: max_cells,
        });
    }
    let mut duplicates = Vec::new();
    // Canonical knob lists, names sorted (BTreeMap order).
    let mut axes: Vec<(String, Vec<String>)> = Vec::new();
    for (name, values) in sweep.knobs.iter().flatten() {
        let mut canon = Vec::with_capacity(values.len());
        let mut written: Vec<String> = Vec::with_capacity(values.len());
        for v in values {
            let text = value_text(v);
            let c = knob_check(name, &text).map_err(|message| SweepError::Knob {
                knob: name.clone(),
                value: text.clone(),
                message,
            })?;
            // In a grid a repeated value only repeats cells; in a zip it may pair with
            // different values of other lists, so zips are deduplicated per cell below.
            let repeated = match mode {
                SweepMode::Grid => canon.iter().position(|x| x == &c),
                SweepMode::Zip => None,
            };
            if let Some(pos) = repeated {
                duplicates.push(format!(
                    "[sweep.knobs] {name} lists `{}` and `{text}`, the same value `{c}`: it runs once",
                    written[pos]
                ));
                continue;
            }
            canon.push(c);
            written.push(text);
        }
        if canon.is_empty() {
            return Err(SweepError::Knob {
                knob: name.clone(),
                value: "[]".into(),
                message: "empty list".into(),
            });
        }
        axes.push((name.clone(), canon));
    }
    let combos = combine(mode, &axes)?;
    let loads = load_axis(run, sweep)?;
    let rules = exclude_rules(sweep, &axes, knob_check)?;
    let set: BTreeMap<String, String> = set.iter().cloned().collect();

    let mut cells = Vec::new();
    let mut excluded = 0;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for knobs in &combos {
        for load in &loads {
            if rules.iter().any(|r| r.matches(knobs, load)) {
                excluded += 1;
                continue;
            }
            let key = cell_key(preset_name, &set, knobs, load, &run.workload, run.seed);
            if !seen.insert(key.clone()) {
                duplicates.push(format!(
                    "cell `{}` appears more than once in the sweep: it runs once",
                    cell_name(load, knobs)
                ));
                continue;
            }
            cells.push(Cell {
                index: cells.len(),
                name: cell_name(load, knobs),
                key,
                knobs: knobs.clone(),
                load: *load,
            });
        }
    }
    if cells.is_empty() {
        return Err(SweepError::Empty);
    }
    disambiguate(&mut cells);
    Ok(Plan {
        preset: preset_name.to_string(),
        mode,
        set,
        knob_names: axes.into_iter().map(|(n, _)| n).collect(),
        cells,
        excluded,
        duplicates,
    })
}

impl Plan {
    /// The cells of `shard` (all cells without one), in plan order.
    pub fn shard(&self, shard: Option<Shard>) -> Vec<&Cell> {
        self.cells
            .iter()
            .filter(|c| shard.is_none_or(|s| s.contains(c.index)))
            .collect()
    }

    /// Rough wall time of running `cells` under `run`: per cell an engine start plus, per repeat,
    /// the prefill and decode tokens of warmup + measured requests at `assumed_tok_s` (decode
    /// scaled by min(concurrency, 32)/32; prefill assumed 8× faster than decode) — for open loop
    /// at least the arrival span `requests/rate`. A planning aid, not a measurement.
    pub fn estimate(
        cells: &[&Cell],
        run: &RunSettings,
        assumed_tok_s: f64,
        engine_start_s: f64,
    ) -> Duration {
        let w = &run.workload;
        let n = (w.requests + w.warmup_requests) as f64;
        let total: f64 = cells
            .iter()
            .map(|c| {
                let scale = match c.load {
                    LoadPoint::Closed { concurrency } => (concurrency.min(32) as f64) / 32.0,
                    LoadPoint::Open { .. } => 1.0,
                };
                let decode = n * w.output_len as f64 / (assumed_tok_s * scale);
                let prefill = n * (w.input_len + w.prefix_len) as f64 / (assumed_tok_s * 8.0);
                let mut per_repeat = decode + prefill;
                if let LoadPoint::Open { request_rate, .. } = c.load {
                    per_repeat = per_repeat.max(w.requests as f64 / request_rate);
                }
                engine_start_s + run.repeats as f64 * per_repeat
            })
            .sum();
        // Bounded inputs keep this finite; saturate anyway rather than panic on a huge estimate.
        Duration::try_from_secs_f64(total.max(0.0)).unwrap_or(Duration::MAX)
    }
}

/// Combine knob lists by grid or zip into assignments.
fn combine(
    mode: SweepMode,
    axes: &[(String, Vec<String>)],
) -> Result<Vec<BTreeMap<String, String>>, SweepError> {
    let mut out = vec![BTreeMap::new()];
    match mode {
        SweepMode::Grid => {
            for (name, values) in axes {
                out = out
                    .into_iter()
                    .flat_map(|base| {
                        values.iter().map(move |v| {
                            let mut m = base.clone();
                            m.insert(name.clone(), v.clone());
                            m
                        })
                    })
                    .collect();
            }
        }
        SweepMode::Zip => {
            let len = axes.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
            for (name, values) in axes {
                if values.len() != len && values.len() != 1 {
                    return Err(SweepError::ZipLength {
                        knob: name.clone(),
                        len: values.len(),
                        expected: len,
                    });
                }
            }
            out = (0..len)
                .map(|i| {
                    axes.iter()
                        .map(|(n, v)| (n.clone(), v[if v.len() == 1 { 0 } else { i }].clone()))
                        .collect()
                })
                .collect();
        }
    }
    Ok(out)
}

/// Concurrencies then request rates; `[run]`'s load when the sweep has neither.
fn load_axis(run: &RunSettings, sweep: &SweepTable) -> Result<Vec<LoadPoint>, SweepError> {
    let mut loads: Vec<LoadPoint> = Vec::new();
    for &c in sweep.concurrency.iter().flatten() {
        loads.push(LoadPoint::Closed { concurrency: c });
    }
    for &r in sweep.request_rate.iter().flatten() {
        loads.push(LoadPoint::Open {
            request_rate: r,
            burstiness: run.burstiness,
        });
    }
    if loads.is_empty() {
        loads.push(run.load);
    }
    for l in &loads {
        validate_load(l)?;
    }
    Ok(loads)
}

/// A parsed exclusion rule.
struct Rule {
    knobs: BTreeMap<String, BTreeSet<String>>,
    concurrency: Option<Vec<usize>>,
    request_rate: Option<Vec<f64>>,
}

impl Rule {
    fn matches(&self, knobs: &BTreeMap<String, String>, load: &LoadPoint) -> bool {
        let knobs_match = self
            .knobs
            .iter()
            .all(|(k, vs)| knobs.get(k).is_some_and(|v| vs.contains(v)));
        let c_match = match (&self.concurrency, load) {
            (None, _) => true,
            (Some(cs), LoadPoint::Closed { concurrency }) => cs.contains(concurrency),
            (Some(_), LoadPoint::Open { .. }) => false,
        };
        let r_match = match (&self.request_rate, load) {
            (None, _) => true,
            (Some(rs), LoadPoint::Open { request_rate, .. }) => {
                rs.iter().any(|r| r == request_rate)
            }
            (Some(_), LoadPoint::Closed { .. }) => false,
        };
        knobs_match && c_match && r_match
    }
}

fn exclude_rules(
    sweep: &SweepTable,
    axes: &[(String, Vec<String>)],
    knob_check: &dyn Fn(&str, &str) -> Result<String, String>,
) -> Result<Vec<Rule>, SweepError> {
    let axis_names = || {
        let mut names: Vec<String> = vec!["concurrency".into(), "request_rate".into()];
        names.extend(axes.iter().map(|(n, _)| n.clone()));
        names.join(", ")
    };
    let mut rules = Vec::new();
    for (i, table) in sweep.exclude.iter().flatten().enumerate() {
        let mut rule = Rule {
            knobs: BTreeMap::new(),
            concurrency: None,
            request_rate: None,
        };
        for (key, value) in table {
            let values: Vec<&toml::Value> = match value {
                toml::Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            let texts: Vec<String> = values.iter().map(|v| value_text(v)).collect();
            let bad_number = |t: &String| SweepError::Knob {
                knob: key.clone(),
                value: t.clone(),
                message: format!("exclude rule {i}: expected a number"),
            };
            match key.as_str() {
                "concurrency" => {
                    let cs = texts
                        .iter()
                        .map(|t| t.parse::<usize>().map_err(|_| bad_number(t)))
                        .collect::<Result<_, _>>()?;
                    rule.concurrency = Some(cs);
                }
                "request_rate" => {
                    let rs = texts
                        .iter()
                        .map(|t| t.parse::<f64>().map_err(|_| bad_number(t)))
                        .collect::<Result<_, _>>()?;
                    rule.request_rate = Some(rs);
                }
                k if axes.iter().any(|(n, _)| n == k) => {
                    let mut set = BTreeSet::new();
                    for t in &texts {
                        set.insert(knob_check(k, t).map_err(|message| SweepError::Knob {
                            knob: k.to_string(),
                            value: t.clone(),
                            message,
                        })?);
                    }
                    rule.knobs.insert(k.to_string(), set);
                }
                _ => {
                    return Err(SweepError::ExcludeKey {
                        rule: i,
                        key: key.clone(),
                        axes: axis_names(),
                    })
                }
            }
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// The readable directory name of a cell (see the module doc).
fn cell_name(load: &LoadPoint, knobs: &BTreeMap<String, String>) -> String {
    let mut parts = vec![load.label()];
    for (k, v) in knobs {
        parts.push(format!("{}={}", k.strip_prefix("FERRUM_").unwrap_or(k), v));
    }
    parts
        .join("__")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._=+-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Cut over-long names and make colliding names unique by appending a key prefix.
fn disambiguate(cells: &mut [Cell]) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for c in cells.iter() {
        *counts.entry(c.name.clone()).or_default() += 1;
    }
    for c in cells.iter_mut() {
        let short = &c.key["sha256:".len().."sha256:".len() + 12];
        if c.name.len() > MAX_NAME_LEN {
            c.name = format!("{}__{short}", &c.name[..MAX_NAME_LEN]);
        } else if counts[&c.name] > 1 {
            c.name = format!("{}__{short}", c.name);
        }
    }
}

/// The stable key of a cell (see the module doc for the hashed document).
pub fn cell_key(
    preset: &str,
    set: &BTreeMap<String, String>,
    knobs: &BTreeMap<String, String>,
    load: &LoadPoint,
    workload: &WorkloadSpec,
    seed: u64,
) -> String {
    let doc = serde_json::json!({
        "v": 1,
        "preset": preset,
        "set": set,
        "knobs": knobs,
        "load": load,
        "workload": workload,
        "seed": seed,
    });
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    format!("sha256:{}", hex(&Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::RunOverrides;

    /// Accepts positive integers for the two test knobs, canonicalising `"04"` to `"4"`.
    fn check(name: &str, value: &str) -> Result<String, String> {
        if !name.starts_with("FERRUM_") {
            return Err(format!("unknown knob `{name}`"));
        }
        value
            .parse::<u64>()
            .map(|v| v.to_string())
            .map_err(|_| "expected a positive integer".to_string())
    }

    fn m3_sweep() -> SweepTable {
        SweepTable::from_file_text(
            "concurrency = [32]\n[knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [1, 2, 4, 8, 16, 64]\nFERRUM_PAGED_MAX_SEQS = [8, 16, \"32\"]\n",
        )
        .unwrap()
    }

    fn run() -> RunSettings {
        RunSettings::resolve(None, &RunOverrides::default()).unwrap()
    }

    #[test]
    fn grid_expands_in_documented_order_with_readable_names() {
        let p = plan("m3", &run(), &m3_sweep(), &[], &check).unwrap();
        assert_eq!(p.cells.len(), 18);
        assert_eq!(
            p.cells[0].name,
            "c32__MOE_BATCH_THRESHOLD=1__PAGED_MAX_SEQS=8"
        );
        assert_eq!(
            p.cells[1].name,
            "c32__MOE_BATCH_THRESHOLD=1__PAGED_MAX_SEQS=16"
        );
        assert_eq!(
            p.cells[8].name,
            "c32__MOE_BATCH_THRESHOLD=4__PAGED_MAX_SEQS=32"
        );
        assert_eq!(
            p.knob_names,
            vec!["FERRUM_MOE_BATCH_THRESHOLD", "FERRUM_PAGED_MAX_SEQS"]
        );
        let keys: BTreeSet<&String> = p.cells.iter().map(|c| &c.key).collect();
        assert_eq!(keys.len(), 18);
        assert!(p.cells.iter().enumerate().all(|(i, c)| c.index == i));
    }

    #[test]
    fn keys_are_stable_and_depend_on_every_input() {
        let a = plan("m3", &run(), &m3_sweep(), &[], &check).unwrap();
        let b = plan("m3", &run(), &m3_sweep(), &[], &check).unwrap();
        assert_eq!(a, b);
        let other_preset = plan("m4", &run(), &m3_sweep(), &[], &check).unwrap();
        assert_ne!(a.cells[0].key, other_preset.cells[0].key);
        let set = plan(
            "m3",
            &run(),
            &m3_sweep(),
            &[("FERRUM_X".into(), "1".into())],
            &check,
        )
        .unwrap();
        assert_ne!(a.cells[0].key, set.cells[0].key);
        let mut r = run();
        r.workload.requests += 1;
        assert_ne!(
            a.cells[0].key,
            plan("m3", &r, &m3_sweep(), &[], &check).unwrap().cells[0].key
        );
        r = run();
        r.seed += 1;
        assert_ne!(
            a.cells[0].key,
            plan("m3", &r, &m3_sweep(), &[], &check).unwrap().cells[0].key
        );
    }

    #[test]
    fn zip_exclude_and_load_axes() {
        let t = SweepTable::from_file_text(
            "mode = \"zip\"\nconcurrency = [4]\nrequest_rate = [2.5]\n[knobs]\nFERRUM_A = [1, 2, 3]\nFERRUM_B = [7]\n[[exclude]]\nFERRUM_A = [\"02\", 3]\nrequest_rate = 2.5\n",
        )
        .unwrap();
        let p = plan("m3", &run(), &t, &[], &check).unwrap();
        let names: Vec<&str> = p.cells.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "c4__A=1__B=7",
                "r2.5__A=1__B=7",
                "c4__A=2__B=7",
                "c4__A=3__B=7"
            ]
        );
        assert_eq!(p.excluded, 2);
        let bad_zip = SweepTable::from_file_text(
            "mode = \"zip\"\n[knobs]\nFERRUM_A = [1, 2]\nFERRUM_B = [1, 2, 3]\n",
        )
        .unwrap();
        assert!(matches!(
            plan("m3", &run(), &bad_zip, &[], &check),
            Err(SweepError::ZipLength { .. })
        ));
        let bad_rule =
            SweepTable::from_file_text("[knobs]\nFERRUM_A = [1]\n[[exclude]]\nFERRUM_C = 1\n")
                .unwrap();
        let err = plan("m3", &run(), &bad_rule, &[], &check)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`FERRUM_C`") && err.contains("FERRUM_A"),
            "{err}"
        );
        let all_out =
            SweepTable::from_file_text("[knobs]\nFERRUM_A = [1]\n[[exclude]]\nFERRUM_A = 1\n")
                .unwrap();
        assert_eq!(
            plan("m3", &run(), &all_out, &[], &check),
            Err(SweepError::Empty)
        );
        let bad_knob = SweepTable::from_file_text("[knobs]\nFERRUM_A = [\"many\"]\n").unwrap();
        let err = plan("m3", &run(), &bad_knob, &[], &check)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid sweep value `many` for `FERRUM_A`: expected a positive integer"
        );
        // No axes at all: one cell at [run]'s load.
        let p = plan("m3", &run(), &SweepTable::default(), &[], &check).unwrap();
        assert_eq!(p.cells.len(), 1);
        assert_eq!(p.cells[0].name, "c32");
    }

    #[test]
    fn shards_split_the_plan_and_estimates_scale() {
        let p = plan("m3", &run(), &m3_sweep(), &[], &check).unwrap();
        let s1 = p.shard(Some(Shard { index: 1, count: 2 }));
        let s2 = p.shard(Some(Shard { index: 2, count: 2 }));
        assert_eq!(s1.len() + s2.len(), 18);
        assert!(s1.iter().all(|c| !s2.iter().any(|d| d.key == c.key)));
        let all = p.shard(None);
        // 18 cells × (2 s + 3 × (36·128/1500 + 36·256/12000)) ≈ 18 × 13.5 s.
        let est = Plan::estimate(&all, &run(), 1500.0, 2.0).as_secs_f64();
        let per_repeat = 36.0 * 128.0 / 1500.0 + 36.0 * 256.0 / 12000.0;
        assert!(
            (est - 18.0 * (2.0 + 3.0 * per_repeat)).abs() < 1e-6,
            "{est}"
        );
        assert!(
            Plan::estimate(&s1, &run(), 1500.0, 2.0) < Plan::estimate(&all, &run(), 1500.0, 2.0)
        );
    }

    #[test]
    fn long_and_colliding_names_get_key_suffixes() {
        let t = SweepTable::from_file_text("[knobs]\nFERRUM_A = [\"x/y\", \"x?y\"]\n").unwrap();
        let p = plan("m3", &run(), &t, &[], &|_, v| Ok(v.to_string())).unwrap();
        assert!(p.cells[0].name.starts_with("c32__A=x-y__"));
        assert_ne!(p.cells[0].name, p.cells[1].name);
        let long = format!("[knobs]\nFERRUM_A = [\"{}\"]\n", "v".repeat(150));
        let p = plan(
            "m3",
            &run(),
            &SweepTable::from_file_text(&long).unwrap(),
            &[],
            &|_, v| Ok(v.to_string()),
        )
        .unwrap();
        assert_eq!(p.cells[0].name.len(), MAX_NAME_LEN + 2 + 12);
    }
}
