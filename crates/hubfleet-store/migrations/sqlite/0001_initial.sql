-- Version 1: users, servers, services, API tokens, OAuth clients and codes, browser sessions.
-- Timestamps are INTEGER microseconds since the Unix epoch (UTC); JSON values are TEXT.
-- AUTOINCREMENT keeps ids from being reused after deletes, so a stale id never names a new row.

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    created INTEGER NOT NULL,
    last_activity INTEGER
);

CREATE TABLE servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('stopped', 'spawning', 'running', 'stopping')),
    url TEXT,
    state TEXT,
    started INTEGER,
    last_activity INTEGER,
    user_options TEXT NOT NULL DEFAULT '{}',
    UNIQUE (user_id, name)
);
CREATE INDEX servers_active ON servers (status) WHERE status <> 'stopped';

CREATE TABLE services (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    admin BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL UNIQUE,
    user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,
    service_id INTEGER REFERENCES services (id) ON DELETE CASCADE,
    scopes TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL,
    expires_at INTEGER,
    last_activity INTEGER,
    session_id TEXT,
    oauth_client_id TEXT,
    CHECK ((user_id IS NULL) <> (service_id IS NULL))
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
CREATE INDEX api_tokens_service ON api_tokens (service_id);
CREATE INDEX api_tokens_session ON api_tokens (session_id);
CREATE INDEX api_tokens_oauth_client ON api_tokens (oauth_client_id);

CREATE TABLE oauth_clients (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identifier TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    allowed_scopes TEXT NOT NULL
);

CREATE TABLE oauth_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    code_hash TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    scopes TEXT NOT NULL,
    code_challenge TEXT,
    code_challenge_method TEXT,
    session_id TEXT,
    expires_at INTEGER NOT NULL
);
CREATE INDEX oauth_codes_client ON oauth_codes (client_id);
CREATE INDEX oauth_codes_user ON oauth_codes (user_id);

CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL UNIQUE,
    session_id TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
