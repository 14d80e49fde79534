//! The CUDA kernels of the reference engine (`kernels/*.cu`, embedded at build time) and their
//! run-time compilation by NVRTC: to CUBIN for the device's exact architecture (PTX from an NVRTC
//! newer than the driver would not load), cached on disk by source hash, and to PTX for the
//! `ptxas -v` register/spill check CI runs for sm_80, sm_89 and sm_90.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Helpers prepended to every kernel file (NVRTC has no toolkit include path here).
pub const COMMON: &str = include_str!("../../../../kernels/common.cuh");

/// Every kernel file: `(file name, source)`.
pub const FILES: &[(&str, &str)] = &[
    ("weights.cu", include_str!("../../../../kernels/weights.cu")),
    ("norm.cu", include_str!("../../../../kernels/norm.cu")),
    (
        "int4_gemm.cu",
        include_str!("../../../../kernels/int4_gemm.cu"),
    ),
    (
        "attention.cu",
        include_str!("../../../../kernels/attention.cu"),
    ),
    ("moe.cu", include_str!("../../../../kernels/moe.cu")),
    ("sample.cu", include_str!("../../../../kernels/sample.cu")),
];

/// The architectures CI compiles for: A100/A10-class, RTX 4090/L4/L40, H100/H200.
pub const CI_ARCHES: &[&str] = &["sm_80", "sm_89", "sm_90"];

/// What NVRTC builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Device code for exactly this architecture (what the engine loads).
    Cubin,
    /// PTX for the architecture's virtual `compute_XX` (what `ptxas -v` checks).
    Ptx,
}

/// The full source NVRTC compiles for a kernel file.
pub fn full_source(file_source: &str) -> String {
    format!("{COMMON}\n{file_source}")
}

/// `sha256` of the source, the architecture and the NVRTC version: the disk-cache key.
pub fn cache_key(source: &str, arch: &str, nvrtc_version: (i32, i32)) -> String {
    let mut h = Sha256::new();
    h.update(b"ferrum-bench/kernel/v1\0");
    h.update(source.as_bytes());
    h.update(b"\0");
    h.update(arch.as_bytes());
    h.update(format!("\0{}.{}", nvrtc_version.0, nvrtc_version.1).as_bytes());
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sm_89` → `compute_89` (the virtual architecture of a real one).
pub fn virtual_arch(arch: &str) -> Result<String, String> {
    let digits = arch
        .strip_prefix("sm_")
        .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| {
            format!("unknown GPU architecture `{arch}`: expected sm_<digits>, e.g. sm_89")
        })?;
    Ok(format!("compute_{digits}"))
}

/// `8.9` → `sm_89`.
pub fn arch_of_compute_capability(cc: (u32, u32)) -> String {
    format!("sm_{}{}", cc.0, cc.1)
}

/// Whether libnvrtc can be loaded (cudarc panics on the first call without it).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Why NVRTC cannot be used, for error messages.
pub const NVRTC_MISSING: &str = "libnvrtc not found: install the CUDA toolkit or the PyPI wheel nvidia-cuda-nvrtc-cu12 and put its lib directory on LD_LIBRARY_PATH (scripts/cuda-tools.sh does both)";

/// NVRTC's version.
pub fn nvrtc_version() -> Result<(i32, i32), String> {
    if !nvrtc_present() {
        return Err(NVRTC_MISSING.to_string());
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: writes two ints.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| format!("nvrtcVersion failed: {e:?}"))?;
    Ok((major, minor))
}

/// Compiles one kernel file's full source for `arch` (`sm_XX`).
pub fn compile(name: &str, source: &str, arch: &str, target: Target) -> Result<Vec<u8>, String> {
    use cudarc::nvrtc::{result, sys};
    if !nvrtc_present() {
        return Err(NVRTC_MISSING.to_string());
    }
    let arch_opt = match target {
        Target::Cubin => format!("--gpu-architecture={arch}"),
        Target::Ptx => format!("--gpu-architecture={}", virtual_arch(arch)?),
    };
    virtual_arch(arch)?;
    let src = CString::new(source).map_err(|_| format!("{name}: source contains a NUL byte"))?;
    let cname = CString::new(name).map_err(|_| format!("{name}: bad file name"))?;
    let prog = result::create_program(&src, Some(&cname))
        .map_err(|e| format!("{name}: nvrtcCreateProgram failed: {e:?}"))?;
    let options = [arch_opt, "--std=c++17".to_string()];
    // SAFETY: `prog` is a live program until destroyed below; every pointer passed is owned here.
    let outcome = unsafe {
        match result::compile_program(prog, &options) {
            Err(e) => {
                let log = result::get_program_log(prog)
                    .map(|l| c_chars_to_string(&l))
                    .unwrap_or_default();
                Err(format!(
                    "{name} ({arch}): NVRTC compile error ({e:?}):\n{}",
                    log.trim_end()
                ))
            }
            Ok(()) => match target {
                Target::Ptx => result::get_ptx(prog)
                    .map(|p| c_chars_to_string(&p).into_bytes())
                    .map_err(|e| format!("{name}: nvrtcGetPTX failed: {e:?}")),
                Target::Cubin => {
                    let mut size = 0usize;
                    sys::nvrtcGetCUBINSize(prog, &mut size)
                        .result()
                        .map_err(|e| format!("{name}: nvrtcGetCUBINSize failed: {e:?}"))
                        .and_then(|()| {
                            let mut buf = vec![0u8; size];
                            sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr().cast())
                                .result()
                                .map(|()| buf)
                                .map_err(|e| format!("{name}: nvrtcGetCUBIN failed: {e:?}"))
                        })
                }
            },
        }
    };
    // SAFETY: destroyed once, after its last use.
    let _ = unsafe { result::destroy_program(prog) };
    outcome
}

fn c_chars_to_string(chars: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().map(|c| *c as u8).collect();
    match CStr::from_bytes_until_nul(&bytes) {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Where compiled CUBINs are cached: `$XDG_CACHE_HOME/ferrum-bench/kernels`, else
/// `~/.cache/ferrum-bench/kernels`, else the system temp directory.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("ferrum-bench")
        .join("kernels")
}

/// The CUBIN of one kernel file for `arch`, from the disk cache when its key matches, else
/// compiled and stored (temp file + rename, so a concurrent start never reads half a file).
pub fn cubin_cached(
    name: &str,
    file_source: &str,
    arch: &str,
    dir: &Path,
) -> Result<Vec<u8>, String> {
    let source = full_source(file_source);
    let key = cache_key(&source, arch, nvrtc_version()?);
    let path = dir.join(format!("{}-{key}.cubin", name.trim_end_matches(".cu")));
    if let Ok(bytes) = std::fs::read(&path) {
        if !bytes.is_empty() {
            return Ok(bytes);
        }
    }
    let cubin = compile(name, &source, arch, Target::Cubin)?;
    if std::fs::create_dir_all(dir).is_ok() {
        let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
        if std::fs::write(&tmp, &cubin).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    Ok(cubin)
}

/// Resources of one kernel as `ptxas -v` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelResources {
    /// Entry function.
    pub kernel: String,
    /// Registers per thread.
    pub registers: u32,
    /// Stack frame bytes.
    pub stack_bytes: u32,
    /// Spill store bytes.
    pub spill_stores: u32,
    /// Spill load bytes.
    pub spill_loads: u32,
}

/// One kernel file compiled for one architecture.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// Kernel file.
    pub file: String,
    /// `sm_XX`.
    pub arch: String,
    /// CUBIN size from NVRTC.
    pub cubin_bytes: usize,
    /// Per entry function, from `ptxas -v` on NVRTC's PTX.
    pub kernels: Vec<KernelResources>,
}

impl FileReport {
    /// Kernels that spill registers.
    pub fn spilling(&self) -> impl Iterator<Item = &KernelResources> {
        self.kernels
            .iter()
            .filter(|k| k.spill_stores > 0 || k.spill_loads > 0)
    }
}

/// Parses `ptxas -v` output (`Compiling entry function 'x'`, `N bytes stack frame, N bytes spill
/// stores, N bytes spill loads`, `Used N registers`).
pub fn parse_ptxas_verbose(text: &str) -> Vec<KernelResources> {
    let mut out: Vec<KernelResources> = Vec::new();
    let number_before = |line: &str, unit: &str| -> Option<u32> {
        let idx = line.find(unit)?;
        line[..idx].split_whitespace().last()?.parse().ok()
    };
    for line in text.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default().to_string();
            out.push(KernelResources {
                kernel: name,
                registers: 0,
                stack_bytes: 0,
                spill_stores: 0,
                spill_loads: 0,
            });
            continue;
        }
        let Some(current) = out.last_mut() else {
            continue;
        };
        if line.contains("bytes stack frame") {
            current.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
            current.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
            current.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
        } else if line.contains("Used ") && line.contains(" registers") {
            current.registers = line
                .split("Used ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    out
}

/// Compiles every file in `files` for every arch: NVRTC to CUBIN (the engine's path) and NVRTC
/// to PTX then `ptxas -v` (registers and spills).
pub fn check(
    files: &[(String, String)],
    arches: &[String],
    ptxas: &Path,
) -> Result<Vec<FileReport>, String> {
    let mut reports = Vec::new();
    for (name, file_source) in files {
        let source = full_source(file_source);
        for arch in arches {
            let cubin = compile(name, &source, arch, Target::Cubin)?;
            let ptx = compile(name, &source, arch, Target::Ptx)?;
            let dir = tempfile_dir()?;
            let ptx_path = dir.join(format!("{}.ptx", name.trim_end_matches(".cu")));
            std::fs::write(&ptx_path, &ptx)
                .map_err(|e| format!("cannot write {}: {e}", ptx_path.display()))?;
            let out = Command::new(ptxas)
                .arg("-v")
                .arg(format!("-arch={arch}"))
                .arg(&ptx_path)
                .arg("-o")
                .arg(dir.join("out.cubin"))
                .output()
                .map_err(|e| format!("cannot run {}: {e}", ptxas.display()))?;
            let _ = std::fs::remove_dir_all(&dir);
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                return Err(format!(
                    "{name} ({arch}): ptxas failed:\n{}",
                    text.trim_end()
                ));
            }
            reports.push(FileReport {
                file: name.clone(),
                arch: arch.clone(),
                cubin_bytes: cubin.len(),
                kernels: parse_ptxas_verbose(&text),
            });
        }
    }
    Ok(reports)
}

fn tempfile_dir() -> Result<PathBuf, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ferrum-bench-ptxas-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// The embedded kernel files as owned pairs.
pub fn embedded_files() -> Vec<(String, String)> {
    FILES
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

/// Every `*.cu` file in `dir`, sorted by name (`ferrum-bench kernels --dir`).
pub fn files_in(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read directory {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "cu") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            files.push((name, text));
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("no *.cu files in {}", dir.display()));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PTXAS_SAMPLE: &str = "\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'int4_gemv' for 'sm_89'
ptxas info    : Function properties for int4_gemv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, used 0 barriers, 400 bytes cmem[0]
ptxas info    : Compiling entry function 'big' for 'sm_89'
ptxas info    : Function properties for big
    48 bytes stack frame, 44 bytes spill stores, 52 bytes spill loads
ptxas info    : Used 255 registers, 380 bytes cmem[0]
";

    #[test]
    fn ptxas_verbose_output_is_parsed_and_spills_found() {
        let kernels = parse_ptxas_verbose(PTXAS_SAMPLE);
        assert_eq!(kernels.len(), 2);
        assert_eq!(kernels[0].kernel, "int4_gemv");
        assert_eq!(kernels[0].registers, 40);
        assert_eq!(kernels[0].spill_stores, 0);
        assert_eq!(kernels[1].stack_bytes, 48);
        assert_eq!(kernels[1].spill_stores, 44);
        assert_eq!(kernels[1].spill_loads, 52);
        assert_eq!(kernels[1].registers, 255);
        let report = FileReport {
            file: "x.cu".into(),
            arch: "sm_89".into(),
            cubin_bytes: 1,
            kernels,
        };
        assert_eq!(report.spilling().count(), 1);
    }

    #[test]
    fn arches_and_cache_keys() {
        assert_eq!(virtual_arch("sm_89").unwrap(), "compute_89");
        assert!(virtual_arch("89").is_err());
        assert!(virtual_arch("sm_").is_err());
        assert_eq!(arch_of_compute_capability((9, 0)), "sm_90");
        let a = cache_key("src", "sm_89", (12, 9));
        assert_eq!(a.len(), 64);
        assert_ne!(a, cache_key("src", "sm_90", (12, 9)));
        assert_ne!(a, cache_key("src2", "sm_89", (12, 9)));
        assert_ne!(a, cache_key("src", "sm_89", (12, 8)));
        assert_eq!(a, cache_key("src", "sm_89", (12, 9)));
    }

    #[test]
    fn every_kernel_file_is_embedded_and_declares_c_entry_points() {
        let on_disk = files_in(&Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels")).unwrap();
        let embedded = embedded_files();
        assert_eq!(on_disk, {
            let mut e = embedded.clone();
            e.sort();
            e
        });
        for (name, src) in &embedded {
            assert!(src.contains("extern \"C\" __global__"), "{name}");
        }
    }
}
