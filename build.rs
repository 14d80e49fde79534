//! Build script: record the harness's git commit *as built* (`FERRUMBENCH_GIT_COMMIT`), so
//! results name the source the binary came from, not whatever the checkout holds when it runs.
//! `-dirty` is appended when tracked files differ from HEAD; `unknown` outside a git checkout.
//! Setting `FERRUMBENCH_GIT_COMMIT` in the build environment overrides it (tarball builds).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=FERRUMBENCH_GIT_COMMIT");
    // Rerun when HEAD moves or the sources change (so `-dirty` stays truthful).
    for p in ["src", "Cargo.toml", "build.rs", "data"] {
        println!("cargo:rerun-if-changed={p}");
    }
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        let head = Path::new(&git_dir).join("HEAD");
        println!("cargo:rerun-if-changed={}", head.display());
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
                println!(
                    "cargo:rerun-if-changed={}",
                    Path::new(&common).join(r).display()
                );
            }
        }
    }
    let commit = std::env::var("FERRUMBENCH_GIT_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| match git(&["rev-parse", "HEAD"]) {
            Some(sha) if !sha.is_empty() => {
                let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{sha}-dirty")
                } else {
                    sha
                }
            }
            _ => "unknown".to_string(),
        });
    println!("cargo:rustc-env=FERRUMBENCH_GIT_COMMIT={commit}");
}
