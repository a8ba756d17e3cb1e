//! The JupyterHub REST API end to end: conformance (schemathesis), RBAC, and real API clients.
