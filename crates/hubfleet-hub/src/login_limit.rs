//! Rate limiting of failed logins, per user name and per client IP address, and of `native`
//! sign-ups per client IP address.
//!
//! Each attempt is charged *before* the password is checked and refunded if it turns out not to
//! be a failed login, so a burst of parallel guesses cannot slip past the limit while the first
//! ones are still being checked. After [`USER_LIMIT`] failures for one name, or [`IP_LIMIT`] from
//! one address, within the window, further attempts are refused — right password or not — with
//! a 429 page and `Retry-After`, for a lockout that doubles with each repeat up to a cap.
//!
//! The client address is the last `X-Forwarded-For` hop: the one our proxy appends. Earlier hops
//! come from the client and are ignored, so they cannot be used to dodge the limit.
//!
//! Memory is bounded: entries are forgotten once idle, pruned every minute, and the table holds at
//! most [`MAX_ENTRIES`]; when full, the least recently seen unlocked entries go first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::response::Response;
use http::{HeaderMap, StatusCode};

/// Failed logins allowed per user name within [`Limit::window`].
pub(crate) const USER_LIMIT: Limit = Limit {
    failures: 5,
    window: Duration::from_secs(10 * 60),
    lockout: Duration::from_secs(60),
    max_lockout: Duration::from_secs(15 * 60),
};

/// Failed logins allowed per client address (many people may share one, e.g. a classroom NAT).
pub(crate) const IP_LIMIT: Limit = Limit {
    failures: 50,
    window: Duration::from_secs(10 * 60),
    lockout: Duration::from_secs(60),
    max_lockout: Duration::from_secs(15 * 60),
};

/// Accounts created per client address (`native` sign-up). Generous, because a class may sign
/// up together from behind one NAT address; it bounds what one address can add to the approval
/// queue.
pub(crate) const SIGNUP_LIMIT: Limit = Limit {
    failures: 100,
    window: Duration::from_secs(10 * 60),
    lockout: Duration::from_secs(10 * 60),
    max_lockout: Duration::from_secs(60 * 60),
};

/// Most names and addresses remembered at once (roughly 100 bytes each).
pub(crate) const MAX_ENTRIES: usize = 100_000;
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Longest user name kept as a key; longer input is truncated (names are at most 255 bytes).
const MAX_NAME_CHARS: usize = 255;

/// One limit: `failures` within `window` lock the key for `lockout`, doubled for each lockout
/// since the key was last forgotten, up to `max_lockout`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    pub failures: u32,
    pub window: Duration,
    pub lockout: Duration,
    pub max_lockout: Duration,
}

impl Limit {
    fn lockout_after(&self, strikes: u32) -> Duration {
        self.lockout
            .saturating_mul(1u32 << strikes.min(16))
            .min(self.max_lockout)
    }

    /// How long an idle, unlocked entry is worth remembering (its strikes matter until then).
    fn forget_after(&self) -> Duration {
        self.window + self.max_lockout
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Ip(IpAddr),
    SignUp(IpAddr),
}

impl Key {
    fn limit(&self) -> &'static Limit {
        match self {
            Key::User(_) => &USER_LIMIT,
            Key::Ip(_) => &IP_LIMIT,
            Key::SignUp(_) => &SIGNUP_LIMIT,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// Attempts charged in the current window (including ones still being checked).
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
    strikes: u32,
    last_seen: Instant,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            failures: 0,
            window_start: now,
            locked_until: None,
            strikes: 0,
            last_seen: now,
        }
    }

    fn locked_at(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    fn lock(&mut self, limit: &Limit, now: Instant) -> Duration {
        let lockout = limit.lockout_after(self.strikes);
        self.locked_until = Some(now + lockout);
        self.strikes = self.strikes.saturating_add(1);
        self.failures = 0;
        self.window_start = now;
        lockout
    }

    fn forgettable(&self, limit: &Limit, now: Instant) -> bool {
        self.locked_at(now).is_none() && now.duration_since(self.last_seen) > limit.forget_after()
    }
}

/// The refusal: how long until the next attempt will be considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LockedOut {
    pub retry_after_seconds: u64,
}

impl LockedOut {
    fn after(wait: Duration) -> LockedOut {
        LockedOut {
            retry_after_seconds: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        }
    }

    pub fn message(&self) -> String {
        format!(
            "Too many failed attempts; try again in {} s.",
            self.retry_after_seconds
        )
    }
}

/// How a login attempt ended, as far as the limiter cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Failed,
    /// Refused before the password mattered (bad XSRF token, internal error): not held against anyone.
    NotCounted,
}

/// The failure counters of every recently seen user name and client address.
pub(crate) struct LoginLimiter {
    state: Mutex<Table>,
}

struct Table {
    entries: HashMap<Key, Entry>,
    last_prune: Instant,
}

/// The keys one attempt was charged to, to settle with [`LoginLimiter::finish`].
#[derive(Debug)]
pub(crate) struct Charge {
    keys: Vec<Key>,
}

impl LoginLimiter {
    pub fn new(now: Instant) -> LoginLimiter {
        LoginLimiter {
            state: Mutex::new(Table {
                entries: HashMap::new(),
                last_prune: now,
            }),
        }
    }

    /// Refuses if the name or the address is locked; otherwise charges the attempt to both.
    pub fn begin(
        &self,
        user: Option<&str>,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<Charge, LockedOut> {
        let keys: Vec<Key> = user
            .map(|u| {
                Key::User(
                    u.trim()
                        .to_lowercase()
                        .chars()
                        .take(MAX_NAME_CHARS)
                        .collect(),
                )
            })
            .into_iter()
            .chain(ip.map(Key::Ip))
            .collect();
        self.charge(keys, now)
    }

    /// Charges a sign-up from `ip`; settle it with [`Outcome::Failed`] when an account was
    /// created (it counts against [`SIGNUP_LIMIT`]) and [`Outcome::NotCounted`] otherwise.
    pub fn begin_signup(&self, ip: Option<IpAddr>, now: Instant) -> Result<Charge, LockedOut> {
        self.charge(ip.map(Key::SignUp).into_iter().collect(), now)
    }

    fn charge(&self, keys: Vec<Key>, now: Instant) -> Result<Charge, LockedOut> {
        let mut table = self.state.lock().expect("login limiter poisoned");
        if now.duration_since(table.last_prune) >= PRUNE_INTERVAL {
            table.prune(now);
        }
        // Refuse if any key is locked (or becomes locked by charges still in flight).
        let mut wait = None;
        for key in &keys {
            let Some(entry) = table.entries.get_mut(key) else {
                continue;
            };
            let limit = key.limit();
            let locked = entry.locked_at(now).or_else(|| {
                (now.duration_since(entry.window_start) < limit.window
                    && entry.failures >= limit.failures)
                    .then(|| entry.lock(limit, now))
            });
            if let Some(locked) = locked {
                entry.last_seen = now;
                wait = wait.max(Some(locked));
            }
        }
        if let Some(wait) = wait {
            return Err(LockedOut::after(wait));
        }
        for key in &keys {
            if !table.entries.contains_key(key) {
                table.make_room(now);
            }
            let entry = table
                .entries
                .entry(key.clone())
                .or_insert_with(|| Entry::new(now));
            if now.duration_since(entry.window_start) >= key.limit().window {
                entry.failures = 0;
                entry.window_start = now;
            }
            entry.failures += 1;
            entry.last_seen = now;
        }
        Ok(Charge { keys })
    }

    /// Settles a charged attempt: a failure may lock its keys; a success clears the name's record
    /// and refunds the address; anything else is refunded.
    pub fn finish(&self, charge: Charge, outcome: Outcome, now: Instant) {
        let mut table = self.state.lock().expect("login limiter poisoned");
        for key in charge.keys {
            if outcome == Outcome::Succeeded && matches!(key, Key::User(_)) {
                table.entries.remove(&key);
                continue;
            }
            let Some(entry) = table.entries.get_mut(&key) else {
                continue;
            };
            match outcome {
                Outcome::Failed => {
                    let limit = key.limit();
                    if entry.locked_at(now).is_none() && entry.failures >= limit.failures {
                        entry.lock(limit, now);
                    }
                }
                Outcome::Succeeded | Outcome::NotCounted => {
                    entry.failures = entry.failures.saturating_sub(1);
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state
            .lock()
            .expect("login limiter poisoned")
            .entries
            .len()
    }
}

impl Table {
    fn prune(&mut self, now: Instant) {
        self.entries
            .retain(|key, entry| !entry.forgettable(key.limit(), now));
        self.last_prune = now;
    }

    /// Keeps the table under [`MAX_ENTRIES`] before a new key goes in: forgets idle entries, then
    /// the least recently seen half, unlocked ones first.
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < MAX_ENTRIES {
            return;
        }
        self.prune(now);
        if self.entries.len() < MAX_ENTRIES {
            return;
        }
        let mut order: Vec<(bool, Instant, Key)> = self
            .entries
            .iter()
            .map(|(key, entry)| (entry.locked_at(now).is_some(), entry.last_seen, key.clone()))
            .collect();
        let evict = order.len() / 2;
        order.select_nth_unstable_by(evict, |a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for (_, _, key) in order.into_iter().take(evict) {
            self.entries.remove(&key);
        }
    }
}

/// The hub's limiter. Process-wide because one process serves one hub.
static LIMITER: LazyLock<LoginLimiter> = LazyLock::new(|| LoginLimiter::new(Instant::now()));

/// The client address: the last `X-Forwarded-For` hop (the one our proxy appended), if any.
pub(crate) fn client_ip(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .next_back()?;
    let hop = last.trim();
    hop.parse::<IpAddr>()
        .ok()
        // `[v6]:port` or `v4:port`, should a proxy ever add the port.
        .or_else(|| {
            hop.parse::<std::net::SocketAddr>()
                .ok()
                .map(|addr| addr.ip())
        })
}

/// Runs one login `attempt` under the limits: refuses it with `locked_out` while the user name
/// (form field `username`) or the client address is locked, and counts its outcome. The
/// attempt's response tells the outcome: a redirect (302) is a login, a 403 page a failed one.
pub(crate) async fn guard<E>(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    attempt: impl Future<Output = Result<Response, E>>,
    locked_out: impl FnOnce(LockedOut) -> Response,
) -> Result<Response, E> {
    let user = form.get("username").map(String::as_str);
    let ip = client_ip(headers);
    let charge = match LIMITER.begin(user, ip, Instant::now()) {
        Ok(charge) => charge,
        Err(locked) => {
            tracing::warn!(user = ?user, ip = ?ip, retry_after = locked.retry_after_seconds, "login refused: too many failed attempts");
            return Ok(locked_out(locked));
        }
    };
    let result = attempt.await;
    let outcome = match &result {
        Ok(response) if response.status() == StatusCode::FOUND => Outcome::Succeeded,
        Ok(response) if response.status() == StatusCode::FORBIDDEN => Outcome::Failed,
        _ => Outcome::NotCounted,
    };
    LIMITER.finish(charge, outcome, Instant::now());
    result
}

/// [`guard`] for `native` sign-ups: refuses an address that created [`SIGNUP_LIMIT`] accounts
/// within the window; an attempt counts when `attempt` answers 200 (the account was created).
pub(crate) async fn guard_signup<E>(
    headers: &HeaderMap,
    attempt: impl Future<Output = Result<Response, E>>,
    locked_out: impl FnOnce(LockedOut) -> Response,
) -> Result<Response, E> {
    let ip = client_ip(headers);
    let charge = match LIMITER.begin_signup(ip, Instant::now()) {
        Ok(charge) => charge,
        Err(locked) => {
            tracing::warn!(ip = ?ip, retry_after = locked.retry_after_seconds, "sign-up refused: too many accounts from one address");
            return Ok(locked_out(locked));
        }
    };
    let result = attempt.await;
    let outcome = match &result {
        Ok(response) if response.status() == StatusCode::OK => Outcome::Failed,
        _ => Outcome::NotCounted,
    };
    LIMITER.finish(charge, outcome, Instant::now());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn fail(limiter: &LoginLimiter, user: &str, addr: &str, now: Instant) -> Result<(), LockedOut> {
        let charge = limiter.begin(Some(user), ip(addr), now)?;
        limiter.finish(charge, Outcome::Failed, now);
        Ok(())
    }

    #[test]
    fn a_name_locks_after_its_limit_even_for_the_right_password_then_unlocks() {
        let t0 = Instant::now();
        let limiter = LoginLimiter::new(t0);
        for n in 0..USER_LIMIT.failures {
            assert!(
                fail(&limiter, "alice", "10.0.0.1", t0).is_ok(),
                "attempt {n}"
            );
        }
        let locked = limiter
            .begin(Some("Alice"), ip("10.0.0.2"), t0)
            .unwrap_err();
        assert_eq!(locked.retry_after_seconds, USER_LIMIT.lockout.as_secs());
        assert!(locked.message().contains("try again in 60 s"));
        // Another name from the same address is fine.
        assert!(limiter.begin(Some("bob"), ip("10.0.0.1"), t0).is_ok());
        // After the lockout, attempts are considered again; the next lockout is longer.
        let later = t0 + USER_LIMIT.lockout + Duration::from_secs(1);
        for _ in 0..USER_LIMIT.failures {
            fail(&limiter, "alice", "10.0.0.3", later).unwrap();
        }
        let again = limiter.begin(Some("alice"), None, later).unwrap_err();
        assert_eq!(again.retry_after_seconds, 2 * USER_LIMIT.lockout.as_secs());
    }

    #[test]
    fn a_success_clears_the_name_and_refunds_the_address() {
        let t0 = Instant::now();
        let limiter = LoginLimiter::new(t0);
        for _ in 0..USER_LIMIT.failures - 1 {
            fail(&limiter, "alice", "10.0.0.1", t0).unwrap();
        }
        let charge = limiter.begin(Some("alice"), ip("10.0.0.1"), t0).unwrap();
        limiter.finish(charge, Outcome::Succeeded, t0);
        for _ in 0..USER_LIMIT.failures {
            fail(&limiter, "alice", "10.0.0.1", t0).unwrap();
        }
        assert!(limiter.begin(Some("alice"), None, t0).is_err());
    }

    #[test]
    fn parallel_attempts_cannot_exceed_the_limit() {
        let t0 = Instant::now();
        let limiter = LoginLimiter::new(t0);
        let in_flight: Vec<Charge> = (0..USER_LIMIT.failures)
            .map(|_| limiter.begin(Some("alice"), None, t0).unwrap())
            .collect();
        assert!(limiter.begin(Some("alice"), None, t0).is_err());
        for charge in in_flight {
            limiter.finish(charge, Outcome::Failed, t0);
        }
    }

    #[test]
    fn uncounted_outcomes_are_refunded() {
        let t0 = Instant::now();
        let limiter = LoginLimiter::new(t0);
        for _ in 0..10 * USER_LIMIT.failures {
            let charge = limiter.begin(Some("alice"), None, t0).unwrap();
            limiter.finish(charge, Outcome::NotCounted, t0);
        }
        assert!(limiter.begin(Some("alice"), None, t0).is_ok());
    }

    #[test]
    fn an_address_locks_across_names() {
        let t0 = Instant::now();
        let limiter = LoginLimiter::new(t0);
        for n in 0..IP_LIMIT.failures {
            fail(&limiter, &format!("user{n}"), "192.0.2.7", t0).unwrap();
        }
        assert!(limiter.begin(Some("fresh"), ip("192.0.2.7"), t0).is_err());
        assert!(limiter.begin(Some("fresh"), ip("192.0.2.8"), t0).is_ok());
    }

    #[test]
    fn the_window_forgets_old_failures() {
        let t0 = Instant::now();
        let limiter = LoginLimiter::new(t0);
        for _ in 0..USER_LIMIT.failures - 1 {
            fail(&limiter, "alice", "10.0.0.1", t0).unwrap();
        }
        let later = t0 + USER_LIMIT.window;
        for _ in 0..USER_LIMIT.failures - 1 {
            fail(&limiter, "alice", "10.0.0.1", later).unwrap();
        }
        assert!(limiter.begin(Some("alice"), None, later).is_ok());
    }

    #[test]
    fn memory_stays_bounded_and_idle_entries_are_pruned() {
        let t0 = Instant::now();
        let limiter = LoginLimiter::new(t0);
        // A locked name must survive the flood.
        for _ in 0..USER_LIMIT.failures {
            fail(&limiter, "victim", "10.0.0.1", t0).unwrap();
        }
        for n in 0..(MAX_ENTRIES + 1000) {
            let charge = limiter
                .begin(Some(&format!("u{n}")), None, t0 + Duration::from_millis(1))
                .unwrap();
            limiter.finish(charge, Outcome::Failed, t0);
        }
        assert!(limiter.len() <= MAX_ENTRIES, "{}", limiter.len());
        assert!(limiter.begin(Some("victim"), None, t0).is_err());
        // Long after, a prune forgets everything idle.
        let much_later = t0 + USER_LIMIT.forget_after() + IP_LIMIT.forget_after();
        limiter.begin(None, None, much_later).unwrap();
        assert_eq!(limiter.len(), 0);
    }

    #[test]
    fn only_the_last_forwarded_hop_counts() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "6.6.6.6, 10.1.2.3".parse().unwrap());
        assert_eq!(client_ip(&headers), ip("10.1.2.3"));
        headers.append("x-forwarded-for", "1.1.1.1, ::1".parse().unwrap());
        assert_eq!(client_ip(&headers), ip("::1"));
        assert_eq!(client_ip(&HeaderMap::new()), None);
        let mut spoof = HeaderMap::new();
        spoof.append("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(client_ip(&spoof), None);
    }

    #[test]
    fn sign_ups_are_limited_per_address_and_refused_ones_do_not_count() {
        let t0 = Instant::now();
        let limiter = LoginLimiter::new(t0);
        // Refused sign-ups (taken names, weak passwords) are refunded.
        for _ in 0..2 * SIGNUP_LIMIT.failures {
            let charge = limiter.begin_signup(ip("10.0.0.1"), t0).unwrap();
            limiter.finish(charge, Outcome::NotCounted, t0);
        }
        for n in 0..SIGNUP_LIMIT.failures {
            let charge = limiter
                .begin_signup(ip("10.0.0.1"), t0)
                .unwrap_or_else(|_| panic!("sign-up {n} refused"));
            limiter.finish(charge, Outcome::Failed, t0);
        }
        let locked = limiter.begin_signup(ip("10.0.0.1"), t0).unwrap_err();
        assert_eq!(locked.retry_after_seconds, SIGNUP_LIMIT.lockout.as_secs());
        // Other addresses, and logins from the same address, are unaffected.
        assert!(limiter.begin_signup(ip("10.0.0.2"), t0).is_ok());
        assert!(limiter.begin(Some("alice"), ip("10.0.0.1"), t0).is_ok());
        // The window passes.
        let later = t0 + SIGNUP_LIMIT.lockout + Duration::from_secs(1);
        assert!(limiter.begin_signup(ip("10.0.0.1"), later).is_ok());
    }
}
