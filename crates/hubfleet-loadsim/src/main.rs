//! `hubfleet-loadsim`: run a load scenario against a hub URL and print per-phase latency
//! percentiles, retries and failures (and optionally write the full report as JSON).

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hubfleet_loadsim::process_usage::ProcessSampler;
use hubfleet_loadsim::{Distribution, Password, RunOptions, Scenario};

#[derive(Parser)]
#[command(
    name = "hubfleet-loadsim",
    about = "Load simulator for hubs (hubfleet or JupyterHub)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario against a hub.
    Run(Box<RunArgs>),
    /// Print the built-in scenarios as YAML (a starting point for --scenario-file).
    Scenarios,
    /// Print the path of the lightweight single-user stand-in script, for a hub's spawner command.
    StandinPath,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The hub's public URL (hubfleet's `listen`, or JupyterHub's proxy).
    #[arg(long)]
    url: String,
    /// A built-in scenario: workshop-60, class-600, research-group-5.
    #[arg(
        long,
        conflicts_with = "scenario_file",
        required_unless_present = "scenario_file"
    )]
    scenario: Option<String>,
    /// A YAML scenario file (see `hubfleet-loadsim scenarios`).
    #[arg(long)]
    scenario_file: Option<PathBuf>,
    /// Override the number of users.
    #[arg(long)]
    users: Option<u32>,
    /// Override the arrival window, e.g. `60s`, `2m`.
    #[arg(long, value_parser = hubfleet_loadsim::parse_duration)]
    over: Option<Duration>,
    /// Override the arrival distribution: uniform or burst.
    #[arg(long, value_parser = parse_distribution)]
    distribution: Option<Distribution>,
    /// Override how long each user idles on the lab page before stopping.
    #[arg(long, value_parser = hubfleet_loadsim::parse_duration)]
    idle: Option<Duration>,
    /// Override the per-user deadline.
    #[arg(long, value_parser = hubfleet_loadsim::parse_duration)]
    user_timeout: Option<Duration>,
    /// Override the user name prefix (names are <prefix>0001, …).
    #[arg(long)]
    user_prefix: Option<String>,
    /// The password every simulated user logs in with.
    #[arg(long, env = "HUBFLEET_LOADSIM_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// An admin API token used to stop servers (otherwise users stop their own with cookies).
    #[arg(long, env = "HUBFLEET_LOADSIM_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Skip the kernel phases (for the lightweight stand-in, which has no kernels).
    #[arg(long)]
    no_kernel: bool,
    /// Leave servers running at the end.
    #[arg(long)]
    no_stop: bool,
    /// Pid of a hub process (repeatable) whose CPU seconds over the run and peak RSS to report.
    #[arg(long = "hub-pid")]
    hub_pids: Vec<u32>,
    /// Write the full report (every user's outcome) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Do not print a progress dot per finished user.
    #[arg(long)]
    quiet: bool,
}

fn parse_distribution(text: &str) -> Result<Distribution, String> {
    match text {
        "uniform" => Ok(Distribution::Uniform),
        "burst" => Ok(Distribution::Burst),
        other => Err(format!(
            "unknown distribution {other:?}; use uniform or burst"
        )),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Scenarios => {
            let presets: Vec<Scenario> = hubfleet_loadsim::PRESET_NAMES
                .iter()
                .filter_map(|name| Scenario::preset(name))
                .collect();
            for scenario in presets {
                println!("# --scenario {}", scenario.name);
                println!("{}", scenario_as_yaml(&scenario)?);
            }
            Ok(())
        }
        Command::StandinPath => {
            println!("{}", hubfleet_loadsim::standin_script_path().display());
            Ok(())
        }
        Command::Run(args) => run(*args),
    }
}

/// Scenarios print as JSON-flavoured YAML (JSON is valid YAML 1.2), which avoids a YAML writer.
fn scenario_as_yaml(scenario: &Scenario) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(scenario)?)
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut scenario = match (&args.scenario, &args.scenario_file) {
        (Some(name), _) => hubfleet_loadsim::preset(name)?,
        (None, Some(path)) => Scenario::from_file(path)?,
        (None, None) => anyhow::bail!("give --scenario or --scenario-file"),
    };
    if let Some(users) = args.users {
        scenario.users = users;
    }
    if let Some(window) = args.over {
        scenario.arrival.window = window;
    }
    if let Some(distribution) = args.distribution {
        scenario.arrival.distribution = distribution;
    }
    if let Some(idle) = args.idle {
        scenario.idle = idle;
    }
    if let Some(timeout) = args.user_timeout {
        scenario.user_timeout = timeout;
    }
    if let Some(prefix) = args.user_prefix {
        scenario.user_prefix = prefix;
    }
    if let Some(password) = args.password {
        scenario.password = Password::new(password);
    }
    if args.no_kernel {
        scenario.kernel = false;
    }
    if args.no_stop {
        scenario.stop = false;
    }
    scenario.validate()?;
    if scenario.password.is_empty() {
        anyhow::bail!(
            "no password: give --password, HUBFLEET_LOADSIM_PASSWORD or `password:` in the scenario"
        );
    }
    eprintln!(
        "running {} ({} users over {:.0} s, kernel {}) against {}",
        scenario.name,
        scenario.users,
        scenario.arrival.window.as_secs_f64(),
        scenario.kernel,
        args.url
    );
    let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
    let sampler =
        ProcessSampler::start(&args.hub_pids).context("read the hub processes' CPU time")?;
    let quiet = args.quiet;
    let options = RunOptions {
        url: args.url,
        scenario,
        api_token: args.api_token.map(Password::new),
    };
    let mut report = runtime.block_on(hubfleet_loadsim::run(options, move |outcome| {
        if !quiet {
            let mark = match (&outcome.failure, outcome.retries) {
                (Some(_), _) => "x",
                (None, 0) => ".",
                (None, _) => "r",
            };
            let mut stderr = std::io::stderr();
            let _ = stderr.write_all(mark.as_bytes());
            let _ = stderr.flush();
        }
    }))?;
    if !quiet {
        eprintln!();
    }
    report.hub_processes = sampler.finish().context("read the hub processes' usage")?;
    print!("{}", report.to_table());
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, json).with_context(|| format!("write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
