//! [`OidcProvider`]: the real npm `oidc-provider` (from `<workspace>/.cache/node`, installed by
//! `scripts/test`) running `oidc_server.mjs` for one hub; and [`provider_login`], which walks a
//! [`Browser`] through `/hub/oauth_login`, the provider's login and consent forms, and back to the
//! hub's callback.

use std::process::Command;
use std::time::Duration;

use reqwest::{Response, StatusCode, header};
use url::Url;

use super::{Browser, ProcessGuard, free_port, wait_for, workspace_root};

/// A running `oidc-provider`; killed on drop.
pub struct OidcProvider {
    _process: ProcessGuard,
    pub issuer: String,
}

impl OidcProvider {
    /// A free port for a provider the test starts later (the hub's config names the issuer first;
    /// hubfleet discovers the provider at the first login).
    pub fn reserve_port() -> u16 {
        free_port()
    }

    /// Starts the provider on `port`, accepting `redirect_uri`; `accounts` maps account ids to
    /// extra claims (`groups`, `idp`, `eppn`, `email`).
    pub async fn start(
        port: u16,
        redirect_uri: &str,
        accounts: &serde_json::Value,
        access_token_ttl: u32,
    ) -> OidcProvider {
        let node_modules = workspace_root().join(".cache/node/node_modules");
        assert!(
            node_modules.join("oidc-provider").is_dir(),
            "npm oidc-provider is missing from {}: run scripts/test (it installs oidc-provider@9.13.3)",
            node_modules.display()
        );
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/it/support/oidc_server.mjs");
        // ES modules resolve packages next to the script, so run a copy inside .cache/node.
        let copy = workspace_root().join(format!(".cache/node/oidc_server_{port}.mjs"));
        std::fs::copy(&script, &copy).expect("copy oidc_server.mjs");
        let mut command = Command::new("node");
        command
            .arg(&copy)
            .env("PORT", port.to_string())
            .env("REDIRECT_URI", redirect_uri)
            .env("ACCOUNTS", accounts.to_string())
            .env("ACCESS_TOKEN_TTL", access_token_ttl.to_string());
        let process = ProcessGuard::spawn("oidc-provider", command);
        let issuer = format!("http://127.0.0.1:{port}");
        let discovery = format!("{issuer}/.well-known/openid-configuration");
        wait_for(
            "oidc-provider to serve discovery",
            Duration::from_secs(30),
            || async {
                let response = reqwest::get(&discovery).await.ok()?;
                (response.status() == StatusCode::OK).then_some(())
            },
        )
        .await;
        let _ = std::fs::remove_file(&copy);
        OidcProvider {
            _process: process,
            issuer,
        }
    }

    /// Access tokens the provider issued so far (its test-only listing).
    pub async fn issued_access_tokens(&self) -> Vec<String> {
        reqwest::get(format!("{}/test/access_tokens", self.issuer))
            .await
            .expect("GET /test/access_tokens")
            .json()
            .await
            .expect("JSON list")
    }
}

/// One login through the provider, up to the hub's callback.
pub struct ProviderLogin {
    /// The `/hub/oauth_callback?code=…&state=…` URL the provider sent the browser to.
    pub callback: Url,
    /// The hub's answer to it.
    pub response: Response,
}

/// Starts at `/hub/oauth_login`, follows redirects, fills the provider's login form with `account`
/// and confirms consent, and stops at the hub's callback. With `stop_before_callback` the callback
/// is not requested (`response` is then the provider's redirect to it).
pub async fn provider_login(
    browser: &Browser,
    account: &str,
    stop_before_callback: bool,
) -> ProviderLogin {
    let mut url = browser.url("/hub/oauth_login");
    let mut response = browser.get(url.as_str()).await;
    for _ in 0..30 {
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or_else(|| panic!("{status} from {url} without Location"));
            let next = url.join(location).expect("Location resolves");
            if next.path().ends_with("/hub/oauth_callback") {
                if stop_before_callback {
                    return ProviderLogin {
                        callback: next,
                        response,
                    };
                }
                let answer = browser.get(next.as_str()).await;
                return ProviderLogin {
                    callback: next,
                    response: answer,
                };
            }
            url = next;
            response = browser.get(url.as_str()).await;
            continue;
        }
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
        let action = attribute(&body, "<form", "action")
            .unwrap_or_else(|| panic!("no form on {url}:\n{body}"));
        let mut fields: Vec<(String, String)> = hidden_inputs(&body);
        if body.contains("name=\"login\"") {
            fields.push(("login".into(), account.into()));
            fields.push(("password".into(), "any password".into()));
        }
        url = url.join(&action).expect("form action resolves");
        response = browser
            .client()
            .post(url.clone())
            .form(&fields)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    }
    panic!("the provider login did not reach the hub's callback");
}

/// The value of `name="…"` in the first `tag` element.
fn attribute(html: &str, tag: &str, name: &str) -> Option<String> {
    let start = html.find(tag)?;
    let element = &html[start..start + html[start..].find('>')?];
    let key = format!("{name}=\"");
    let at = element.find(&key)? + key.len();
    let value = &element[at..at + element[at..].find('"')?];
    Some(value.replace("&amp;", "&"))
}

fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<input") {
        let element_end = rest[start..]
            .find('>')
            .map_or(rest.len(), |e| start + e + 1);
        let element = &rest[start..element_end];
        if element.contains("type=\"hidden\"")
            && let (Some(name), Some(value)) = (
                attribute(element, "<input", "name"),
                attribute(element, "<input", "value"),
            )
        {
            out.push((name, value));
        }
        rest = &rest[element_end..];
    }
    out
}
