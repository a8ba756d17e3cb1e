//! GitHub logins: OAuth2 authorization code flow (no ID token). Who the person is comes from
//! `GET /user`; organisations from `GET /user/orgs`; teams from `GET /user/teams`, named
//! `org:team` (the `slug`), which is also the form of `allowed_organizations` entries and of the
//! groups a user gets with `manage_groups`. Lists are read page by page, up to 1000 entries each.

use std::time::Duration;

use async_trait::async_trait;
use hubfleet_config::OAuthSettings;
use hubfleet_types::auth::{AuthState, LoginRequest, RedirectLogin, Refreshed};
use hubfleet_types::{AuthError, AuthenticatedUser, Authenticator, UserName};
use openidconnect::{PkceCodeChallenge, PkceCodeVerifier};
use serde_json::{Value, json};

use crate::http::{get_json, provider_client};
use crate::rules;
use crate::sealed::Sealer;

/// Logs people in with GitHub (or a GitHub Enterprise server, through `api_url` and the URLs).
pub struct GithubAuthenticator {
    settings: OAuthSettings,
    http: reqwest::Client,
    sealer: Option<Sealer>,
}

impl GithubAuthenticator {
    pub fn new(settings: OAuthSettings) -> Self {
        let sealer = settings.auth_state_key.as_ref().map(|k| Sealer::new(&k.0));
        GithubAuthenticator {
            settings,
            http: provider_client(),
            sealer,
        }
    }

    fn url<'a>(&self, which: &'a Option<String>) -> Result<&'a str, AuthError> {
        which
            .as_deref()
            .ok_or_else(|| AuthError::Backend("GitHub endpoints are not configured".into()))
    }

    /// POSTs to the token endpoint; GitHub answers JSON when asked to.
    async fn token(&self, form: &[(&str, &str)]) -> Result<Value, AuthError> {
        let url = self.url(&self.settings.token_url)?;
        let secret = self
            .settings
            .client_secret
            .as_ref()
            .map(|s| s.expose())
            .unwrap_or_default();
        let mut fields = vec![
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", secret),
        ];
        fields.extend_from_slice(form);
        let response = self
            .http
            .post(url)
            .header(http::header::ACCEPT, "application/json")
            .form(&fields)
            .send()
            .await
            .map_err(|e| AuthError::Backend(format!("POST {url}: {e}")))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| {
            AuthError::Backend(format!("POST {url}: HTTP {status}, invalid JSON: {e}"))
        })?;
        // GitHub reports errors such as `bad_verification_code` with HTTP 200.
        if let Some(error) = body["error"].as_str() {
            return Err(AuthError::InvalidCallback(format!(
                "GitHub refused the code: {error}"
            )));
        }
        if body["access_token"].as_str().is_none() {
            return Err(AuthError::InvalidCallback(format!(
                "GitHub's token response (HTTP {status}) has no access_token"
            )));
        }
        Ok(body)
    }

    fn auth_state(token: &Value, user: &Value, previous: Option<&Value>) -> AuthState {
        let expires_at = token["expires_in"]
            .as_i64()
            .map(|s| chrono::Utc::now().timestamp() + s);
        let refresh_token = token["refresh_token"]
            .as_str()
            .map(String::from)
            .or_else(|| previous.and_then(|p| p["refresh_token"].as_str().map(String::from)));
        AuthState(json!({
            "access_token": token["access_token"],
            "refresh_token": refresh_token,
            "token_type": "Bearer",
            "scope": token["scope"],
            "expires_at": expires_at,
            "github_user": user,
        }))
    }
}

#[async_trait]
impl Authenticator for GithubAuthenticator {
    fn kind(&self) -> &'static str {
        "github"
    }

    async fn authenticate(
        &self,
        _: &UserName,
        _: &str,
    ) -> Result<Option<AuthenticatedUser>, AuthError> {
        Ok(None)
    }

    fn redirect(&self) -> Option<&dyn RedirectLogin> {
        Some(self)
    }
}

#[async_trait]
impl RedirectLogin for GithubAuthenticator {
    fn login_service(&self) -> &str {
        "GitHub"
    }

    async fn login_url(&self, request: &LoginRequest<'_>) -> Result<String, AuthError> {
        let base = self.url(&self.settings.authorize_url)?;
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            request.pkce_verifier.to_string(),
        ));
        let mut url =
            url::Url::parse(base).map_err(|e| AuthError::Backend(format!("authorize_url: {e}")))?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("scope", &self.settings.scopes.join(" "))
            .append_pair("state", request.state)
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256");
        Ok(url.to_string())
    }

    async fn complete(
        &self,
        code: &str,
        request: &LoginRequest<'_>,
    ) -> Result<AuthenticatedUser, AuthError> {
        let token = self
            .token(&[
                ("code", code),
                ("redirect_uri", request.redirect_uri),
                ("code_verifier", request.pkce_verifier),
            ])
            .await?;
        let access = token["access_token"].as_str().unwrap_or_default();
        // GitHub lists granted scopes comma-separated.
        let granted: Vec<String> = token["scope"]
            .as_str()
            .unwrap_or_default()
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        rules::check_scopes(&self.settings, &granted)?;
        let api = self.url(&self.settings.api_url)?;
        let user = get_json(&self.http, &format!("{api}/user"), Some(access)).await?;
        let name = rules::user_name(rules::claim_str(&user, "login"), "login")?;
        let orgs: Vec<String> = get_all_pages(&self.http, &format!("{api}/user/orgs"), access)
            .await?
            .iter()
            .filter_map(|o| o["login"].as_str().map(str::to_lowercase))
            .collect();
        let teams: Vec<String> = get_all_pages(&self.http, &format!("{api}/user/teams"), access)
            .await?
            .iter()
            .filter_map(|t| {
                let org = t["organization"]["login"].as_str()?.to_lowercase();
                let slug = t["slug"].as_str()?.to_lowercase();
                Some(format!("{org}:{slug}"))
            })
            .collect();
        let in_allowed_org = self.settings.allowed_organizations.iter().any(|entry| {
            if entry.contains(':') {
                teams.contains(entry)
            } else {
                orgs.contains(entry)
            }
        });
        let state = Self::auth_state(&token, &user, None);
        let mut authenticated = rules::decide(&self.settings, name, teams, state);
        authenticated.allowed |= in_allowed_org;
        Ok(authenticated)
    }

    async fn refresh(
        &self,
        auth_state: &AuthState,
        margin: Duration,
    ) -> Result<Refreshed, AuthError> {
        let state = &auth_state.0;
        let now = chrono::Utc::now().timestamp();
        // OAuth app tokens do not expire; GitHub App user tokens do, and come with a refresh token.
        let expiring = state["expires_at"]
            .as_i64()
            .is_some_and(|at| at <= now + margin.as_secs() as i64);
        let (true, Some(refresh)) = (expiring, state["refresh_token"].as_str()) else {
            return Ok(Refreshed::Unchanged);
        };
        let token = self
            .token(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
            .await
            .map_err(|e| {
                AuthError::Refused(format!(
                    "Refreshing your GitHub login failed ({e}); log in again."
                ))
            })?;
        Ok(Refreshed::Updated(Self::auth_state(
            &token,
            &state["github_user"],
            Some(state),
        )))
    }

    fn auth_state_enabled(&self) -> bool {
        self.sealer.is_some()
    }

    fn seal_auth_state(&self, state: &AuthState) -> Result<Vec<u8>, AuthError> {
        match &self.sealer {
            Some(s) => s.seal(state),
            None => Err(AuthError::Backend("auth state is not enabled".into())),
        }
    }

    fn open_auth_state(&self, sealed: &[u8]) -> Result<AuthState, AuthError> {
        match &self.sealer {
            Some(s) => s.open(sealed),
            None => Err(AuthError::Backend("auth state is not enabled".into())),
        }
    }
}

/// Entries per page of GitHub's list endpoints (its maximum).
const GITHUB_PAGE_SIZE: usize = 100;
/// Pages read at most per list: 1000 organisations or teams, to bound a login's work.
const GITHUB_MAX_PAGES: usize = 10;

/// Every entry of a GitHub list endpoint, page by page until a short page (GitHub's `page` and
/// `per_page` parameters), at most [`GITHUB_MAX_PAGES`] pages.
async fn get_all_pages(
    client: &reqwest::Client,
    url: &str,
    access: &str,
) -> Result<Vec<Value>, AuthError> {
    let mut entries = Vec::new();
    for page in 1..=GITHUB_MAX_PAGES {
        let listed = get_json(
            client,
            &format!("{url}?per_page={GITHUB_PAGE_SIZE}&page={page}"),
            Some(access),
        )
        .await?;
        let Value::Array(listed) = listed else {
            return Err(AuthError::Backend(format!("GET {url}: not a JSON list")));
        };
        let short = listed.len() < GITHUB_PAGE_SIZE;
        entries.extend(listed);
        if short {
            break;
        }
    }
    Ok(entries)
}
