//! OAuth / OpenID Connect logins end to end: the real `hubfleet serve` against the real npm
//! `oidc-provider` (generic OIDC, and imitating CILogon's `idp` claim), and against a FAKE GitHub
//! (an in-test hyper server imitating GitHub's OAuth and REST endpoints, since the real one cannot
//! run here).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::KernelSocket;
use crate::support::oidc::{OidcProvider, provider_login};
use crate::support::test_hub::{HubOptions, SPAWN_TIMEOUT, TestHub};

/// 32 bytes as hex, for `auth_state_key`.
const AUTH_STATE_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn oidc_auth_yaml(port: u16, extra: &str) -> String {
    format!(
        "auth:
  kind: oidc
  issuer: http://127.0.0.1:{port}
  client_id: hub
  client_secret: hubsecret
  scopes: [openid, profile, email, groups, offline_access]
  username_claim: preferred_username
  groups_claim: groups
  manage_groups: true
  allowed_groups: [staff]
  admin_groups: [hubadmins]
{extra}"
    )
}

/// Tests that only log in never spawn; they need no single-user venv.
fn no_spawns() -> Option<Vec<String>> {
    Some(vec!["/bin/false".into()])
}

async fn user_model(hub: &TestHub, name: &str) -> Value {
    let response = hub.api(Method::GET, &format!("/users/{name}")).await;
    assert_eq!(response.status(), StatusCode::OK, "GET /users/{name}");
    response.json().await.expect("user JSON")
}

fn sorted_groups(model: &Value) -> Vec<String> {
    let mut groups: Vec<String> = model["groups"]
        .as_array()
        .expect("groups list")
        .iter()
        .map(|g| g.as_str().expect("group name").to_string())
        .collect();
    groups.sort();
    groups
}

/// Generic OIDC: login through the provider's forms reaches JupyterLab; the groups claim became
/// hub groups; auth state is encrypted at rest, refreshed before the spawn (the access token lives
/// 30 s, less than the refresh margin), and its access token reaches the user's environment
/// through `spawner.environment`.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_login_reaches_lab_with_groups_and_auth_state_token() {
    let user = "itoidcalice";
    let port = OidcProvider::reserve_port();
    let auth = oidc_auth_yaml(
        port,
        &format!("  enable_auth_state: true\n  auth_state_key: \"{AUTH_STATE_KEY}\"\n"),
    );
    let hub = TestHub::start_with_options(HubOptions {
        users: &[user],
        auth_yaml: Some(&auth),
        spawner_yaml: "  environment:\n    EARTHSCOPE_TOKEN: \"{auth_state.access_token}\"\n",
        ..HubOptions::default()
    })
    .await;
    let provider = OidcProvider::start(
        port,
        &format!("{}/hub/oauth_callback", hub.public_url),
        &json!({ user: { "groups": ["staff", "physics"] } }),
        // Shorter than the hub's refresh margin: the spawn must refresh the tokens first.
        30,
    )
    .await;

    // The login page offers the provider instead of a password form.
    let browser = hub.browser();
    let page = browser.get("/hub/login").await.text().await.unwrap();
    assert!(page.contains("Sign in with OpenID Connect"), "{page}");
    assert!(!page.contains("name=\"password\""), "{page}");

    let login = provider_login(&browser, user, false).await;
    assert_eq!(
        login.response.status(),
        StatusCode::FOUND,
        "callback: {}",
        login.response.text().await.unwrap_or_default()
    );
    let html = browser.spawn_and_wait_for_lab(user, SPAWN_TIMEOUT).await;
    assert!(html.contains("JupyterLab"));

    let model = user_model(&hub, user).await;
    assert_eq!(sorted_groups(&model), ["physics", "staff"]);
    assert_eq!(model["admin"], false);

    // The provider's access token is in the user's environment.
    let issued = provider.issued_access_tokens().await;
    assert!(!issued.is_empty(), "the provider issued no access token");
    let kernel = browser.start_kernel(user).await;
    let mut socket = KernelSocket::open(&browser, user, &kernel).await;
    let token = socket
        .execute("import os; print(os.environ['EARTHSCOPE_TOKEN'])")
        .await
        .expect("execute");
    let token = token.trim();
    assert!(token.len() >= 20, "EARTHSCOPE_TOKEN is {token:?}");
    assert!(
        issued.iter().any(|t| t == token),
        "EARTHSCOPE_TOKEN is not a token the provider issued"
    );
    // The login's token expired within the refresh margin, so the hub refreshed before spawning:
    // the server got the newer token, not the login's.
    assert!(
        issued.len() >= 2,
        "no refresh happened: {} token(s)",
        issued.len()
    );
    assert_ne!(
        token, issued[0],
        "the spawn used the login's token, not a refreshed one"
    );
    // And it works at the provider: userinfo answers for our user.
    let me: Value = reqwest::Client::new()
        .get(format!("{}/me", provider.issuer))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], user);

    // Encrypted at rest: the SQLite files never contain the token in clear.
    if std::env::var("HUBFLEET_TEST_DB").as_deref() != Ok("postgres") {
        let mut checked = 0;
        for entry in std::fs::read_dir(&hub.data_dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("hubfleet.sqlite") {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                    "{name} contains the access token in clear"
                );
                checked += 1;
            }
        }
        assert!(checked >= 1, "no database file found in {:?}", hub.data_dir);
    }
}

/// The hub refuses callbacks it did not start (tampered `state`), replays of a finished login,
/// codes the provider already redeemed, users outside `allowed_groups` (with a clear page) and
/// `blocked_users`; `admin_groups` members become admins.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_refuses_tampered_state_replayed_codes_and_outsiders() {
    let port = OidcProvider::reserve_port();
    let auth = oidc_auth_yaml(port, "  blocked_users: [itoidccarl]\n");
    let hub = TestHub::start_with_options(HubOptions {
        auth_yaml: Some(&auth),
        cmd: no_spawns(),
        ..HubOptions::default()
    })
    .await;
    let _provider = OidcProvider::start(
        port,
        &format!("{}/hub/oauth_callback", hub.public_url),
        &json!({
            "itoidcbob": { "groups": ["staff", "hubadmins"] },
            "itoidcmallory": { "groups": ["visitors"] },
            "itoidccarl": { "groups": ["staff"] },
        }),
        3600,
    )
    .await;

    // A good login (bob is an admin through admin_groups).
    let bob = hub.browser();
    let login = provider_login(&bob, "itoidcbob", false).await;
    assert_eq!(login.response.status(), StatusCode::FOUND);
    let model = user_model(&hub, "itoidcbob").await;
    assert_eq!(model["admin"], true);
    assert_eq!(sorted_groups(&model), ["hubadmins", "staff"]);

    // Replaying the finished callback: the state was single use.
    let replay = bob.get(login.callback.as_str()).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(
        replay
            .text()
            .await
            .unwrap()
            .contains("invalid, expired or already used")
    );

    // A fresh attempt with a tampered state.
    let eve = hub.browser();
    let attempt = provider_login(&eve, "itoidcbob", true).await;
    let mut tampered = attempt.callback.clone();
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let refused = eve.get(tampered.as_str()).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);

    // The right state from the right browser, but bob's already-redeemed code: the provider
    // refuses it and so does the hub.
    let old_code = login
        .callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let fresh = provider_login(&eve, "itoidcbob", true).await;
    let mut replayed_code = fresh.callback.clone();
    let pairs: Vec<(String, String)> = replayed_code
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "code" {
                old_code.clone()
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect();
    replayed_code.query_pairs_mut().clear().extend_pairs(pairs);
    let refused = eve.get(replayed_code.as_str()).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("could not be completed")
    );
    // Eve got no session from any of this.
    let home = eve.get("/hub/home").await;
    assert_eq!(home.status(), StatusCode::FOUND);

    // Outside allowed_groups: a clear refusal, and no user.
    let mallory = hub.browser();
    let login = provider_login(&mallory, "itoidcmallory", false).await;
    assert_eq!(login.response.status(), StatusCode::FORBIDDEN);
    let page = login.response.text().await.unwrap();
    assert!(page.contains("not allowed to use this hub"), "{page}");
    let missing = hub.api(Method::GET, "/users/itoidcmallory").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // blocked_users wins over allowed_groups.
    let login = provider_login(&hub.browser(), "itoidccarl", false).await;
    assert_eq!(login.response.status(), StatusCode::FORBIDDEN);
    let missing = hub.api(Method::GET, "/users/itoidccarl").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

/// CILogon (imitated by the real oidc-provider serving CILogon's `idp` and `eppn` claims): the
/// per-IdP user name claim and domain stripping apply, and an IdP off the allow-list is refused.
#[tokio::test(flavor = "multi_thread")]
async fn cilogon_applies_idp_rules() {
    let port = OidcProvider::reserve_port();
    let auth = format!(
        "auth:
  kind: cilogon
  issuer: http://127.0.0.1:{port}
  client_id: hub
  client_secret: hubsecret
  allow_all: true
  allowed_idps:
    \"https://idp.uni.example/shibboleth\":
      username_claim: eppn
      allowed_domains: [uni.example]
      strip_domain: true
    \"http://github.com/login/oauth/authorize\":
      username_claim: preferred_username
"
    );
    let hub = TestHub::start_with_options(HubOptions {
        auth_yaml: Some(&auth),
        cmd: no_spawns(),
        ..HubOptions::default()
    })
    .await;
    let _provider = OidcProvider::start(
        port,
        &format!("{}/hub/oauth_callback", hub.public_url),
        &json!({
            "sub-1": { "idp": "https://idp.uni.example/shibboleth", "eppn": "ItCiCarol@uni.example" },
            "sub-2": { "idp": "https://idp.other.example/idp", "eppn": "dave@other.example" },
            "sub-3": { "idp": "https://idp.uni.example/shibboleth", "eppn": "erin@elsewhere.example" },
        }),
        3600,
    )
    .await;
    let carol = hub.browser();
    let login = provider_login(&carol, "sub-1", false).await;
    assert_eq!(login.response.status(), StatusCode::FOUND);
    assert_eq!(user_model(&hub, "itcicarol").await["name"], "itcicarol");

    let dave = hub.browser();
    let login = provider_login(&dave, "sub-2", false).await;
    assert_eq!(login.response.status(), StatusCode::FORBIDDEN);
    let page = login.response.text().await.unwrap();
    assert!(page.contains("identity provider"), "{page}");
    assert!(page.contains("is not allowed"), "{page}");

    let erin = hub.browser();
    let login = provider_login(&erin, "sub-3", false).await;
    assert_eq!(login.response.status(), StatusCode::FORBIDDEN);
    assert!(
        login
            .response
            .text()
            .await
            .unwrap()
            .contains("elsewhere.example")
    );
}

/// GitHub (against the FAKE): organisation and team rules admit or refuse, and teams become
/// groups (`org:team`).
#[tokio::test(flavor = "multi_thread")]
async fn github_organizations_and_teams_decide_and_become_groups() {
    let github = FakeGithub::start(json!({
        "ItGhAlice": { "orgs": ["Rocket-Lab"], "teams": [["Rocket-Lab", "instructors"], ["Rocket-Lab", "students"]] },
        "itghbob": { "orgs": ["physics-dept"], "teams": [] },
        "itghmallory": { "orgs": ["Rocket-Lab"], "teams": [["Rocket-Lab", "students"]] },
        // The allowed organisation is on the third page of 100 (GitHub lists page by page).
        "itghcarol": {
            "orgs": (0..250).map(|n| format!("club-{n}")).chain(["physics-dept".to_string()]).collect::<Vec<_>>(),
            "teams": [],
        },
    }))
    .await;
    let auth = format!(
        "auth:
  kind: github
  client_id: ghclient
  client_secret: ghsecret
  authorize_url: {url}/login/oauth/authorize
  token_url: {url}/login/oauth/access_token
  api_url: {url}
  allowed_organizations: [\"rocket-lab:instructors\", \"Physics-Dept\"]
  manage_groups: true
",
        url = github.url
    );
    let hub = TestHub::start_with_options(HubOptions {
        auth_yaml: Some(&auth),
        cmd: no_spawns(),
        ..HubOptions::default()
    })
    .await;

    let page = hub.browser().get("/hub/login").await.text().await.unwrap();
    assert!(page.contains("Sign in with GitHub"), "{page}");

    // A member of an allowed team; all of its teams become groups.
    github.next_login("ItGhAlice");
    let alice = hub.browser();
    let login = provider_login(&alice, "ItGhAlice", false).await;
    assert_eq!(login.response.status(), StatusCode::FOUND);
    let model = user_model(&hub, "itghalice").await;
    assert_eq!(
        sorted_groups(&model),
        ["rocket-lab:instructors", "rocket-lab:students"]
    );

    // A member of an allowed organisation, in no team.
    github.next_login("itghbob");
    let login = provider_login(&hub.browser(), "itghbob", false).await;
    assert_eq!(login.response.status(), StatusCode::FOUND);
    assert!(sorted_groups(&user_model(&hub, "itghbob").await).is_empty());

    // A member of many organisations: the allowed one is found past the first pages.
    github.next_login("itghcarol");
    let login = provider_login(&hub.browser(), "itghcarol", false).await;
    assert_eq!(login.response.status(), StatusCode::FOUND);

    // In the right organisation but not the allowed team: refused.
    github.next_login("itghmallory");
    let login = provider_login(&hub.browser(), "itghmallory", false).await;
    assert_eq!(login.response.status(), StatusCode::FORBIDDEN);
    assert!(
        login
            .response
            .text()
            .await
            .unwrap()
            .contains("not allowed to use this hub")
    );
    assert_eq!(
        hub.api(Method::GET, "/users/itghmallory").await.status(),
        StatusCode::NOT_FOUND
    );
    // Every code was redeemed once, with a PKCE verifier.
    assert_eq!(github.redeemed(), 4);
}

/// FAKE GitHub: an in-test hyper server imitating GitHub's OAuth endpoints
/// (`/login/oauth/authorize` approving at once as the account set with
/// [`FakeGithub::next_login`], `/login/oauth/access_token` with single-use codes) and the REST
/// calls hubfleet makes (`/user`, `/user/orgs`, `/user/teams`). The real GitHub cannot run here.
struct FakeGithub {
    url: String,
    state: std::sync::Arc<std::sync::Mutex<FakeGithubState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct FakeGithubState {
    accounts: Value,
    next_login: String,
    /// code -> (login, redirect_uri)
    codes: std::collections::HashMap<String, (String, String)>,
    /// access token -> login
    tokens: std::collections::HashMap<String, String>,
    redeemed: usize,
    counter: u64,
}

impl FakeGithub {
    async fn start(accounts: Value) -> FakeGithub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = std::sync::Arc::new(std::sync::Mutex::new(FakeGithubState {
            accounts,
            ..FakeGithubState::default()
        }));
        let shared = std::sync::Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = std::sync::Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = std::sync::Arc::clone(&state);
                        async move {
                            Ok::<_, std::convert::Infallible>(fake_github(&state, request).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeGithub { url, state, task }
    }

    fn next_login(&self, login: &str) {
        self.state.lock().unwrap().next_login = login.to_string();
    }

    fn redeemed(&self) -> usize {
        self.state.lock().unwrap().redeemed
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_github(
    state: &std::sync::Mutex<FakeGithubState>,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    use http_body_util::BodyExt;
    let respond = |status: u16, body: Value| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap()
    };
    let path = request.uri().path().to_string();
    let query: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(String::from);
    let method = request.method().clone();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&body).into_owned().collect();
    let mut state = state.lock().unwrap();
    match (method.as_str(), path.as_str()) {
        ("GET", "/login/oauth/authorize") => {
            assert_eq!(query["client_id"], "ghclient");
            assert_eq!(query["code_challenge_method"], "S256");
            state.counter += 1;
            let code = format!("ghcode{}", state.counter);
            let login = state.next_login.clone();
            state
                .codes
                .insert(code.clone(), (login, query["redirect_uri"].clone()));
            let mut location = url::Url::parse(&query["redirect_uri"]).unwrap();
            location
                .query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &query["state"]);
            hyper::Response::builder()
                .status(302)
                .header("location", location.as_str())
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap()
        }
        ("POST", "/login/oauth/access_token") => {
            let code = form.get("code").cloned().unwrap_or_default();
            let secret_ok = form.get("client_secret").map(String::as_str) == Some("ghsecret");
            let verifier_ok = form.get("code_verifier").is_some_and(|v| v.len() >= 43);
            match state.codes.remove(&code) {
                Some((login, redirect_uri))
                    if secret_ok
                        && verifier_ok
                        && form.get("redirect_uri") == Some(&redirect_uri) =>
                {
                    state.counter += 1;
                    state.redeemed += 1;
                    let token = format!("gho_fake{}", state.counter);
                    state.tokens.insert(token.clone(), login);
                    respond(
                        200,
                        json!({"access_token": token, "token_type": "bearer", "scope": "read:org"}),
                    )
                }
                // GitHub answers 200 with an error field.
                _ => respond(200, json!({"error": "bad_verification_code"})),
            }
        }
        ("GET", api) => {
            let Some(login) = bearer.and_then(|t| state.tokens.get(&t).cloned()) else {
                return respond(401, json!({"message": "Bad credentials"}));
            };
            let account = &state.accounts[&login];
            // GitHub's list paging: `per_page` (default 30, at most 100) entries of `page`.
            let number =
                |key: &str, default: usize| query.get(key).map_or(default, |v| v.parse().unwrap());
            let per_page = number("per_page", 30).min(100);
            let page = number("page", 1);
            let paged = |entries: Vec<Value>| {
                Value::Array(
                    entries
                        .into_iter()
                        .skip((page - 1) * per_page)
                        .take(per_page)
                        .collect(),
                )
            };
            match api {
                "/user" => respond(200, json!({"login": login, "id": 1})),
                "/user/orgs" => respond(
                    200,
                    paged(
                        account["orgs"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|o| json!({"login": o}))
                            .collect(),
                    ),
                ),
                "/user/teams" => respond(
                    200,
                    paged(
                        account["teams"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|t| json!({"slug": t[1], "organization": {"login": t[0]}}))
                            .collect(),
                    ),
                ),
                _ => respond(404, json!({"message": "Not Found"})),
            }
        }
        _ => respond(404, json!({"message": "Not Found"})),
    }
}

/// `manage_roles`: the provider's `roles` claim decides the user's roles, limited to the roles the
/// configuration defines, at every login.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_manage_roles_assigns_only_configured_roles() {
    let port = OidcProvider::reserve_port();
    let auth = oidc_auth_yaml(port, "  manage_roles: true\n");
    let hub = TestHub::start_with_options(HubOptions {
        auth_yaml: Some(&auth),
        cmd: no_spawns(),
        extra_yaml: "roles:\n  - name: course-staff\n    scopes: [list:users]\n",
        ..HubOptions::default()
    })
    .await;
    let _provider = OidcProvider::start(
        port,
        &format!("{}/hub/oauth_callback", hub.public_url),
        &json!({
            "itoidcrosa": { "groups": ["staff"], "roles": ["course-staff", "invented-by-idp"] },
        }),
        3600,
    )
    .await;
    let rosa = hub.browser();
    let login = provider_login(&rosa, "itoidcrosa", false).await;
    assert_eq!(login.response.status(), StatusCode::FOUND);
    let model = user_model(&hub, "itoidcrosa").await;
    let roles: Vec<&str> = model["roles"]
        .as_array()
        .expect("roles list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(roles.contains(&"course-staff"), "{model}");
    assert!(!roles.contains(&"invented-by-idp"), "{model}");
    // The role's scope is in effect for the user's own session.
    let users = rosa.get("/hub/api/users").await;
    assert_eq!(
        users.status(),
        StatusCode::OK,
        "list:users from the managed role"
    );
}
