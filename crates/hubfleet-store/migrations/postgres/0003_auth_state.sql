-- Version 3: each user's auth_state (identity provider tokens and claims), encrypted by the
-- authenticator before it reaches the database (AES-256-GCM); the hub never stores it in clear.

CREATE TABLE auth_states (
    user_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed BYTEA NOT NULL
);
