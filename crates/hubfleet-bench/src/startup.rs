//! `hubfleet-bench startup-at-scale`: how soon a restarted hub answers with many users and
//! running servers in its database. Each hub is filled through its REST API, servers (a tiny
//! stdlib HTTP stand-in) are started, the hub alone is SIGKILLed (proxy and servers keep
//! running), and the time from exec to the first 200 from `GET /hub/api/` through the proxy and
//! to the first user model showing a running server is measured; hubfleet on SQLite and
//! PostgreSQL, stock JupyterHub at a scale that fits in time.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures_util::{StreamExt, stream};
use reqwest::StatusCode;

use crate::hubs::{self, Database, Hub, HubfleetHub, ServerCommand, StockHub};
use crate::login::server_ready;
use crate::tools::median;

#[derive(Debug, clap::Args)]
pub struct StartupArgs {
    /// A prebuilt `hubfleet`; by default the harness builds it with `--profile bench-proxy`.
    #[arg(long)]
    pub hubfleet_bin: Option<PathBuf>,
    /// PostgreSQL cluster in which each run creates a fresh database.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:55432/postgres")]
    pub postgres: String,
    /// hubfleet databases to measure.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    pub dbs: Vec<String>,
    /// Users in hubfleet's database.
    #[arg(long, default_value_t = 50_000)]
    pub users: usize,
    /// Running servers in hubfleet's database (halved while memory is short: ~10 MiB each).
    #[arg(long, default_value_t = 1000)]
    pub servers: usize,
    /// Restarts timed per hub.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// The stock JupyterHub venv; `none` skips JupyterHub.
    #[arg(long, default_value = "6.1.1")]
    pub jupyterhub_version: String,
    /// Users in JupyterHub's database.
    #[arg(long, default_value_t = 5000)]
    pub jupyterhub_users: usize,
    /// Running servers in JupyterHub's database.
    #[arg(long, default_value_t = 100)]
    pub jupyterhub_servers: usize,
    /// Restarts timed for JupyterHub.
    #[arg(long, default_value_t = 1)]
    pub jupyterhub_repeats: usize,
}

/// One restart: seconds from exec to the API answering, and to a correct user model.
#[derive(Debug, Clone, Copy)]
struct Restart {
    api_s: f64,
    user_s: f64,
}

struct Report {
    label: String,
    users: usize,
    servers: usize,
    prepare_s: f64,
    restarts: Vec<Restart>,
}

fn mem_available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

/// `servers`, or fewer if they would not fit in memory with 4 GiB to spare.
fn affordable_servers(servers: usize) -> usize {
    let mut count = servers;
    while count > 50 && (count as u64) * 12 + 4096 > mem_available_mib() {
        count /= 2;
    }
    if count != servers {
        eprintln!(
            "   only {} MiB available: {count} servers instead of {servers}",
            mem_available_mib()
        );
    }
    count
}

pub async fn run(args: StartupArgs) -> Result<()> {
    let scripts = tempfile::Builder::new()
        .prefix("hubfleet-bench-standin-")
        .tempdir()?;
    std::fs::set_permissions(
        scripts.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let standin = ServerCommand::standin(scripts.path())?;
    let mut reports = Vec::new();
    for db in &args.dbs {
        let database = match db.as_str() {
            "sqlite" => Database::Sqlite,
            "postgres" => Database::Postgres(args.postgres.clone()),
            other => bail!("unknown database {other:?}"),
        };
        eprintln!("== hubfleet ({})", database.label());
        let bin = crate::hubfleet_bin(args.hubfleet_bin.as_deref())?;
        let servers = affordable_servers(args.servers);
        let spawner = "  concurrent_starts: 50\n  max_queue: 5000\n";
        let mut hub = HubfleetHub::start(&bin, &database, &standin, spawner).await?;
        let started = Instant::now();
        let (servers, someone) = prepare(&hub, args.users, servers).await?;
        let prepare_s = started.elapsed().as_secs_f64();
        let mut restarts = Vec::new();
        for _ in 0..args.repeats {
            hub.kill_hub()?;
            let (exec, api) = hub.launch(Duration::from_secs(120)).await?;
            let restart = time_user(&hub, &someone, exec, api, Duration::from_secs(600)).await?;
            eprintln!(
                "   restart: API after {:.3} s, {someone}'s running server after {:.3} s",
                restart.api_s, restart.user_s
            );
            restarts.push(restart);
        }
        reports.push(Report {
            label: hub.label(),
            users: args.users,
            servers,
            prepare_s,
            restarts,
        });
        drop(hub);
    }

    if args.jupyterhub_version != "none" {
        eprintln!("== JupyterHub {}", args.jupyterhub_version);
        let servers = affordable_servers(args.jupyterhub_servers);
        let mut hub = StockHub::start(&args.jupyterhub_version, &standin, "").await?;
        let started = Instant::now();
        let (servers, someone) = prepare(&hub, args.jupyterhub_users, servers).await?;
        let prepare_s = started.elapsed().as_secs_f64();
        let mut restarts = Vec::new();
        for _ in 0..args.jupyterhub_repeats {
            hub.kill_hub()?;
            let (exec, api) = hub.launch(Duration::from_secs(1800)).await?;
            let restart = time_user(&hub, &someone, exec, api, Duration::from_secs(1800)).await?;
            eprintln!(
                "   restart: API after {:.3} s, {someone}'s running server after {:.3} s",
                restart.api_s, restart.user_s
            );
            restarts.push(restart);
        }
        reports.push(Report {
            label: hub.label(),
            users: args.jupyterhub_users,
            servers,
            prepare_s,
            restarts,
        });
    }
    print!("{}", render(&reports));
    Ok(())
}

/// Creates `users` users in batches of 1000 and starts the first `servers` servers; returns
/// how many servers are running and the name of a user with one, once no start is in flight.
async fn prepare(hub: &dyn Hub, users: usize, servers: usize) -> Result<(usize, String)> {
    let client = hubs::api_client()?;
    let started = Instant::now();
    let names: Vec<String> = (0..users).map(|i| format!("s{i:06}")).collect();
    for batch in names.chunks(1000) {
        hubs::bulk_create(&client, hub, batch).await?;
    }
    eprintln!(
        "   {users} users created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let failures: Vec<anyhow::Error> = stream::iter(&names[..servers])
        .map(|name| {
            let client = &client;
            async move {
                let response = client
                    .post(format!("{}/hub/api/users/{name}/server", hub.public_url()))
                    .header("Authorization", format!("token {}", hub.token()))
                    .send()
                    .await?;
                let status = response.status();
                ensure!(
                    status.is_success(),
                    "start {name}: {status}: {}",
                    response.text().await.unwrap_or_default()
                );
                Ok(())
            }
        })
        .buffer_unordered(100)
        .filter_map(|result| async move { result.err() })
        .collect()
        .await;
    if let Some(first) = failures.into_iter().next() {
        return Err(first.context("starting servers"));
    }
    // Wait until no start is in flight; servers that failed to start are left out.
    let count = |state: &'static str| {
        let client = &client;
        async move {
            let response = client
                .get(format!(
                    "{}/hub/api/users?state={state}&limit=1",
                    hub.public_url()
                ))
                .header("Authorization", format!("token {}", hub.token()))
                .header("Accept", "application/jupyterhub-pagination+json")
                .send()
                .await?;
            ensure!(response.status() == StatusCode::OK, "{}", response.status());
            let page: serde_json::Value = response.json().await?;
            let first = page["items"][0]["name"].as_str().map(str::to_owned);
            Ok::<_, anyhow::Error>((
                page["_pagination"]["total"].as_u64().unwrap_or(0) as usize,
                first,
            ))
        }
    };
    let (ready, someone) = hubs::poll(
        "every start to finish",
        Duration::from_secs(1200),
        Duration::from_millis(500),
        || async {
            let (ready, first) = count("ready").await?;
            let (active, _) = count("active").await?;
            Ok((ready > 0 && ready == active).then_some((ready, first)))
        },
    )
    .await?;
    eprintln!(
        "   {ready} of {servers} servers ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((ready, someone.context("no ready user")?))
}

/// Polls `GET /hub/api/users/<someone>` until it shows the default server ready.
async fn time_user(
    hub: &dyn Hub,
    someone: &str,
    exec: Instant,
    api: Instant,
    timeout: Duration,
) -> Result<Restart> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let user = hubs::poll(
        "a correct user model after the restart",
        timeout,
        Duration::from_millis(2),
        || async {
            let Ok(response) = hubs::api_get(&client, hub, &format!("/users/{someone}")).await
            else {
                return Ok(None);
            };
            if response.status() != StatusCode::OK {
                return Ok(None);
            }
            let model: serde_json::Value = response.json().await?;
            Ok(server_ready(&model).then(Instant::now))
        },
    )
    .await?;
    Ok(Restart {
        api_s: (api - exec).as_secs_f64(),
        user_s: (user - exec).as_secs_f64(),
    })
}

fn render(reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Start-up at scale (hub SIGKILLed, proxy and servers left running; seconds from exec; medians)\n"
    );
    let _ = writeln!(
        out,
        "| hub | users | running servers | to first 200 `GET /hub/api/` | to user model with running server | runs (api / user) | prepare s |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|---:|");
    for r in reports {
        let api = median(&mut r.restarts.iter().map(|x| x.api_s).collect::<Vec<_>>());
        let user = median(&mut r.restarts.iter().map(|x| x.user_s).collect::<Vec<_>>());
        let runs: Vec<String> = r
            .restarts
            .iter()
            .map(|x| format!("{:.2} / {:.2}", x.api_s, x.user_s))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {api:.3} | {user:.3} | {} | {:.0} |",
            r.label,
            r.users,
            r.servers,
            runs.join("; "),
            r.prepare_s
        );
    }
    let _ = writeln!(out, "\n{}", crate::reproduce_line());
    out
}
