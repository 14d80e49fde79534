//! # ferrum-bench
//!
//! Benchmark and autotune the Ferrum LLM inference engine. A *preset* (model + hardware +
//! workload + engine) is resolved into Ferrum's effective configuration exactly as Ferrum's own
//! resolver does it, the full engine runs a seeded workload, and every cell of a knob sweep gets
//! its effective configuration, decision trace, per-request records and statistics written down.
//!
//! Modules by responsibility:
//! - [`cli`]: the command line (the only module that knows clap);
//! - [`config`]: knob registry, runtime snapshot, capabilities, resolver, effective config;
//! - [`preset`]: TOML presets;
//! - [`engine`]: the `Engine` trait, the engine factory, the in-process reference engine and the
//!   HTTP engines (a server launched per cell, an already-running endpoint);
//! - [`mock_server`]: the OpenAI-compatible streaming mock behind `ferrum-bench mock-server`;
//! - [`error`]: the top-level error and exit codes;
//! - [`metric`]: the one list of metrics (name, unit, direction, accessor);
//! - [`compare`], [`diff`], [`export`]: regression verdicts, config diffs, exporters.

pub mod cli;
pub mod compare;
pub mod config;
pub mod diff;
pub mod engine;
pub mod error;
pub mod execute;
pub mod export;
pub mod hardware;
pub mod measure;
pub mod metric;
pub mod mock_server;
pub mod noise;
pub mod orchestrate;
pub mod preset;
pub mod report;
pub mod results;
pub mod stats;
pub mod sweep;
pub mod tune;
pub mod workload;
