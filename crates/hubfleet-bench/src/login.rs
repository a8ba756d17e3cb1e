//! `hubfleet-bench login-to-lab`: the time from the login POST to a served JupyterLab page
//! (login → /hub/spawn → pending → `/user/<u>/lab` through the single-user OAuth redirects),
//! for hubfleet and stock JupyterHub + CHP with the same `jupyterhub-singleuser`; and the RSS
//! of hub + proxy idle and with running servers.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use reqwest::StatusCode;
use reqwest::cookie::{CookieStore as _, Jar};

use crate::hubs::{self, Database, Hub, HubfleetHub, STOCK_PASSWORD, ServerCommand, StockHub};
use crate::tools::median;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// A prebuilt `hubfleet`; by default the harness builds it with `--profile bench-proxy`.
    #[arg(long)]
    pub hubfleet_bin: Option<PathBuf>,
    /// The JupyterHub venv (`.cache/envs/jh-<version>`) for the stock hub and the single-user server.
    #[arg(long, default_value = "6.1.1")]
    pub jupyterhub_version: String,
    /// Fresh users logged in one after another per hub.
    #[arg(long, default_value_t = 5)]
    pub users: usize,
    /// Running servers for the second memory reading (the logged-in users' plus API starts).
    #[arg(long, default_value_t = 10)]
    pub servers: usize,
    /// Which hubs to measure.
    #[arg(long, value_delimiter = ',', default_value = "hubfleet,jupyterhub")]
    pub hubs: Vec<String>,
}

/// What one hub measured.
struct HubReport {
    label: String,
    login_to_lab_s: Vec<f64>,
    rss_idle_kib: u64,
    rss_servers_kib: u64,
}

pub async fn run(args: LoginArgs) -> Result<()> {
    let server = ServerCommand::singleuser(&args.jupyterhub_version);
    let mut reports = Vec::new();
    for hub in &args.hubs {
        match hub.as_str() {
            "hubfleet" => {
                let bin = crate::hubfleet_bin(args.hubfleet_bin.as_deref())?;
                eprintln!("== hubfleet");
                let hub = HubfleetHub::start(&bin, &Database::Sqlite, &server, "").await?;
                reports.push(measure(&hub, &args, |u| (u.to_owned(), "any".to_owned())).await?);
            }
            "jupyterhub" => {
                eprintln!("== JupyterHub {}", args.jupyterhub_version);
                let hub = StockHub::start(&args.jupyterhub_version, &server, "").await?;
                reports.push(
                    measure(&hub, &args, |u| (u.to_owned(), STOCK_PASSWORD.to_owned())).await?,
                );
            }
            other => bail!("unknown hub {other:?} (hubfleet, jupyterhub)"),
        }
    }
    print!("{}", render(&args, &reports));
    Ok(())
}

/// Median of five RSS readings 200 ms apart.
async fn rss_sample(hub: &dyn Hub) -> Result<u64> {
    let mut readings = Vec::new();
    for _ in 0..5 {
        readings.push(hub.hub_and_proxy_rss_kib()? as f64);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(median(&mut readings) as u64)
}

async fn measure(
    hub: &dyn Hub,
    args: &LoginArgs,
    credentials: impl Fn(&str) -> (String, String),
) -> Result<HubReport> {
    let rss_idle_kib = rss_sample(hub).await?;
    eprintln!("   idle RSS {rss_idle_kib} KiB");
    let tag = &hubs::random_hex()?[..6];
    let mut login_to_lab_s = Vec::new();
    for i in 0..args.users {
        let user = format!("lab{tag}{i}");
        let (name, password) = credentials(&user);
        let seconds = login_to_lab(hub.public_url(), &name, &password).await?;
        eprintln!("   {user}: login → lab {seconds:.2} s");
        login_to_lab_s.push(seconds);
    }
    let client = hubs::api_client()?;
    let extra: Vec<String> = (args.users..args.servers)
        .map(|i| format!("lab{tag}{i}"))
        .collect();
    if !extra.is_empty() {
        hubs::bulk_create(&client, hub, &extra).await?;
        let starts = extra.iter().map(|user| {
            client
                .post(format!("{}/hub/api/users/{user}/server", hub.public_url()))
                .header("Authorization", format!("token {}", hub.token()))
                .send()
        });
        for response in futures_util::future::join_all(starts).await {
            let status = response?.status();
            ensure!(status.is_success(), "API start answered {status}");
        }
        for user in &extra {
            wait_until_ready(&client, hub, user, Duration::from_secs(300)).await?;
        }
    }
    let rss_servers_kib = rss_sample(hub).await?;
    eprintln!("   RSS with {} servers {rss_servers_kib} KiB", args.servers);
    Ok(HubReport {
        label: hub.label(),
        login_to_lab_s,
        rss_idle_kib,
        rss_servers_kib,
    })
}

/// Polls `GET /hub/api/users/<user>` until the default server is ready.
pub async fn wait_until_ready(
    client: &reqwest::Client,
    hub: &dyn Hub,
    user: &str,
    timeout: Duration,
) -> Result<()> {
    hubs::poll(
        &format!("{user}'s server to be ready"),
        timeout,
        Duration::from_millis(100),
        || async {
            let response = hubs::api_get(client, hub, &format!("/users/{user}")).await?;
            if response.status() != StatusCode::OK {
                return Ok(None);
            }
            let model: serde_json::Value = response.json().await?;
            Ok(server_ready(&model).then_some(()))
        },
    )
    .await
}

/// Whether a user model shows the default server as ready (`servers[""].ready`).
pub fn server_ready(model: &serde_json::Value) -> bool {
    model["servers"][""]["ready"].as_bool() == Some(true)
}

/// One login: returns seconds from the login POST to a 200 JupyterLab page.
pub async fn login_to_lab(base: &str, user: &str, password: &str) -> Result<f64> {
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::limited(30))
        .timeout(Duration::from_secs(60))
        .build()?;
    let login_url: reqwest::Url = format!("{base}/hub/login").parse()?;
    let page = client.get(login_url.clone()).send().await?;
    ensure!(page.status().is_success(), "login page: {}", page.status());
    let html = page.text().await?;
    let xsrf = hidden_input_value(&html, "_xsrf")
        .or_else(|| cookie(&jar, &login_url, "_xsrf"))
        .context("login page has no _xsrf")?;

    let started = Instant::now();
    let response = client
        .post(login_url)
        .form(&[
            ("username", user),
            ("password", password),
            ("_xsrf", xsrf.as_str()),
        ])
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "login POST ended at {} with {}",
        response.url().path(),
        response.status()
    );
    let lab = format!("{base}/user/{user}/lab");
    let lab_path = format!("/user/{user}/lab");
    hubs::poll(
        "JupyterLab after login",
        Duration::from_secs(180),
        Duration::from_millis(100),
        || async {
            let Ok(response) = client.get(&lab).send().await else {
                return Ok(None);
            };
            let (status, path) = (response.status(), response.url().path().to_owned());
            let body = response.text().await.unwrap_or_default();
            if status == StatusCode::OK
                && path.starts_with(&lab_path)
                && body.contains("JupyterLab")
            {
                return Ok(Some(started.elapsed().as_secs_f64()));
            }
            Ok(None)
        },
    )
    .await
}

fn cookie(jar: &Jar, url: &reqwest::Url, name: &str) -> Option<String> {
    let header = jar.cookies(url)?;
    header.to_str().ok()?.split("; ").find_map(|pair| {
        pair.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::to_owned)
    })
}

/// The `value` of `<input … name="<name>" … value="…">`, with `&amp;` decoded.
fn hidden_input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let value_at = tag.find("value=\"")? + "value=\"".len();
    let value = &tag[value_at..value_at + tag[value_at..].find('"')?];
    Some(value.replace("&amp;", "&"))
}

fn render(args: &LoginArgs, reports: &[HubReport]) -> String {
    let mut out = String::new();
    let med = |r: &HubReport| median(&mut r.login_to_lab_s.clone());
    let _ = writeln!(
        out,
        "### Login to JupyterLab ({} fresh users one after another, median)\n",
        args.users
    );
    let _ = writeln!(out, "| hub | median s | runs s |");
    let _ = writeln!(out, "|---|---:|---|");
    for r in reports {
        let runs: Vec<String> = r.login_to_lab_s.iter().map(|s| format!("{s:.2}")).collect();
        let _ = writeln!(out, "| {} | {:.2} | {} |", r.label, med(r), runs.join(", "));
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let _ = writeln!(
        out,
        "\n### Hub + proxy RSS (MiB; single-user servers excluded; median of 5 readings)\n"
    );
    let _ = writeln!(out, "| hub | idle | {} running servers |", args.servers);
    let _ = writeln!(out, "|---|---:|---:|");
    for r in reports {
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} |",
            r.label,
            mib(r.rss_idle_kib),
            mib(r.rss_servers_kib)
        );
    }
    if let [hub, stock, ..] = reports {
        let _ = writeln!(
            out,
            "\nRatios ({} ÷ {}): login → lab {:.2}×; RSS idle {:.2}×, with {} servers {:.2}×.",
            stock.label,
            hub.label,
            med(stock) / med(hub),
            stock.rss_idle_kib as f64 / hub.rss_idle_kib.max(1) as f64,
            args.servers,
            stock.rss_servers_kib as f64 / hub.rss_servers_kib.max(1) as f64,
        );
    }
    let _ = writeln!(out, "\n{}", crate::reproduce_line());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hidden_xsrf_input() {
        let html = r#"<form><input type="hidden" name="_xsrf" value="2|ab&amp;cd|ef"/></form>"#;
        assert_eq!(
            hidden_input_value(html, "_xsrf").as_deref(),
            Some("2|ab&cd|ef")
        );
    }
}
