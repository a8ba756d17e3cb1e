//! End-to-end tests of the `hubfleet` binary against real peers: the stock `jupyterhub-singleuser`
//! and JupyterLab from PyPI, stock JupyterHub (when our proxy stands in for configurable-http-proxy).
//!
//! One test binary (matklad: "delete cargo integration tests"); each module is one area.

mod support;

mod admin;
mod api;
mod hub;
mod login;
mod native_accounts;
mod passwords;
mod proxy;
mod scale;
mod services;
mod shares;
mod tmp_users;
