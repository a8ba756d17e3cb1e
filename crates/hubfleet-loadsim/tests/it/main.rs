//! End-to-end tests: the simulator against a real `hubfleet serve` and a real stock JupyterHub
//! 6.1.1, both spawning the lightweight single-user stand-in.

mod against_hubfleet;
mod against_jupyterhub;
mod support;
