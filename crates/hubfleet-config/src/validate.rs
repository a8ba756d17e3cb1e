//! Turns the raw [`FileConfig`] into a validated [`Config`], collecting every rule it breaks.
//!
//! Each problem points at the offending key through [`KeyLocations`]; when the key is absent
//! from the file (a default broke a rule), the nearest related key that is present is used.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hubfleet_types::UserName;

use crate::Secret;
use crate::config::{
    AuthConfig, AuthMethod, AuthStateKey, Config, ConfigSource, CullConfig, HubConfig, IdpRule,
    OAuthSettings, ProxyConfig, RoleConfig, ServiceConfig, SpawnerConfig, TlsConfig,
};
use crate::error::Diagnostic;
use crate::file::{AuthKind, AuthSection, FileConfig, ServiceSection};
use crate::locate::{KeyLocations, LineColumn};

const MIN_SHARED_PASSWORD_CHARS: usize = 8;
/// Tokens are stored as unsalted SHA-256, which is only safe for high-entropy input.
const MIN_SERVICE_TOKEN_CHARS: usize = 32;

struct Resolver<'a> {
    origin: String,
    base_dir: &'a Path,
    keys: KeyLocations,
    problems: Vec<Diagnostic>,
}

pub(crate) fn resolve(
    file: FileConfig,
    text: &str,
    source: ConfigSource,
    base_dir: &Path,
) -> Result<Config, Vec<Diagnostic>> {
    let mut resolver = Resolver {
        origin: source.to_string(),
        base_dir,
        keys: KeyLocations::scan(text),
        problems: Vec::new(),
    };
    let config = resolver.resolve(file, source);
    if resolver.problems.is_empty() {
        return Ok(config);
    }
    let mut problems = resolver.problems;
    // File order reads best; problems without a location go last.
    problems.sort_by_key(|it| it.line_column.unwrap_or((u64::MAX, u64::MAX)));
    Err(problems)
}

impl Resolver<'_> {
    fn resolve(&mut self, file: FileConfig, source: ConfigSource) -> Config {
        self.check_distinct_addresses(&file);
        let base_url = self.base_url(file.base_url);
        let data_dir = self.absolute(&file.data_dir);

        let hub = HubConfig {
            listen: file.hub.listen,
            cookie_max_age: file.hub.cookie_max_age.0,
            public_metrics: file.hub.public_metrics,
            purge_expired_every: file.hub.purge_expired_every.0,
        };
        if hub.purge_expired_every.is_zero() {
            self.problem(
                &["hub.purge_expired_every"],
                "hub.purge_expired_every must be longer than 0s".to_string(),
            );
        }
        let public_origin = file
            .public_url
            .and_then(|url| self.public_origin(&url, &base_url));

        let tls = file.proxy.tls.and_then(|tls| match (tls.cert, tls.key) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert: self.absolute(&cert),
                key: self.absolute(&key),
            }),
            (cert, _) => {
                let missing = if cert.is_none() { "cert" } else { "key" };
                self.problem(
                    &["proxy.tls"],
                    format!("proxy.tls needs both `cert` and `key`; `{missing}` is missing"),
                );
                None
            }
        });
        let proxy = ProxyConfig {
            api_listen: file.proxy.api_listen,
            tls,
            redirect_http_from: file.proxy.redirect_http_from,
        };

        let auth = self.auth(file.auth, file.listen, file.hub.listen);

        let spawner_section = file.spawner;
        if !spawner_section.default_url.starts_with('/') {
            self.problem(
                &["spawner.default_url"],
                format!(
                    "spawner.default_url must start with `/`, got {:?}",
                    spawner_section.default_url
                ),
            );
        }
        if spawner_section.cmd.as_ref().is_some_and(Vec::is_empty) {
            self.problem(
                &["spawner.cmd"],
                "spawner.cmd must not be empty; remove the key to use the default environment's command".to_string(),
            );
        }
        for name in spawner_section.environment.keys() {
            if name.is_empty() || name.contains(['=', '\0']) {
                self.problem(
                    &[
                        &format!("spawner.environment.{name}"),
                        "spawner.environment",
                    ],
                    format!("spawner.environment: invalid variable name {name:?}"),
                );
            }
        }
        if spawner_section.concurrent_starts == 0 {
            self.problem(
                &["spawner.concurrent_starts"],
                "spawner.concurrent_starts must be at least 1".to_string(),
            );
        }
        let spawner = SpawnerConfig {
            kind: spawner_section.kind,
            cmd: spawner_section.cmd,
            args: spawner_section.args,
            default_url: spawner_section.default_url,
            start_timeout: spawner_section.start_timeout.0,
            http_timeout: spawner_section.http_timeout.0,
            environment: spawner_section.environment,
            run_as: spawner_section.run_as,
            system_user_prefix: spawner_section.system_user_prefix,
            concurrent_starts: spawner_section.concurrent_starts.max(1),
            max_queue: spawner_section.max_queue,
            active_server_limit: spawner_section.active_server_limit,
        };

        let services = self.services(file.services);
        let roles = self.roles(file.roles, &services);
        let db_url = self.db_url(file.db);
        let cull = CullConfig {
            enabled: file.cull.enabled,
            timeout: file.cull.timeout.0,
            every: file.cull.every.0,
            max_age: file.cull.max_age.0,
            users: file.cull.users,
        };
        if cull.enabled && (cull.timeout.is_zero() || cull.every.is_zero()) {
            self.problem(
                &["cull.timeout", "cull.every", "cull"],
                "cull.timeout and cull.every must be more than zero while cull.enabled is true"
                    .to_string(),
            );
        }

        Config {
            listen: file.listen,
            base_url,
            public_origin,
            data_dir,
            hub,
            proxy,
            auth,
            spawner,
            services,
            roles,
            allow_named_servers: file.allow_named_servers,
            named_server_limit_per_user: file.named_server_limit_per_user,
            db_url,
            cull,
            source,
        }
    }

    /// Roles: valid unique names, known scopes, services that exist; `admin`'s scopes are fixed.
    fn roles(
        &mut self,
        sections: Vec<crate::file::RoleSection>,
        services: &[ServiceConfig],
    ) -> Vec<RoleConfig> {
        let mut roles: Vec<RoleConfig> = Vec::new();
        for (index, section) in sections.into_iter().enumerate() {
            let at = format!("roles[{index}]");
            let name_key = format!("{at}.name");
            if !is_valid_role_name(&section.name) {
                self.problem(
                    &[&name_key, &at],
                    format!(
                        "{name_key}: invalid role name {:?}: use lowercase letters, digits, `-`, `_`, `~` and `.`, starting with a letter and ending with a letter or digit (3-255 characters)",
                        section.name
                    ),
                );
            } else if roles.iter().any(|it| it.name == section.name) {
                self.problem(
                    &[&name_key, &at],
                    format!("{name_key}: duplicate role {:?}", section.name),
                );
            }
            if section.name == "admin" && !section.scopes.is_empty() {
                self.problem(
                    &[&format!("{at}.scopes"), &at],
                    format!("{at}.scopes: the scopes of the default `admin` role cannot be changed; list only its members"),
                );
            }
            for (scope_index, scope) in section.scopes.iter().enumerate() {
                if let Err(error) = hubfleet_core::scopes::validate_scope(scope) {
                    self.problem(
                        &[
                            &format!("{at}.scopes[{scope_index}]"),
                            &format!("{at}.scopes"),
                            &at,
                        ],
                        format!("{at}.scopes: {error}"),
                    );
                }
            }
            for (service_index, service) in section.services.iter().enumerate() {
                if !services.iter().any(|it| &it.name == service) {
                    self.problem(
                        &[&format!("{at}.services[{service_index}]"), &at],
                        format!("{at}.services: no service named {service:?} in `services`"),
                    );
                }
            }
            let users = self.user_names(&format!("{at}.users"), section.users);
            roles.push(RoleConfig {
                name: section.name,
                description: section.description,
                scopes: section.scopes,
                users,
                groups: section.groups,
                services: section.services,
            });
        }
        roles
    }

    fn base_url(&mut self, mut base_url: String) -> String {
        if !base_url.starts_with('/') {
            self.problem(
                &["base_url"],
                format!("base_url must start with `/`, got {base_url:?}"),
            );
        }
        if base_url.contains(|c: char| c == '?' || c == '#' || c.is_whitespace()) {
            self.problem(
                &["base_url"],
                format!(
                    "base_url must be a plain path without `?`, `#` or spaces, got {base_url:?}"
                ),
            );
        }
        if !base_url.ends_with('/') {
            base_url.push('/');
        }
        base_url
    }

    /// The origin of `public_url`, checked the way JupyterHub checks `JupyterHub.public_url`: its
    /// path must be `base_url` (or empty, meaning `base_url`). Unlike JupyterHub, a missing
    /// `http(s)://` is an error rather than an assumed `https://`.
    fn public_origin(&mut self, public_url: &str, base_url: &str) -> Option<String> {
        let parsed = match url::Url::parse(public_url) {
            Ok(parsed)
                if matches!(parsed.scheme(), "http" | "https")
                    && parsed.host_str().is_some()
                    && parsed.query().is_none()
                    && parsed.fragment().is_none()
                    && parsed.username().is_empty()
                    && parsed.password().is_none() =>
            {
                parsed
            }
            _ => {
                self.problem(
                    &["public_url"],
                    format!(
                        "public_url must be an http(s) URL without query, fragment or credentials, e.g. `https://hub.example.org/`, got {public_url:?}"
                    ),
                );
                return None;
            }
        };
        let mut path = parsed.path().to_string();
        if !path.ends_with('/') {
            path.push('/');
        }
        if path != "/" && !path.ends_with(base_url) {
            self.problem(
                &["public_url", "base_url"],
                format!("public_url must end with base_url {base_url:?}, got {public_url:?}"),
            );
            return None;
        }
        Some(parsed.origin().ascii_serialization())
    }

    /// Two listeners collide when they share a port and either address is the same or one is
    /// the wildcard, which binds every interface.
    fn check_distinct_addresses(&mut self, file: &FileConfig) {
        let mut addresses: Vec<(&str, SocketAddr)> = vec![
            ("listen", file.listen),
            ("hub.listen", file.hub.listen),
            ("proxy.api_listen", file.proxy.api_listen),
        ];
        if let Some(redirect) = file.proxy.redirect_http_from {
            addresses.push(("proxy.redirect_http_from", redirect));
        }
        for (index, (key, address)) in addresses.iter().enumerate() {
            let clash = addresses[..index].iter().find(|(_, earlier)| {
                earlier.port() == address.port()
                    && (earlier.ip() == address.ip()
                        || earlier.ip().is_unspecified()
                        || address.ip().is_unspecified())
            });
            if let Some((earlier_key, earlier)) = clash {
                // Point at whichever of the two keys is actually written in the file.
                let (at, other) = if self.keys.get(key).is_some() {
                    (*key, *earlier_key)
                } else {
                    (*earlier_key, *key)
                };
                self.problem(
                    &[at],
                    format!(
                        "`{key}` ({address}) collides with `{earlier_key}` ({earlier}); `{at}` must differ from `{other}`"
                    ),
                );
            }
        }
    }

    fn auth(
        &mut self,
        mut section: AuthSection,
        listen: SocketAddr,
        hub_listen: SocketAddr,
    ) -> AuthConfig {
        let expires_at = section.shared_password_expires_at.take().and_then(|text| {
            const KEY: &str = "auth.shared_password_expires_at";
            if section.kind != AuthKind::SharedPassword {
                self.problem(
                    &[KEY],
                    format!("{KEY} is only used with `kind: shared-password`"),
                );
                return None;
            }
            match chrono::DateTime::parse_from_rfc3339(text.trim()) {
                Ok(at) => Some(at.with_timezone(&chrono::Utc)),
                Err(e) => {
                    self.problem(
                        &[KEY],
                        format!(
                            "{KEY}: {text:?} is not an RFC 3339 time such as 2026-03-01T17:00:00Z ({e})"
                        ),
                    );
                    None
                }
            }
        });
        let method = match section.kind {
            AuthKind::Dummy => {
                if section.shared_password.is_some() || section.shared_password_file.is_some() {
                    let key = if section.shared_password.is_some() {
                        "auth.shared_password"
                    } else {
                        "auth.shared_password_file"
                    };
                    self.problem(
                        &[key],
                        format!("{key} is only used with `kind: shared-password`, but auth.kind is `dummy`"),
                    );
                }
                let public = [("listen", listen), ("hub.listen", hub_listen)]
                    .into_iter()
                    .find(|(_, address)| !address.ip().is_loopback());
                if let Some((key, address)) = public {
                    self.problem(
                        &["auth.kind", "auth", key],
                        format!(
                            "auth.kind `dummy` accepts any password, so it is only allowed when `listen` and `hub.listen` are loopback addresses, but {key} is {address}; use `kind: shared-password`"
                        ),
                    );
                }
                AuthMethod::Dummy
            }
            AuthKind::SharedPassword => {
                let password = self.secret(
                    section.shared_password,
                    section.shared_password_file,
                    "auth.shared_password",
                    &["auth.kind", "auth"],
                );
                match password {
                    Some((password, key)) => {
                        if password.expose().chars().count() < MIN_SHARED_PASSWORD_CHARS {
                            self.problem(
                                &[&key],
                                format!(
                                    "{key}: the password must be at least {MIN_SHARED_PASSWORD_CHARS} characters"
                                ),
                            );
                        }
                        AuthMethod::SharedPassword {
                            password,
                            expires_at,
                        }
                    }
                    None => AuthMethod::SharedPassword {
                        password: Secret::new(String::new()),
                        expires_at,
                    },
                }
            }
            AuthKind::Oidc => AuthMethod::Oidc(self.oauth(section.kind, &mut section)),
            AuthKind::Github => AuthMethod::Github(self.oauth(section.kind, &mut section)),
            AuthKind::Cilogon => AuthMethod::Cilogon(self.oauth(section.kind, &mut section)),
            AuthKind::Tmp => AuthMethod::Tmp,
            AuthKind::Native => AuthMethod::Native,
        };
        let admin_users = self.user_names("auth.admin_users", section.admin_users);
        let allowed_users = self.user_names("auth.allowed_users", section.allowed_users);
        let blocked_users = self.user_names("auth.blocked_users", section.blocked_users);
        let allow_all = match (&method, section.allow_all) {
            (_, Some(allow_all)) => allow_all,
            (
                AuthMethod::SharedPassword { .. }
                | AuthMethod::Dummy
                | AuthMethod::Tmp
                | AuthMethod::Native,
                None,
            ) => allowed_users.is_empty(),
            (_, None) => false,
        };
        let allow_existing_users = section
            .allow_existing_users
            .unwrap_or(!allowed_users.is_empty());
        if let Some(oauth) = method.oauth() {
            let anyone_allowed = allow_all
                || !allowed_users.is_empty()
                || !admin_users.is_empty()
                || !oauth.allowed_groups.is_empty()
                || !oauth.allowed_organizations.is_empty();
            if !anyone_allowed {
                self.problem(
                    &["auth.kind", "auth"],
                    "nobody could log in: set auth.allow_all, auth.allowed_users, auth.admin_users, auth.allowed_groups or auth.allowed_organizations".to_string(),
                );
            }
        }
        AuthConfig {
            method,
            admin_users,
            allowed_users,
            blocked_users,
            allow_all,
            allow_existing_users,
        }
    }

    /// The OAuth part of `auth:` for `oidc`, `github` and `cilogon`.
    fn oauth(&mut self, kind: AuthKind, section: &mut AuthSection) -> OAuthSettings {
        let kind_name = match kind {
            AuthKind::Github => "github",
            AuthKind::Cilogon => "cilogon",
            _ => "oidc",
        };
        let client_id = section.client_id.take().unwrap_or_else(|| {
            self.problem(
                &["auth.kind", "auth"],
                format!("auth.client_id is required with `kind: {kind_name}`"),
            );
            String::new()
        });
        let client_secret = self
            .optional_secret(
                section.client_secret.take(),
                section.client_secret_file.take(),
                "auth.client_secret",
            )
            .map(|(secret, _)| secret);
        if kind == AuthKind::Github && client_secret.is_none() {
            self.problem(
                &["auth.kind", "auth"],
                "auth.client_secret or auth.client_secret_file is required with `kind: github`"
                    .to_string(),
            );
        }
        let url = |resolver: &mut Self, key: &str, value: Option<String>| {
            let value = value?;
            match url::Url::parse(&value) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                    Some(value.trim_end_matches('/').to_string())
                }
                _ => {
                    resolver.problem(
                        &[&format!("auth.{key}")],
                        format!("auth.{key} must be an http(s) URL, got {value:?}"),
                    );
                    None
                }
            }
        };
        let callback_url = url(self, "callback_url", section.callback_url.take());
        if let Some(callback) = &callback_url
            && !callback.ends_with("/oauth_callback")
        {
            self.problem(
                &["auth.callback_url"],
                format!("auth.callback_url must end in `hub/oauth_callback`, got {callback:?}"),
            );
        }
        let issuer = match (kind, section.issuer.take()) {
            (AuthKind::Cilogon, None) => Some("https://cilogon.org".to_string()),
            (_, issuer) => url(self, "issuer", issuer),
        };
        let authorize_url = match (kind, section.authorize_url.take()) {
            (AuthKind::Github, None) => Some("https://github.com/login/oauth/authorize".into()),
            (_, value) => url(self, "authorize_url", value),
        };
        let token_url = match (kind, section.token_url.take()) {
            (AuthKind::Github, None) => Some("https://github.com/login/oauth/access_token".into()),
            (_, value) => url(self, "token_url", value),
        };
        let userdata_url = url(self, "userdata_url", section.userdata_url.take());
        let jwks_url = url(self, "jwks_url", section.jwks_url.take());
        let api_url = match (kind, section.api_url.take()) {
            (AuthKind::Github, None) => Some("https://api.github.com".into()),
            (_, value) => url(self, "api_url", value),
        };
        if kind != AuthKind::Github
            && issuer.is_none()
            && (authorize_url.is_none() || token_url.is_none() || jwks_url.is_none())
        {
            self.problem(
                &["auth.kind", "auth"],
                format!(
                    "`kind: {kind_name}` needs auth.issuer, or auth.authorize_url, auth.token_url and auth.jwks_url"
                ),
            );
        }
        let scopes = section.scopes.take().unwrap_or_else(|| {
            match kind {
                AuthKind::Github => vec!["read:org"],
                AuthKind::Cilogon => vec!["openid", "email", "org.cilogon.userinfo"],
                _ => vec!["openid", "profile", "email"],
            }
            .into_iter()
            .map(String::from)
            .collect()
        });
        if kind != AuthKind::Github && !scopes.iter().any(|s| s == "openid") {
            self.problem(
                &["auth.scopes"],
                "auth.scopes must include `openid` for OpenID Connect".to_string(),
            );
        }
        let username_claim = section.username_claim.take().unwrap_or_else(|| {
            match kind {
                AuthKind::Github => "login",
                AuthKind::Cilogon => "email",
                _ => "preferred_username",
            }
            .to_string()
        });
        let allowed_idps: std::collections::BTreeMap<String, IdpRule> =
            std::mem::take(&mut section.allowed_idps)
                .into_iter()
                .map(|(idp, rule)| {
                    let rule = IdpRule {
                        username_claim: rule.username_claim,
                        allowed_domains: rule
                            .allowed_domains
                            .iter()
                            .map(|d| d.to_lowercase())
                            .collect(),
                        strip_domain: rule.strip_domain,
                    };
                    (idp, rule)
                })
                .collect();
        if kind == AuthKind::Cilogon && allowed_idps.is_empty() {
            self.problem(
                &["auth.kind", "auth"],
                "auth.allowed_idps is required with `kind: cilogon`".to_string(),
            );
        }
        if kind != AuthKind::Cilogon && !allowed_idps.is_empty() {
            self.problem(
                &["auth.allowed_idps"],
                "auth.allowed_idps is only used with `kind: cilogon`".to_string(),
            );
        }
        if kind != AuthKind::Github && !section.allowed_organizations.is_empty() {
            self.problem(
                &["auth.allowed_organizations"],
                "auth.allowed_organizations is only used with `kind: github`".to_string(),
            );
        }
        let key = self.optional_secret(
            section.auth_state_key.take(),
            section.auth_state_key_file.take(),
            "auth.auth_state_key",
        );
        let key = key.or_else(|| {
            std::env::var("HUBFLEET_AUTH_STATE_KEY")
                .ok()
                .map(|k| (Secret::new(k), "HUBFLEET_AUTH_STATE_KEY".to_string()))
        });
        let auth_state_key = match (section.enable_auth_state, key) {
            (false, _) => None,
            (true, None) => {
                self.problem(
                    &["auth.enable_auth_state"],
                    "auth.enable_auth_state needs a key: auth.auth_state_key, auth.auth_state_key_file or HUBFLEET_AUTH_STATE_KEY".to_string(),
                );
                None
            }
            (true, Some((key, key_name))) => match parse_auth_state_key(key.expose()) {
                Some(key) => Some(AuthStateKey(key)),
                None => {
                    self.problem(
                        &[&key_name, "auth.enable_auth_state"],
                        format!("{key_name} must be 32 bytes written as 64 hex digits or base64"),
                    );
                    None
                }
            },
        };
        OAuthSettings {
            client_id,
            client_secret,
            callback_url,
            issuer,
            authorize_url,
            token_url,
            userdata_url,
            jwks_url,
            api_url,
            scopes,
            username_claim,
            groups_claim: section.groups_claim.take(),
            allowed_groups: std::mem::take(&mut section.allowed_groups),
            admin_groups: std::mem::take(&mut section.admin_groups),
            manage_groups: section.manage_groups,
            manage_roles: section.manage_roles,
            roles_claim: section.roles_claim.clone(),
            required_scopes: std::mem::take(&mut section.required_scopes),
            allowed_organizations: section
                .allowed_organizations
                .iter()
                .map(|o| o.to_lowercase())
                .collect(),
            allowed_idps,
            auth_state_key,
        }
    }

    fn user_names(&mut self, key: &str, raw_names: Vec<String>) -> Vec<UserName> {
        let mut names: Vec<UserName> = Vec::new();
        for (index, raw) in raw_names.iter().enumerate() {
            match UserName::parse(raw) {
                // Duplicates after normalisation ("Alice", "alice") are harmless; keep one.
                Ok(name) if names.contains(&name) => {}
                Ok(name) => names.push(name),
                Err(error) => self.problem(
                    &[&format!("{key}[{index}]"), key],
                    format!("{key}: {error}"),
                ),
            }
        }
        names
    }

    fn services(&mut self, sections: Vec<ServiceSection>) -> Vec<ServiceConfig> {
        let mut services: Vec<ServiceConfig> = Vec::new();
        for (index, section) in sections.into_iter().enumerate() {
            let at = format!("services[{index}]");
            let name_key = format!("{at}.name");
            if !is_valid_service_name(&section.name) {
                self.problem(
                    &[&name_key, &at],
                    format!(
                        "{name_key}: invalid service name {:?}: use lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit",
                        section.name
                    ),
                );
            } else if services.iter().any(|it| it.name == section.name) {
                self.problem(
                    &[&name_key, &at],
                    format!("{name_key}: duplicate service name {:?}", section.name),
                );
            }
            let token = self.optional_secret(
                section.api_token,
                section.api_token_file,
                &format!("{at}.api_token"),
            );
            let api_token = token.map(|(token, key)| {
                if token.expose().chars().count() < MIN_SERVICE_TOKEN_CHARS {
                    self.problem(
                        &[&key, &at],
                        format!(
                            "{key}: the token must be at least {MIN_SERVICE_TOKEN_CHARS} characters (it is stored as an unsalted hash, so it must be random)"
                        ),
                    );
                } else if let Some(other) = services.iter().find(|it| {
                    it.api_token
                        .as_ref()
                        .is_some_and(|other| other.expose() == token.expose())
                }) {
                    self.problem(
                        &[&key, &at],
                        format!("{key}: the same token is already used by service {:?}; every service needs its own token", other.name),
                    );
                }
                token
            });
            for (scope_index, scope) in section.scopes.iter().enumerate() {
                if let Err(error) = hubfleet_core::scopes::validate_scope(scope) {
                    self.problem(
                        &[&format!("{at}.scopes[{scope_index}]"), &at],
                        format!("{at}.scopes: {error}"),
                    );
                }
            }
            if section.command.as_ref().is_some_and(Vec::is_empty) {
                self.problem(
                    &[&format!("{at}.command"), &at],
                    format!("{at}.command must not be empty"),
                );
            }
            if section.command.is_some() && api_token.is_none() {
                self.problem(
                    &[&at],
                    format!("{at}: a managed service (with `command`) needs an api_token or api_token_file"),
                );
            }
            if let Some(url) = &section.url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                self.problem(
                    &[&format!("{at}.url"), &at],
                    format!("{at}.url must be an http:// or https:// origin, got {url:?}"),
                );
            }
            services.push(ServiceConfig {
                name: section.name,
                api_token,
                scopes: section.scopes,
                admin: section.admin,
                command: section.command,
                url: section.url.map(|u| u.trim_end_matches('/').to_string()),
                environment: section.environment,
                oauth_no_confirm: section.oauth_no_confirm,
            });
        }
        services
    }

    /// The database URL, inline or from a file; only the two known schemes are accepted.
    fn db_url(&mut self, section: crate::file::DbSection) -> Option<Secret> {
        let (url, key) = self.optional_secret(section.url, section.url_file, "db.url")?;
        let known = ["sqlite://", "postgres://", "postgresql://"];
        if !known.iter().any(|scheme| url.expose().starts_with(scheme)) {
            self.problem(
                &[&key, "db"],
                format!("{key}: unsupported database URL; use postgres://… or sqlite://<path>"),
            );
            return None;
        }
        Some(url)
    }

    /// A secret given inline as `key` or read from `key_file`; exactly one is required.
    /// Returns the secret and the key it came from.
    fn secret(
        &mut self,
        inline: Option<Secret>,
        file: Option<PathBuf>,
        key: &str,
        section_keys: &[&str],
    ) -> Option<(Secret, String)> {
        if inline.is_none() && file.is_none() {
            self.problem(section_keys, format!("{key} or {key}_file is required"));
            return None;
        }
        self.optional_secret(inline, file, key)
    }

    fn optional_secret(
        &mut self,
        inline: Option<Secret>,
        file: Option<PathBuf>,
        key: &str,
    ) -> Option<(Secret, String)> {
        let file_key = format!("{key}_file");
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(
                    &[&file_key, key],
                    format!("give either {key} or {file_key}, not both"),
                );
                None
            }
            (Some(secret), None) => Some((secret, key.to_string())),
            (None, Some(path)) => {
                let path = self.absolute(&path);
                let secret = self.read_secret_file(&file_key, &path)?;
                Some((secret, file_key))
            }
            (None, None) => None,
        }
    }

    fn read_secret_file(&mut self, file_key: &str, path: &Path) -> Option<Secret> {
        match std::fs::read_to_string(path) {
            Ok(mut text) => {
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                if text.is_empty() {
                    self.problem(
                        &[file_key],
                        format!("{file_key}: {} is empty", path.display()),
                    );
                    return None;
                }
                Some(Secret::new(text))
            }
            Err(error) => {
                self.problem(
                    &[file_key],
                    format!("{file_key}: cannot read {}: {error}", path.display()),
                );
                None
            }
        }
    }

    fn absolute(&self, path: &Path) -> PathBuf {
        let joined = self.base_dir.join(path);
        // `absolute` also drops `.` components, so `./hubfleet-data` reads cleanly in messages.
        std::path::absolute(&joined).unwrap_or(joined)
    }

    /// Records a problem at the first of `keys` that appears in the file.
    fn problem(&mut self, keys: &[&str], message: String) {
        let location: Option<LineColumn> = keys.iter().find_map(|key| self.keys.get(key));
        self.problems
            .push(Diagnostic::new(&self.origin, location, message));
    }
}

fn is_valid_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// JupyterHub's role name rule: `^[a-z][a-z0-9\-_~\.]{1,253}[a-z0-9]$`.
fn is_valid_role_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=255).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1].is_ascii_lowercase() | bytes[bytes.len() - 1].is_ascii_digit()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_~.".contains(b))
}

/// A 32-byte key written as 64 hex digits or (standard or URL-safe) base64.
fn parse_auth_state_key(text: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text))
            .ok()?
    };
    bytes.try_into().ok()
}
