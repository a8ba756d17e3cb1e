//! [`HubfleetProxy`]: a `hubfleet proxy` process (our configurable-http-proxy stand-in) on free
//! ports, plus a client for its CHP REST API.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::{ProcessGuard, free_port, hubfleet_bin, install_crypto_provider, wait_for};

/// A running `hubfleet proxy`, killed on drop.
#[derive(Debug)]
pub struct HubfleetProxy {
    pub process: ProcessGuard,
    pub public_port: u16,
    pub api_port: u16,
    pub auth_token: String,
    client: reqwest::Client,
    https: bool,
}

impl HubfleetProxy {
    /// Starts `hubfleet proxy --ip 127.0.0.1 --port P --api-ip 127.0.0.1 --api-port A <extra_args>`
    /// with `CONFIGPROXY_AUTH_TOKEN=auth_token`, and waits for `/_chp_healthz`.
    pub async fn start(auth_token: &str, extra_args: &[&str]) -> Self {
        Self::start_inner(auth_token, extra_args, None).await
    }

    /// Like [`HubfleetProxy::start`] with HTTPS on the public port (`--ssl-cert`, `--ssl-key`);
    /// [`HubfleetProxy::public_url`] is then `https://localhost:<port>`.
    pub async fn start_https(
        auth_token: &str,
        cert: &std::path::Path,
        key: &std::path::Path,
        extra_args: &[&str],
    ) -> Self {
        Self::start_inner(auth_token, extra_args, Some((cert, key))).await
    }

    async fn start_inner(
        auth_token: &str,
        extra_args: &[&str],
        tls: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Self {
        install_crypto_provider();
        let (public_port, api_port) = (free_port(), free_port());
        let mut command = Command::new(hubfleet_bin());
        command
            .arg("proxy")
            .args(["--ip", "127.0.0.1", "--port", &public_port.to_string()])
            .args(["--api-ip", "127.0.0.1", "--api-port", &api_port.to_string()])
            .args(extra_args)
            .env("CONFIGPROXY_AUTH_TOKEN", auth_token);
        let mut client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some((cert, key)) = tls {
            command
                .arg("--ssl-cert")
                .arg(cert)
                .arg("--ssl-key")
                .arg(key);
            let pem = std::fs::read(cert).expect("read the proxy's certificate");
            client = client
                .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("PEM certificate")])
                .resolve("localhost", ([127, 0, 0, 1], public_port).into());
        }
        let process = ProcessGuard::spawn("hubfleet-proxy", command);
        let client = client.build().expect("build an HTTP client");
        let proxy = Self {
            process,
            public_port,
            api_port,
            auth_token: auth_token.to_owned(),
            client,
            https: tls.is_some(),
        };
        let healthz = proxy.public_url("/_chp_healthz");
        let client = proxy.client.clone();
        wait_for(
            "hubfleet proxy's /_chp_healthz",
            Duration::from_secs(30),
            || {
                let (client, healthz) = (client.clone(), healthz.clone());
                async move {
                    let response = client.get(&healthz).send().await.ok()?;
                    (response.status() == StatusCode::OK).then_some(())
                }
            },
        )
        .await;
        proxy
    }

    /// `http://127.0.0.1:<public port><path>`, or `https://localhost:<public port><path>` with TLS.
    pub fn public_url(&self, path: &str) -> String {
        if self.https {
            format!("https://localhost:{}{path}", self.public_port)
        } else {
            format!("http://127.0.0.1:{}{path}", self.public_port)
        }
    }

    /// `http://127.0.0.1:<api port><path>`.
    pub fn api_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    /// `POST /api/routes<routespec>` with `{"target": target}`; asserts 201.
    pub async fn add_route(&self, routespec: &str, target: &str) {
        let response = self
            .client
            .post(self.api_url(&format!("/api/routes{routespec}")))
            .header("Authorization", format!("token {}", self.auth_token))
            .json(&serde_json::json!({ "target": target }))
            .send()
            .await
            .expect("POST a route");
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "add route {routespec}"
        );
    }

    /// `GET /api/routes` with the token; the parsed JSON object.
    pub async fn routes(&self) -> Value {
        let response = self
            .client
            .get(self.api_url("/api/routes"))
            .header("Authorization", format!("token {}", self.auth_token))
            .send()
            .await
            .expect("GET /api/routes");
        assert_eq!(response.status(), StatusCode::OK, "GET /api/routes");
        response.json().await.expect("routes are JSON")
    }
}
