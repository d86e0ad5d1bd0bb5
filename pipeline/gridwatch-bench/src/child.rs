//! `gridwatch run` as a child process: started on a fresh data directory and
//! a free loopback port, watched through `/proc`, stopped with SIGTERM.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::BenchError;

/// How long start-up (module compilation, registry, recovery) may take.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a clean stop may take before the child is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of the child's output kept for error messages.
const KEEP_LINES: usize = 40;
/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, which Linux fixes
/// at 100 per second for user space whatever the kernel's HZ.
const USER_HZ: u64 = 100;

/// What to start.
#[derive(Debug, Clone)]
pub struct ChildOptions {
    /// The `gridwatch` executable (for `gridwatch bench` itself: `current_exe()`).
    pub binary: PathBuf,
    /// Directory of `gridwatch_validate.wasm` and `gridwatch_detect.wasm`;
    /// `None` lets gridwatch find them (its `runtime.modules_dir` rules).
    pub modules_dir: Option<PathBuf>,
    /// Data directory; `None` makes a temporary one, removed afterwards.
    pub data_dir: Option<PathBuf>,
    /// Arguments after `run --data-dir D --listen 127.0.0.1:0`.
    pub args: Vec<String>,
    /// Extra environment (`GRIDWATCH_<SECTION>__<KEY>` settings).
    pub env: Vec<(String, String)>,
    /// Print the child's stdout and stderr as they come.
    pub echo: bool,
}

impl ChildOptions {
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            modules_dir: None,
            data_dir: None,
            args: Vec::new(),
            env: Vec::new(),
            echo: false,
        }
    }
}

/// CPU time and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcStats {
    /// User plus system CPU time of all its threads, in nanoseconds.
    pub cpu_ns: u64,
    /// Resident set size now (`VmRSS`).
    pub rss_bytes: u64,
    /// Peak resident set size (`VmHWM`).
    pub peak_rss_bytes: u64,
}

impl ProcStats {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
    pub fn of(pid: u32) -> Result<Self, BenchError> {
        let stat_path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&stat_path).map_err(BenchError::io(&stat_path))?;
        // The command name (field 2) may hold spaces; fields restart after its ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After ')': state is field 3, so utime (14) and stime (15) sit at 11 and 12.
        let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
        let (Some(utime), Some(stime)) = (tick(11), tick(12)) else {
            return Err(BenchError::Protocol {
                what: stat_path,
                detail: format!("no utime/stime in {stat:?}"),
            });
        };
        let status_path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&status_path).map_err(BenchError::io(&status_path))?;
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Ok(Self {
            cpu_ns: (utime + stime) * (1_000_000_000 / USER_HZ),
            rss_bytes: kb("VmRSS:"),
            peak_rss_bytes: kb("VmHWM:"),
        })
    }
}

/// A running `gridwatch run`. Dropping it kills the child.
#[derive(Debug)]
pub struct Pipeline {
    child: Child,
    url: String,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    output: Arc<Mutex<VecDeque<String>>>,
    /// From spawn to `/readyz` answering 200.
    pub ready_after: Duration,
}

impl Pipeline {
    /// Starts the child and waits until `/readyz` answers 200.
    pub fn start(opts: &ChildOptions) -> Result<Self, BenchError> {
        let started = Instant::now();
        let (data_dir, temp) = match &opts.data_dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("gridwatch-bench-")
                    .tempdir()
                    .map_err(BenchError::io(std::env::temp_dir()))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let mut cmd = Command::new(&opts.binary);
        cmd.arg("run")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(&opts.args)
            // The bench reads the status and /metrics itself; the status line
            // would also reset the latency percentiles /api/v1/status shows.
            .env("GRIDWATCH_RUNTIME__STATUS_INTERVAL", "0s")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        if let Some(dir) = &opts.modules_dir {
            cmd.env("GRIDWATCH_RUNTIME__MODULES_DIR", dir);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|source| BenchError::Spawn {
            binary: opts.binary.clone(),
            source,
        })?;
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            let output = output.clone();
            let echo = opts.echo;
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let url = rest.split_whitespace().next().unwrap_or_default();
                        let _ = tx.send(url.to_string());
                    }
                    keep(&output, line, echo);
                }
            });
        }
        if let Some(stderr) = child.stderr.take() {
            let output = output.clone();
            let echo = opts.echo;
            std::thread::spawn(move || drain(stderr, &output, echo));
        }
        let mut pipeline = Self {
            child,
            url: String::new(),
            data_dir,
            _temp: temp,
            output,
            ready_after: Duration::ZERO,
        };
        pipeline.url = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(url) => break url,
                Err(_) => {
                    pipeline.check_alive()?;
                    if started.elapsed() > READY_TIMEOUT {
                        return Err(BenchError::NotReady {
                            waited: started.elapsed(),
                            detail: format!(
                                "it never printed \"listening on\"; last output:\n{}",
                                pipeline.last_output()
                            ),
                        });
                    }
                }
            }
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(BenchError::http("building a client"))?;
        loop {
            let ready = client
                .get(format!("{}/readyz", pipeline.url))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            pipeline.check_alive()?;
            if started.elapsed() > READY_TIMEOUT {
                return Err(BenchError::NotReady {
                    waited: started.elapsed(),
                    detail: format!("/readyz never answered 200 at {}", pipeline.url),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        pipeline.ready_after = started.elapsed();
        Ok(pipeline)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// CPU time and memory of the child now.
    pub fn stats(&self) -> Result<ProcStats, BenchError> {
        ProcStats::of(self.pid())
    }

    /// The child's last lines of output, for diagnostics.
    pub fn last_output(&self) -> String {
        self.output
            .lock()
            .map(|o| o.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// An error if the child has exited.
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                // Give the output threads a moment to collect the last words.
                std::thread::sleep(Duration::from_millis(100));
                Err(BenchError::Exited {
                    status: status.to_string(),
                    output: self.last_output(),
                })
            }
            _ => Ok(()),
        }
    }

    /// SIGTERM, then waits for the clean shutdown (flush and checkpoint);
    /// kills it if that takes longer than a minute.
    pub fn stop(mut self) -> Result<ExitStatus, BenchError> {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok(status);
            }
            if started.elapsed() > STOP_TIMEOUT {
                let _ = self.child.kill();
                return self.child.wait().map_err(BenchError::io(&self.data_dir));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn keep(output: &Mutex<VecDeque<String>>, line: String, echo: bool) {
    if echo {
        eprintln!("gridwatch: {line}");
    }
    if let Ok(mut o) = output.lock() {
        if o.len() >= KEEP_LINES {
            o.pop_front();
        }
        o.push_back(line);
    }
}

fn drain(stream: impl Read, output: &Mutex<VecDeque<String>>, echo: bool) {
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        keep(output, line, echo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_stats_are_read() {
        let s = ProcStats::of(std::process::id()).expect("our own /proc entry");
        assert!(s.rss_bytes > 0 && s.peak_rss_bytes >= s.rss_bytes, "{s:?}");
    }
}
