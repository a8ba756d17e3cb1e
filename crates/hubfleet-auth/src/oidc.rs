//! OpenID Connect logins (generic providers and CILogon): authorization code flow with PKCE S256,
//! `state` checked by the hub, ID token validated (signature against the provider's JWKS, `iss`,
//! `aud`, `exp`, `nonce`), claims merged with userinfo, tokens refreshed with the refresh token.
//!
//! Endpoints come from discovery (`<issuer>/.well-known/openid-configuration`, fetched at the first
//! login and cached for ten minutes) unless all of them are configured explicitly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hubfleet_config::OAuthSettings;
use hubfleet_types::auth::{AuthState, LoginRequest, RedirectLogin, Refreshed};
use hubfleet_types::{AuthError, AuthenticatedUser, Authenticator, UserName};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EmptyExtraTokenFields, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, JsonWebKeySetUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    Scope, StandardErrorResponse, StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::http::{get_json, provider_client, send};
use crate::rules;
use crate::sealed::Sealer;

/// Every claim of the ID token, whatever its name (the groups and user name claims are
/// configurable).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AllClaims {
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

impl AdditionalClaims for AllClaims {}

type Fields = IdTokenFields<
    AllClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenResp = StandardTokenResponse<Fields, CoreTokenType>;
type OidcClient<HasAuth = EndpointSet, HasToken = EndpointSet> = Client<
    AllClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResp,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    HasAuth,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    HasToken,
    EndpointNotSet,
>;

const PROVIDER_CACHE: Duration = Duration::from_secs(600);

/// Which flavour of OpenID Connect provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OidcFlavour {
    Generic,
    /// CILogon: the `idp` claim must be on `allowed_idps`, whose rules name the user.
    Cilogon,
}

/// The provider's endpoints and keys.
struct Provider {
    issuer: String,
    authorize_url: String,
    token_url: String,
    userinfo_url: Option<String>,
    jwks: CoreJsonWebKeySet,
}

/// Logs people in through an OpenID Connect provider.
pub struct OidcAuthenticator {
    settings: OAuthSettings,
    flavour: OidcFlavour,
    http: reqwest::Client,
    provider: Mutex<Option<(Instant, Arc<Provider>)>>,
    sealer: Option<Sealer>,
}

impl OidcAuthenticator {
    pub fn new(settings: OAuthSettings, flavour: OidcFlavour) -> Self {
        let sealer = settings.auth_state_key.as_ref().map(|k| Sealer::new(&k.0));
        OidcAuthenticator {
            settings,
            flavour,
            http: provider_client(),
            provider: Mutex::new(None),
            sealer,
        }
    }

    async fn provider(&self) -> Result<Arc<Provider>, AuthError> {
        if let Some((at, provider)) = self.provider.lock().expect("not poisoned").as_ref()
            && at.elapsed() < PROVIDER_CACHE
        {
            return Ok(Arc::clone(provider));
        }
        let provider = Arc::new(self.discover().await?);
        *self.provider.lock().expect("not poisoned") =
            Some((Instant::now(), Arc::clone(&provider)));
        Ok(provider)
    }

    async fn discover(&self) -> Result<Provider, AuthError> {
        let s = &self.settings;
        let document = match &s.issuer {
            Some(issuer) => {
                let url = format!("{issuer}/.well-known/openid-configuration");
                let doc = get_json(&self.http, &url, None).await?;
                // OpenID Connect Discovery §4.3: the document must name the issuer we asked.
                let named = doc["issuer"].as_str().unwrap_or_default();
                if named.trim_end_matches('/') != issuer {
                    return Err(AuthError::Backend(format!(
                        "{url} names issuer {named:?}, expected {issuer:?}"
                    )));
                }
                Some(doc)
            }
            None => None,
        };
        let pick = |explicit: &Option<String>, key: &str| -> Option<String> {
            explicit.clone().or_else(|| {
                document
                    .as_ref()
                    .and_then(|d| d[key].as_str().map(String::from))
            })
        };
        let missing = |what: &str| AuthError::Backend(format!("the provider has no {what}"));
        let issuer = document
            .as_ref()
            .and_then(|d| d["issuer"].as_str().map(String::from))
            .or_else(|| s.issuer.clone())
            .ok_or_else(|| missing("issuer"))?;
        let authorize_url = pick(&s.authorize_url, "authorization_endpoint")
            .ok_or_else(|| missing("authorization endpoint"))?;
        let token_url =
            pick(&s.token_url, "token_endpoint").ok_or_else(|| missing("token endpoint"))?;
        let userinfo_url = pick(&s.userdata_url, "userinfo_endpoint");
        let jwks_url = pick(&s.jwks_url, "jwks_uri").ok_or_else(|| missing("jwks_uri"))?;
        let jwks_url = JsonWebKeySetUrl::new(jwks_url)
            .map_err(|e| AuthError::Backend(format!("bad jwks_uri: {e}")))?;
        let client = self.http.clone();
        let http = move |request| send(client.clone(), request);
        let jwks = CoreJsonWebKeySet::fetch_async(&jwks_url, &http)
            .await
            .map_err(|e| AuthError::Backend(format!("fetching the provider's keys: {e}")))?;
        Ok(Provider {
            issuer,
            authorize_url,
            token_url,
            userinfo_url,
            jwks,
        })
    }

    fn client(
        &self,
        provider: &Provider,
        redirect_uri: Option<&str>,
    ) -> Result<OidcClient, AuthError> {
        let bad = |e: &dyn std::fmt::Display| AuthError::Backend(format!("provider URL: {e}"));
        let mut client = OidcClient::<EndpointNotSet, EndpointNotSet>::new(
            ClientId::new(self.settings.client_id.clone()),
            IssuerUrl::new(provider.issuer.clone()).map_err(|e| bad(&e))?,
            provider.jwks.clone(),
        )
        .set_auth_uri(AuthUrl::new(provider.authorize_url.clone()).map_err(|e| bad(&e))?)
        .set_token_uri(TokenUrl::new(provider.token_url.clone()).map_err(|e| bad(&e))?);
        if let Some(secret) = &self.settings.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_string()));
        }
        if let Some(uri) = redirect_uri {
            client =
                client.set_redirect_uri(RedirectUrl::new(uri.to_string()).map_err(|e| bad(&e))?);
        }
        Ok(client)
    }

    /// Maps merged claims to a user, applying the CILogon identity-provider rules.
    fn user_from_claims(&self, claims: &Value) -> Result<UserName, AuthError> {
        match self.flavour {
            OidcFlavour::Generic => {
                let claim = &self.settings.username_claim;
                rules::user_name(rules::claim_str(claims, claim), claim)
            }
            OidcFlavour::Cilogon => {
                let idp = rules::claim_str(claims, "idp").unwrap_or_default();
                let Some(rule) = self.settings.allowed_idps.get(&idp) else {
                    return Err(AuthError::Refused(format!(
                        "Logging in through the identity provider {idp:?} is not allowed on this hub."
                    )));
                };
                let raw = rules::claim_str(claims, &rule.username_claim);
                let raw = match raw {
                    Some(raw) if raw.contains('@') => {
                        let (local, domain) = raw.rsplit_once('@').unwrap_or((&raw, ""));
                        let domain = domain.to_lowercase();
                        if !rule.allowed_domains.is_empty()
                            && !rule.allowed_domains.contains(&domain)
                        {
                            return Err(AuthError::Refused(format!(
                                "Accounts from the domain {domain:?} are not allowed on this hub."
                            )));
                        }
                        Some(if rule.strip_domain {
                            local.to_string()
                        } else {
                            raw.clone()
                        })
                    }
                    Some(raw) if !rule.allowed_domains.is_empty() => {
                        return Err(AuthError::Refused(format!(
                            "The user name {raw:?} has no domain, and this hub only allows some domains."
                        )));
                    }
                    other => other,
                };
                rules::user_name(raw, &rule.username_claim)
            }
        }
    }

    fn auth_state(token: &TokenResp, claims: &Value, previous: Option<&Value>) -> AuthState {
        let expires_at = token
            .expires_in()
            .map(|d| chrono::Utc::now().timestamp() + d.as_secs() as i64);
        let refresh_token = token
            .refresh_token()
            .map(|t| t.secret().clone())
            .or_else(|| previous.and_then(|p| p["refresh_token"].as_str().map(String::from)));
        AuthState(json!({
            "access_token": token.access_token().secret(),
            "refresh_token": refresh_token,
            "id_token": token.id_token().map(|t| t.to_string()),
            "token_type": "Bearer",
            "scope": token.scopes().map(|s| s.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" ")),
            "expires_at": expires_at,
            "oauth_user": claims,
        }))
    }
}

#[async_trait]
impl Authenticator for OidcAuthenticator {
    fn kind(&self) -> &'static str {
        match self.flavour {
            OidcFlavour::Generic => "oidc",
            OidcFlavour::Cilogon => "cilogon",
        }
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
impl RedirectLogin for OidcAuthenticator {
    fn login_service(&self) -> &str {
        match self.flavour {
            OidcFlavour::Generic => "OpenID Connect",
            OidcFlavour::Cilogon => "CILogon",
        }
    }

    async fn login_url(&self, request: &LoginRequest<'_>) -> Result<String, AuthError> {
        let provider = self.provider().await?;
        let client = self.client(&provider, Some(request.redirect_uri))?;
        let (state, nonce) = (request.state.to_string(), request.nonce.to_string());
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            request.pkce_verifier.to_string(),
        ));
        let mut auth = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            auth = auth.add_scope(Scope::new(scope.clone()));
        }
        if self.settings.scopes.iter().any(|s| s == "offline_access") {
            // OpenID Connect Core §11: offline_access is only honoured with prompt=consent.
            auth = auth.add_prompt(CoreAuthPrompt::Consent);
        }
        let (url, _, _) = auth.url();
        Ok(url.to_string())
    }

    async fn complete(
        &self,
        code: &str,
        request: &LoginRequest<'_>,
    ) -> Result<AuthenticatedUser, AuthError> {
        let provider = self.provider().await?;
        let client = self.client(&provider, Some(request.redirect_uri))?;
        let http_client = self.http.clone();
        let http = move |r| send(http_client.clone(), r);
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(request.pkce_verifier.to_string()))
            .request_async(&http)
            .await
            .map_err(|e| {
                AuthError::InvalidCallback(format!("the provider refused the code: {e}"))
            })?;
        let id_token = token
            .id_token()
            .ok_or_else(|| AuthError::InvalidCallback("the provider sent no ID token".into()))?;
        let verifier = client.id_token_verifier().set_allowed_algs([
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
            CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::EcdsaP384Sha384,
            CoreJwsSigningAlgorithm::EdDsa,
        ]);
        let nonce = Nonce::new(request.nonce.to_string());
        let id_claims = id_token.claims(&verifier, &nonce).map_err(|e| {
            // The provider may have rotated its keys: discover afresh at the next login.
            *self.provider.lock().expect("not poisoned") = None;
            AuthError::InvalidCallback(format!("invalid ID token: {e}"))
        })?;
        let mut claims = serde_json::to_value(id_claims)
            .map_err(|e| AuthError::Backend(format!("ID token claims: {e}")))?;
        if let Some(url) = &provider.userinfo_url {
            let info = get_json(&self.http, url, Some(token.access_token().secret())).await?;
            // OpenID Connect Core §5.3.2: userinfo is about the same subject or it is ignored.
            if info["sub"] != claims["sub"] {
                return Err(AuthError::InvalidCallback(
                    "userinfo names another subject".into(),
                ));
            }
            if let (Some(into), Some(from)) = (claims.as_object_mut(), info.as_object()) {
                for (k, v) in from {
                    into.insert(k.clone(), v.clone());
                }
            }
        }
        let granted: Vec<String> = match token.scopes() {
            Some(scopes) => scopes.iter().map(|s| s.to_string()).collect(),
            None => self.settings.scopes.clone(),
        };
        rules::check_scopes(&self.settings, &granted)?;
        let name = self.user_from_claims(&claims)?;
        let groups = self
            .settings
            .groups_claim
            .as_deref()
            .map(|c| rules::claim_list(&claims, c))
            .unwrap_or_default();
        let state = Self::auth_state(&token, &claims, None);
        let mut user = rules::decide(&self.settings, name, groups, state);
        if self.settings.manage_roles {
            user.roles = Some(rules::claim_list(&claims, &self.settings.roles_claim));
        }
        Ok(user)
    }

    async fn refresh(
        &self,
        auth_state: &AuthState,
        margin: Duration,
    ) -> Result<Refreshed, AuthError> {
        let state = &auth_state.0;
        let expires_at = state["expires_at"].as_i64();
        let now = chrono::Utc::now().timestamp();
        if expires_at.is_none_or(|at| at > now + margin.as_secs() as i64) {
            return Ok(Refreshed::Unchanged);
        }
        let Some(refresh) = state["refresh_token"].as_str() else {
            return Err(AuthError::Refused(
                "Your login has expired and cannot be refreshed; log in again.".into(),
            ));
        };
        let provider = self.provider().await?;
        let client = self.client(&provider, None)?;
        let http_client = self.http.clone();
        let http = move |r| send(http_client.clone(), r);
        let refresh = RefreshToken::new(refresh.to_string());
        let token = client
            .exchange_refresh_token(&refresh)
            .request_async(&http)
            .await
            .map_err(|e| {
                AuthError::Refused(format!("Refreshing your login failed ({e}); log in again."))
            })?;
        let claims = state["oauth_user"].clone();
        let mut updated = Self::auth_state(&token, &claims, Some(state));
        if token.id_token().is_none() {
            updated.0["id_token"] = state["id_token"].clone();
        }
        Ok(Refreshed::Updated(updated))
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
