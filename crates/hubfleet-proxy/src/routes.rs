//! The route table: CHP path normalisation, longest whole-segment prefix match, per-route data and activity.
//!
//! Readers never lock: the table is an immutable map behind an [`ArcSwap`], and a lookup is a handful of hash
//! probes (one per path segment). Writers clone the map, change the clone and swap it in, serialised by a
//! writer-only mutex, so a route update never blocks traffic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use chrono::{DateTime, SecondsFormat, Utc};
use http::uri::{Authority, Scheme};
use serde_json::{Map, Value};

use crate::error::RouteError;

/// Normalises a route path the way CHP does: one leading `/`, no trailing `/` (except the root `/`).
///
/// Repeated slashes at either end collapse too, because CHP's trie ignores them when it splits the path into
/// segments; keeping them would make a stored key unreachable by lookups.
pub fn normalize_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    let mut normalized = String::with_capacity(trimmed.len() + 1);
    normalized.push('/');
    normalized.push_str(trimmed);
    normalized
}

/// The last time traffic used a route, in milliseconds since the Unix epoch; updated without a lock.
///
/// It is shared between successive versions of the same route path, so streams that started before a route
/// was re-added still count as activity on the current route.
#[derive(Debug)]
pub struct ActivityClock {
    millis: AtomicI64,
}

impl ActivityClock {
    fn now() -> Self {
        Self {
            millis: AtomicI64::new(Utc::now().timestamp_millis()),
        }
    }

    /// Records activity now.
    pub fn touch(&self) {
        let now = Utc::now().timestamp_millis();
        // Busy routes are touched from every core many times per millisecond; skipping the store when the
        // value is unchanged keeps the cache line shared instead of bouncing it between cores.
        if self.millis.load(Ordering::Relaxed) != now {
            self.millis.store(now, Ordering::Relaxed);
        }
    }

    /// The time of the last recorded activity.
    pub fn last(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.millis.load(Ordering::Relaxed)).unwrap_or_default()
    }
}

/// Where a route sends its traffic: the origin and an optional path prefix of the `target` URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host and port of the upstream.
    pub authority: Authority,
    /// The target URL's path without its trailing `/` (empty for an origin-only target).
    pub path_prefix: String,
}

impl Target {
    /// Parses a target URL; `None` if it is not an absolute `http(s)://host[:port][/path]` URL.
    pub fn parse(target: &str) -> Option<Target> {
        let uri: http::Uri = target.parse().ok()?;
        let scheme = uri.scheme()?.clone();
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return None;
        }
        let authority = uri.authority()?.clone();
        let path_prefix = uri.path().trim_end_matches('/').to_owned();
        Some(Target {
            scheme,
            authority,
            path_prefix,
        })
    }
}

/// One entry of the route table.
#[derive(Debug)]
pub struct Route {
    path: Arc<str>,
    target_url: String,
    target: Option<Target>,
    data: Map<String, Value>,
    activity: Arc<ActivityClock>,
}

impl Route {
    /// The normalised route path (the key in the table).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `target` string as it was posted.
    pub fn target_url(&self) -> &str {
        &self.target_url
    }

    /// The parsed target; `None` if the posted target is not a usable URL (CHP accepts any string and fails
    /// at request time, so we do too).
    pub fn target(&self) -> Option<&Target> {
        self.target.as_ref()
    }

    /// The data posted with the route (including `target`).
    pub fn data(&self) -> &Map<String, Value> {
        &self.data
    }

    /// The route's activity clock.
    pub fn activity(&self) -> &Arc<ActivityClock> {
        &self.activity
    }

    /// The CHP wire form: the stored data plus `target` and `last_activity` (ISO 8601, milliseconds, `Z`).
    pub fn to_json(&self) -> Value {
        let mut object = self.data.clone();
        object.insert("target".to_owned(), Value::String(self.target_url.clone()));
        object.insert(
            "last_activity".to_owned(),
            Value::String(
                self.activity
                    .last()
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
            ),
        );
        Value::Object(object)
    }
}

type RouteMap = HashMap<Arc<str>, Arc<Route>>;

/// The proxy's routing table. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct RouteTable {
    current: ArcSwap<RouteMap>,
    host_routing: bool,
    // Serialises writers only, so two concurrent updates cannot lose each other's change.
    write_lock: Mutex<()>,
}

impl RouteTable {
    /// An empty table. With `host_routing`, route keys are `/<host><path>` and each route's data gets a `host`
    /// field (the first segment), as CHP does.
    pub fn new(host_routing: bool) -> Self {
        Self {
            current: ArcSwap::from_pointee(RouteMap::new()),
            host_routing,
            write_lock: Mutex::new(()),
        }
    }

    /// Whether keys start with the request's host.
    pub fn host_routing(&self) -> bool {
        self.host_routing
    }

    /// Adds or replaces the route at `path` with `data`, which must hold a string `target`. Sets its
    /// `last_activity` to now.
    pub fn insert(
        &self,
        path: &str,
        mut data: Map<String, Value>,
    ) -> Result<Arc<Route>, RouteError> {
        let target_url = match data.get("target") {
            Some(Value::String(target)) => target.clone(),
            _ => return Err(RouteError::MissingTarget),
        };
        let path: Arc<str> = normalize_path(path).into();
        if self.host_routing && &*path != "/" {
            let host = path[1..].split('/').next().unwrap_or_default().to_owned();
            data.insert("host".to_owned(), Value::String(host));
        }
        let _writer = self
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut routes = RouteMap::clone(&self.current.load());
        let activity = match routes.get(&path) {
            Some(existing) => {
                existing.activity.touch();
                existing.activity.clone()
            }
            None => Arc::new(ActivityClock::now()),
        };
        let route = Arc::new(Route {
            path: path.clone(),
            target: Target::parse(&target_url),
            target_url,
            data,
            activity,
        });
        routes.insert(path, route.clone());
        self.current.store(Arc::new(routes));
        Ok(route)
    }

    /// Removes the route at `path`; `false` if there was none.
    pub fn remove(&self, path: &str) -> bool {
        let path = normalize_path(path);
        let _writer = self
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.current.load();
        if !current.contains_key(path.as_str()) {
            return false;
        }
        let mut routes = RouteMap::clone(&current);
        routes.remove(path.as_str());
        self.current.store(Arc::new(routes));
        true
    }

    /// The route stored at exactly `path` (after normalisation).
    pub fn get(&self, path: &str) -> Option<Arc<Route>> {
        self.current
            .load()
            .get(normalize_path(path).as_str())
            .cloned()
    }

    /// The route with the longest whole-segment prefix of `path` (a decoded URL path, or `/<host><path>`
    /// with host routing).
    pub fn lookup(&self, path: &str) -> Option<Arc<Route>> {
        let routes = self.current.load();
        let end = path.trim_end_matches('/').len();
        let leading_slashes = path.len() - path.trim_start_matches('/').len();
        if end > leading_slashes {
            if leading_slashes == 0 {
                // Only synthetic keys lack a leading slash; allocating here is fine.
                return lookup_in(&routes, &format!("/{}", &path[..end]));
            }
            return lookup_in(&routes, &path[leading_slashes - 1..end]);
        }
        routes.get("/").cloned()
    }

    /// Every route, in no particular order.
    pub fn routes(&self) -> Vec<Arc<Route>> {
        self.current.load().values().cloned().collect()
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Tries `path` (starting with exactly one `/`, not ending with one), then each shorter segment prefix,
/// then the root.
fn lookup_in(routes: &RouteMap, path: &str) -> Option<Arc<Route>> {
    let mut candidate = path;
    loop {
        if let Some(route) = routes.get(candidate) {
            return Some(route.clone());
        }
        match candidate.rfind('/') {
            Some(cut) if cut > 0 => candidate = &candidate[..cut],
            _ => return routes.get("/").cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(target: &str) -> Map<String, Value> {
        json!({ "target": target })
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    fn target_of(table: &RouteTable, path: &str) -> Option<String> {
        table
            .lookup(path)
            .map(|route| route.target_url().to_owned())
    }

    #[test]
    fn normalizes_like_chp() {
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path("user/a"), "/user/a");
        assert_eq!(normalize_path("/user/a/"), "/user/a");
        assert_eq!(normalize_path("//user/a//"), "/user/a");
        assert_eq!(normalize_path("/a//b"), "/a//b");
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let table = RouteTable::new(false);
        table.insert("/", data("http://hub")).unwrap();
        table.insert("/user/a/", data("http://a")).unwrap();
        table.insert("/user/a/lab/x", data("http://ax")).unwrap();
        assert_eq!(target_of(&table, "/user/a").as_deref(), Some("http://a"));
        assert_eq!(target_of(&table, "/user/a/").as_deref(), Some("http://a"));
        assert_eq!(
            target_of(&table, "/user/a/tree").as_deref(),
            Some("http://a")
        );
        assert_eq!(
            target_of(&table, "/user/a/lab/x/y").as_deref(),
            Some("http://ax")
        );
        assert_eq!(
            target_of(&table, "/user/a/lab/xy").as_deref(),
            Some("http://a")
        );
        assert_eq!(target_of(&table, "/user/ab").as_deref(), Some("http://hub"));
        assert_eq!(target_of(&table, "/").as_deref(), Some("http://hub"));
        assert_eq!(
            target_of(&table, "//user/a//x").as_deref(),
            Some("http://a")
        );
    }

    #[test]
    fn no_default_route_means_no_match() {
        let table = RouteTable::new(false);
        table.insert("/user/a", data("http://a")).unwrap();
        assert!(table.lookup("/user/ab").is_none());
        assert!(table.lookup("/").is_none());
        assert!(table.lookup("/user").is_none());
    }

    #[test]
    fn insert_requires_string_target() {
        let table = RouteTable::new(false);
        let no_target = json!({ "user": "a" })
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(matches!(
            table.insert("/x", no_target),
            Err(RouteError::MissingTarget)
        ));
        let numeric = json!({ "target": 5 })
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(matches!(
            table.insert("/x", numeric),
            Err(RouteError::MissingTarget)
        ));
        assert!(table.is_empty());
    }

    #[test]
    fn remove_and_get_use_normalised_paths() {
        let table = RouteTable::new(false);
        table.insert("user/a/", data("http://a")).unwrap();
        assert_eq!(
            table.get("/user/a").map(|r| r.path().to_owned()).as_deref(),
            Some("/user/a")
        );
        assert!(table.remove("/user/a/"));
        assert!(!table.remove("/user/a"));
        assert!(table.get("/user/a").is_none());
    }

    #[test]
    fn host_routing_adds_host_and_matches_host_keys() {
        let table = RouteTable::new(true);
        table
            .insert("/a.example.com/user/a/", data("http://a"))
            .unwrap();
        let route = table.get("/a.example.com/user/a").unwrap();
        assert_eq!(route.data().get("host"), Some(&json!("a.example.com")));
        assert_eq!(
            target_of(&table, "/a.example.com/user/a/x").as_deref(),
            Some("http://a")
        );
        assert!(table.lookup("/b.example.com/user/a/x").is_none());
    }

    #[test]
    fn json_form_has_data_target_and_activity() {
        let table = RouteTable::new(false);
        let posted = json!({ "target": "http://a:1", "user": "a", "jupyterhub": true });
        table
            .insert("/user/a", posted.as_object().cloned().unwrap_or_default())
            .unwrap();
        let wire = table.get("/user/a").unwrap().to_json();
        assert_eq!(wire["user"], "a");
        assert_eq!(wire["jupyterhub"], true);
        assert_eq!(wire["target"], "http://a:1");
        let stamp = wire["last_activity"].as_str().unwrap();
        assert!(
            stamp.ends_with('Z') && DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{stamp}"
        );
    }

    #[test]
    fn readding_a_route_keeps_its_activity_clock() {
        let table = RouteTable::new(false);
        let first = table.insert("/user/a", data("http://a")).unwrap();
        let second = table.insert("/user/a", data("http://b")).unwrap();
        assert!(Arc::ptr_eq(first.activity(), second.activity()));
        assert_eq!(target_of(&table, "/user/a/x").as_deref(), Some("http://b"));
    }

    #[test]
    fn target_parsing() {
        let target = Target::parse("http://127.0.0.1:8888").unwrap();
        assert_eq!(target.authority.as_str(), "127.0.0.1:8888");
        assert_eq!(target.path_prefix, "");
        assert_eq!(
            Target::parse("http://h/prefix/").unwrap().path_prefix,
            "/prefix"
        );
        assert!(Target::parse("not a url").is_none());
        assert!(Target::parse("ftp://h").is_none());
    }

    /// The obvious model of CHP's trie: split into segments, pick the route whose segments are the longest
    /// prefix of the request's segments.
    fn model_lookup<'a>(routes: &'a [String], path: &str) -> Option<&'a str> {
        let segments = |p: &str| -> Vec<String> {
            let trimmed = p.trim_matches('/');
            if trimmed.is_empty() {
                Vec::new()
            } else {
                trimmed.split('/').map(str::to_owned).collect()
            }
        };
        let wanted = segments(path);
        routes
            .iter()
            .map(|route| (route, segments(route)))
            .filter(|(_, route_segments)| wanted.starts_with(route_segments))
            .max_by_key(|(_, route_segments)| route_segments.len())
            .map(|(route, _)| route.as_str())
    }

    /// A tiny deterministic generator (SplitMix64), so failures reproduce without a dependency.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn path(&mut self) -> String {
            const ALPHABET: &[u8] = b"ab/";
            let len = (self.next() % 9) as usize;
            (0..len)
                .map(|_| ALPHABET[(self.next() % 3) as usize] as char)
                .collect()
        }
    }

    /// The same property as the cargo-fuzz target `fuzz/fuzz_targets/route_match.rs`, over seeded random
    /// inputs (cargo-fuzz needs a nightly toolchain, which we do not have).
    #[test]
    fn lookup_matches_the_reference_model() {
        let mut rng = SplitMix(0x5EED);
        for _ in 0..3000 {
            let table = RouteTable::new(false);
            let mut keys = Vec::new();
            for _ in 0..(rng.next() % 6) {
                let raw = rng.path();
                table.insert(&raw, data("http://t")).unwrap();
                let key = normalize_path(&raw);
                assert_eq!(normalize_path(&key), key, "normalisation is idempotent");
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            for _ in 0..8 {
                let request = format!("/{}", rng.path());
                let found = table.lookup(&request);
                let expected = model_lookup(&keys, &request);
                assert_eq!(
                    found.as_ref().map(|route| route.path()),
                    expected,
                    "routes {keys:?}, request {request:?}"
                );
            }
        }
    }
}
