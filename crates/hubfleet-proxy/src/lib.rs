//! The routing proxy: route table, HTTP/WebSocket forwarding, TLS, and the configurable-http-proxy REST API.
//!
//! `hubfleet proxy` runs this crate as its own process ([`cli::run`]), a drop-in replacement for
//! configurable-http-proxy, so restarting the hub never drops users' connections. The hub drives it over the
//! CHP REST API with [`client::ChpClient`]. In-process use (tests, embedding) goes through
//! [`ProxyServer::bind`] and [`ProxyServer::serve`].

mod api;
mod body;
pub mod cli;
pub mod client;
mod error;
mod forward;
// Entry points for the fuzz targets; not a stable API.
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
mod relay;
pub mod routes;
mod server;
#[cfg(target_os = "linux")]
mod splice;
mod tls;

pub use error::{ClientError, ProxyError, RouteError, TlsError};
pub use server::{DEFAULT_TLS_WATCH_INTERVAL, ProxyConfig, ProxyHandle, ProxyServer, serve};
pub use tls::{ClientAuth, KeyPassphrase, PrivateKeyFile, TlsPaths, UpstreamTls};
