//! JupyterHub's RBAC scope model: the scope tree, filters, role expansion and checks.
//!
//! A scope string is `name` or `name!filter`, where the filter is `user=<u>`, `server=<u>/<s>`,
//! `group=<g>` or `service=<s>`; the shorthands `!user`, `!service` and `!server` refer to the
//! owner of the credential. Expanding a set of scope strings follows the subscope tree (e.g.
//! `admin:users` ⊃ `users` ⊃ `read:users` ⊃ `read:users:name`) and yields a [`ScopeSet`]: for each
//! scope name, either every resource or an explicit set of filters.

use std::collections::{BTreeMap, BTreeSet};

/// `(scope, direct subscopes)`. The closure over this table is the whole tree.
const SCOPE_TREE: &[(&str, &[&str])] = &[
    ("admin-ui", &[]),
    (
        "admin:users",
        &[
            "admin:auth_state",
            "users",
            "read:roles:users",
            "delete:users",
        ],
    ),
    ("admin:auth_state", &[]),
    ("users", &["read:users", "list:users", "users:activity"]),
    (
        "read:users",
        &[
            "read:users:name",
            "read:users:groups",
            "read:users:activity",
        ],
    ),
    ("list:users", &["read:users:name"]),
    ("read:users:name", &[]),
    ("read:users:groups", &[]),
    ("read:users:activity", &[]),
    ("users:activity", &["read:users:activity"]),
    ("delete:users", &[]),
    (
        "read:roles",
        &[
            "read:roles:users",
            "read:roles:services",
            "read:roles:groups",
        ],
    ),
    ("read:roles:users", &[]),
    ("read:roles:services", &[]),
    ("read:roles:groups", &[]),
    ("admin:servers", &["admin:server_state", "servers"]),
    ("admin:server_state", &[]),
    (
        "servers",
        &["read:servers", "start:servers", "delete:servers"],
    ),
    ("read:servers", &["read:users:name"]),
    ("start:servers", &[]),
    ("delete:servers", &[]),
    ("tokens", &["read:tokens"]),
    ("read:tokens", &[]),
    (
        "admin:groups",
        &["groups", "read:roles:groups", "delete:groups"],
    ),
    ("groups", &["read:groups", "list:groups"]),
    ("read:groups", &["read:groups:name"]),
    ("list:groups", &["read:groups:name"]),
    ("read:groups:name", &[]),
    ("delete:groups", &[]),
    (
        "admin:services",
        &["list:services", "read:services", "read:roles:services"],
    ),
    ("list:services", &["read:services:name"]),
    ("read:services", &["read:services:name"]),
    ("read:services:name", &[]),
    ("read:hub", &[]),
    ("access:servers", &[]),
    ("access:services", &[]),
    ("proxy", &[]),
    ("shutdown", &[]),
    ("read:metrics", &[]),
    (
        "shares",
        &[
            "access:servers",
            "read:shares",
            "users:shares",
            "groups:shares",
        ],
    ),
    ("read:shares", &[]),
    ("users:shares", &["read:users:shares"]),
    ("read:users:shares", &[]),
    ("groups:shares", &["read:groups:shares"]),
    ("read:groups:shares", &[]),
];

/// The scopes of JupyterHub's default `admin` role.
pub const ADMIN_ROLE_SCOPES: &[&str] = &[
    "admin-ui",
    "admin:users",
    "admin:servers",
    "admin:services",
    "tokens",
    "admin:groups",
    "list:services",
    "read:services",
    "read:hub",
    "proxy",
    "shutdown",
    "access:services",
    "access:servers",
    "read:roles",
    "read:metrics",
    "shares",
];

/// What `self` means for a user (JupyterHub's `_expand_self_scope`), each filtered to that user.
/// Unlike JupyterHub, which leaves `shares!user` to a role, `self` includes `shares`: people may
/// share their own servers (granting only scopes they hold, see the share API).
const SELF_SCOPES: &[&str] = &[
    "read:users",
    "users:shares",
    "shares",
    "read:shares",
    "users:activity",
    "servers",
    "tokens",
    "access:servers",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("unknown scope {0:?}")]
    Unknown(String),
    #[error("invalid filter in scope {0:?}")]
    BadFilter(String),
}

/// One resource filter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Filter {
    User(String),
    /// `server=<user>/<server>`; the default server has an empty name.
    Server {
        user: String,
        server: String,
    },
    Group(String),
    Service(String),
}

impl Filter {
    fn render(&self) -> String {
        match self {
            Filter::User(u) => format!("user={u}"),
            Filter::Server { user, server } => format!("server={user}/{server}"),
            Filter::Group(g) => format!("group={g}"),
            Filter::Service(s) => format!("service={s}"),
        }
    }
}

/// Which resources a scope applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    All,
    Only(BTreeSet<Filter>),
}

/// Who holds the credential whose scopes are being expanded; resolves `self` and the shorthand filters.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    User {
        name: &'a str,
        /// The server a server token belongs to (`!server` resolves to it).
        server: Option<&'a str>,
    },
    Service {
        name: &'a str,
    },
}

/// A resource a request acts on.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    /// Hub-wide operations (`read:hub`, `proxy`, `shutdown`, `list:users` without a target…).
    Hub,
    User {
        name: &'a str,
        groups: &'a [String],
    },
    Server {
        user: &'a str,
        server: &'a str,
        groups: &'a [String],
    },
    Group {
        name: &'a str,
    },
    Service {
        name: &'a str,
    },
}

/// Expanded scopes: scope name → targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeMap<String, Targets>);

fn subscopes(name: &str) -> Option<&'static [&'static str]> {
    SCOPE_TREE
        .iter()
        .find(|(scope, _)| *scope == name)
        .map(|(_, subs)| *subs)
}

/// Is `name` (without a filter) a scope hubfleet knows? Custom scopes (`custom:…`) are accepted.
pub fn is_known_scope(name: &str) -> bool {
    subscopes(name).is_some() || name.starts_with("custom:") || matches!(name, "self" | "inherit")
}

/// Checks a scope string's syntax and name, e.g. for config and the token API.
pub fn validate_scope(raw: &str) -> Result<(), ScopeError> {
    let (name, filter) = split(raw);
    if !is_known_scope(name) {
        return Err(ScopeError::Unknown(raw.to_string()));
    }
    if let Some(filter) = filter {
        let ok = match filter.split_once('=') {
            Some(("user" | "group" | "service", v)) => !v.is_empty(),
            Some(("server", v)) => v.split_once('/').is_some_and(|(u, _)| !u.is_empty()),
            None => matches!(filter, "user" | "server" | "service"),
            _ => false,
        };
        if !ok {
            return Err(ScopeError::BadFilter(raw.to_string()));
        }
    }
    Ok(())
}

fn split(raw: &str) -> (&str, Option<&str>) {
    match raw.split_once('!') {
        Some((name, filter)) => (name, Some(filter)),
        None => (raw, None),
    }
}

fn resolve_filter(filter: &str, owner: Owner<'_>) -> Option<Filter> {
    match (filter.split_once('='), owner) {
        (Some(("user", u)), _) => Some(Filter::User(u.to_string())),
        (Some(("group", g)), _) => Some(Filter::Group(g.to_string())),
        (Some(("service", s)), _) => Some(Filter::Service(s.to_string())),
        (Some(("server", s)), _) => s.split_once('/').map(|(user, server)| Filter::Server {
            user: user.to_string(),
            server: server.to_string(),
        }),
        (None, Owner::User { name, .. }) if filter == "user" => Some(Filter::User(name.into())),
        (None, Owner::User { name, server }) if filter == "server" => Some(Filter::Server {
            user: name.to_string(),
            server: server?.to_string(),
        }),
        (None, Owner::Service { name }) if filter == "service" => {
            Some(Filter::Service(name.to_string()))
        }
        _ => None,
    }
}

impl ScopeSet {
    /// Expands scope strings held by `owner`. Unknown scopes and unresolvable filters are dropped
    /// (they were rejected when configured); `inherit` is ignored here, see [`ScopeSet::for_token`].
    pub fn expand<S: AsRef<str>>(scopes: &[S], owner: Owner<'_>) -> ScopeSet {
        let mut set = ScopeSet::default();
        for raw in scopes {
            let (name, filter) = split(raw.as_ref());
            let filter = match filter {
                None => None,
                Some(f) => match resolve_filter(f, owner) {
                    Some(f) => Some(f),
                    None => continue,
                },
            };
            if name == "self" {
                if let Owner::User { name: user, .. } = owner {
                    for scope in SELF_SCOPES {
                        set.add_tree(scope, Some(&Filter::User(user.to_string())));
                    }
                }
                continue;
            }
            set.add_tree(name, filter.as_ref());
        }
        set
    }

    /// The scopes of a token: what it asks for, limited to what its owner may do now.
    /// `inherit` means exactly the owner's scopes.
    pub fn for_token<S: AsRef<str>>(
        token_scopes: &[S],
        owner_scopes: &ScopeSet,
        owner: Owner<'_>,
    ) -> ScopeSet {
        if token_scopes.iter().any(|s| s.as_ref() == "inherit") {
            return owner_scopes.clone();
        }
        ScopeSet::expand(token_scopes, owner).intersect(owner_scopes)
    }

    fn add_tree(&mut self, name: &str, filter: Option<&Filter>) {
        let is_custom = name.starts_with("custom:");
        if subscopes(name).is_none() && !is_custom {
            return;
        }
        // `!server` filters do not carry user-reading subscopes (JupyterHub drops them too).
        if matches!(filter, Some(Filter::Server { .. })) && name.starts_with("read:users") {
            return;
        }
        self.add_one(name, filter);
        for sub in subscopes(name).unwrap_or(&[]) {
            self.add_tree(sub, filter);
        }
    }

    fn add_one(&mut self, name: &str, filter: Option<&Filter>) {
        match (self.0.get_mut(name), filter) {
            (Some(Targets::All), _) => {}
            (Some(targets), None) => *targets = Targets::All,
            (Some(Targets::Only(filters)), Some(f)) => {
                filters.insert(f.clone());
            }
            (None, None) => {
                self.0.insert(name.to_string(), Targets::All);
            }
            (None, Some(f)) => {
                self.0
                    .insert(name.to_string(), Targets::Only(BTreeSet::from([f.clone()])));
            }
        }
    }

    /// Scopes in both sets, each limited to the resources both allow.
    pub fn intersect(&self, other: &ScopeSet) -> ScopeSet {
        let mut out = BTreeMap::new();
        for (name, mine) in &self.0 {
            let Some(theirs) = other.0.get(name) else {
                continue;
            };
            let targets = match (mine, theirs) {
                (Targets::All, t) | (t, Targets::All) => t.clone(),
                (Targets::Only(a), Targets::Only(b)) => {
                    let mut both: BTreeSet<Filter> = a
                        .iter()
                        .filter(|f| b.iter().any(|g| covers(g, f)))
                        .cloned()
                        .collect();
                    both.extend(b.iter().filter(|f| a.iter().any(|g| covers(g, f))).cloned());
                    if both.is_empty() {
                        continue;
                    }
                    Targets::Only(both)
                }
            };
            out.insert(name.clone(), targets);
        }
        ScopeSet(out)
    }

    /// Does this set grant `scope` on `resource`?
    pub fn allows(&self, scope: &str, resource: Resource<'_>) -> bool {
        match self.0.get(scope) {
            None => false,
            Some(Targets::All) => true,
            Some(Targets::Only(filters)) => filters.iter().any(|f| matches(f, resource)),
        }
    }

    /// Does this set hold `scope` for at least one resource? (Distinguishes JupyterHub's 403
    /// "not authorized" from 404 "no access to resources or resources not found".)
    pub fn has(&self, scope: &str) -> bool {
        self.0.contains_key(scope)
    }

    /// True when `scope` is held without filters.
    pub fn has_unfiltered(&self, scope: &str) -> bool {
        matches!(self.0.get(scope), Some(Targets::All))
    }

    pub fn targets(&self, scope: &str) -> Option<&Targets> {
        self.0.get(scope)
    }

    /// Sorted scope strings, as `GET /hub/api/user` reports them (`access:servers!server=alice/`).
    pub fn to_strings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, targets) in &self.0 {
            match targets {
                Targets::All => out.push(name.clone()),
                Targets::Only(filters) => {
                    out.extend(filters.iter().map(|f| format!("{name}!{}", f.render())));
                }
            }
        }
        out.sort();
        out
    }
}

/// Does filter `outer` include everything filter `inner` does?
fn covers(outer: &Filter, inner: &Filter) -> bool {
    outer == inner
        || matches!((outer, inner), (Filter::User(u), Filter::Server { user, .. }) if u == user)
}

fn matches(filter: &Filter, resource: Resource<'_>) -> bool {
    match (filter, resource) {
        (Filter::User(u), Resource::User { name, .. }) => u == name,
        (Filter::User(u), Resource::Server { user, .. }) => u == user,
        // A server filter reaches its owner too (JupyterHub lets `read:servers!server=u/s` read
        // `GET /users/u`, whose model is then filtered down to that server).
        (Filter::Server { user: fu, .. }, Resource::User { name, .. }) => fu == name,
        (
            Filter::Server {
                user: fu,
                server: fs,
            },
            Resource::Server { user, server, .. },
        ) => fu == user && fs == server,
        (Filter::Group(g), Resource::User { groups, .. } | Resource::Server { groups, .. }) => {
            groups.iter().any(|mine| mine == g)
        }
        (Filter::Group(g), Resource::Group { name }) => g == name,
        (Filter::Service(s), Resource::Service { name }) => s == name,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Owner<'static> {
        Owner::User {
            name: "alice",
            server: None,
        }
    }

    const NO_GROUPS: &[String] = &[];

    fn server<'a>(user: &'a str, name: &'a str) -> Resource<'a> {
        Resource::Server {
            user,
            server: name,
            groups: NO_GROUPS,
        }
    }

    #[test]
    fn every_subscope_in_the_tree_is_itself_defined() {
        for (scope, subs) in SCOPE_TREE {
            for sub in *subs {
                assert!(subscopes(sub).is_some(), "{scope} lists undefined {sub}");
            }
        }
    }

    #[test]
    fn self_gives_a_user_their_own_servers_and_nobody_elses() {
        let set = ScopeSet::expand(&["self"], alice());
        assert!(set.allows("start:servers", server("alice", "")));
        assert!(set.allows("access:servers", server("alice", "gpu")));
        assert!(!set.allows("access:servers", server("bob", "")));
        assert!(!set.allows("admin:users", Resource::Hub));
        assert!(set.allows(
            "read:users:name",
            Resource::User {
                name: "alice",
                groups: NO_GROUPS
            }
        ));
    }

    #[test]
    fn self_lets_users_share_their_own_servers_only() {
        let set = ScopeSet::expand(&["self"], alice());
        assert!(set.allows("shares", server("alice", "")));
        assert!(set.allows("read:shares", server("alice", "gpu")));
        assert!(!set.allows("shares", server("bob", "")));
        // A share's scopes (filtered to one server) grant access to that server only.
        let shared = ScopeSet::expand(&["self", "access:servers!server=bob/"], alice());
        assert!(shared.allows("access:servers", server("bob", "")));
        assert!(!shared.allows("access:servers", server("bob", "gpu")));
    }

    #[test]
    fn admin_scopes_expand_through_the_tree() {
        let set = ScopeSet::expand(ADMIN_ROLE_SCOPES, alice());
        for scope in [
            "delete:users",
            "read:users:activity",
            "start:servers",
            "list:groups",
        ] {
            assert!(set.has_unfiltered(scope), "admin lacks {scope}");
        }
    }

    #[test]
    fn server_shorthand_resolves_to_the_tokens_server() {
        let owner = Owner::User {
            name: "alice",
            server: Some(""),
        };
        let set = ScopeSet::expand(&["access:servers!server", "users:activity!user"], owner);
        assert_eq!(
            set.to_strings(),
            vec![
                "access:servers!server=alice/",
                "read:users:activity!user=alice",
                "users:activity!user=alice"
            ]
        );
    }

    #[test]
    fn token_scopes_never_exceed_the_owner() {
        let owner_scopes = ScopeSet::expand(&["self"], alice());
        let token = ScopeSet::for_token(
            &["admin:users", "access:servers!server=alice/"],
            &owner_scopes,
            alice(),
        );
        assert!(!token.has("admin:users"));
        assert!(token.allows("access:servers", server("alice", "")));
        assert!(!token.allows("access:servers", server("alice", "other")));
        let inherited = ScopeSet::for_token(&["inherit"], &owner_scopes, alice());
        assert_eq!(inherited, owner_scopes);
    }

    #[test]
    fn group_filters_match_members() {
        let groups = vec!["physics".to_string()];
        let set = ScopeSet::expand(&["read:users!group=physics"], alice());
        assert!(set.allows(
            "read:users",
            Resource::User {
                name: "carol",
                groups: &groups
            }
        ));
        assert!(!set.allows(
            "read:users",
            Resource::User {
                name: "dave",
                groups: NO_GROUPS
            }
        ));
    }

    #[test]
    fn server_filters_reach_the_owner_but_not_other_servers() {
        let set = ScopeSet::expand(&["read:servers!server=bob/gpu"], alice());
        assert!(set.allows(
            "read:servers",
            Resource::User {
                name: "bob",
                groups: NO_GROUPS
            }
        ));
        assert!(set.allows("read:servers", server("bob", "gpu")));
        assert!(!set.allows("read:servers", server("bob", "")));
        assert!(!set.allows(
            "read:servers",
            Resource::User {
                name: "carol",
                groups: NO_GROUPS
            }
        ));
    }

    #[test]
    fn validation_rejects_unknown_scopes_and_bad_filters() {
        assert!(validate_scope("read:users!user=alice").is_ok());
        assert!(validate_scope("custom:thing").is_ok());
        assert_eq!(
            validate_scope("read:everything"),
            Err(ScopeError::Unknown("read:everything".into()))
        );
        assert!(validate_scope("read:users!planet=mars").is_err());
        assert!(validate_scope("access:servers!server=noslash").is_err());
    }
}
