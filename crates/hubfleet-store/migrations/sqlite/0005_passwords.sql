-- Version 5: the shared password an admin set at runtime (replacing the configured one), stored
-- only as an argon2 hash (PHC string). At most one row.

CREATE TABLE shared_password (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    hash TEXT NOT NULL,
    expires_at BIGINT,
    set_at BIGINT NOT NULL,
    set_by TEXT NOT NULL
);

-- Accounts of the `native` authenticator: sign-up creates an unapproved account; an admin
-- approves it before it can log in. Passwords only as argon2 hashes.
CREATE TABLE native_accounts (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    approved BOOLEAN NOT NULL DEFAULT FALSE,
    created BIGINT NOT NULL
);
