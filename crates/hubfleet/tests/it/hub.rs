//! The hub end to end: login, spawn, JupyterLab, kernels, isolation, restarts.
