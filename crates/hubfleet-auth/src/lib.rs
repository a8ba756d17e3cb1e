//! Authenticators: who may log in, and as whom.
