//! The search space: the valid cells of the sweep (the resolver's rejections and `exclude` rules
//! removed before anything runs), each with ordinal coordinates — the position of its value in
//! every knob's ordered list (and of its load) — so a model-based strategy can step to
//! neighbouring values.

use crate::sweep::Cell;

/// The valid configurations, in plan order.
#[derive(Debug, Clone)]
pub struct Space {
    /// The cells.
    pub cells: Vec<Cell>,
    /// Per cell, the index of its value along each axis.
    pub coords: Vec<Vec<usize>>,
    /// Per axis, how many values it has.
    pub axis_len: Vec<usize>,
}

impl Space {
    /// The space of `cells`. Axes are the cells' knob names plus the load; values are ordered as
    /// they first appear in plan order (the order of the sweep's lists).
    pub fn new(cells: Vec<Cell>) -> Space {
        let names: Vec<String> = {
            let mut n: Vec<String> = cells.iter().flat_map(|c| c.knobs.keys().cloned()).collect();
            n.sort();
            n.dedup();
            n
        };
        let mut values: Vec<Vec<String>> = vec![Vec::new(); names.len() + 1];
        let value_of = |c: &Cell, axis: usize| -> String {
            match names.get(axis) {
                Some(n) => c.knobs.get(n).cloned().unwrap_or_default(),
                None => c.load.label(),
            }
        };
        for c in &cells {
            for (axis, list) in values.iter_mut().enumerate() {
                let v = value_of(c, axis);
                if !list.contains(&v) {
                    list.push(v);
                }
            }
        }
        let coords = cells
            .iter()
            .map(|c| {
                (0..values.len())
                    .map(|axis| {
                        let v = value_of(c, axis);
                        values[axis].iter().position(|x| *x == v).unwrap_or(0)
                    })
                    .collect()
            })
            .collect();
        Space {
            axis_len: values.iter().map(Vec::len).collect(),
            cells,
            coords,
        }
    }

    /// Number of configurations.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether the space is empty.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Manhattan distance between two configurations' ordinal coordinates.
    pub fn distance(&self, a: usize, b: usize) -> usize {
        self.coords[a]
            .iter()
            .zip(&self.coords[b])
            .map(|(x, y)| x.abs_diff(*y))
            .sum()
    }

    /// The configuration at `name`, if any.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.cells.iter().position(|c| c.name == name)
    }
}
