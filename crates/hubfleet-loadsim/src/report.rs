//! What a run measured: each simulated user's outcome, and the report built from them
//! (per-phase percentiles, retries, failures), rendered as JSON or as a table for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::process_usage::ProcessUsage;
use crate::scenario::Scenario;

/// The measured phases of one simulated user, in the order they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// `GET /hub/login` and the form `POST`, up to the hub's redirect.
    Login,
    /// From requesting the spawn (`/hub/spawn`) until the progress stream says ready, including
    /// any time spent waiting out HTTP 429 answers.
    SpawnReady,
    /// From the start of login until the server is ready: what a student waits for.
    LoginToReady,
    /// `GET /user/<u>/lab` through the single-user server's OAuth redirects to the lab HTML.
    LabPage,
    /// `POST /user/<u>/api/kernels`.
    KernelStart,
    /// Kernel WebSocket connect, `execute_request` of `print(6*7)`, until output, reply and idle.
    CellRoundTrip,
    /// `DELETE /hub/api/users/<u>/server` until the hub reports the server gone.
    Stop,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Login,
        Phase::SpawnReady,
        Phase::LoginToReady,
        Phase::LabPage,
        Phase::KernelStart,
        Phase::CellRoundTrip,
        Phase::Stop,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Phase::Login => "login",
            Phase::SpawnReady => "spawn_ready",
            Phase::LoginToReady => "login_to_ready",
            Phase::LabPage => "lab_page",
            Phase::KernelStart => "kernel_start",
            Phase::CellRoundTrip => "cell_round_trip",
            Phase::Stop => "stop",
        }
    }
}

/// Why a simulated user did not finish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub phase: Phase,
    pub reason: String,
}

/// Everything one simulated user went through.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UserOutcome {
    pub user: String,
    /// Durations of the phases the user completed.
    #[serde(serialize_with = "serialize_timings")]
    pub timings: BTreeMap<Phase, Duration>,
    /// HTTP 429 answers honoured by waiting `Retry-After` and asking again.
    pub retries: u32,
    /// Whether the user got what they came for: the lab page and, if the scenario runs one, the
    /// cell's output. A failure to stop afterwards does not undo this.
    pub served: bool,
    pub failure: Option<Failure>,
}

fn serialize_timings<S: serde::Serializer>(
    timings: &BTreeMap<Phase, Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let millis: BTreeMap<&str, f64> = timings
        .iter()
        .map(|(phase, duration)| (phase.label(), duration.as_secs_f64() * 1000.0))
        .collect();
    millis.serialize(serializer)
}

/// Latency summary of one phase over the users who completed it, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseStats {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl PhaseStats {
    /// Nearest-rank percentiles of `samples`; `None` when there are none.
    pub fn from_samples(samples: &[Duration]) -> Option<PhaseStats> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
        Some(PhaseStats {
            count: sorted.len(),
            p50_ms: ms(percentile(&sorted, 50.0)?),
            p90_ms: ms(percentile(&sorted, 90.0)?),
            p99_ms: ms(percentile(&sorted, 99.0)?),
            max_ms: ms(*sorted.last()?),
        })
    }
}

/// The nearest-rank `p`-th percentile of ascending `sorted`: the smallest sample with at least
/// `p` percent of the samples at or below it. No interpolation, so the value is always one that
/// was measured.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// How often one failure reason occurred.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailureCount {
    pub phase: Phase,
    pub reason: String,
    pub users: usize,
}

/// The result of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub scenario: Scenario,
    pub target: String,
    pub wall_seconds: f64,
    pub users: usize,
    pub served: usize,
    pub served_without_retry: usize,
    /// `served_without_retry / users`.
    pub served_without_retry_share: f64,
    pub failed: usize,
    pub retries: u64,
    pub users_who_retried: usize,
    pub phases: BTreeMap<Phase, PhaseStats>,
    pub failures: Vec<FailureCount>,
    /// CPU and memory of the hub's processes over the run, when their pids were given.
    pub hub_processes: Vec<ProcessUsage>,
    pub outcomes: Vec<UserOutcome>,
}

impl Report {
    pub fn new(
        scenario: Scenario,
        target: String,
        wall: Duration,
        outcomes: Vec<UserOutcome>,
    ) -> Report {
        let mut phases = BTreeMap::new();
        for phase in Phase::ALL {
            let samples: Vec<Duration> = outcomes
                .iter()
                .filter_map(|outcome| outcome.timings.get(&phase).copied())
                .collect();
            if let Some(stats) = PhaseStats::from_samples(&samples) {
                phases.insert(phase, stats);
            }
        }
        let mut failure_counts: BTreeMap<(Phase, String), usize> = BTreeMap::new();
        for failure in outcomes.iter().filter_map(|o| o.failure.as_ref()) {
            *failure_counts
                .entry((failure.phase, failure.reason.clone()))
                .or_default() += 1;
        }
        let mut failures: Vec<FailureCount> = failure_counts
            .into_iter()
            .map(|((phase, reason), users)| FailureCount {
                phase,
                reason,
                users,
            })
            .collect();
        failures.sort_by(|a, b| b.users.cmp(&a.users).then(a.phase.cmp(&b.phase)));
        let users = outcomes.len();
        let served = outcomes.iter().filter(|o| o.served).count();
        let served_without_retry = outcomes
            .iter()
            .filter(|o| o.served && o.retries == 0)
            .count();
        Report {
            scenario,
            target,
            wall_seconds: wall.as_secs_f64(),
            users,
            served,
            served_without_retry,
            served_without_retry_share: if users == 0 {
                0.0
            } else {
                served_without_retry as f64 / users as f64
            },
            failed: outcomes.iter().filter(|o| o.failure.is_some()).count(),
            retries: outcomes.iter().map(|o| u64::from(o.retries)).sum(),
            users_who_retried: outcomes.iter().filter(|o| o.retries > 0).count(),
            phases,
            failures,
            hub_processes: Vec::new(),
            outcomes,
        }
    }

    /// A table for people; the JSON form (`serde_json`) carries every outcome as well.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let percent = |n: usize| {
            if self.users == 0 {
                0.0
            } else {
                100.0 * n as f64 / self.users as f64
            }
        };
        let _ = writeln!(
            out,
            "scenario {} against {}: {} users, wall {:.1} s",
            self.scenario.name, self.target, self.users, self.wall_seconds
        );
        let _ = writeln!(
            out,
            "served {}/{} ({:.1}%), without any client retry {} ({:.1}%); \
             retries {} (by {} users); failed {}",
            self.served,
            self.users,
            percent(self.served),
            self.served_without_retry,
            percent(self.served_without_retry),
            self.retries,
            self.users_who_retried,
            self.failed
        );
        let _ = writeln!(
            out,
            "{:<16} {:>6} {:>10} {:>10} {:>10} {:>10}",
            "phase", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for (phase, stats) in &self.phases {
            let _ = writeln!(
                out,
                "{:<16} {:>6} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                phase.label(),
                stats.count,
                stats.p50_ms,
                stats.p90_ms,
                stats.p99_ms,
                stats.max_ms
            );
        }
        for failure in &self.failures {
            let _ = writeln!(
                out,
                "failed in {}: {} users: {}",
                failure.phase.label(),
                failure.users,
                failure.reason
            );
        }
        for process in &self.hub_processes {
            let _ = writeln!(
                out,
                "process {} ({}): cpu {:.2} s over the run ({:.4} s per served user), \
                 peak RSS {:.1} MiB",
                process.pid,
                process.name,
                process.cpu_seconds,
                if self.served == 0 {
                    0.0
                } else {
                    process.cpu_seconds / self.served as f64
                },
                process.peak_rss_kib as f64 / 1024.0
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u32> = (1..=10).collect();
        assert_eq!(percentile(&samples, 50.0), Some(5));
        assert_eq!(percentile(&samples, 90.0), Some(9));
        assert_eq!(percentile(&samples, 99.0), Some(10));
        assert_eq!(percentile(&samples, 0.0), Some(1));
        assert_eq!(percentile(&[7u32], 99.0), Some(7));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
        let hundred: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 99.0), Some(99));
        assert_eq!(percentile(&hundred, 99.5), Some(100));
    }

    #[test]
    fn phase_stats_sort_their_input() {
        let stats = PhaseStats::from_samples(&[ms(30), ms(10), ms(20), ms(40)]).expect("samples");
        assert_eq!(stats.count, 4);
        assert_eq!(stats.p50_ms, 20.0);
        assert_eq!(stats.p99_ms, 40.0);
        assert_eq!(stats.max_ms, 40.0);
        assert!(PhaseStats::from_samples(&[]).is_none());
    }

    fn outcome(
        user: &str,
        login_ms: Option<u64>,
        retries: u32,
        failure: Option<&str>,
    ) -> UserOutcome {
        let mut timings = BTreeMap::new();
        if let Some(value) = login_ms {
            timings.insert(Phase::Login, ms(value));
        }
        UserOutcome {
            user: user.into(),
            timings,
            retries,
            served: failure.is_none(),
            failure: failure.map(|reason| Failure {
                phase: Phase::SpawnReady,
                reason: reason.into(),
            }),
        }
    }

    #[test]
    fn report_counts_served_retries_and_failures() {
        let outcomes = vec![
            outcome("a", Some(10), 0, None),
            outcome("b", Some(20), 2, None),
            outcome("c", Some(30), 0, Some("HTTP 500")),
            outcome("d", None, 10, Some("HTTP 500")),
            outcome("e", Some(40), 0, Some("timed out")),
        ];
        let report = Report::new(
            Scenario::minimal("t", 5),
            "http://127.0.0.1:1".into(),
            ms(1500),
            outcomes,
        );
        assert_eq!(report.users, 5);
        assert_eq!(report.served, 2);
        assert_eq!(report.served_without_retry, 1);
        assert_eq!(report.served_without_retry_share, 0.2);
        assert_eq!(report.failed, 3);
        assert_eq!(report.retries, 12);
        assert_eq!(report.users_who_retried, 2);
        assert_eq!(report.phases[&Phase::Login].count, 4);
        assert_eq!(report.phases[&Phase::Login].p50_ms, 20.0);
        assert!(!report.phases.contains_key(&Phase::Stop));
        assert_eq!(
            report.failures[0],
            FailureCount {
                phase: Phase::SpawnReady,
                reason: "HTTP 500".into(),
                users: 2
            },
            "the commonest failure comes first"
        );
        let table = report.to_table();
        assert!(table.contains("served 2/5 (40.0%)"), "{table}");
        assert!(
            table.contains("without any client retry 1 (20.0%)"),
            "{table}"
        );
        assert!(
            table.contains("failed in spawn_ready: 2 users: HTTP 500"),
            "{table}"
        );
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["phases"]["login"]["p90_ms"], 40.0);
        assert_eq!(json["outcomes"][1]["timings"]["login"], 20.0);
        assert_eq!(json["outcomes"][2]["failure"]["phase"], "spawn_ready");
    }
}
