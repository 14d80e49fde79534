//! Steady-state throughput of a closed-loop repeat: output tokens per second over the window in
//! which all C slots are busy, beside the whole-run figure (first arrival to last completion).
//!
//! A closed loop at concurrency C over N requests fills its C slots at the start (ramp-up: until
//! the C-th request has arrived), keeps them full while completions are replaced by new
//! requests, and drains after the last request was sent: from the (N−C+1)-th completion on,
//! fewer than C requests are in flight and the engine runs a shrinking batch. The window is
//! therefore **[arrival of the C-th request, (N−C+1)-th completion]** (order statistics, so a
//! client that replaces a finished request a few µs late does not split the window), and its
//! throughput counts the output tokens of successful requests emitted inside it. With N = C (the
//! default m3 workload: 32 requests at c=32) the window ends at the first completion: it keeps
//! the engine's first full-batch wave and drops the drain tail, which is where a cell with few
//! admitted sequences (`FERRUM_PAGED_MAX_SEQS` < C) and one with many differ most.
//!
//! The whole-run figure still **ranks by default** (it is what a user's batch job experiences,
//! and every peer tool reports it); the steady figure is reported beside it. Open-loop runs have
//! no fixed slot count and get no steady figure.

use crate::engine::RequestTrace;

/// The steady window of one repeat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SteadyState {
    /// Output tokens per second inside the window.
    pub output_tokens_per_s: f64,
    /// Window length, s.
    pub window_s: f64,
}

/// The steady-state figure of a closed-loop repeat at `concurrency` with these traces; `None`
/// when the window is empty (fewer requests than C, or it closes before it opens) or holds no
/// token.
pub fn steady_state(traces: &[RequestTrace], concurrency: usize) -> Option<SteadyState> {
    let n = traces.len();
    if concurrency == 0 || n < concurrency {
        return None;
    }
    let mut arrivals: Vec<u64> = traces.iter().map(|t| t.arrival_ns).collect();
    let mut finishes: Vec<u64> = traces.iter().map(|t| t.finished_ns).collect();
    arrivals.sort_unstable();
    finishes.sort_unstable();
    let start = arrivals[concurrency - 1];
    let end = finishes[n - concurrency];
    if end <= start {
        return None;
    }
    let tokens = traces
        .iter()
        .filter(|t| t.status.is_ok())
        .flat_map(|t| t.token_ns.iter())
        .filter(|&&ns| ns > start && ns <= end)
        .count();
    if tokens == 0 {
        return None;
    }
    let window_s = (end - start) as f64 / 1e9;
    Some(SteadyState {
        output_tokens_per_s: tokens as f64 / window_s,
        window_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RequestStatus;

    const MS: u64 = 1_000_000;

    fn trace(id: u64, arrival: u64, tokens: &[u64]) -> RequestTrace {
        RequestTrace {
            id,
            status: RequestStatus::Ok,
            prompt_tokens: 4,
            arrival_ns: arrival * MS,
            admitted_ns: Some(arrival * MS),
            token_ns: tokens.iter().map(|t| t * MS).collect(),
            finished_ns: tokens.last().copied().unwrap_or(arrival) * MS,
            output_ids: vec![],
        }
    }

    #[test]
    fn window_excludes_the_drain_by_hand() {
        // C = 2, N = 3. Requests 0 and 1 arrive at 0; request 0 ends at 40 and request 2
        // replaces it at 40; request 1 ends at 50 (the (N−C+1) = 2nd completion): the window is
        // [0, 50] ms. Request 2 then runs alone until 100 (the drain).
        let traces = [
            trace(0, 0, &[10, 20, 30, 40]),
            trace(1, 0, &[20, 30, 40, 50]),
            trace(2, 40, &[60, 80, 90, 100]),
        ];
        let s = steady_state(&traces, 2).unwrap();
        assert!((s.window_s - 0.050).abs() < 1e-12);
        // Tokens in (0, 50]: 4 + 4 + 0 = 8 → 160 tok/s; the whole run is 12 tokens / 0.1 s.
        assert!((s.output_tokens_per_s - 160.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn n_equal_to_c_ends_at_the_first_completion_and_failures_do_not_count() {
        let mut failed = trace(1, 0, &[5]);
        failed.status = RequestStatus::Failed { reason: "x".into() };
        failed.finished_ns = 30 * MS;
        let traces = [trace(0, 0, &[10, 20]), failed];
        // Finishes sorted: 20, 30; N − C + 1 = 1st completion at 20 ms; 2 tokens of request 0.
        let s = steady_state(&traces, 2).unwrap();
        assert!((s.window_s - 0.020).abs() < 1e-12);
        assert!((s.output_tokens_per_s - 100.0).abs() < 1e-9);
    }

    #[test]
    fn no_window_no_figure() {
        let traces = [trace(0, 0, &[10])];
        assert!(
            steady_state(&traces, 2).is_none(),
            "fewer requests than slots"
        );
        assert!(steady_state(&traces, 0).is_none());
        let empty = [trace(0, 0, &[]), trace(1, 0, &[])];
        assert!(steady_state(&empty, 1).is_none());
    }
}
