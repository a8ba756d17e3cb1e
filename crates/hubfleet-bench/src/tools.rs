//! The external programs the harness drives: child processes that die with the harness, nginx
//! configurations, `wrk` runs and their output, and memory readings from /proc.

use std::fmt::Write as _;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A child in its own process group with output in a log file; the group is killed on drop.
#[derive(Debug)]
pub struct Process {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    /// Set once the leader was killed alone and reaped: the group is left alone on drop.
    reaped: bool,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log)?;
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("spawn {name}: {command:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
            reaped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Total RSS of the process and its direct children (nginx's workers), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let mut pids = vec![self.pid()];
        pids.extend(child_pids(self.pid()));
        pids.into_iter()
            .map(|pid| proc_status_kib(pid, "VmRSS:"))
            .sum()
    }

    /// CPU time (user + system) used so far by the process and its direct children (nginx's
    /// workers), in microseconds. Read before and after a load run, it gives the proxy's cost per
    /// request, which other work on a shared machine hardly disturbs (unlike req/s).
    pub fn cpu_us(&self) -> u64 {
        let mut pids = vec![self.pid()];
        pids.extend(child_pids(self.pid()));
        let ticks: u64 = pids.into_iter().map(proc_cpu_ticks).sum();
        ticks * 1_000_000 / clock_ticks_per_second()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text[text.floor_char_boundary(start)..].to_owned()
    }

    /// SIGKILLs the process itself (not its group) and reaps it; whatever it started in other
    /// process groups keeps running.
    pub fn kill_leader(&mut self) -> Result<()> {
        nix::sys::signal::kill(Pid::from_raw(self.pid() as i32), Signal::SIGKILL)?;
        self.child.wait()?;
        self.reaped = true;
        Ok(())
    }

    /// Fails with the log tail if the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}):\n{}", self.name, self.log_tail());
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let _ = killpg(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn child_pids(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat[stat.rfind(')')? + 1..].to_owned();
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// utime + stime of one process, in clock ticks.
fn proc_cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name: state is the 1st, utime the 12th, stime the 13th.
            let after = stat[stat.rfind(')')? + 1..].to_owned();
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0)
}

fn clock_ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|ticks| u64::try_from(ticks).ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

/// The 1-, 5- and 15-minute load averages from /proc/loadavg, as printed there.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls until something accepts TCP connections on `port`, or fails after `timeout`.
pub async fn wait_for_port(port: u16, timeout: Duration, process: &mut Process) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(10);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        process.ensure_running()?;
        if Instant::now() > deadline {
            bail!(
                "{} did not listen on port {port} within {timeout:?}",
                process.name
            );
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// The common top of both nginx configurations: foreground, files in `dir`, no access log.
fn nginx_preamble(dir: &Path, workers: usize) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nworker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 16384; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         keepalive_requests 1000000;\n"
    )
}

/// nginx serving the files in `root` on 127.0.0.1:`port`.
pub fn nginx_static_config(dir: &Path, root: &Path, port: u16, workers: usize) -> String {
    let mut conf = nginx_preamble(dir, workers);
    let _ = write!(
        conf,
        "  sendfile on;\n  server {{\n    listen 127.0.0.1:{port};\n    root {};\n  }}\n}}\n",
        root.display()
    );
    conf
}

/// nginx as a reverse proxy: `/ws/` to the WebSocket echo server, everything else to the static
/// upstream, over keep-alive upstream connections.
pub fn nginx_proxy_config(
    dir: &Path,
    port: u16,
    static_port: u16,
    echo_port: u16,
    workers: usize,
) -> String {
    let mut conf = nginx_preamble(dir, workers);
    let _ = write!(
        conf,
        "  upstream static_upstream {{ server 127.0.0.1:{static_port}; keepalive 256; }}\n\
         upstream echo_upstream {{ server 127.0.0.1:{echo_port}; }}\n\
         server {{\n    listen 127.0.0.1:{port};\n\
         location /ws/ {{\n      proxy_pass http://echo_upstream;\n      proxy_http_version 1.1;\n\
         proxy_set_header Upgrade $http_upgrade;\n      proxy_set_header Connection \"upgrade\";\n\
         proxy_read_timeout 3600s;\n    }}\n\
         location / {{\n      proxy_pass http://static_upstream;\n      proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n\
         proxy_buffers 16 64k;\n      proxy_max_temp_file_size 0;\n\
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n}}\n"
    );
    conf
}

/// Starts nginx with `conf` written into its own directory under `dir`.
pub async fn start_nginx(
    name: &str,
    dir: &Path,
    conf: impl FnOnce(&Path) -> String,
    port: u16,
) -> Result<Process> {
    let prefix = dir.join(name);
    std::fs::create_dir_all(&prefix)?;
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf(&prefix))?;
    let mut command = Command::new("nginx");
    command.arg("-p").arg(&prefix).arg("-c").arg(&conf_path);
    let mut process = Process::spawn(name, command, dir)?;
    wait_for_port(port, Duration::from_secs(10), &mut process).await?;
    Ok(process)
}

/// What one `wrk --latency` run reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkResult {
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors plus non-2xx/3xx responses.
    pub errors: u64,
    /// CPU time the proxy process used per request during the run (µs); `None` without a proxy
    /// process (direct access).
    pub proxy_cpu_us_per_request: Option<f64>,
}

/// Runs `wrk -t2 -c<connections> -d<duration> --latency <url>`.
pub async fn run_wrk(url: &str, connections: u32, duration: Duration) -> Result<WrkResult> {
    let threads = connections.min(2);
    let output = tokio::process::Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("10s")
        .arg("--latency")
        .arg(url)
        .output()
        .await
        .context("run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("parse wrk output:\n{text}"))
}

fn parse_wrk(text: &str) -> Result<WrkResult> {
    let mut result = WrkResult::default();
    for line in text.lines().map(str::trim) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["50%", latency] => result.p50_ms = parse_latency_ms(latency)?,
            ["99%", latency] => result.p99_ms = parse_latency_ms(latency)?,
            ["Requests/sec:", rate] => result.requests_per_sec = rate.parse()?,
            [count, "requests", "in", ..] => result.requests = count.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                result.errors += count.parse::<u64>()?
            }
            ["Socket", "errors:", rest @ ..] => {
                result.errors += rest
                    .iter()
                    .filter_map(|field| field.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if result.requests == 0 {
        bail!("no requests counted");
    }
    Ok(result)
}

fn parse_latency_ms(text: &str) -> Result<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        bail!("unknown latency unit in {text:?}");
    };
    Ok(number.parse::<f64>()? * factor)
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_latency_output() {
        let text = "Running 2s test @ http://127.0.0.1:1/1k.bin\n  2 threads and 32 connections\n\
  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   1.10ms  300.00us   9.00ms   90.00%\n\
  Latency Distribution\n     50%  850.00us\n     75%    1.20ms\n     90%    2.00ms\n     99%    1.50s\n\
  54321 requests in 2.00s, 60.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
  Non-2xx or 3xx responses: 4\nRequests/sec:  27160.50\nTransfer/sec:     30.00MB\n";
        let result = parse_wrk(text).unwrap();
        assert_eq!(result.requests, 54321);
        assert!((result.requests_per_sec - 27160.5).abs() < 1e-9);
        assert!((result.p50_ms - 0.85).abs() < 1e-9);
        assert!((result.p99_ms - 1500.0).abs() < 1e-9);
        assert_eq!(result.errors, 7);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
