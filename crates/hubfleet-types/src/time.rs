//! Timestamps in the form JupyterHub puts on the wire.

use chrono::{DateTime, SecondsFormat, Utc};

/// All timestamps are UTC.
pub type Timestamp = DateTime<Utc>;

pub fn now() -> Timestamp {
    Utc::now()
}

/// ISO 8601 with microseconds and a `Z` suffix, as JupyterHub's `utils.isoformat` writes them
/// (`2026-01-01T00:00:00.123456Z`).
pub fn isoformat(ts: &Timestamp) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn isoformat_matches_jupyterhub_shape() {
        let ts = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(isoformat(&ts), "2026-01-02T03:04:05.000000Z");
    }
}
