//! `hubfleet-bench rest-api`: the JupyterHub REST API under load, against hubfleet on SQLite and
//! PostgreSQL and stock JupyterHub, all through their proxies with an admin service token: bulk
//! user creation, a page of users with many users in the database, parallel single-user reads,
//! and a paginated walk of every user. hubfleet's database is filled through its API; stock
//! JupyterHub's (whose API creates ~50 users/s) by cloning a user its API created straight into
//! its stopped database, so both hubs are read with the same number of users.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use reqwest::StatusCode;

use crate::hubs::{self, Database, Hub, HubfleetHub, ServerCommand, StockHub};
use crate::tools::median;

#[derive(Debug, clap::Args)]
pub struct RestArgs {
    /// A prebuilt `hubfleet`; by default the harness builds it with `--profile bench-proxy`.
    #[arg(long)]
    pub hubfleet_bin: Option<PathBuf>,
    /// The stock JupyterHub venv (`.cache/envs/jh-<version>`).
    #[arg(long, default_value = "6.1.1")]
    pub jupyterhub_version: String,
    /// PostgreSQL cluster in which each run creates a fresh database.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:55432/postgres")]
    pub postgres: String,
    /// Which hubs to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "hubfleet-sqlite,hubfleet-postgres,jupyterhub"
    )]
    pub hubs: Vec<String>,
    /// Users per bulk-create request.
    #[arg(long, default_value_t = 1000)]
    pub bulk_size: usize,
    /// Timed bulk creates (fresh names each time).
    #[arg(long, default_value_t = 3)]
    pub bulk_repeats: usize,
    /// Users in the database for the read measurements (created in bulk batches).
    #[arg(long, default_value_t = 50_000)]
    pub users: usize,
    /// Seconds a hub may spend filling its database through the API; past it the reads run
    /// with what is there.
    #[arg(long, default_value_t = 600)]
    pub fill_budget: u64,
    /// How stock JupyterHub gets to `--users`: its API creates ~50 users/s here, so by default
    /// the users are cloned straight into its database while it is stopped (from one its API
    /// created), then it is restarted; `api` fills through the API within `--fill-budget`.
    #[arg(long, value_enum, default_value_t = StockFill::Database)]
    pub stock_fill: StockFill,
    /// Timed `GET /hub/api/users?limit=200`.
    #[arg(long, default_value_t = 11)]
    pub list_repeats: usize,
    /// Concurrent `GET /hub/api/users/{name}` per burst.
    #[arg(long, default_value_t = 200)]
    pub parallel: usize,
    /// Timed bursts.
    #[arg(long, default_value_t = 3)]
    pub parallel_repeats: usize,
    /// Timed paginated walks of every user.
    #[arg(long, default_value_t = 3)]
    pub walk_repeats: usize,
}

/// How stock JupyterHub's database is filled for the read measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StockFill {
    Database,
    Api,
}

/// What one hub measured.
#[derive(Debug, Default)]
struct Report {
    label: String,
    bulk_s: Vec<f64>,
    users: usize,
    fill_s: f64,
    /// How the database was filled: "API" or "database".
    fill_how: &'static str,
    list_ms: Vec<f64>,
    single_ms: Vec<f64>,
    burst_total_s: Vec<f64>,
    burst_latency_ms: Vec<f64>,
    walk_s: Vec<f64>,
    walk_pages: usize,
}

pub async fn run(args: RestArgs) -> Result<()> {
    let mut reports = Vec::new();
    // Users get servers in none of these runs; any command will do.
    let server = ServerCommand::singleuser(&args.jupyterhub_version);
    for which in &args.hubs {
        eprintln!("== {which}");
        let client = hubs::api_client()?;
        let report = match which.as_str() {
            "hubfleet-sqlite" | "hubfleet-postgres" => {
                let bin = crate::hubfleet_bin(args.hubfleet_bin.as_deref())?;
                let db = if which.ends_with("sqlite") {
                    Database::Sqlite
                } else {
                    Database::Postgres(args.postgres.clone())
                };
                let hub = HubfleetHub::start(&bin, &db, &server, "").await?;
                let (mut report, mut names) = bulk_creates(&client, &hub, &args).await?;
                fill_through_api(&client, &hub, &args, &mut names, &mut report).await?;
                reads(&client, &hub, &args, &names, &mut report).await?;
                report
            }
            "jupyterhub" => {
                let mut hub = StockHub::start(&args.jupyterhub_version, &server, "").await?;
                let (mut report, mut names) = bulk_creates(&client, &hub, &args).await?;
                match args.stock_fill {
                    StockFill::Api => {
                        fill_through_api(&client, &hub, &args, &mut names, &mut report).await?;
                    }
                    StockFill::Database => {
                        fill_stock_database(&mut hub, &args, &mut names, &mut report).await?;
                    }
                }
                reads(&client, &hub, &args, &names, &mut report).await?;
                report
            }
            other => bail!("unknown hub {other:?}"),
        };
        reports.push(report);
    }
    print!("{}", render(&args, &reports));
    Ok(())
}

/// The timed bulk creates; returns the report so far and the names created.
async fn bulk_creates(
    client: &reqwest::Client,
    hub: &dyn Hub,
    args: &RestArgs,
) -> Result<(Report, Vec<String>)> {
    let mut report = Report {
        label: hub.label(),
        ..Report::default()
    };
    let mut names: Vec<String> = Vec::new();
    for r in 0..args.bulk_repeats {
        let batch: Vec<String> = (0..args.bulk_size)
            .map(|i| format!("b{r}-{i:05}"))
            .collect();
        let started = Instant::now();
        hubs::bulk_create(client, hub, &batch).await?;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!("   bulk create {}: {seconds:.3} s", batch.len());
        report.bulk_s.push(seconds);
        names.extend(batch);
    }
    Ok((report, names))
}

/// Bulk creates through the API up to `--users`, within `--fill-budget`.
async fn fill_through_api(
    client: &reqwest::Client,
    hub: &dyn Hub,
    args: &RestArgs,
    names: &mut Vec<String>,
    report: &mut Report,
) -> Result<()> {
    let fill_started = Instant::now();
    let budget = Duration::from_secs(args.fill_budget);
    let mut next = 0;
    while names.len() < args.users {
        if fill_started.elapsed() > budget {
            eprintln!(
                "   fill budget of {budget:?} spent at {} users; measuring with those",
                names.len()
            );
            break;
        }
        let count = args.bulk_size.min(args.users - names.len());
        let batch: Vec<String> = (next..next + count).map(|i| format!("u{i:06}")).collect();
        next += count;
        hubs::bulk_create(client, hub, &batch).await?;
        names.extend(batch);
    }
    report.fill_s = fill_started.elapsed().as_secs_f64();
    report.fill_how = "API";
    Ok(())
}

/// Clones users into stock JupyterHub's database up to `--users` (stop, insert, restart).
async fn fill_stock_database(
    hub: &mut StockHub,
    args: &RestArgs,
    names: &mut Vec<String>,
    report: &mut Report,
) -> Result<()> {
    let template = names
        .first()
        .context("no user created through the API to clone (--bulk-repeats 0?)")?
        .clone();
    let missing = args.users.saturating_sub(names.len());
    let batch: Vec<String> = (0..missing).map(|i| format!("u{i:06}")).collect();
    let started = Instant::now();
    let total = hub.add_users_offline(&template, &batch).await?;
    report.fill_s = started.elapsed().as_secs_f64();
    report.fill_how = "database";
    eprintln!(
        "   cloned {} users into the stopped hub's database ({total} in all); restarted in {:.1} s",
        batch.len(),
        report.fill_s
    );
    names.extend(batch);
    Ok(())
}

/// The read measurements, with the database as filled.
async fn reads(
    client: &reqwest::Client,
    hub: &dyn Hub,
    args: &RestArgs,
    names: &[String],
    report: &mut Report,
) -> Result<()> {
    report.users = total_users(client, hub).await?;
    eprintln!(
        "   {} users in the database (filled through the {} in {:.1} s)",
        report.users, report.fill_how, report.fill_s
    );

    for _ in 0..args.list_repeats {
        let started = Instant::now();
        let response = hubs::api_get(client, hub, "/users?limit=200").await?;
        ensure!(
            response.status() == StatusCode::OK,
            "list users: {}",
            response.status()
        );
        let list: Vec<serde_json::Value> = response.json().await?;
        report
            .list_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        ensure!(
            list.len() == 200.min(report.users),
            "got {} users",
            list.len()
        );
    }
    eprintln!(
        "   GET /users?limit=200 median {:.1} ms",
        median(&mut report.list_ms.clone())
    );

    // Names spread over the whole table.
    let pick = |k: usize| names[(k * 7919) % names.len()].clone();
    for k in 0..50 {
        let started = Instant::now();
        get_user(client, hub, &pick(k)).await?;
        report
            .single_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
    }
    for r in 0..args.parallel_repeats {
        let started = Instant::now();
        let requests = (0..args.parallel).map(|k| {
            let (client, name) = (client, pick(r * args.parallel + k + 50));
            async move {
                let one = Instant::now();
                get_user(client, hub, &name).await?;
                Ok::<f64, anyhow::Error>(one.elapsed().as_secs_f64() * 1000.0)
            }
        });
        let latencies = futures_util::future::join_all(requests).await;
        report.burst_total_s.push(started.elapsed().as_secs_f64());
        for latency in latencies {
            report.burst_latency_ms.push(latency?);
        }
        eprintln!(
            "   {} parallel GET /users/{{name}}: {:.3} s",
            args.parallel,
            started.elapsed().as_secs_f64()
        );
    }

    for _ in 0..args.walk_repeats {
        let started = Instant::now();
        let (seen, pages) = walk(client, hub).await?;
        let seconds = started.elapsed().as_secs_f64();
        ensure!(
            seen == report.users,
            "walk saw {seen} of {} users",
            report.users
        );
        eprintln!("   paginated walk of {seen} users in {pages} pages: {seconds:.2} s");
        report.walk_s.push(seconds);
        report.walk_pages = pages;
    }
    Ok(())
}

async fn get_user(client: &reqwest::Client, hub: &dyn Hub, name: &str) -> Result<()> {
    let response = hubs::api_get(client, hub, &format!("/users/{name}")).await?;
    ensure!(
        response.status() == StatusCode::OK,
        "GET /users/{name}: {}",
        response.status()
    );
    let model: serde_json::Value = response.json().await?;
    ensure!(model["name"] == name, "wrong user model for {name}");
    Ok(())
}

async fn paginated(
    client: &reqwest::Client,
    hub: &dyn Hub,
    url: &str,
) -> Result<serde_json::Value> {
    let response = client
        .get(url)
        .header("Authorization", format!("token {}", hub.token()))
        .header("Accept", "application/jupyterhub-pagination+json")
        .send()
        .await?;
    ensure!(
        response.status() == StatusCode::OK,
        "{url}: {}",
        response.status()
    );
    Ok(response.json().await?)
}

async fn total_users(client: &reqwest::Client, hub: &dyn Hub) -> Result<usize> {
    let page = paginated(
        client,
        hub,
        &format!("{}/hub/api/users?limit=1", hub.public_url()),
    )
    .await?;
    page["_pagination"]["total"]
        .as_u64()
        .map(|n| n as usize)
        .context("no _pagination.total")
}

/// Follows `_pagination.next` from the first page; returns (users seen, pages).
async fn walk(client: &reqwest::Client, hub: &dyn Hub) -> Result<(usize, usize)> {
    let mut url = format!("{}/hub/api/users?limit=200", hub.public_url());
    let (mut seen, mut pages) = (0, 0);
    loop {
        let page = paginated(client, hub, &url).await?;
        pages += 1;
        seen += page["items"].as_array().context("no items")?.len();
        let next = &page["_pagination"]["next"];
        if next.is_null() {
            return Ok((seen, pages));
        }
        let next_url = next["url"].as_str().context("next without url")?;
        url = if next_url.starts_with('/') {
            format!("{}{next_url}", hub.public_url())
        } else {
            next_url.to_owned()
        };
        ensure!(pages < 100_000, "pagination does not end");
    }
}

fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn render(args: &RestArgs, reports: &[Report]) -> String {
    let mut out = String::new();
    let med = |v: &[f64]| median(&mut v.to_vec());
    let _ = writeln!(
        out,
        "### REST API (through each hub's proxy, admin service token; medians)\n"
    );
    let _ = writeln!(
        out,
        "| hub | bulk create {} users s | users in DB (filled through, s) | GET /users?limit=200 ms | GET /users/{{name}} alone p50 ms | {} parallel: total s | p50 ms | p99 ms | paginated walk s (pages) |",
        args.bulk_size, args.parallel
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in reports {
        let _ = writeln!(
            out,
            "| {} | {:.3} | {} ({}, {:.1}) | {:.1} | {:.1} | {:.3} | {:.1} | {:.1} | {:.2} ({}) |",
            r.label,
            med(&r.bulk_s),
            r.users,
            r.fill_how,
            r.fill_s,
            med(&r.list_ms),
            med(&r.single_ms),
            med(&r.burst_total_s),
            percentile(&r.burst_latency_ms, 0.5),
            percentile(&r.burst_latency_ms, 0.99),
            med(&r.walk_s),
            r.walk_pages,
        );
    }
    if let Some(stock) = reports.iter().find(|r| r.label.starts_with("JupyterHub")) {
        let _ = writeln!(
            out,
            "\nSpeed-up (JupyterHub time ÷ hubfleet time; the walk per page, in case the hubs hold different numbers of users):\n"
        );
        let _ = writeln!(
            out,
            "| hub | bulk create | GET /users?limit=200 | {} parallel total | parallel p99 | walk per page |",
            args.parallel
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for r in reports
            .iter()
            .filter(|r| !r.label.starts_with("JupyterHub"))
        {
            let per_page = |r: &Report| med(&r.walk_s) / r.walk_pages.max(1) as f64;
            let _ = writeln!(
                out,
                "| {} | {:.0}× | {:.1}× | {:.1}× | {:.1}× | {:.1}× |",
                r.label,
                med(&stock.bulk_s) / med(&r.bulk_s),
                med(&stock.list_ms) / med(&r.list_ms),
                med(&stock.burst_total_s) / med(&r.burst_total_s),
                percentile(&stock.burst_latency_ms, 0.99) / percentile(&r.burst_latency_ms, 0.99),
                per_page(stock) / per_page(r),
            );
        }
    }
    let _ = writeln!(out, "\n{}", crate::reproduce_line());
    out
}
