//! The data behind each chart, computed without any drawing so it can be unit-tested: the
//! Pareto front, downsampled CDF points, the heatmap grid, tie groups of the ranking and the
//! effective-config difference. (Step timelines live in [`super::timeline`].)

use std::collections::BTreeMap;

/// Indices of the points on the Pareto front when `x` (a latency) is minimised and `y` (a
/// throughput) maximised, ordered by ascending `x` (then descending `y`, then index). A point is
/// on the front when no other point is at least as good on both axes and strictly better on one;
/// equal points are all on it. Non-finite points are never on it.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let finite = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| finite(&points[i]))
        .filter(|&i| {
            let (x, y) = points[i];
            !points
                .iter()
                .enumerate()
                .any(|(j, q)| j != i && finite(q) && q.0 <= x && q.1 >= y && (q.0 < x || q.1 > y))
        })
        .collect();
    front.sort_by(|&a, &b| {
        let (pa, pb) = (points[a], points[b]);
        pa.0.total_cmp(&pb.0)
            .then(pb.1.total_cmp(&pa.1))
            .then(a.cmp(&b))
    });
    front
}

/// Points `(value, fraction ≤ value)` of the empirical CDF of `samples` (non-finite samples
/// dropped). With at most `max_points` samples every point is kept: sorted value `i` has fraction
/// `(i+1)/n`. With more, the points of ranks `round(i·(n−1)/(max_points−1))`,
/// `i = 0..max_points`, are kept: an exact subset of the empirical CDF that always contains the
/// minimum and the maximum, so percentiles read off the chart are the data's, never interpolated.
pub fn cdf_points(samples: &[f64], max_points: usize) -> Vec<(f64, f64)> {
    let mut xs: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let point = |rank: usize| (xs[rank], (rank + 1) as f64 / n as f64);
    if n == 0 || max_points == 0 {
        return Vec::new();
    }
    if n <= max_points || max_points == 1 {
        if max_points == 1 {
            return vec![point(n - 1)];
        }
        return (0..n).map(point).collect();
    }
    let mut ranks: Vec<usize> = (0..max_points)
        .map(|i| ((i as f64) * (n - 1) as f64 / (max_points - 1) as f64).round() as usize)
        .collect();
    ranks.dedup();
    ranks.into_iter().map(point).collect()
}

/// A two-dimensional grid of cells for the heatmap: the two swept dimensions with more than one
/// value, each value in the order the sweep lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Column dimension (the one with more values; the first on a tie).
    pub x_name: String,
    /// Column values.
    pub x_values: Vec<String>,
    /// Row dimension.
    pub y_name: String,
    /// Row values.
    pub y_values: Vec<String>,
    /// `cells[row][col]`: index into the input cells, if a cell has those coordinates.
    pub cells: Vec<Vec<Option<usize>>>,
}

/// The heatmap grid of cells given by their coordinates (dimension name → value, in plan order),
/// or `None` unless exactly two dimensions take more than one value and no two cells share a
/// position.
pub fn heatmap_grid(coords: &[Vec<(String, String)>]) -> Option<Grid> {
    // Dimension order: first appearance; value order: first appearance (= plan order).
    let mut dims: Vec<(String, Vec<String>)> = Vec::new();
    for c in coords {
        for (name, value) in c {
            let pos = match dims.iter().position(|(d, _)| d == name) {
                Some(p) => p,
                None => {
                    dims.push((name.clone(), Vec::new()));
                    dims.len() - 1
                }
            };
            if !dims[pos].1.contains(value) {
                dims[pos].1.push(value.clone());
            }
        }
    }
    let varying: Vec<&(String, Vec<String>)> = dims.iter().filter(|(_, v)| v.len() > 1).collect();
    let [a, b] = varying.as_slice() else {
        return None;
    };
    let (x, y) = if b.1.len() > a.1.len() {
        (*b, *a)
    } else {
        (*a, *b)
    };
    let mut cells = vec![vec![None; x.1.len()]; y.1.len()];
    for (i, c) in coords.iter().enumerate() {
        let value = |dim: &str| c.iter().find(|(d, _)| d == dim).map(|(_, v)| v);
        let (Some(xv), Some(yv)) = (value(&x.0), value(&y.0)) else {
            return None;
        };
        let col = x.1.iter().position(|v| v == xv)?;
        let row = y.1.iter().position(|v| v == yv)?;
        if cells[row][col].replace(i).is_some() {
            return None;
        }
    }
    Some(Grid {
        x_name: x.0.clone(),
        x_values: x.1.clone(),
        y_name: y.0.clone(),
        y_values: y.1.clone(),
        cells,
    })
}

/// Tie groups of a ranking: `ranked[i] = (mean, 95 % CI half-width)` in rank order (best first).
/// Returns, for each position, the position of its group's first cell. A group starts at a cell
/// and holds every following cell whose interval overlaps the first cell's interval; their order
/// is not resolved by the data. Cells without an interval (fewer than 3 repeats) are never tied.
pub fn tie_groups(ranked: &[(f64, Option<f64>)]) -> Vec<usize> {
    let mut out = Vec::with_capacity(ranked.len());
    let mut leader: Option<usize> = None;
    for (i, &(mean, half)) in ranked.iter().enumerate() {
        let tied = match (leader, half) {
            (Some(l), Some(h)) => match ranked[l].1 {
                Some(lh) => {
                    let (lo, hi) = (mean - h, mean + h);
                    let (llo, lhi) = (ranked[l].0 - lh, ranked[l].0 + lh);
                    lo <= lhi && llo <= hi
                }
                None => false,
            },
            _ => false,
        };
        if !tied {
            leader = Some(i);
        }
        out.push(leader.unwrap_or(i));
    }
    out
}

/// Flatten a JSON document into `path → compact value` leaves. Arrays of objects that carry a
/// `key`, `selection`, `value` or `name` string are indexed by it (`entries[FERRUM_X].source`),
/// so that two documents line up by meaning, not by position; arrays of scalars are one leaf.
pub fn flatten_json(value: &serde_json::Value) -> BTreeMap<String, String> {
    fn walk(path: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        use serde_json::Value;
        let join = |seg: &str| {
            if path.is_empty() {
                seg.to_string()
            } else {
                format!("{path}.{seg}")
            }
        };
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    walk(&join(k), child, out);
                }
            }
            Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
                for (i, item) in items.iter().enumerate() {
                    let id = ["key", "selection", "value", "name"]
                        .iter()
                        .find_map(|f| item.get(f).and_then(|x| x.as_str()))
                        .map(str::to_string)
                        .unwrap_or_else(|| i.to_string());
                    walk(&format!("{path}[{id}]"), item, out);
                }
            }
            other => {
                out.insert(path.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

/// Leaves that differ between two documents: `(path, value in a, value in b)`, `None` where a
/// side lacks the path; in path order.
pub fn json_diff(
    a: &serde_json::Value,
    b: &serde_json::Value,
) -> Vec<(String, Option<String>, Option<String>)> {
    let (fa, fb) = (flatten_json(a), flatten_json(b));
    let mut paths: Vec<&String> = fa.keys().chain(fb.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| fa.get(*p) != fb.get(*p))
        .map(|p| (p.clone(), fa.get(p).cloned(), fb.get(p).cloned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pareto_front_keeps_non_dominated_points_in_latency_order() {
        // (latency, throughput)
        let pts = [
            (10.0, 100.0), // 0: front (fastest)
            (20.0, 300.0), // 1: front
            (15.0, 90.0),  // 2: dominated by 0
            (30.0, 300.0), // 3: dominated by 1 (same y, slower)
            (40.0, 500.0), // 4: front (best throughput)
            (20.0, 300.0), // 5: equal to 1: also on the front
            (f64::NAN, 1e9),
        ];
        assert_eq!(pareto_front(&pts), vec![0, 1, 5, 4]);
        assert_eq!(pareto_front(&[]), Vec::<usize>::new());
        assert_eq!(pareto_front(&[(1.0, 1.0)]), vec![0]);
    }

    #[test]
    fn cdf_points_are_exact_empirical_points() {
        assert_eq!(
            cdf_points(&[3.0, 1.0, 2.0, f64::NAN], 10),
            vec![(1.0, 1.0 / 3.0), (2.0, 2.0 / 3.0), (3.0, 1.0)]
        );
        assert!(cdf_points(&[], 10).is_empty());
        let xs: Vec<f64> = (0..1000).map(|i| (999 - i) as f64).collect();
        let pts = cdf_points(&xs, 101);
        assert_eq!(pts.len(), 101);
        assert_eq!(pts[0], (0.0, 0.001));
        assert_eq!(*pts.last().unwrap(), (999.0, 1.0));
        // Rank round(50·999/100) = 500 (round half away from zero of 499.5) → value 500.
        assert_eq!(pts[50], (500.0, 0.501));
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        assert_eq!(cdf_points(&[5.0, 4.0], 1), vec![(5.0, 1.0)]);
    }

    fn coords(pairs: &[(&str, &str, &str, &str)]) -> Vec<Vec<(String, String)>> {
        pairs
            .iter()
            .map(|(a, av, b, bv)| {
                vec![
                    (a.to_string(), av.to_string()),
                    (b.to_string(), bv.to_string()),
                    ("load".to_string(), "c32".to_string()),
                ]
            })
            .collect()
    }

    #[test]
    fn heatmap_grid_places_cells_and_puts_the_longer_dimension_on_columns() {
        let c = coords(&[
            ("T", "1", "S", "8"),
            ("T", "1", "S", "16"),
            ("T", "4", "S", "8"),
            ("T", "4", "S", "16"),
            ("T", "64", "S", "8"),
        ]);
        let g = heatmap_grid(&c).unwrap();
        assert_eq!((g.x_name.as_str(), g.y_name.as_str()), ("T", "S"));
        assert_eq!(g.x_values, ["1", "4", "64"]);
        assert_eq!(g.y_values, ["8", "16"]);
        assert_eq!(
            g.cells,
            vec![
                vec![Some(0), Some(2), Some(4)],
                vec![Some(1), Some(3), None]
            ]
        );
        // One varying dimension: no heatmap.
        assert_eq!(
            heatmap_grid(&coords(&[("T", "1", "S", "8"), ("T", "4", "S", "8")])),
            None
        );
        // Two cells at one position (a third varying dimension hidden): no heatmap.
        let mut dup = coords(&[
            ("T", "1", "S", "8"),
            ("T", "4", "S", "8"),
            ("T", "1", "S", "16"),
        ]);
        dup.push(dup[0].clone());
        assert_eq!(heatmap_grid(&dup), None);
    }

    #[test]
    fn ties_group_overlapping_intervals_behind_the_first_cell() {
        let ranked = [
            (100.0, Some(5.0)), // [95,105]
            (97.0, Some(1.0)),  // [96,98] overlaps the leader
            (90.0, Some(4.0)),  // [86,94] does not: new group
            (88.0, Some(3.0)),  // overlaps 90's
            (50.0, None),       // no interval: alone
            (49.0, Some(9.0)),  // leader 50 has no interval: alone
        ];
        assert_eq!(tie_groups(&ranked), vec![0, 0, 2, 2, 4, 5]);
    }

    #[test]
    fn config_diff_lines_up_entries_by_key() {
        let a = json!({"env_hash":"sha256:a","selected_max_sequences":8,
            "entries":[{"key":"FERRUM_A","effective_value":"1"},{"key":"FERRUM_B","effective_value":"8"}],
            "affects":["x","y"]});
        let b = json!({"env_hash":"sha256:b","selected_max_sequences":32,
            "entries":[{"key":"FERRUM_B","effective_value":"32"},{"key":"FERRUM_A","effective_value":"1"}],
            "affects":["x","y"], "new": true});
        let d = json_diff(&a, &b);
        let paths: Vec<&str> = d.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "entries[FERRUM_B].effective_value",
                "env_hash",
                "new",
                "selected_max_sequences"
            ]
        );
        assert_eq!(d[0].1.as_deref(), Some("\"8\""));
        assert_eq!(d[0].2.as_deref(), Some("\"32\""));
        assert_eq!(d[2], ("new".to_string(), None, Some("true".to_string())));
    }
}
