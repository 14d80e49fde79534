//! `--time-budget` durations and `--shard I/N` selection.

use std::time::Duration;

use super::SweepError;

/// Longest time budget: 30 days.
const MAX_BUDGET_S: f64 = 30.0 * 86_400.0;
/// Most shards.
pub const MAX_SHARDS: usize = 1_000_000;

/// Parse `90s`, `10m`, `1h`, `1.5h` or a bare number of seconds; from 1 s to 30 days.
pub fn parse_duration(text: &str) -> Result<Duration, SweepError> {
    let t = text.trim();
    let bad = || SweepError::Duration(text.to_string());
    let (num, mult) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1.0),
        Some((i, 'm')) => (&t[..i], 60.0),
        Some((i, 'h')) => (&t[..i], 3600.0),
        Some(_) => (t, 1.0),
        None => return Err(bad()),
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    let secs = v * mult;
    // At most 30 days: a bound every typed number has, and Duration conversion cannot fail.
    if !(1.0..=MAX_BUDGET_S).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// One of N shards (1-based index). Cell i of the plan (0-based, plan order) belongs to shard
/// `i mod N + 1`: round robin keeps shards balanced, and the plan order is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// 1-based shard index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Parse `I/N`.
    pub fn parse(text: &str) -> Result<Shard, SweepError> {
        let bad = || SweepError::Shard(text.to_string());
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count || count > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether plan cell `cell_index` (0-based) belongs to this shard.
    pub fn contains(&self, cell_index: usize) -> bool {
        cell_index % self.count + 1 == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        for bad in [
            "",
            "h",
            "-5s",
            "10d",
            "ten minutes",
            "0s",
            "0.1s",
            "721h",
            "1e300h",
            "NaNs",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_partition_the_cells() {
        let shards: Vec<Shard> = (1..=3)
            .map(|i| Shard::parse(&format!("{i}/3")).unwrap())
            .collect();
        for cell in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.contains(cell)).count(), 1);
        }
        assert!(Shard::parse("0/2").is_err());
        assert!(Shard::parse("3/2").is_err());
        assert!(Shard::parse("1-2").is_err());
    }
}
