//! Whose numbers these are. The reference engine is ferrum-bench's own model of Ferrum's serving
//! mechanics; measured side by side with real `ferrum serve` 0.7.7 on a CPU (README, "Twin
//! check") it runs several times faster and orders knob settings differently. Every place that
//! shows its throughput or latency (the terminal table, `summary.md`, the HTML report header,
//! `--help`) says so with the words below, so nobody reads them as Ferrum's.

/// One line under/over a table of reference-engine numbers.
pub const REFERENCE_NOTE: &str = "engine: reference: ferrum-bench's model of Ferrum's serving mechanics, not Ferrum. Its numbers show how knobs change the engine's work; they are not Ferrum's speed (README: \"Reference engine\", \"Twin check\").";

/// The note to print for results of engine `kind`: the reference engine's label, `None` for a
/// real engine (whose kind and version the outputs already name).
pub fn engine_note(kind: &str) -> Option<&'static str> {
    (kind == "reference").then_some(REFERENCE_NOTE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reference_engine_is_labelled() {
        assert!(engine_note("reference").unwrap().contains("not Ferrum"));
        for kind in ["server", "endpoint", "fake"] {
            assert_eq!(engine_note(kind), None, "{kind}");
        }
    }
}
