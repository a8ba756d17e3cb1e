//! Behaviour tests for loading, validation and the generated docs.
//!
//! Error tests assert the whole `file:line:column: ` prefix, because pointing at the right key
//! is the feature being tested.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::{format_duration, parse_duration};
use crate::*;

fn load_str(text: &str) -> Result<Config, ConfigError> {
    from_yaml_str(
        text,
        ConfigSource::File("hubfleet.yaml".into()),
        Path::new("/etc/hubfleet"),
    )
}

#[track_caller]
fn error_of(text: &str) -> String {
    match load_str(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(error) => error.to_string(),
    }
}

#[track_caller]
fn assert_error(text: &str, prefix: &str, needle: &str) {
    let message = error_of(text);
    assert!(
        message.starts_with(prefix),
        "expected prefix {prefix:?} in:\n{message}"
    );
    assert!(
        message.contains(needle),
        "expected {needle:?} in:\n{message}"
    );
}

const TOKEN_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const TOKEN_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[test]
fn embedded_defaults_are_valid() {
    let config = embedded_defaults(Path::new("/srv/hub"));
    assert_eq!(config.listen, "127.0.0.1:8000".parse().unwrap());
    assert_eq!(config.base_url, "/");
    assert_eq!(config.data_dir, PathBuf::from("/srv/hub/hubfleet-data"));
    assert_eq!(config.hub.listen, "127.0.0.1:8081".parse().unwrap());
    assert_eq!(config.hub.cookie_max_age, Duration::from_secs(14 * 86_400));
    assert_eq!(config.proxy.api_listen, "127.0.0.1:8001".parse().unwrap());
    assert!(config.proxy.tls.is_none());
    assert!(config.proxy.redirect_http_from.is_none());
    assert!(matches!(config.auth.method, AuthMethod::Dummy));
    assert!(config.auth.admin_users.is_empty() && config.auth.allowed_users.is_empty());
    assert_eq!(config.spawner.kind, SpawnerKind::Local);
    assert_eq!(config.spawner.cmd, None);
    assert!(config.spawner.args.is_empty());
    assert_eq!(config.spawner.default_url, "/lab");
    assert_eq!(config.spawner.start_timeout, Duration::from_secs(120));
    assert_eq!(config.spawner.http_timeout, Duration::from_secs(30));
    assert!(config.spawner.environment.is_empty());
    assert_eq!(config.spawner.run_as, RunAsSetting::Auto);
    assert_eq!(config.spawner.system_user_prefix, "hf-");
    assert!(config.services.is_empty());
    assert_eq!(config.source, ConfigSource::Embedded);
}

#[test]
fn annotated_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hubfleet.yaml");
    let config = load(&path).unwrap_or_else(|error| panic!("{error}"));
    let examples_dir = path.parent().unwrap();
    assert_eq!(config.listen, "0.0.0.0:443".parse().unwrap());
    assert_eq!(config.base_url, "/jupyter/");
    assert_eq!(config.data_dir, examples_dir.join("hubfleet-data"));
    let tls = config.proxy.tls.as_ref().unwrap();
    assert_eq!(
        tls.key,
        PathBuf::from("/etc/letsencrypt/live/hub.example.org/privkey.pem")
    );
    assert_eq!(
        config.proxy.redirect_http_from,
        Some("0.0.0.0:80".parse().unwrap())
    );
    let AuthMethod::SharedPassword { password, .. } = &config.auth.method else {
        panic!("expected shared-password, got {:?}", config.auth.method);
    };
    assert_eq!(password.expose(), "correct horse battery staple");
    assert_eq!(config.auth.admin_users[0].as_str(), "alice");
    assert_eq!(config.auth.allowed_users.len(), 3);
    assert_eq!(
        config.spawner.cmd,
        Some(vec!["jupyterhub-singleuser".to_string()])
    );
    assert_eq!(config.spawner.environment["JUPYTER_ENABLE_LAB"], "1");
    assert_eq!(config.services[0].name, "culler");
    assert_eq!(
        config.services[0].scopes,
        ["list:users", "read:users", "admin:servers"]
    );
    assert_eq!(config.source, ConfigSource::File(path.clone()));
}

#[test]
fn full_file_overrides_every_default() {
    let config = load_str(&format!(
        "listen: 10.0.0.1:80
base_url: /jupyter
data_dir: /var/lib/hubfleet
hub: {{listen: 127.0.0.1:9081, cookie_max_age: 1h}}
proxy: {{api_listen: 127.0.0.1:9001, tls: null, redirect_http_from: null}}
auth:
  kind: shared-password
  shared_password: hunter2hunter2
  admin_users: [Alice]
  allowed_users: [bob]
spawner:
  kind: local
  cmd: [python, -m, jupyterhub.singleuser]
  args: [--debug]
  default_url: /tree
  start_timeout: 2m
  http_timeout: 500ms
  environment: {{A: b}}
  run_as: system-users
  system_user_prefix: jh-
services:
  - name: svc.one
    api_token: {TOKEN_A}
    scopes: [list:users]
    admin: true
"
    ))
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.base_url, "/jupyter/");
    assert_eq!(config.hub.cookie_max_age, Duration::from_secs(3600));
    assert_eq!(
        config.auth.admin_users[0].as_str(),
        "alice",
        "names are normalised"
    );
    assert_eq!(config.spawner.cmd.as_ref().unwrap().len(), 3);
    assert_eq!(config.spawner.http_timeout, Duration::from_millis(500));
    assert_eq!(config.spawner.run_as, RunAsSetting::SystemUsers);
    assert_eq!(config.spawner.system_user_prefix, "jh-");
    assert!(config.services[0].admin);
    assert_eq!(
        config.services[0].api_token.as_ref().unwrap().expose(),
        TOKEN_A
    );
}

#[test]
fn unknown_keys_name_their_line_and_column() {
    assert_error(
        "listen: 127.0.0.1:8000\nspawnr: {}\n",
        "hubfleet.yaml:2:1: unknown field `spawnr`, expected one of",
        "spawner",
    );
    assert_error(
        "auth:\n  kind: dummy\n  passwd: x\n",
        "hubfleet.yaml:3:3: unknown field `passwd`",
        "shared_password",
    );
    assert_error(
        "spawner:\n  kind: local\n\n  comand: [x]\n",
        "hubfleet.yaml:4:3: unknown field `comand`",
        "cmd",
    );
    assert_error(
        &format!("services:\n  - name: a\n  - name: b\n    api_token: {TOKEN_A}\n    scope: []\n"),
        "hubfleet.yaml:5:5: unknown field `scope`",
        "scopes",
    );
    assert_error(
        "proxy:\n  tls:\n    cert: a\n    keyfile: b\n",
        "hubfleet.yaml:4:5: unknown field `keyfile`",
        "key",
    );
}

#[test]
fn unknown_kinds_list_the_valid_ones() {
    assert_error(
        "auth:\n  kind: ldap\n",
        "hubfleet.yaml:2:9: unknown variant `ldap`",
        "shared-password, dummy",
    );
    assert_error(
        "spawner:\n  kind: docker\n",
        "hubfleet.yaml:2:9: unknown variant `docker`",
        "local",
    );
    assert_error(
        "spawner:\n  run_as: root\n",
        "hubfleet.yaml:2:11: unknown variant `root`",
        "auto, hub-user, system-users",
    );
}

#[test]
fn wrong_types_name_the_value() {
    assert_error(
        "hub:\n  listen: nope\n",
        "hubfleet.yaml:2:11: ",
        "socket address",
    );
    assert_error("listen: [1]\n", "hubfleet.yaml:1:9: ", "");
    assert_error("auth:\n  admin_users: alice\n", "hubfleet.yaml:2:16: ", "");
    assert_error("spawner:\n  environment: [a]\n", "hubfleet.yaml:2:16: ", "");
    assert_error("hub: 5\n", "hubfleet.yaml:1:6: ", "");
    assert_error(
        "services:\n  - scopes: []\n",
        "hubfleet.yaml:2:5: ",
        "missing field `name`",
    );
}

#[test]
fn yaml_1_2_booleans_only() {
    // `yes` is a string in YAML 1.2: refused for a boolean ...
    assert_error(
        "services:\n  - name: a\n    admin: yes\n",
        "hubfleet.yaml:3:12: ",
        "invalid boolean",
    );
    // ... and kept verbatim as a name (the "Norway problem" does not apply).
    let config = load_str("auth:\n  admin_users: [no, on, yes]\n").unwrap();
    let names: Vec<&str> = config
        .auth
        .admin_users
        .iter()
        .map(|it| it.as_str())
        .collect();
    assert_eq!(names, ["no", "on", "yes"]);
    let config = load_str("services:\n  - name: a\n    admin: true\n").unwrap();
    assert!(config.services[0].admin);
}

#[test]
fn null_and_empty_mean_default() {
    for text in [
        "",
        "# nothing\n",
        "null\n",
        "~\n",
        "hub:\nproxy: ~\nspawner:\n  cmd: ~\n  args:\nauth:\n  admin_users:\nservices:\n",
    ] {
        let config = load_str(text).unwrap_or_else(|error| panic!("{text:?}: {error}"));
        assert_eq!(
            config.hub.listen,
            "127.0.0.1:8081".parse().unwrap(),
            "{text:?}"
        );
        assert_eq!(config.spawner.cmd, None, "{text:?}");
        assert!(config.services.is_empty(), "{text:?}");
    }
    // A required string is not satisfied by null.
    assert_error("services:\n  - name: ~\n", "hubfleet.yaml:2:11: ", "");
}

#[test]
fn duplicate_keys_are_refused() {
    assert_error(
        "base_url: /a/\nbase_url: /b/\n",
        "hubfleet.yaml:2:1: ",
        "duplicate",
    );
}

#[test]
fn durations() {
    let cases = [
        ("500ms", Duration::from_millis(500)),
        ("120s", Duration::from_secs(120)),
        ("2m", Duration::from_secs(120)),
        ("1h", Duration::from_secs(3600)),
        ("14d", Duration::from_secs(14 * 86_400)),
        ("90", Duration::from_secs(90)),
        ("0s", Duration::ZERO),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_duration(text), Ok(expected), "{text}");
    }
    for text in [
        "",
        "s",
        "1.5s",
        "-1s",
        "10 s",
        "3x",
        "1sec",
        "99999999999999999999d",
    ] {
        assert!(parse_duration(text).is_err(), "{text:?} should be refused");
    }
    assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(format_duration(Duration::from_secs(14 * 86_400)), "14d");

    let config =
        load_str("hub:\n  cookie_max_age: 3600\nspawner:\n  start_timeout: \"45\"\n").unwrap();
    assert_eq!(config.hub.cookie_max_age, Duration::from_secs(3600));
    assert_eq!(config.spawner.start_timeout, Duration::from_secs(45));
    assert_error(
        "hub:\n  cookie_max_age: 3x\n",
        "hubfleet.yaml:2:19: invalid duration \"3x\"",
        "",
    );
    assert_error(
        "hub:\n  cookie_max_age: -5\n",
        "hubfleet.yaml:2:19: ",
        "negative",
    );
}

#[test]
fn dummy_auth_requires_loopback() {
    assert_error(
        "listen: 0.0.0.0:8000\nauth:\n  kind: dummy\n",
        "hubfleet.yaml:3:3: auth.kind `dummy`",
        "listen is 0.0.0.0:8000",
    );
    assert_error(
        "hub:\n  listen: 10.1.2.3:8081\nauth:\n  kind: dummy\n",
        "hubfleet.yaml:4:3: ",
        "hub.listen is 10.1.2.3:8081",
    );
    // `dummy` is the default kind: with no `auth` key, point at the public address.
    assert_error(
        "listen: 0.0.0.0:8000\n",
        "hubfleet.yaml:1:1: auth.kind `dummy`",
        "",
    );
    let config = load_str("listen: '[::1]:8000'\nauth: {kind: dummy}\n").unwrap();
    assert!(matches!(config.auth.method, AuthMethod::Dummy));
}

#[test]
fn oauth_kinds_resolve_with_defaults() {
    let config = load_str(
        "auth:\n  kind: oidc\n  issuer: https://id.example.org/\n  client_id: hub\n  client_secret: s3cret\n  allowed_groups: [staff]\n  enable_auth_state: true\n  auth_state_key: \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n",
    )
    .unwrap();
    let AuthMethod::Oidc(oidc) = &config.auth.method else {
        panic!("{:?}", config.auth.method)
    };
    assert_eq!(oidc.issuer.as_deref(), Some("https://id.example.org"));
    assert_eq!(oidc.scopes, ["openid", "profile", "email"]);
    assert_eq!(oidc.username_claim, "preferred_username");
    assert_eq!(oidc.auth_state_key.as_ref().unwrap().0[1], 0x11);
    assert!(!config.auth.allow_all);
    // Secrets stay out of Debug.
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("s3cret") && !debug.contains("0011223344"),
        "{debug}"
    );

    let github = load_str(
        "auth:\n  kind: github\n  client_id: a\n  client_secret: b\n  allowed_organizations: [Org:Team]\n",
    )
    .unwrap();
    let AuthMethod::Github(gh) = &github.auth.method else {
        panic!()
    };
    assert_eq!(gh.api_url.as_deref(), Some("https://api.github.com"));
    assert_eq!(gh.allowed_organizations, ["org:team"]);

    // Form logins keep "empty allowed_users admits everyone".
    assert!(load_str("").unwrap().auth.allow_all);
}

#[test]
fn oauth_rules() {
    let base = "auth:\n  kind: oidc\n  issuer: https://id.example.org\n  client_id: hub\n";
    // JupyterHub 5: some allow rule is required.
    assert_error(base, "hubfleet.yaml:2:3: ", "nobody could log in");
    assert_error(
        &format!("{base}  allow_all: true\n  enable_auth_state: true\n"),
        "hubfleet.yaml:6:3: ",
        "enable_auth_state needs a key",
    );
    assert_error(
        &format!("{base}  allow_all: true\n  enable_auth_state: true\n  auth_state_key: short\n"),
        "hubfleet.yaml:7:3: ",
        "must be 32 bytes",
    );
    assert_error(
        "auth:\n  kind: cilogon\n  client_id: hub\n  allow_all: true\n",
        "hubfleet.yaml:2:3: ",
        "auth.allowed_idps is required",
    );
    assert_error(
        "auth:\n  kind: oidc\n  client_id: hub\n  allow_all: true\n",
        "hubfleet.yaml:2:3: ",
        "needs auth.issuer",
    );
    assert_error(
        "auth:\n  kind: github\n  client_id: hub\n  allow_all: true\n",
        "hubfleet.yaml:2:3: ",
        "client_secret",
    );
}

#[test]
fn shared_password_rules() {
    assert_error(
        "auth:\n  kind: shared-password\n  shared_password: short\n",
        "hubfleet.yaml:3:3: auth.shared_password: the password must be at least 8 characters",
        "",
    );
    assert_error(
        "auth:\n  kind: shared-password\n",
        "hubfleet.yaml:2:3: auth.shared_password or auth.shared_password_file is required",
        "",
    );
    assert_error(
        "auth:\n  kind: shared-password\n  shared_password: longenough\n  shared_password_file: pw\n",
        "hubfleet.yaml:4:3: give either auth.shared_password or auth.shared_password_file, not both",
        "",
    );
    assert_error(
        "auth:\n  kind: shared-password\n  shared_password: longenough\n  shared_password_expires_at: tomorrow\n",
        "hubfleet.yaml:4:3: auth.shared_password_expires_at: \"tomorrow\" is not an RFC 3339 time",
        "",
    );
    assert_error(
        "auth:\n  kind: dummy\n  shared_password_expires_at: 2026-03-01T17:00:00Z\n",
        "hubfleet.yaml:3:3: auth.shared_password_expires_at is only used with `kind: shared-password`",
        "",
    );
}

#[test]
fn shared_password_expiry_is_parsed() {
    let config = load_str(
        "auth:\n  kind: shared-password\n  shared_password: longenough\n  shared_password_expires_at: 2026-03-01T18:00:00+01:00\n",
    )
    .unwrap();
    let AuthMethod::SharedPassword { expires_at, .. } = &config.auth.method else {
        panic!("shared password");
    };
    assert_eq!(
        expires_at.map(|t| t.to_rfc3339()).as_deref(),
        Some("2026-03-01T17:00:00+00:00")
    );
}

#[test]
fn url_rules() {
    assert_error(
        "\nbase_url: jupyter/\n",
        "hubfleet.yaml:2:1: base_url must start with `/`",
        "",
    );
    assert_error(
        "spawner:\n  default_url: lab\n",
        "hubfleet.yaml:2:3: spawner.default_url must start with `/`",
        "",
    );
    assert_eq!(load_str("base_url: /a/b\n").unwrap().base_url, "/a/b/");
    assert_eq!(load_str("base_url: /a/b/\n").unwrap().base_url, "/a/b/");
}

#[test]
fn service_rules() {
    assert_error(
        &format!("services:\n  - name: ok\n    api_token: {TOKEN_A}\n  - name: Bad Name\n"),
        "hubfleet.yaml:4:5: services[1].name: invalid service name \"Bad Name\"",
        "",
    );
    assert_error(
        &format!(
            "services:\n  - name: ok\n    api_token: {TOKEN_A}\n  - name: ok\n    api_token: {TOKEN_B}\n"
        ),
        "hubfleet.yaml:4:5: services[1].name: duplicate service name \"ok\"",
        "",
    );
    assert_error(
        "services:\n  - name: a\n    api_token: tooshort\n",
        "hubfleet.yaml:3:5: services[0].api_token: the token must be at least 32 characters",
        "",
    );
    let message = error_of(&format!(
        "services:\n  - name: a\n    api_token: {TOKEN_A}\n  - name: b\n    api_token: {TOKEN_A}\n"
    ));
    assert!(
        message.starts_with("hubfleet.yaml:5:5: services[1].api_token: the same token is already used by service \"a\""),
        "{message}"
    );
    assert!(
        !message.contains(TOKEN_A),
        "the token leaked into {message}"
    );
    assert_error(
        &format!("services:\n  - name: a\n    api_token: {TOKEN_A}\n    api_token_file: t\n"),
        "hubfleet.yaml:4:5: give either services[0].api_token or services[0].api_token_file",
        "",
    );
    // A service without a token is allowed (an OAuth client only).
    assert!(
        load_str("services:\n  - name: oauth-only\n")
            .unwrap()
            .services[0]
            .api_token
            .is_none()
    );
}

#[test]
fn role_rules() {
    let config = load_str(&format!(
        "services:\n  - name: culler\n    api_token: {TOKEN_A}\nallow_named_servers: true\nnamed_server_limit_per_user: 3\nroles:\n  - name: grader\n    description: Grades\n    scopes: [read:users!group=class, list:users]\n    users: [Alice]\n    groups: [tas]\n    services: [culler]\n"
    ))
    .unwrap();
    assert!(config.allow_named_servers);
    assert_eq!(config.named_server_limit_per_user, 3);
    let role = &config.roles[0];
    assert_eq!(role.name, "grader");
    assert_eq!(role.users[0].as_str(), "alice", "user names are normalised");
    assert_eq!(role.groups, vec!["tas"]);
    assert_eq!(role.services, vec!["culler"]);
    assert_error(
        "roles:\n  - name: g\n",
        "hubfleet.yaml:2:5: roles[0].name: invalid role name \"g\"",
        "",
    );
    assert_error(
        "roles:\n  - name: grader\n    scopes: [read:everything]\n",
        "hubfleet.yaml:3:14: roles[0].scopes: unknown scope \"read:everything\"",
        "",
    );
    assert_error(
        "roles:\n  - name: grader\n    services: [ghost]\n",
        "hubfleet.yaml:3:16: roles[0].services: no service named \"ghost\"",
        "",
    );
    assert_error(
        "roles:\n  - name: admin\n    scopes: [read:users]\n",
        "hubfleet.yaml:3:5: roles[0].scopes: the scopes of the default `admin` role cannot be changed",
        "",
    );
    assert_error(
        "services:\n  - name: a\n    scopes: [list:everything]\n",
        "hubfleet.yaml:3:14: services[0].scopes: unknown scope",
        "",
    );
}

#[test]
fn tls_needs_cert_and_key() {
    assert_error(
        "proxy:\n  tls:\n    cert: c.pem\n",
        "hubfleet.yaml:2:3: proxy.tls needs both `cert` and `key`; `key` is missing",
        "",
    );
    assert_error(
        "proxy:\n  tls: {key: k.pem}\n",
        "hubfleet.yaml:2:3: ",
        "`cert` is missing",
    );
}

#[test]
fn listen_addresses_must_differ() {
    assert_error(
        "listen: 127.0.0.1:8000\nhub:\n  listen: 127.0.0.1:8000\n",
        "hubfleet.yaml:3:3: `hub.listen` (127.0.0.1:8000) collides with `listen`",
        "",
    );
    assert_error(
        "proxy:\n  api_listen: 127.0.0.1:8081\n",
        "hubfleet.yaml:2:3: `proxy.api_listen` (127.0.0.1:8081) collides with `hub.listen`",
        "",
    );
    // The wildcard address binds every interface, so it clashes with loopback on the same port.
    assert_error(
        "auth: {kind: shared-password, shared_password: longenough}\nlisten: 0.0.0.0:8001\n",
        "hubfleet.yaml:2:1: ",
        "collides with `listen`",
    );
}

#[test]
fn user_names_are_validated_and_normalised() {
    assert_error(
        "auth:\n  admin_users:\n    - alice\n    - a/b\n",
        "hubfleet.yaml:4:7: auth.admin_users: invalid user name \"a/b\"",
        "",
    );
    assert_error(
        "auth:\n  allowed_users: [\"\"]\n",
        "hubfleet.yaml:2:19: auth.allowed_users: ",
        "empty",
    );
    let config = load_str("auth:\n  allowed_users: [Bob, bob, ' Carol ']\n").unwrap();
    let names: Vec<&str> = config
        .auth
        .allowed_users
        .iter()
        .map(|it| it.as_str())
        .collect();
    assert_eq!(names, ["bob", "carol"]);
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let message = error_of("spawner:\n  default_url: lab\nbase_url: x\n");
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 2, "{message}");
    assert!(
        lines[0].starts_with("hubfleet.yaml:2:3: spawner.default_url"),
        "{message}"
    );
    assert!(
        lines[1].starts_with("hubfleet.yaml:3:1: base_url"),
        "{message}"
    );
}

#[test]
fn relative_paths_resolve_against_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hubfleet.yaml");
    std::fs::write(
        &path,
        "data_dir: state\nproxy:\n  tls: {cert: ./tls/cert.pem, key: ../key.pem}\n",
    )
    .unwrap();
    let config = load(&path).unwrap();
    assert_eq!(config.data_dir, dir.path().join("state"));
    let tls = config.proxy.tls.unwrap();
    assert_eq!(tls.cert, dir.path().join("tls/cert.pem"));
    assert_eq!(tls.key, dir.path().join("../key.pem"));
    assert!(config.data_dir.is_absolute());

    let absolute = load_str("data_dir: /var/lib/hubfleet\n").unwrap();
    assert_eq!(absolute.data_dir, PathBuf::from("/var/lib/hubfleet"));
}

#[test]
fn secrets_are_read_from_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("password"), "from-a-file\n").unwrap();
    std::fs::write(dir.path().join("token"), format!("{TOKEN_B}\r\n")).unwrap();
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    let path = dir.path().join("hubfleet.yaml");
    std::fs::write(
        &path,
        "auth:\n  kind: shared-password\n  shared_password_file: password\nservices:\n  - name: s\n    api_token_file: token\n",
    )
    .unwrap();
    let config = load(&path).unwrap();
    let AuthMethod::SharedPassword { password, .. } = &config.auth.method else {
        panic!("{:?}", config.auth.method);
    };
    assert_eq!(password.expose(), "from-a-file");
    assert_eq!(
        config.services[0].api_token.as_ref().unwrap().expose(),
        TOKEN_B
    );

    let origin = path.display().to_string();
    std::fs::write(
        &path,
        "auth:\n  kind: shared-password\n  shared_password_file: missing\n",
    )
    .unwrap();
    let message = load(&path).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!(
            "{origin}:3:3: auth.shared_password_file: cannot read {}",
            dir.path().join("missing").display()
        )),
        "{message}"
    );
    std::fs::write(&path, "services:\n  - name: s\n    api_token_file: empty\n").unwrap();
    let message = load(&path).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{origin}:3:5: services[0].api_token_file: ")),
        "{message}"
    );
    assert!(message.ends_with("is empty"), "{message}");
}

#[test]
fn unreadable_config_file_names_the_path() {
    let error = load(Path::new("/nonexistent/hubfleet.yaml")).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/hubfleet.yaml: cannot read config file")
    );
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let config = load_str(&format!(
        "auth:\n  kind: shared-password\n  shared_password: sup3r-s3cret-pw\nservices:\n  - name: a\n    api_token: {TOKEN_A}\n"
    ))
    .unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("sup3r-s3cret-pw"), "{debug}");
    assert!(!debug.contains(TOKEN_A), "{debug}");
    assert!(debug.contains("Secret(***)"), "{debug}");
    assert_eq!(format!("{:?}", Secret::new("x".into())), "Secret(***)");
}

#[test]
fn syntax_errors_do_not_quote_secrets() {
    // A type error on a secret's line must not echo the line (no source snippets).
    let message =
        error_of("auth:\n  kind: shared-password\n  shared_password: {sup3r-s3cret: 1}\n");
    assert!(message.starts_with("hubfleet.yaml:3:"), "{message}");
    assert!(!message.contains("sup3r-s3cret"), "{message}");
}

#[test]
fn json_schema_is_strict_and_documented() {
    let schema = json_schema();
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["$defs"]["AuthSection"]["additionalProperties"],
        false
    );
    assert_eq!(schema["properties"]["listen"]["default"], "127.0.0.1:8000");
    assert_eq!(
        schema["$defs"]["HubSection"]["properties"]["cookie_max_age"]["default"],
        "14d"
    );
    let description =
        schema["$defs"]["SpawnerSection"]["properties"]["http_timeout"]["description"]
            .as_str()
            .unwrap();
    assert!(description.contains("answer HTTP"), "{description}");
}

#[test]
fn reference_documents_every_key() {
    let markdown = reference_markdown();
    for key in [
        "`listen`",
        "`base_url`",
        "`data_dir`",
        "`hub.listen`",
        "`hub.cookie_max_age`",
        "`proxy.api_listen`",
        "`proxy.tls.cert`",
        "`proxy.tls.key`",
        "`proxy.redirect_http_from`",
        "`auth.kind`",
        "`auth.shared_password`",
        "`auth.shared_password_file`",
        "`auth.shared_password_expires_at`",
        "`auth.admin_users`",
        "`auth.allowed_users`",
        "`spawner.kind`",
        "`spawner.cmd`",
        "`spawner.args`",
        "`spawner.default_url`",
        "`spawner.start_timeout`",
        "`spawner.http_timeout`",
        "`spawner.environment`",
        "`spawner.run_as`",
        "`spawner.system_user_prefix`",
        "`services[].name`",
        "`services[].api_token`",
        "`services[].api_token_file`",
        "`services[].scopes`",
        "`services[].admin`",
    ] {
        assert!(
            markdown.contains(&format!("| {key} |")),
            "{key} is not documented"
        );
    }
    assert!(
        markdown.contains("| `hub.cookie_max_age` | duration | `14d` |"),
        "{markdown}"
    );
    assert!(
        markdown.contains(
            "| `auth.kind` | `shared-password` \\| `dummy` \\| `oidc` \\| `github` \\| `cilogon` \\| `tmp` \\| `native` | `dummy` |"
        ),
        "{markdown}"
    );
    assert!(
        markdown.contains("| `services[].name` | string | required |"),
        "{markdown}"
    );
}

/// Regenerates `docs/config-reference.md` and `docs/config.schema.json`; fails when the committed
/// copies are stale unless `UPDATE_GENERATED=1`, which rewrites them (rust-analyzer's
/// `ensure_file_contents`).
#[test]
fn generated_docs_are_current() {
    let workspace_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let schema = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
    let mut stale = Vec::new();
    for (relative, contents) in [
        ("docs/config-reference.md", reference_markdown()),
        ("docs/config.schema.json", schema),
    ] {
        let path = workspace_root.join(relative);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(contents.as_str()) {
            continue;
        }
        if std::env::var_os("UPDATE_GENERATED").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, contents).unwrap();
        } else {
            stale.push(relative);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} are stale; run `UPDATE_GENERATED=1 cargo test -p hubfleet-config generated_docs_are_current` and commit the result"
    );
}

#[test]
fn public_url_gives_the_origin_for_absolute_urls_and_must_match_base_url() {
    assert_eq!(load_str("").unwrap().public_origin, None);
    for (yaml, origin) in [
        (
            "public_url: https://hub.example.org\n",
            "https://hub.example.org",
        ),
        (
            "base_url: /jupyter\npublic_url: https://hub.example.org:8443/jupyter\n",
            "https://hub.example.org:8443",
        ),
        (
            "base_url: /jupyter/\npublic_url: http://10.0.0.1/\n",
            "http://10.0.0.1",
        ),
    ] {
        let config = load_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        assert_eq!(config.public_origin.as_deref(), Some(origin), "{yaml}");
    }
    assert_error(
        "base_url: /jupyter/\npublic_url: https://hub.example.org/other/\n",
        "hubfleet.yaml:2:1: ",
        "must end with base_url",
    );
    for bad in [
        "hub.example.org",
        "ftp://hub.example.org/",
        "https://hub.example.org/?x=1",
    ] {
        assert_error(
            &format!("public_url: \"{bad}\"\n"),
            "hubfleet.yaml:1:1: ",
            "public_url must be an http(s) URL",
        );
    }
}

#[test]
fn expired_credentials_are_purged_hourly_unless_configured() {
    assert_eq!(
        load_str("").unwrap().hub.purge_expired_every,
        Duration::from_secs(3600)
    );
    let config = load_str("hub:\n  purge_expired_every: 2s\n").unwrap();
    assert_eq!(config.hub.purge_expired_every, Duration::from_secs(2));
    assert_error(
        "hub:\n  purge_expired_every: 0s\n",
        "hubfleet.yaml:2:",
        "longer than 0s",
    );
}
