//! Scenarios: who arrives when and what each simulated user does. Loaded from YAML or taken from
//! the built-in presets (`workshop-60`, `class-600`, `research-group-5`).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ScenarioError;

/// The names of the built-in scenarios, in the order `--help` lists them.
pub const PRESET_NAMES: [&str; 3] = ["workshop-60", "class-600", "research-group-5"];

/// A load scenario. Every field but `name` and `users` has a default, so a YAML file only states
/// what differs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A label for reports.
    pub name: String,
    /// How many simulated users arrive.
    pub users: u32,
    /// When they arrive.
    #[serde(default)]
    pub arrival: Arrival,
    /// User names are this prefix followed by a four-digit index starting at 1 (`loadsim-0001`).
    #[serde(default = "default_user_prefix")]
    pub user_prefix: String,
    /// The password every user logs in with. Never serialized into reports.
    #[serde(default, skip_serializing)]
    pub password: Password,
    /// How long a user stays on the lab page (after the cell, if any) before stopping the server.
    #[serde(default = "default_idle", with = "duration_text")]
    pub idle: Duration,
    /// Whether to start a kernel and run `print(6*7)` over its WebSocket. `false` for servers that
    /// have no kernels, such as the lightweight single-user stand-in.
    #[serde(default = "default_true")]
    pub kernel: bool,
    /// Whether each user stops their server at the end.
    #[serde(default = "default_true")]
    pub stop: bool,
    /// How many HTTP 429 answers one user honours (waiting `Retry-After`) before giving up.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Longest `Retry-After` honoured; larger values are clamped so a run stays bounded.
    #[serde(default = "default_max_retry_after", with = "duration_text")]
    pub max_retry_after: Duration,
    /// Deadline for one user's whole session, from arrival to stop.
    #[serde(default = "default_user_timeout", with = "duration_text")]
    pub user_timeout: Duration,
}

/// When users arrive within the window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrival {
    /// The arrival window: the last user arrives at most this long after the first.
    #[serde(default = "default_window", with = "duration_text")]
    pub window: Duration,
    /// How arrivals spread over the window.
    #[serde(default)]
    pub distribution: Distribution,
}

impl Default for Arrival {
    fn default() -> Self {
        Arrival {
            window: default_window(),
            distribution: Distribution::default(),
        }
    }
}

/// How arrivals spread over the window. Both are deterministic, so two runs of one scenario send
/// the same load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    /// Evenly spaced: user `i` of `n` arrives at `i / n` of the window.
    #[default]
    Uniform,
    /// Everyone in the first tenth of the window (a class told "log in now"), evenly spaced there.
    Burst,
}

/// A password with a `Debug` that does not print it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Password(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl Scenario {
    /// One of the built-in scenarios by name, or `None`.
    pub fn preset(name: &str) -> Option<Scenario> {
        // Presets differ only in the fields spelled out here; everything else is the YAML default.
        let base = |name: &str, users, window_secs, distribution, idle_secs| Scenario {
            name: name.to_owned(),
            users,
            arrival: Arrival {
                window: Duration::from_secs(window_secs),
                distribution,
            },
            idle: Duration::from_secs(idle_secs),
            ..Scenario::minimal(name, users)
        };
        match name {
            // Sixty people at a workshop, told to log in over the first two minutes.
            "workshop-60" => Some(base(name, 60, 120, Distribution::Uniform, 30)),
            // A class of 600 that all log in within one minute of the lecture starting (the UC
            // Merced incident shape).
            "class-600" => Some(base(name, 600, 60, Distribution::Uniform, 30)),
            // A small research group trickling in.
            "research-group-5" => Some(base(name, 5, 5, Distribution::Uniform, 5)),
            _ => None,
        }
    }

    /// A scenario with `users` users and every other field at its default.
    pub fn minimal(name: &str, users: u32) -> Scenario {
        Scenario {
            name: name.to_owned(),
            users,
            arrival: Arrival::default(),
            user_prefix: default_user_prefix(),
            password: Password::default(),
            idle: default_idle(),
            kernel: true,
            stop: true,
            max_retries: default_max_retries(),
            max_retry_after: default_max_retry_after(),
            user_timeout: default_user_timeout(),
        }
    }

    /// Parses a YAML scenario. `origin` names the source in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario =
            serde_saphyr::from_str(text).map_err(|source| ScenarioError::Parse {
                origin: origin.to_owned(),
                message: source.to_string(),
            })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads and parses a YAML scenario file.
    pub fn from_file(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Scenario::from_yaml(&text, &path.display().to_string())
    }

    /// Checks the invariants serde cannot express.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.users == 0 {
            return Err(ScenarioError::Invalid("`users` must be at least 1".into()));
        }
        let prefix_ok = self
            .user_prefix
            .starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .user_prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !prefix_ok {
            return Err(ScenarioError::Invalid(format!(
                "`user_prefix` {:?} must start with a lowercase letter and hold only lowercase \
                 letters, digits and `-` (hubs normalise names; these survive unchanged)",
                self.user_prefix
            )));
        }
        if self.user_timeout.is_zero() {
            return Err(ScenarioError::Invalid(
                "`user_timeout` must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The name of user `index` (0-based).
    pub fn user_name(&self, index: u32) -> String {
        format!("{}{:04}", self.user_prefix, index + 1)
    }

    /// When user `index` (0-based) arrives, relative to the start of the run.
    pub fn arrival_offset(&self, index: u32) -> Duration {
        let span = match self.arrival.distribution {
            Distribution::Uniform => self.arrival.window,
            Distribution::Burst => self.arrival.window / 10,
        };
        // Spread `users` arrivals so the first is at 0 and the gaps are equal; `span / users` per
        // user keeps the last one strictly inside the window.
        span.mul_f64(f64::from(index) / f64::from(self.users))
    }
}

fn default_user_prefix() -> String {
    "loadsim-".to_owned()
}
fn default_idle() -> Duration {
    Duration::from_secs(10)
}
fn default_true() -> bool {
    true
}
fn default_max_retries() -> u32 {
    10
}
fn default_max_retry_after() -> Duration {
    Duration::from_secs(60)
}
fn default_user_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_window() -> Duration {
    Duration::from_secs(60)
}

/// Parses durations written `500ms`, `30s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as `500ms`, `30s`, `2m`"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} in {text:?}")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("{text:?}: {error}"))
}

/// Serde glue: durations as text (`30s`) or a bare number of seconds.
mod duration_text {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(f64),
        Text(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(seconds) => {
                Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
            }
            Raw::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
        }
    }

    pub(super) fn serialize<S: serde::Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{}ms", duration.as_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_sizes_the_issue_names() {
        let sizes: Vec<(&str, u32)> = PRESET_NAMES
            .iter()
            .map(|name| (*name, Scenario::preset(name).expect("preset exists").users))
            .collect();
        assert_eq!(
            sizes,
            [
                ("workshop-60", 60),
                ("class-600", 600),
                ("research-group-5", 5)
            ]
        );
        let class = Scenario::preset("class-600").expect("class preset");
        assert_eq!(class.arrival.window, Duration::from_secs(60));
        assert!(class.kernel);
        assert!(Scenario::preset("class-601").is_none());
        for name in PRESET_NAMES {
            Scenario::preset(name)
                .expect("preset")
                .validate()
                .expect("presets are valid");
        }
    }

    #[test]
    fn yaml_fills_defaults_and_reads_durations() {
        let scenario = Scenario::from_yaml(
            "name: lab-day\nusers: 12\narrival: {window: 2m, distribution: burst}\n\
             password: hunter22\nidle: 1500ms\nkernel: false\nuser_timeout: 90\n",
            "inline",
        )
        .expect("valid scenario");
        assert_eq!(scenario.users, 12);
        assert_eq!(scenario.arrival.window, Duration::from_secs(120));
        assert_eq!(scenario.arrival.distribution, Distribution::Burst);
        assert_eq!(scenario.idle, Duration::from_millis(1500));
        assert_eq!(scenario.user_timeout, Duration::from_secs(90));
        assert_eq!(scenario.password.expose(), "hunter22");
        assert!(!scenario.kernel);
        assert!(scenario.stop, "stop defaults to true");
        assert_eq!(scenario.user_prefix, "loadsim-");
        assert_eq!(scenario.max_retries, 10);
    }

    #[test]
    fn yaml_errors_name_the_problem() {
        let unknown = Scenario::from_yaml("name: x\nusers: 3\nkernels: true\n", "f.yaml")
            .expect_err("unknown key");
        let message = unknown.to_string();
        assert!(
            message.contains("f.yaml") && message.contains("kernels"),
            "{message}"
        );
        let zero = Scenario::from_yaml("name: x\nusers: 0\n", "f.yaml").expect_err("no users");
        assert!(zero.to_string().contains("at least 1"), "{zero}");
        let bad_duration = Scenario::from_yaml("name: x\nusers: 1\nidle: 3 fortnights\n", "f.yaml")
            .expect_err("bad duration");
        assert!(
            bad_duration.to_string().contains("fortnights"),
            "{bad_duration}"
        );
        let bad_prefix = Scenario::from_yaml("name: x\nusers: 1\nuser_prefix: Bob_\n", "f.yaml")
            .expect_err("bad prefix");
        assert!(
            bad_prefix.to_string().contains("user_prefix"),
            "{bad_prefix}"
        );
    }

    #[test]
    fn password_is_neither_debug_printed_nor_serialized() {
        let mut scenario = Scenario::minimal("s", 1);
        scenario.password = Password::new("topsecret-pw");
        assert!(!format!("{scenario:?}").contains("topsecret-pw"));
        let json = serde_json::to_string(&scenario).expect("serialize");
        assert!(!json.contains("topsecret-pw"), "{json}");
    }

    #[test]
    fn arrivals_spread_over_the_window() {
        let mut scenario = Scenario::minimal("s", 4);
        scenario.arrival.window = Duration::from_secs(60);
        let offsets: Vec<u64> = (0..4)
            .map(|i| scenario.arrival_offset(i).as_secs())
            .collect();
        assert_eq!(offsets, [0, 15, 30, 45]);
        scenario.arrival.distribution = Distribution::Burst;
        let last = scenario.arrival_offset(3);
        assert_eq!(
            last,
            Duration::from_millis(4500),
            "burst packs into a tenth"
        );
        assert_eq!(scenario.user_name(0), "loadsim-0001");
        assert_eq!(scenario.user_name(599), "loadsim-0600");
    }

    #[test]
    fn printed_presets_load_back_as_scenario_files() {
        for name in PRESET_NAMES {
            let preset = Scenario::preset(name).expect("preset");
            // `hubfleet-loadsim scenarios` prints JSON, which is YAML 1.2.
            let printed = serde_json::to_string_pretty(&preset).expect("serialize");
            let loaded = Scenario::from_yaml(&printed, name).expect("loads back");
            assert_eq!(loaded, preset);
        }
    }

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
