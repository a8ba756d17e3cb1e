//! The hub: JupyterHub REST API, OAuth2 provider, pages, and the server lifecycle that drives spawners and the proxy.
