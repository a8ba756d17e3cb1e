//! `hubfleet proxy` as a process: stock JupyterHub on it, streaming and memory.
