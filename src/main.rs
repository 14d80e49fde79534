//! Thin entry point: parse the command line, run the library, map the outcome to an exit code.

fn main() {
    std::process::exit(ferrum_bench::cli::main_entry());
}
