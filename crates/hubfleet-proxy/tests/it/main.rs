//! Integration tests of the proxy over real loopback TCP: REST API conformance, forwarding, streaming,
//! WebSockets, malformed input, TLS/HTTP2, the hub client and metrics. One test binary, as our style asks.

mod api;
mod client;
mod forwarding;
mod internal_ssl;
mod malformed;
mod relay;
mod streaming;
mod support;
mod tls;
mod websocket;
