//! Human-friendly durations: `"500ms"`, `"120s"`, `"2m"`, `"1h"`, `"14d"`, or a bare integer of seconds.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration as written in the config file; serialises back to its shortest exact spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DurationSetting(pub(crate) Duration);

const UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Parses `"<digits><unit>"` or `"<digits>"` (seconds). Fractions, signs and spaces are refused
/// so that every accepted spelling means exactly one thing.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let invalid = || {
        format!(
            "invalid duration {text:?}: expected an integer followed by ms, s, m, h or d (e.g. \"120s\", \"14d\"), or a bare integer of seconds"
        )
    };
    if digits.is_empty() {
        return Err(invalid());
    }
    let amount: u64 = digits.parse().map_err(|_| invalid())?;
    let millis_per_unit = if unit.is_empty() {
        1_000
    } else {
        UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, millis)| *millis)
            .ok_or_else(invalid)?
    };
    let millis = amount
        .checked_mul(millis_per_unit)
        .ok_or_else(|| format!("duration {text:?} is too large"))?;
    Ok(Duration::from_millis(millis))
}

pub(crate) fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_string();
    }
    let (unit, per_unit) = UNITS
        .iter()
        .rev()
        .find(|(_, per_unit)| millis.is_multiple_of(u128::from(*per_unit)))
        .copied()
        .unwrap_or(("ms", 1));
    format!("{}{unit}", millis / u128::from(per_unit))
}

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = DurationSetting;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"120s\", \"2m\", \"14d\" or an integer of seconds")
            }

            fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Self::Value, E> {
                Ok(DurationSetting(Duration::from_secs(seconds)))
            }

            fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Self::Value, E> {
                u64::try_from(seconds)
                    .map(|seconds| DurationSetting(Duration::from_secs(seconds)))
                    .map_err(|_| E::custom(format!("duration must not be negative, got {seconds}")))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                parse_duration(text).map(DurationSetting).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

impl Serialize for DurationSetting {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(self.0))
    }
}

impl JsonSchema for DurationSetting {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "integer"],
            "x-value-type": "duration",
            "pattern": "^[0-9]+(ms|s|m|h|d)?$",
            "minimum": 0,
        })
    }
}
