//! The HTTP client for talking to identity providers: never follows redirects (the SSRF advice in
//! the `oauth2` docs), bounded timeouts, and an adapter so `openidconnect` runs on our reqwest.

use std::time::Duration;

use hubfleet_types::AuthError;

/// A client for provider endpoints. Separate from any general-purpose client because it must not
/// follow redirects.
pub(crate) fn provider_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("hubfleet/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a reqwest client with a static configuration builds")
}

/// Runs one `openidconnect`/`oauth2` request on reqwest (their `AsyncHttpClient` is implemented
/// for closures returning this future).
pub(crate) async fn send(
    client: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let request = reqwest::Request::try_from(request)?;
    let response = client.execute(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    let mut out = http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// GET a JSON document with a bearer token (userinfo, GitHub's API).
pub(crate) async fn get_json(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
) -> Result<serde_json::Value, AuthError> {
    let mut request = client
        .get(url)
        .header(http::header::ACCEPT, "application/json");
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| AuthError::Backend(format!("GET {url}: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(AuthError::Backend(format!("GET {url}: HTTP {status}")));
    }
    response
        .json()
        .await
        .map_err(|e| AuthError::Backend(format!("GET {url}: invalid JSON: {e}")))
}
