//! `ferrum-bench kernels`: compile every CUDA kernel with NVRTC (to CUBIN, and to PTX checked by
//! `ptxas -v`) for the given architectures and report registers and spills. Needs libnvrtc and
//! ptxas, not a GPU.

use std::path::PathBuf;

use clap::ValueEnum;

use crate::engine::reference::cuda::kernels;
use crate::error::Error;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per kernel.
    Table,
    /// Every report as JSON.
    Json,
}

/// `kernels` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architectures (repeatable); default sm_80, sm_89 and sm_90.
    #[arg(long = "arch", value_name = "sm_XX")]
    pub arches: Vec<String>,
    /// The `ptxas` to run (default: `ptxas` on PATH).
    #[arg(long, value_name = "PATH", default_value = "ptxas")]
    pub ptxas: PathBuf,
    /// Compile the `*.cu` files of this directory instead of the embedded kernels.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Runs `kernels`: exit 0 when everything compiles without spills, 1 when a kernel spills, 2
/// when a tool is missing or a kernel does not compile.
pub fn run(args: Args) -> Result<i32, Error> {
    let arches: Vec<String> = if args.arches.is_empty() {
        kernels::CI_ARCHES.iter().map(|a| a.to_string()).collect()
    } else {
        args.arches
    };
    for arch in &arches {
        kernels::virtual_arch(arch).map_err(|e| Error::Usage(format!("--arch: {e}")))?;
    }
    let files = match &args.dir {
        Some(dir) => kernels::files_in(dir).map_err(Error::Usage)?,
        None => kernels::embedded_files(),
    };
    let reports = kernels::check(&files, &arches, &args.ptxas).map_err(Error::Usage)?;
    let spills: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.spilling().map(move |k| {
                format!(
                    "{} ({}) {}: {} bytes spill stores, {} bytes spill loads",
                    r.file, r.arch, k.kernel, k.spill_stores, k.spill_loads
                )
            })
        })
        .collect();
    let text = match args.format {
        Format::Json => {
            let mut t = serde_json::to_string_pretty(&reports)
                .map_err(|e| Error::Usage(format!("cannot serialise the report: {e}")))?;
            t.push('\n');
            t
        }
        Format::Table => {
            let mut t = String::new();
            for r in &reports {
                for k in &r.kernels {
                    t.push_str(&format!(
                        "{:<14} {:<6} {:<20} {:>3} registers  {:>4} B stack  {} B spilled\n",
                        r.file,
                        r.arch,
                        k.kernel,
                        k.registers,
                        k.stack_bytes,
                        k.spill_stores + k.spill_loads
                    ));
                }
            }
            t.push_str(&format!(
                "{} file(s) x {} arch(es) compiled by NVRTC to CUBIN; {} kernel(s) spill\n",
                files.len(),
                arches.len(),
                spills.len()
            ));
            t
        }
    };
    super::print_stdout(&text)?;
    if spills.is_empty() {
        Ok(crate::error::EXIT_OK)
    } else {
        for s in &spills {
            eprintln!("error: register spill: {s}");
        }
        Ok(crate::error::EXIT_NEGATIVE)
    }
}
