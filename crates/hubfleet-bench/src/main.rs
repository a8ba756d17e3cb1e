//! Benchmarks that run hubfleet and its stock peer in one invocation and print markdown tables
//! with medians and ratios.
//!
//! `hubfleet-bench proxy` measures HTTP throughput and latency, WebSocket round trips and memory
//! for hubfleet's proxy against direct access, nginx as a reverse proxy and
//! configurable-http-proxy, all in front of the same nginx static upstream. `login-to-lab`,
//! `rest-api` and `startup-at-scale` compare the hub with stock JupyterHub (see their modules).

mod hubs;
mod login;
mod rest;
mod startup;
mod tools;
mod ws;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand, ValueEnum};
use futures_util::{StreamExt, stream};

use tools::{
    Process, WrkResult, free_port, load_average, median, run_wrk, start_nginx, wait_for_port,
};

#[derive(Debug, Parser)]
#[command(about = "Benchmarks for hubfleet")]
struct Cli {
    #[command(subcommand)]
    command: Benchmark,
}

#[derive(Debug, Subcommand)]
enum Benchmark {
    /// The routing proxy against direct access, nginx and configurable-http-proxy.
    Proxy(ProxyArgs),
    /// Login to a served JupyterLab, and hub + proxy memory, against JupyterHub + CHP.
    LoginToLab(login::LoginArgs),
    /// The REST API with many users, against JupyterHub.
    RestApi(rest::RestArgs),
    /// Time for a restarted hub to answer with many users and running servers.
    StartupAtScale(startup::StartupArgs),
}

#[derive(Debug, clap::Args)]
struct ProxyArgs {
    /// A prebuilt `hubfleet`; by default the harness runs `cargo build --profile bench-proxy -p hubfleet`.
    #[arg(long)]
    hubfleet_bin: Option<PathBuf>,
    /// A `configurable-http-proxy` executable; by default `<workspace>/.cache/node`, installed with npm if absent.
    #[arg(long)]
    chp_bin: Option<PathBuf>,
    /// Which setups to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,nginx,chp,hubfleet"
    )]
    proxies: Vec<Setup>,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// wrk runs per case; the report shows medians.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Concurrent connections per case.
    #[arg(long, value_delimiter = ',', default_value = "32,256")]
    connections: Vec<u32>,
    /// Echo round trips timed per setup.
    #[arg(long, default_value_t = 2000)]
    ws_round_trips: usize,
    /// Routes added for the memory measurement (CHP and hubfleet).
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// Idle WebSockets held open for the memory measurement (CHP and hubfleet).
    #[arg(long, default_value_t = 5_000)]
    idle_websockets: usize,
    /// Requests after which hubfleet's RSS is read first, and finally (the growth check).
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    growth_requests: Vec<u64>,
    /// Skip the wrk runs, so memory is measured on a fresh proxy (connection buffers retained
    /// after heavy traffic otherwise dominate the figures).
    #[arg(long)]
    skip_http: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Setup {
    Direct,
    Nginx,
    Chp,
    Hubfleet,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Nginx => "nginx proxy",
            Self::Chp => "CHP 5.3.0",
            Self::Hubfleet => "hubfleet proxy",
        }
    }
}

/// The static files served by the upstream.
const FILES: [(&str, usize); 2] = [("1KiB", 1024), ("1MiB", 1024 * 1024)];

/// The shared token for the CHP-compatible REST APIs.
const API_TOKEN: &str = "bench-api-token";

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Benchmark::Proxy(args) => run_proxy_benchmark(args).await,
        Benchmark::LoginToLab(args) => login::run(args).await,
        Benchmark::RestApi(args) => rest::run(args).await,
        Benchmark::StartupAtScale(args) => startup::run(args).await,
    }
}

/// `given`, or a `--profile bench-proxy` build of hubfleet.
fn hubfleet_bin(given: Option<&Path>) -> Result<PathBuf> {
    match given {
        Some(bin) => Ok(bin.to_path_buf()),
        None => build_hubfleet(&workspace_root()),
    }
}

/// "Reproduce: `…`" with this invocation's arguments.
fn reproduce_line() -> String {
    let command: Vec<String> = std::env::args().skip(1).collect();
    format!(
        "Reproduce: `cargo run --profile bench-proxy -p hubfleet-bench -- {}`",
        command.join(" ")
    )
}

/// Everything measured for one setup.
#[derive(Debug, Default)]
struct SetupReport {
    http: Vec<(&'static str, u32, WrkResult)>,
    ws: Option<ws::RoundTrips>,
    rss_start_kib: u64,
    rss_after_http_kib: u64,
    rss_routes_kib: Option<u64>,
    rss_idle_ws_kib: Option<u64>,
    growth: Vec<(u64, u64)>,
}

async fn run_proxy_benchmark(args: ProxyArgs) -> Result<()> {
    let workspace = workspace_root();
    let hubfleet_bin = if args.proxies.contains(&Setup::Hubfleet) {
        Some(match &args.hubfleet_bin {
            Some(bin) => bin.clone(),
            None => build_hubfleet(&workspace)?,
        })
    } else {
        None
    };
    let chp_bin = if args.proxies.contains(&Setup::Chp) {
        Some(match &args.chp_bin {
            Some(bin) => bin.clone(),
            None => install_chp(&workspace)?,
        })
    } else {
        None
    };

    let dir = tempfile::Builder::new()
        .prefix("hubfleet-bench-")
        .tempdir()?;
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www)?;
    for (name, size) in FILES {
        std::fs::write(www.join(format!("{name}.bin")), vec![b'x'; size])?;
    }
    let static_port = free_port()?;
    // One worker: the upstream must not take a core away from the proxy under test.
    let _upstream = start_nginx(
        "upstream",
        dir.path(),
        |prefix| tools::nginx_static_config(prefix, &www, static_port, 1),
        static_port,
    )
    .await?;
    let echo_port = ws::start_echo_server().await?;

    let load_at_start = load_average();
    let mut reports = Vec::new();
    for &setup in &args.proxies {
        eprintln!("== {}", setup.label());
        let report = measure_setup(
            setup,
            &args,
            dir.path(),
            static_port,
            echo_port,
            hubfleet_bin.as_deref(),
            chp_bin.as_deref(),
        )
        .await
        .with_context(|| format!("measuring {}", setup.label()))?;
        reports.push((setup, report));
    }
    print!("{}", render_report(&args, &reports));
    println!(
        "Load average (1, 5, 15 min) at start: {load_at_start}; at end: {}",
        load_average()
    );
    Ok(())
}

/// A proxy under test, reachable at `http_base` and `ws_url`.
struct Running {
    process: Option<Process>,
    http_base: String,
    ws_url: String,
    api_base: Option<String>,
}

async fn start_setup(
    setup: Setup,
    dir: &Path,
    static_port: u16,
    echo_port: u16,
    hubfleet_bin: Option<&Path>,
    chp_bin: Option<&Path>,
) -> Result<Running> {
    let port = free_port()?;
    let api_port = free_port()?;
    let chp_like = |program: &Path, extra: &[&str]| {
        let mut command = Command::new(program);
        command.args(extra).args([
            "--ip",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--api-ip",
            "127.0.0.1",
            "--api-port",
            &api_port.to_string(),
            "--log-level",
            "error",
        ]);
        command.env("CONFIGPROXY_AUTH_TOKEN", API_TOKEN);
        command
    };
    let process = match setup {
        Setup::Direct => {
            return Ok(Running {
                process: None,
                http_base: format!("http://127.0.0.1:{static_port}"),
                ws_url: format!("ws://127.0.0.1:{echo_port}/ws/echo"),
                api_base: None,
            });
        }
        Setup::Nginx => {
            let process = start_nginx(
                "nginx-proxy",
                dir,
                |prefix| tools::nginx_proxy_config(prefix, port, static_port, echo_port, 2),
                port,
            )
            .await?;
            return Ok(Running {
                process: Some(process),
                http_base: format!("http://127.0.0.1:{port}"),
                ws_url: format!("ws://127.0.0.1:{port}/ws/echo"),
                api_base: None,
            });
        }
        Setup::Chp => Process::spawn("chp", chp_like(chp_bin.context("no CHP binary")?, &[]), dir)?,
        Setup::Hubfleet => Process::spawn(
            "hubfleet-proxy",
            chp_like(hubfleet_bin.context("no hubfleet binary")?, &["proxy"]),
            dir,
        )?,
    };
    let mut process = process;
    wait_for_port(port, Duration::from_secs(30), &mut process).await?;
    wait_for_port(api_port, Duration::from_secs(30), &mut process).await?;
    let api_base = format!("http://127.0.0.1:{api_port}");
    let client = reqwest::Client::new();
    add_route(
        &client,
        &api_base,
        "/",
        &format!("http://127.0.0.1:{static_port}"),
    )
    .await?;
    add_route(
        &client,
        &api_base,
        "/ws",
        &format!("http://127.0.0.1:{echo_port}"),
    )
    .await?;
    Ok(Running {
        process: Some(process),
        http_base: format!("http://127.0.0.1:{port}"),
        ws_url: format!("ws://127.0.0.1:{port}/ws/echo"),
        api_base: Some(api_base),
    })
}

async fn add_route(
    client: &reqwest::Client,
    api_base: &str,
    path: &str,
    target: &str,
) -> Result<()> {
    let response = client
        .post(format!("{api_base}/api/routes{path}"))
        .header("Authorization", format!("token {API_TOKEN}"))
        .json(&serde_json::json!({ "target": target }))
        .send()
        .await?;
    ensure!(
        response.status() == reqwest::StatusCode::CREATED,
        "add route {path}: {}",
        response.status()
    );
    Ok(())
}

async fn measure_setup(
    setup: Setup,
    args: &ProxyArgs,
    dir: &Path,
    static_port: u16,
    echo_port: u16,
    hubfleet_bin: Option<&Path>,
    chp_bin: Option<&Path>,
) -> Result<SetupReport> {
    let mut running =
        start_setup(setup, dir, static_port, echo_port, hubfleet_bin, chp_bin).await?;
    let rss = |running: &Running| running.process.as_ref().map_or(0, Process::rss_kib);
    let mut report = SetupReport {
        rss_start_kib: rss(&running),
        ..SetupReport::default()
    };

    for (file, _) in FILES.iter().filter(|_| !args.skip_http) {
        let url = format!("{}/{file}.bin", running.http_base);
        for &connections in &args.connections {
            let mut runs = Vec::new();
            for _ in 0..args.repeats {
                let cpu_before = running.process.as_ref().map(Process::cpu_us);
                let mut run =
                    run_wrk(&url, connections, Duration::from_secs(args.duration)).await?;
                if let (Some(before), Some(process)) = (cpu_before, running.process.as_ref()) {
                    let used = process.cpu_us().saturating_sub(before);
                    run.proxy_cpu_us_per_request = Some(used as f64 / run.requests.max(1) as f64);
                }
                eprintln!(
                    "   {file} c={connections}: {:.0} req/s p50 {:.2} ms p99 {:.2} ms errors {} proxy CPU {} µs/req (load {})",
                    run.requests_per_sec,
                    run.p50_ms,
                    run.p99_ms,
                    run.errors,
                    run.proxy_cpu_us_per_request
                        .map_or("–".to_owned(), |us| format!("{us:.1}")),
                    load_average(),
                );
                runs.push(run);
            }
            report.http.push((file, connections, median_run(&runs)));
        }
    }
    if let Some(process) = running.process.as_mut() {
        process.ensure_running()?;
    }
    report.rss_after_http_kib = rss(&running);

    let trips = ws::measure_round_trips(&running.ws_url, args.ws_round_trips).await?;
    eprintln!(
        "   ws round trip p50 {:.3} ms p99 {:.3} ms",
        trips.p50_ms, trips.p99_ms
    );
    report.ws = Some(trips);

    if let Some(api_base) = running.api_base.clone() {
        let started = Instant::now();
        add_many_routes(&api_base, args.routes, static_port).await?;
        report.rss_routes_kib = Some(rss(&running));
        eprintln!(
            "   {} routes added in {:.1} s; RSS {} KiB",
            args.routes,
            started.elapsed().as_secs_f64(),
            rss(&running)
        );
        let sockets = ws::open_idle_sockets(&running.ws_url, args.idle_websockets).await?;
        report.rss_idle_ws_kib = Some(rss(&running));
        eprintln!(
            "   {} idle websockets; RSS {} KiB",
            sockets.len(),
            rss(&running)
        );
        drop(sockets);
    }

    if setup == Setup::Hubfleet {
        let url = format!("{}/{}.bin", running.http_base, FILES[0].0);
        let mut done = 0;
        for &target in &args.growth_requests {
            done += drive_requests(&url, target.saturating_sub(done)).await?;
            let rss_now = rss(&running);
            eprintln!("   after {done} requests: RSS {rss_now} KiB");
            report.growth.push((done, rss_now));
        }
    }
    if let Some(process) = running.process.as_mut() {
        process.ensure_running()?;
    }
    Ok(report)
}

/// The median of each figure across repeated runs.
fn median_run(runs: &[WrkResult]) -> WrkResult {
    let pick = |f: fn(&WrkResult) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    WrkResult {
        requests: runs.iter().map(|r| r.requests).sum(),
        requests_per_sec: pick(|r| r.requests_per_sec),
        p50_ms: pick(|r| r.p50_ms),
        p99_ms: pick(|r| r.p99_ms),
        errors: runs.iter().map(|r| r.errors).sum(),
        proxy_cpu_us_per_request: {
            let mut cpu: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.proxy_cpu_us_per_request)
                .collect();
            (!cpu.is_empty()).then(|| median(&mut cpu))
        },
    }
}

async fn add_many_routes(api_base: &str, count: usize, static_port: u16) -> Result<()> {
    let client = reqwest::Client::new();
    let target = format!("http://127.0.0.1:{static_port}");
    let failures: Vec<anyhow::Error> = stream::iter(0..count)
        .map(|i| {
            let (client, target) = (&client, &target);
            async move { add_route(client, api_base, &format!("/user/bench-{i:05}"), target).await }
        })
        .buffer_unordered(16)
        .filter_map(|result| async move { result.err() })
        .collect()
        .await;
    if let Some(first) = failures.into_iter().next() {
        return Err(first.context("adding routes"));
    }
    Ok(())
}

/// Sends at least `count` requests with wrk (64 connections), in runs of at most 30 s, and
/// gives up after five minutes. Returns how many were sent.
async fn drive_requests(url: &str, count: u64) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut sent = 0;
    let mut rate = 10_000.0_f64;
    while sent < count {
        if Instant::now() > deadline {
            bail!("only {sent} of {count} requests in five minutes");
        }
        let seconds = (((count - sent) as f64 / rate) * 1.05)
            .ceil()
            .clamp(1.0, 30.0);
        let run = run_wrk(url, 64, Duration::from_secs_f64(seconds)).await?;
        ensure!(
            run.errors == 0,
            "{} errors while driving requests",
            run.errors
        );
        sent += run.requests;
        rate = run.requests_per_sec.max(100.0);
    }
    Ok(sent)
}

fn render_report(args: &ProxyArgs, reports: &[(Setup, SetupReport)]) -> String {
    let mut out = String::new();
    let find = |setup: Setup| reports.iter().find(|(s, _)| *s == setup).map(|(_, r)| r);
    let _ = writeln!(
        out,
        "### Throughput and latency (wrk, medians of {} × {} s)\n",
        args.repeats, args.duration
    );
    let _ = writeln!(
        out,
        "| file | conns | setup | req/s | p50 ms | p99 ms | errors | proxy CPU µs/req |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|");
    for (file, _) in FILES {
        for &connections in &args.connections {
            for (setup, report) in reports {
                if let Some((_, _, run)) = report
                    .http
                    .iter()
                    .find(|(f, c, _)| *f == file && *c == connections)
                {
                    let _ = writeln!(
                        out,
                        "| {file} | {connections} | {} | {:.0} | {:.2} | {:.2} | {} | {} |",
                        setup.label(),
                        run.requests_per_sec,
                        run.p50_ms,
                        run.p99_ms,
                        run.errors,
                        run.proxy_cpu_us_per_request
                            .map_or("–".to_owned(), |us| format!("{us:.1}")),
                    );
                }
            }
        }
    }

    let lookup = |setup: Setup, file: &str, connections: u32| {
        find(setup)?
            .http
            .iter()
            .find(|(f, c, _)| *f == file && *c == connections)
            .map(|(_, _, r)| *r)
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".to_owned(),
    };
    let _ = writeln!(
        out,
        "\n### Ratios (hubfleet ÷ other; req/s higher is better, p99 lower is better)\n"
    );
    let _ = writeln!(
        out,
        "| file | conns | req/s ÷ nginx | req/s ÷ CHP | ceiling: direct ÷ CHP | req/s ÷ direct | p99 ÷ nginx | p99 ÷ CHP | CPU/req ÷ nginx | CPU/req ÷ CHP |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (file, _) in FILES {
        for &connections in &args.connections {
            let hub = lookup(Setup::Hubfleet, file, connections);
            let nginx = lookup(Setup::Nginx, file, connections);
            let chp = lookup(Setup::Chp, file, connections);
            let direct = lookup(Setup::Direct, file, connections);
            let rps = |r: Option<WrkResult>| r.map(|r| r.requests_per_sec);
            let p99 = |r: Option<WrkResult>| r.map(|r| r.p99_ms);
            let cpu = |r: Option<WrkResult>| r.and_then(|r| r.proxy_cpu_us_per_request);
            let _ = writeln!(
                out,
                "| {file} | {connections} | {} | {} | {} | {} | {} | {} | {} | {} |",
                ratio(rps(hub), rps(nginx)),
                ratio(rps(hub), rps(chp)),
                ratio(rps(direct), rps(chp)),
                ratio(rps(hub), rps(direct)),
                ratio(p99(hub), p99(nginx)),
                ratio(p99(hub), p99(chp)),
                ratio(cpu(hub), cpu(nginx)),
                ratio(cpu(hub), cpu(chp)),
            );
        }
    }
    let _ = writeln!(
        out,
        "\nNo proxy can serve more than the upstream does directly, so \"direct ÷ CHP\" is the \
         highest \"req/s ÷ CHP\" any proxy can reach on this machine."
    );

    let _ = writeln!(
        out,
        "\n### WebSocket echo round trip ({} sequential 64-byte messages)\n",
        args.ws_round_trips
    );
    let _ = writeln!(out, "| setup | p50 ms | p99 ms |");
    let _ = writeln!(out, "|---|---:|---:|");
    for (setup, report) in reports {
        if let Some(trips) = report.ws {
            let _ = writeln!(
                out,
                "| {} | {:.3} | {:.3} |",
                setup.label(),
                trips.p50_ms,
                trips.p99_ms
            );
        }
    }

    let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
    let opt = |kib: Option<u64>| kib.map_or("–".to_owned(), mib);
    let _ = writeln!(
        out,
        "\n### Memory (RSS MiB; nginx counts master + workers)\n"
    );
    let _ = writeln!(
        out,
        "| setup | at start | after wrk runs | + {} routes | + {} idle websockets |",
        args.routes, args.idle_websockets
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for (setup, report) in reports {
        if *setup == Setup::Direct {
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            setup.label(),
            mib(report.rss_start_kib),
            mib(report.rss_after_http_kib),
            opt(report.rss_routes_kib),
            opt(report.rss_idle_ws_kib),
        );
    }
    if let Some(hub) = find(Setup::Hubfleet).filter(|r| !r.growth.is_empty()) {
        let _ = writeln!(
            out,
            "\nhubfleet RSS growth check (1 KiB GETs, 64 connections, after the rows above):\n"
        );
        let _ = writeln!(out, "| requests sent | RSS MiB |");
        let _ = writeln!(out, "|---:|---:|");
        for (requests, kib) in &hub.growth {
            let _ = writeln!(out, "| {requests} | {} |", mib(*kib));
        }
    }

    let command: Vec<String> = std::env::args().collect();
    let _ = writeln!(
        out,
        "\nReproduce: `cargo run --profile bench-proxy -p hubfleet-bench -- {}`\n",
        command
            .iter()
            .skip(1)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(out, "Machine: {}", machine_notes());
    out
}

fn machine_notes() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let version = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                let first = text.lines().next().unwrap_or_default();
                // wrk appends a copyright notice to its version line.
                first
                    .split(" Copyright")
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default()
    };
    format!(
        "{cores} cores, {cpu}; {}; {}; node {}",
        version("nginx", "-v"),
        version("wrk", "-v"),
        version("node", "--version")
    )
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/hubfleet-bench sits two levels below the workspace")
        .to_path_buf()
}

/// Builds `hubfleet` with the fat-LTO `bench-proxy` profile and returns the binary's path.
fn build_hubfleet(workspace: &Path) -> Result<PathBuf> {
    eprintln!("building hubfleet with --profile bench-proxy (minutes on two cores)");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--profile", "bench-proxy", "-p", "hubfleet"])
        .current_dir(workspace)
        .status()
        .context("run cargo")?;
    ensure!(
        status.success(),
        "cargo build --profile bench-proxy -p hubfleet failed"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    Ok(target.join("bench-proxy").join("hubfleet"))
}

/// configurable-http-proxy 5.3.0 under `<workspace>/.cache/node`, installed with npm if absent.
fn install_chp(workspace: &Path) -> Result<PathBuf> {
    let prefix = workspace.join(".cache").join("node");
    let bin = prefix.join("node_modules/.bin/configurable-http-proxy");
    if !bin.is_file() {
        eprintln!(
            "installing configurable-http-proxy@5.3.0 into {}",
            prefix.display()
        );
        std::fs::create_dir_all(&prefix)?;
        let status = Command::new("npm")
            .args(["install", "--prefix"])
            .arg(&prefix)
            .arg("configurable-http-proxy@5.3.0")
            .status()
            .context("run npm")?;
        ensure!(
            status.success(),
            "npm install configurable-http-proxy failed"
        );
    }
    Ok(bin)
}
