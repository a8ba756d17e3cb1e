//! Running a scenario: users arrive on the scenario's schedule, each runs its session
//! concurrently, and their outcomes become a [`Report`].

use std::sync::Arc;

use tokio::time::Instant;
use url::Url;

use crate::error::RunError;
use crate::report::{Report, UserOutcome};
use crate::scenario::{Password, Scenario};
use crate::user::{RunContext, simulate_user};

/// What to run against what.
#[derive(Debug)]
pub struct RunOptions {
    /// The hub's public URL, e.g. `http://127.0.0.1:8000` (hubfleet's `listen`, or JupyterHub's
    /// proxy). Hubs under a `base_url` other than `/` are not supported yet.
    pub url: String,
    pub scenario: Scenario,
    /// An admin API token for stopping servers; without one, users stop their own.
    pub api_token: Option<Password>,
}

/// Parses and checks the hub URL: `http` or `https`, no path beyond `/`.
pub fn hub_base_url(url: &str) -> Result<Url, RunError> {
    let bad = |message: &str| RunError::BadUrl {
        url: url.to_owned(),
        message: message.to_owned(),
    };
    let parsed = Url::parse(url).map_err(|error| bad(&error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if parsed.path() != "/" || parsed.query().is_some() {
        return Err(bad(
            "give the hub's root URL without a path (base_url prefixes are not supported)",
        ));
    }
    Ok(parsed)
}

/// Runs `options.scenario` and returns the report. `on_outcome` sees each user's outcome as it
/// finishes (for progress output).
pub async fn run(
    options: RunOptions,
    on_outcome: impl Fn(&UserOutcome) + Send + Sync + 'static,
) -> Result<Report, RunError> {
    crate::install_crypto_provider();
    options.scenario.validate()?;
    let base = hub_base_url(&options.url)?;
    let target = base.as_str().trim_end_matches('/').to_owned();
    let context = Arc::new(RunContext {
        base,
        scenario: options.scenario,
        api_token: options.api_token,
    });
    let on_outcome = Arc::new(on_outcome);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..context.scenario.users {
        let context = context.clone();
        let on_outcome = on_outcome.clone();
        let arrival = started + context.scenario.arrival_offset(index);
        tasks.spawn(async move {
            // Arrivals follow the scenario's schedule.
            tokio::time::sleep_until(arrival).await;
            let outcome = simulate_user(&context, index).await;
            on_outcome(&outcome);
            outcome
        });
    }
    let mut outcomes = Vec::with_capacity(context.scenario.users as usize);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outcome) => outcomes.push(outcome),
            // A panicking user task is a bug in the simulator; surface it rather than hide it.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    outcomes.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(Report::new(
        context.scenario.clone(),
        target,
        started.elapsed(),
        outcomes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_urls_are_checked() {
        assert_eq!(
            hub_base_url("http://127.0.0.1:8000").unwrap().as_str(),
            "http://127.0.0.1:8000/"
        );
        assert!(hub_base_url("ftp://127.0.0.1").is_err());
        assert!(hub_base_url("http://127.0.0.1:8000/jupyter/").is_err());
        assert!(hub_base_url("not a url").is_err());
    }

    /// A hub that refuses connections: every user fails at login with a connection error, and
    /// the report says so instead of the run failing.
    #[tokio::test]
    async fn unreachable_hub_fails_every_user_at_login() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("ephemeral port")
            .port();
        let mut scenario = Scenario::minimal("unreachable", 3);
        scenario.arrival.window = std::time::Duration::ZERO;
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        let report = run(
            RunOptions {
                url: format!("http://127.0.0.1:{port}"),
                scenario,
                api_token: None,
            },
            move |_| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            },
        )
        .await
        .expect("run");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(report.users, 3);
        assert_eq!(report.served, 0);
        assert_eq!(report.failed, 3);
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert_eq!(report.failures[0].phase, crate::report::Phase::Login);
        assert!(
            report.failures[0].reason.starts_with("connection failed"),
            "{:?}",
            report.failures
        );
        assert_eq!(report.outcomes[0].user, "loadsim-0001");
    }
}
