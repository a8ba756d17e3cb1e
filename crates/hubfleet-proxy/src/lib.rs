//! The routing proxy: route table, HTTP/WebSocket forwarding, TLS, and the configurable-http-proxy REST API.
