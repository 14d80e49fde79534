//! `[engine] kind = "server"`: one server process per cell.
//!
//! The command is an argv list with placeholders. The process gets a free loopback port, its own
//! working directory and `TMPDIR` under the cell's staging directory (Ferrum writes
//! `$TMPDIR/ferrum.pid` and, in 0.7.7, `./ferrum.toml`), stdout and stderr in `server.log`, and an
//! environment built from nothing: the cell's resolved `FERRUM_*` entries, the allow-list `PATH`,
//! `HOME`, `CUDA_VISIBLE_DEVICES`, `LD_LIBRARY_PATH` (when set in the harness) and the preset's
//! `extra_env`.
//!
//! No server outlives the harness: it runs in its own process group (so a terminal Ctrl-C does
//! not reach it behind our back and stopping it reaches its children), it is stopped with SIGINT
//! to the group, then SIGKILL after the grace period, on shutdown and on drop; and the kernel
//! kills it with `PR_SET_PDEATHSIG` (SIGKILL) when the harness dies for any reason, including a
//! second Ctrl-C (which exits at once) or SIGKILL. Linux only, like the rest of the tool's process
//! handling. PDEATHSIG fires when the *thread* that spawned the child exits, so servers are
//! spawned from the thread that runs the sweep, which lives as long as the process.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::config::HealthMode;
use crate::engine::{Cancel, EngineError};

/// Environment variables passed through from the harness when set.
pub const ENV_ALLOW_LIST: [&str; 4] = ["PATH", "HOME", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH"];

/// Log file name inside the cell.
pub const LOG_FILE: &str = "server.log";
/// Server-written effective config inside the cell.
pub const SERVER_EFFECTIVE_CONFIG: &str = "server_effective_config.json";
/// Server-written decision trace inside the cell.
pub const SERVER_DECISION_TRACE: &str = "server_decision_trace.jsonl";
/// The `/health` body seen at readiness.
pub const SERVER_HEALTH: &str = "server_health.json";

/// A free loopback port (bound, read, released; the server binds it moments later).
pub fn free_port() -> Result<u16, EngineError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| EngineError::Fault(format!("cannot find a free loopback port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| EngineError::Fault(format!("cannot find a free loopback port: {e}")))
}

/// Values substituted into the command.
#[derive(Debug, Clone)]
pub struct Placeholders {
    /// `{model}`.
    pub model: String,
    /// `{port}`.
    pub port: u16,
    /// `{cell_dir}` (the staging directory; its files end up in the cell directory).
    pub cell_dir: PathBuf,
}

impl Placeholders {
    /// Substitute every placeholder in `arg`.
    pub fn apply(&self, arg: &str) -> String {
        arg.replace("{model}", &self.model)
            .replace("{port}", &self.port.to_string())
            .replace(
                "{effective_config}",
                &self
                    .cell_dir
                    .join(SERVER_EFFECTIVE_CONFIG)
                    .display()
                    .to_string(),
            )
            .replace(
                "{decision_trace}",
                &self
                    .cell_dir
                    .join(SERVER_DECISION_TRACE)
                    .display()
                    .to_string(),
            )
            .replace("{cell_dir}", &self.cell_dir.display().to_string())
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pid: i32,
    log: PathBuf,
    grace: Duration,
    stopped: Option<ExitStatus>,
}

impl ServerProcess {
    /// Spawn `argv` in `stage` with exactly `env`.
    pub fn launch(
        argv: &[String],
        stage: &Path,
        env: &[(String, String)],
        grace: Duration,
    ) -> Result<ServerProcess, EngineError> {
        let fault = |what: &str, e: std::io::Error| EngineError::Fault(format!("{what}: {e}"));
        let work = stage.join("work");
        let tmp = stage.join("tmp");
        for d in [&work, &tmp] {
            std::fs::create_dir_all(d)
                .map_err(|e| fault(&format!("cannot create `{}`", d.display()), e))?;
        }
        let log = stage.join(LOG_FILE);
        let out = File::create(&log)
            .map_err(|e| fault(&format!("cannot create `{}`", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| fault("cannot duplicate the log handle", e))?;
        let Some((program, args)) = argv.split_first() else {
            return Err(EngineError::Config("[engine] command is empty".into()));
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("TMPDIR", &tmp)
            .current_dir(&work)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe functions (prctl, getppid, _exit).
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The harness may have died between fork and prctl: then nobody would kill us.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| EngineError::Fault(format!("cannot start `{program}`: {e}")))?;
        Ok(ServerProcess {
            pid: child.id() as i32,
            child,
            log,
            grace,
            stopped: None,
        })
    }

    /// The server's process id (also its process group id).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.stopped.is_some() {
            return self.stopped;
        }
        self.child.try_wait().ok().flatten()
    }

    /// The last `lines` lines of `server.log`, joined with ` | ` (one-line failure reasons).
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Poll `/health` until ready, the process exits, the timeout passes or `cancel` is raised.
    /// Returns the health body (JSON when it is JSON).
    pub fn wait_ready(
        &mut self,
        rt: &tokio::runtime::Runtime,
        client: &reqwest::Client,
        url: &str,
        mode: HealthMode,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<Value, EngineError> {
        let started = Instant::now();
        let mut last = String::from("no answer yet (connection refused while the model loads)");
        loop {
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            if let Some(status) = self.exited() {
                return Err(EngineError::Fault(format!(
                    "server exited with {status} before it was ready; last lines of server.log: {}",
                    self.log_tail(8)
                )));
            }
            if started.elapsed() > timeout {
                return Err(EngineError::Fault(format!(
                    "server not ready after {:.0} s ({last}); last lines of server.log: {}",
                    timeout.as_secs_f64(),
                    self.log_tail(8)
                )));
            }
            let probe = rt.block_on(async {
                let resp = client
                    .get(url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await?;
                let status = resp.status().as_u16();
                let body = resp.text().await?;
                Ok::<_, reqwest::Error>((status, body))
            });
            match probe {
                Ok((status, body)) => {
                    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let ready = match mode {
                        HealthMode::Http200 => status == 200,
                        HealthMode::Ferrum => {
                            status == 200
                                && json.get("status").and_then(Value::as_str) == Some("healthy")
                        }
                    };
                    if ready {
                        return Ok(if json.is_null() {
                            Value::String(body)
                        } else {
                            json
                        });
                    }
                    last = format!("last /health: HTTP {status} {}", super::sse::excerpt(&body));
                }
                Err(e) => {
                    if !e.is_connect() {
                        last = format!("last /health: {e}");
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// After a run in which requests failed on the connection: decide whether the server is
    /// alive. A dying process closes its sockets (the client sees resets and refused connects at
    /// once) *before* the kernel makes its exit visible to `try_wait`, and on a loaded machine
    /// that gap lasts long enough for the whole remaining run to fail fast inside it. So the
    /// exit is waited for while `/health` refuses connections: `Ok(())` when `/health` answers
    /// (the failures were the server's answers, measured as such), `Err(status)`-style fault
    /// when the process exits, and a "stopped answering" fault when neither happens in `limit`.
    pub fn settle(
        &mut self,
        rt: &tokio::runtime::Runtime,
        client: &reqwest::Client,
        health_url: &str,
        limit: Duration,
    ) -> Result<(), Settled> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(Settled::Exited(status));
            }
            let probe = rt.block_on(async {
                client
                    .get(health_url)
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            });
            if probe.is_ok() {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(Settled::NotAnswering(limit));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGINT to the process group, SIGKILL after the grace period, then reap. Idempotent.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.stopped.is_some() {
            return self.stopped;
        }
        let group = -self.pid;
        // SAFETY: kill(2) with a negative pid signals our child's own process group.
        unsafe {
            libc::kill(group, libc::SIGINT);
        }
        let deadline = Instant::now() + self.grace;
        let mut status = None;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Whatever is left of the group (the leader after the grace period, or children it left
        // behind) is killed.
        // SAFETY: as above.
        unsafe {
            libc::kill(group, libc::SIGKILL);
        }
        if status.is_none() {
            status = self.child.wait().ok();
        }
        self.stopped = status;
        status
    }
}

/// Why [`ServerProcess::settle`] found the server gone.
#[derive(Debug, Clone, Copy)]
pub enum Settled {
    /// The process exited with this status.
    Exited(ExitStatus),
    /// The process is alive but `/health` refused connections for this long.
    NotAnswering(Duration),
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` non-empty lines of a log file (at most its last 64 KiB), joined with ` | `.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return "(no server.log)".into();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if all.is_empty() {
        return "(server.log is empty)".into();
    }
    all[all.len().saturating_sub(lines)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_substituted() {
        let p = Placeholders {
            model: "/m/tiny".into(),
            port: 1234,
            cell_dir: "/r/c".into(),
        };
        assert_eq!(p.apply("--port={port}"), "--port=1234");
        assert_eq!(p.apply("{model}"), "/m/tiny");
        assert_eq!(
            p.apply("{effective_config}"),
            "/r/c/server_effective_config.json"
        );
        assert_eq!(
            p.apply("{decision_trace}"),
            "/r/c/server_decision_trace.jsonl"
        );
        assert_eq!(p.apply("{cell_dir}/x"), "/r/c/x");
    }

    fn sh(script: &str) -> Vec<String> {
        ["/bin/sh", "-c", script]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// The race behind a once-flaky CLI test: every connection already fails while the process
    /// has not exited yet. `settle` must wait for the exit rather than call the server alive.
    #[test]
    fn settle_waits_for_an_exit_that_is_not_visible_yet() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = ServerProcess::launch(
            &sh("sleep 0.3; echo dying; exit 3"),
            dir.path(),
            &[],
            Duration::from_secs(2),
        )
        .unwrap();
        // Nothing listens on this port: /health is refused, as for a server in its exit.
        let port = free_port().unwrap();
        let rt = super::super::runtime().unwrap();
        let client = super::super::http_client(1).unwrap();
        assert!(p.exited().is_none());
        let url = format!("http://127.0.0.1:{port}/health");
        match p.settle(&rt, &client, &url, Duration::from_secs(30)) {
            Err(Settled::Exited(status)) => assert_eq!(status.code(), Some(3)),
            other => panic!("expected the exit, got {other:?}"),
        }
        assert!(p.log_tail(1).contains("dying"));
    }

    #[test]
    fn settle_reports_a_live_server_and_one_that_stopped_answering() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = ServerProcess::launch(
            &sh("exec sleep 30"),
            dir.path(),
            &[],
            Duration::from_secs(2),
        )
        .unwrap();
        let rt = super::super::runtime().unwrap();
        let client = super::super::http_client(1).unwrap();
        // Alive and answering (any HTTP status counts as an answer).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let answer = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
        });
        assert!(p
            .settle(&rt, &client, &url, Duration::from_secs(30))
            .is_ok());
        answer.join().unwrap();
        // Alive but refusing connections: a fault after the limit.
        let url = format!("http://127.0.0.1:{}/health", free_port().unwrap());
        match p.settle(&rt, &client, &url, Duration::from_millis(100)) {
            Err(Settled::NotAnswering(_)) => {}
            other => panic!("expected not answering, got {other:?}"),
        }
        p.stop();
    }

    #[test]
    fn a_process_is_launched_with_only_the_given_env_and_stopped_by_group() {
        let dir = tempfile::tempdir().unwrap();
        let argv: Vec<String> = ["/bin/sh", "-c", "env; echo started; exec sleep 30"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let env = vec![("FERRUM_X".to_string(), "1".to_string())];
        let mut p = ServerProcess::launch(&argv, dir.path(), &env, Duration::from_secs(2)).unwrap();
        let pid = p.pid();
        let t = Instant::now();
        while !log_tail(&dir.path().join(LOG_FILE), 50).contains("started") {
            assert!(t.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        assert!(log.contains("FERRUM_X=1"), "{log}");
        assert!(log.contains(&format!("TMPDIR={}", dir.path().join("tmp").display())));
        assert!(!log.contains("CARGO"), "harness env leaked: {log}");
        assert!(p.exited().is_none());
        p.stop();
        // SAFETY: probing a pid with signal 0.
        assert_ne!(
            unsafe { libc::kill(pid, 0) },
            0,
            "process {pid} still alive"
        );
        assert!(log_tail(&dir.path().join(LOG_FILE), 1).contains("started"));
    }
}
