-- Version 2: groups and their members, role assignments, server display names, and an index for
-- sorting users by activity.
-- Role definitions live in the configuration (like JupyterHub's `load_roles`); the database only
-- records which user or group holds which role, by role name.

ALTER TABLE servers ADD COLUMN display_name TEXT NOT NULL DEFAULT '';

CREATE TABLE groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    properties TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE user_groups (
    group_id INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX user_groups_user ON user_groups (user_id);

CREATE TABLE user_roles (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    PRIMARY KEY (user_id, role)
);

CREATE TABLE group_roles (
    group_id INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    PRIMARY KEY (group_id, role)
);

CREATE INDEX users_last_activity ON users (last_activity);
