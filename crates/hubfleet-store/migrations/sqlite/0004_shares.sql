-- Version 4: server sharing (JupyterHub 5's shares and share codes).
-- A share grants one user or one group scopes (stored as a JSON list, each filtered to the server)
-- on one server; deleting the server, user or group deletes the share. A share code is a
-- short-lived secret, stored only as its SHA-256, that a logged-in person exchanges for a share.

CREATE TABLE shares (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,
    group_id INTEGER REFERENCES groups (id) ON DELETE CASCADE,
    scopes TEXT NOT NULL,
    created INTEGER NOT NULL,
    CHECK ((user_id IS NULL) <> (group_id IS NULL))
);
CREATE UNIQUE INDEX shares_server_user ON shares (server_id, user_id) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX shares_server_group ON shares (server_id, group_id) WHERE group_id IS NOT NULL;
CREATE INDEX shares_user ON shares (user_id);
CREATE INDEX shares_group ON shares (group_id);

CREATE TABLE share_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires_at INTEGER,
    exchange_count INTEGER NOT NULL DEFAULT 0,
    last_exchanged_at INTEGER
);
CREATE INDEX share_codes_server ON share_codes (server_id);
