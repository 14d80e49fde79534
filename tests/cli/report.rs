//! `ferrum-bench report` and the `report.html` that `sweep`/`run` write, rendered in a real
//! headless Chromium: a screenshot is taken and the rendered DOM (`--dump-dom`) is checked for
//! every section, the expected number of charts and the absence of script errors.
//!
//! The browser is Debian's `chromium-headless-shell` or `chromium` (`$FB_CHROMIUM` overrides).
//! `.ci/run` installs one when missing and sets `FB_REQUIRE_BROWSER=1`, so in CI a missing browser
//! fails the test; elsewhere the browser checks are skipped with a note on stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{bin, repo, run_dir};

/// The headless browser, if one is installed.
fn browser() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FB_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["chromium-headless-shell", "chromium", "chromium-browser"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// The browser, or `None` after saying why the check is skipped (a panic in CI).
fn browser_or_skip(test: &str) -> Option<PathBuf> {
    let found = browser();
    if found.is_none() {
        assert!(
            std::env::var_os("FB_REQUIRE_BROWSER").is_none(),
            "FB_REQUIRE_BROWSER is set but no chromium-headless-shell/chromium is on PATH"
        );
        eprintln!("{test}: no headless Chromium on PATH; browser checks skipped (install chromium-headless-shell)");
    }
    found
}

/// Run the browser with the flags this sandboxed machine needs (no sandbox, no GPU, no
/// background networking, a fresh profile), killing it after `limit`. Returns (stdout, stderr).
fn chromium(browser: &Path, args: &[String], limit: Duration) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            // Never leave the browser behind.
            child.kill().ok();
            child.wait().ok();
            panic!("chromium did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (t_out.join().unwrap(), t_err.join().unwrap())
}

/// Render `html` in headless Chromium: a `width`×`height` screenshot to `png`, and the DOM after
/// scripts ran. Returns (dom, browser log). The README screenshot is made by this function.
pub fn render_in_browser(
    browser: &Path,
    html: &Path,
    png: &Path,
    width: u32,
    height: u32,
) -> (String, String) {
    let url = format!("file://{}", html.canonicalize().unwrap().display());
    let limit = Duration::from_secs(120);
    let (_, log1) = chromium(
        browser,
        &[
            format!("--window-size={width},{height}"),
            format!("--screenshot={}", png.display()),
            url.clone(),
        ],
        limit,
    );
    let (dom, log2) = chromium(browser, &["--dump-dom".to_string(), url], limit);
    (dom, format!("{log1}\n{log2}"))
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[test]
fn sweep_writes_a_report_that_renders_in_headless_chromium() {
    let root = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["sweep"])
        .arg(repo("tests/fixtures/tiny.toml"))
        .arg("--sweep")
        .arg(repo("tests/fixtures/report_grid.toml"))
        .args([
            "--set",
            "FERRUM_MAX_BATCHED_TOKENS=4",
            "--repeats",
            "3",
            "--steps",
            "--quiet",
            "--out",
        ])
        .arg(root.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "two cells fail: {stderr}");
    let dir = run_dir(root.path());
    let report = dir.join("report.html");
    assert!(
        stderr.contains(&format!("report: {}", report.display())),
        "{stderr}"
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network references"
    );
    assert!(html.len() < 1_000_000);

    let Some(browser) = browser_or_skip("sweep_writes_a_report_that_renders_in_headless_chromium")
    else {
        return;
    };
    let png = root.path().join("report.png");
    let (dom, log) = render_in_browser(&browser, &report, &png, 1280, 800);
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    assert!(
        dom.contains("data-report-ready=\"1\""),
        "the script ran to its end: {log}"
    );
    assert!(
        dom.contains("<pre id=\"script-errors\" class=\"script-errors\"></pre>"),
        "script errors shown in the page"
    );
    assert!(!log.contains("Uncaught"), "{log}");
    for id in [
        "run",
        "ranking",
        "heatmap",
        "pareto",
        "not-measured",
        "config-diff",
        "distributions",
        "timelines",
    ] {
        assert_eq!(
            count(&dom, &format!("<section id=\"{id}\""))
                + count(&dom, &format!("<header id=\"{id}\"")),
            1,
            "section {id}"
        );
    }
    assert!(dom.contains("data-engine-kind=\"reference\""));
    // Reference-engine numbers are labelled as not Ferrum's.
    assert_eq!(count(&dom, "<p class=\"engine-note\">"), 1);
    assert!(dom.contains("not Ferrum"));
    // 6 cells: 2 completed, 2 skipped, 2 failed.
    assert_eq!(count(&dom, "data-chart=\"heatmap\" data-cells=\"6\""), 1);
    assert_eq!(count(&dom, "class=\"hm-cell"), 6);
    assert_eq!(count(&dom, "data-chart=\"scatter\""), 2);
    assert_eq!(count(&dom, "data-chart=\"cdf-overlay\""), 3);
    assert_eq!(count(&dom, "data-chart=\"cdf\""), 6);
    assert_eq!(count(&dom, "data-chart=\"timeline\" data-lanes=\"4\""), 2);
    assert_eq!(count(&dom, "<tr data-status=\"skipped\">"), 2);
    assert_eq!(count(&dom, "<tr data-status=\"failed\">"), 2);
    assert!(
        dom.contains("exceeds KV capacity of 16 tokens"),
        "failure reason shown"
    );
    assert_eq!(count(&dom, "<tr data-cell="), 2, "two ranked rows");
}

#[test]
fn report_command_paths_no_report_and_errors() {
    let root = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("run")
        .arg(repo("tests/fixtures/tiny.toml"))
        .args(["--quick", "--quiet", "--no-report", "--out"])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = run_dir(root.path());
    assert!(!dir.join("report.html").exists(), "--no-report");

    let out = bin().arg("report").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n", dir.join("report.html").display())
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("data-chart=\"scatter\"") && html.contains("No heatmap"));
    // One cell: three CDFs, no overlay, no config diff.
    assert_eq!(count(&html, "data-chart=\"cdf\""), 3);
    assert_eq!(count(&html, "data-chart=\"cdf-overlay\""), 0);

    let other = root.path().join("elsewhere.html");
    let out = bin()
        .arg("report")
        .arg(&dir)
        .arg("--out")
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&other).unwrap(),
        html,
        "same run, same bytes"
    );

    let out = bin()
        .arg("report")
        .arg(root.path().join("nope"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not a ferrum-bench run directory"), "{err}");

    let out = bin()
        .arg("report")
        .arg(&dir)
        .arg("--out")
        .arg(root.path().join("no/such/dir/r.html"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A live tune of the fake engine (6 configurations, grid, a constraint that makes the two c4
/// configurations infeasible) writes a report whose `tune` section has one chart with every trial.
#[test]
fn tune_writes_a_report_with_the_trial_chart_that_renders_in_headless_chromium() {
    let root = tempfile::tempdir().unwrap();
    let preset = root.path().join("fake.toml");
    std::fs::write(
        &preset,
        "name = \"faketune\"\n[engine]\nkind = \"fake\"\ntick_ms = 1\n[run]\nworkload = \"random-8/5\"\nrequests = 8\nwarmup_requests = 1\nrepeats = 1\nseed = 3\nconcurrency = 2\n[sweep]\nconcurrency = [1, 2, 4]\n[sweep.knobs]\nFERRUM_MOE_BATCH_THRESHOLD = [2, 64]\n",
    )
    .unwrap();
    let out = bin()
        .arg("tune")
        .arg(&preset)
        .args([
            "--strategy",
            "grid",
            "--budget",
            "18",
            "--constraint",
            "request_rps<=500",
            "--order",
            "sequential",
            "--quiet",
            "--out",
        ])
        .arg(root.path().join("r"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let dir = run_dir(&root.path().join("r"));
    let report = dir.join("report.html");
    assert!(
        stderr.contains(&format!("report: {}", report.display())),
        "{stderr}"
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert_eq!(count(&html, "<section id=\"tune\""), 1);
    assert_eq!(
        count(
            &html,
            "data-chart=\"tune\" data-trials=\"6\" data-feasible=\"4\" data-infeasible=\"2\" data-failed=\"0\""
        ),
        1,
        "one chart, every trial, the c4 ones infeasible"
    );
    assert_eq!(
        count(&html, "<g class=\"trial\" data-kind=\"infeasible\">"),
        2
    );
    assert!(html.contains("class=\"incumbent-line\""));

    // --no-report: no report.html.
    let out = bin()
        .arg("tune")
        .arg(&preset)
        .args([
            "--strategy",
            "grid",
            "--budget",
            "18",
            "--quiet",
            "--no-report",
            "--out",
        ])
        .arg(root.path().join("n"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!run_dir(&root.path().join("n")).join("report.html").exists());

    let Some(browser) = browser_or_skip(
        "tune_writes_a_report_with_the_trial_chart_that_renders_in_headless_chromium",
    ) else {
        return;
    };
    let png = root.path().join("tune.png");
    let (dom, log) = render_in_browser(&browser, &report, &png, 1280, 800);
    assert!(std::fs::read(&png)
        .expect("screenshot")
        .starts_with(b"\x89PNG"));
    assert!(dom.contains("data-report-ready=\"1\""), "{log}");
    assert!(
        dom.contains("<pre id=\"script-errors\" class=\"script-errors\"></pre>"),
        "script errors shown in the page"
    );
    assert!(!log.contains("Uncaught"), "{log}");
    assert_eq!(count(&dom, "<section id=\"tune\""), 1);
    assert_eq!(count(&dom, "data-chart=\"tune\""), 1);
    assert_eq!(count(&dom, "<g class=\"trial\""), 6);
}

/// Makes `docs/report-m3.png` for the README from a run directory given in
/// `FB_SCREENSHOT_RUN` (see the README's "report" section for the exact commands):
/// `FB_SCREENSHOT_RUN=results/<run_id> cargo test --release --test cli readme_screenshot -- --ignored`.
/// The run must be complete (every cell `completed`, none `partial`/`pending`/`interrupted`,
/// `FB_SCREENSHOT_ALLOW_INCOMPLETE=1` to override) and its report within the stated 1 MB bound.
#[test]
#[ignore = "makes the README screenshot from a real run directory"]
fn readme_screenshot() {
    let run =
        PathBuf::from(std::env::var_os("FB_SCREENSHOT_RUN").expect("FB_SCREENSHOT_RUN=<run dir>"));
    let out = bin().arg("report").arg(&run).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    let incomplete: Vec<String> = manifest["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            !["completed", "skipped", "failed"].contains(&c["status"].as_str().unwrap_or(""))
        })
        .map(|c| format!("{} ({})", c["name"], c["status"]))
        .collect();
    assert!(
        incomplete.is_empty() || std::env::var_os("FB_SCREENSHOT_ALLOW_INCOMPLETE").is_some(),
        "the README shows a complete sweep; still to run: {incomplete:?}"
    );
    let size = std::fs::metadata(run.join("report.html")).unwrap().len();
    eprintln!("report.html: {size} bytes");
    assert!(
        size <= 1_000_000,
        "over the README's 1 MB bound: {size} bytes"
    );
    let browser = browser().expect("a headless Chromium");
    let png = repo("docs/report-m3.png");
    std::fs::create_dir_all(png.parent().unwrap()).unwrap();
    let (dom, log) = render_in_browser(&browser, &run.join("report.html"), &png, 1280, 1700);
    assert!(dom.contains("data-report-ready=\"1\""), "{log}");
}

/// One run of the hidden fake engine (deterministic virtual times) at `tick_ms` per token.
fn fake_run(root: &Path, name: &str, tick_ms: u32, extra: &[&str]) -> PathBuf {
    let preset = root.join(format!("{name}.toml"));
    std::fs::write(
        &preset,
        format!("name = \"{name}\"\n[engine]\nkind = \"fake\"\ntick_ms = {tick_ms}\n[run]\nworkload = \"random-8/5\"\nrequests = 8\nwarmup_requests = 1\nrepeats = 3\nseed = 3\nconcurrency = 2\n"),
    )
    .unwrap();
    let out_dir = root.join(name);
    let o = bin()
        .arg("run")
        .arg(&preset)
        .args(["--quiet", "--no-report", "--out"])
        .arg(&out_dir)
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    run_dir(&out_dir)
}

#[test]
fn report_compare_renders_verdicts_cis_and_drift_in_headless_chromium() {
    let root = tempfile::tempdir().unwrap();
    let base = fake_run(root.path(), "base", 1, &[]);
    // Twice as slow per token, and a knob changed: a regression with its drift beside it.
    let cand = fake_run(
        root.path(),
        "cand",
        2,
        &["--set", "FERRUM_MOE_BATCH_THRESHOLD=64"],
    );
    let page = root.path().join("cmp.html");
    let o = bin()
        .args(["report", "--compare"])
        .arg(&base)
        .arg(&cand)
        .arg("--out")
        .arg(&page)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        page.display().to_string()
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(
        html.contains("<tr data-verdict=\"regressed\"><td>output tok/s</td>"),
        "throughput regressed"
    );
    assert!(
        html.contains("entry FERRUM_MOE_BATCH_THRESHOLD"),
        "drift shown"
    );
    assert_eq!(count(&html, "<section class=\"pair\""), 1);
    // Without --out: compare.html in the working directory.
    let o = bin()
        .current_dir(root.path())
        .args(["report", "--compare"])
        .arg(&base)
        .arg(&cand)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("compare.html")).unwrap(),
        html
    );
    // Bad input: a missing side is exit 2 naming it; --force needs --compare.
    let o = bin()
        .args(["report", "--compare"])
        .arg(root.path().join("nope"))
        .arg(&cand)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope"));
    let o = bin()
        .arg("report")
        .arg(&base)
        .arg("--force")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));

    let Some(browser) = browser_or_skip("report_compare") else {
        return;
    };
    let png = root.path().join("cmp.png");
    let (dom, log) = render_in_browser(&browser, &page, &png, 1280, 800);
    assert!(png.is_file() && std::fs::metadata(&png).unwrap().len() > 1000);
    assert!(
        dom.contains("data-report-ready=\"1\""),
        "script ran to its end"
    );
    assert!(
        dom.contains("<pre id=\"script-errors\" class=\"script-errors\"></pre>"),
        "script errors shown in the page"
    );
    assert!(!log.contains("Uncaught"), "{log}");
    assert_eq!(count(&dom, "<header id=\"compare\""), 1);
    assert_eq!(count(&dom, "<section id=\"unmatched\""), 1);
    // One change chart with a row per compared metric, and a verdict row per metric.
    let rows = count(&dom, "<tr data-verdict=");
    assert!(rows >= 5, "{rows} metric rows");
    assert_eq!(
        count(
            &dom,
            &format!("data-chart=\"change\" data-metrics=\"{rows}\"")
        ),
        1
    );
    assert_eq!(count(&dom, "<div class=\"drift\" data-drift=\"true\">"), 1);
}
