-- Version 6: the number of users, kept current by triggers in the same transaction as the change,
-- so a paged listing of all users (whose `_pagination.total` is this number) reads one row
-- instead of counting the whole table on every page.

CREATE TABLE users_total (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    users BIGINT NOT NULL
);

INSERT INTO users_total (id, users) SELECT 1, COUNT(*) FROM users;

CREATE TRIGGER users_total_insert AFTER INSERT ON users
BEGIN
    UPDATE users_total SET users = users + 1 WHERE id = 1;
END;

CREATE TRIGGER users_total_delete AFTER DELETE ON users
BEGIN
    UPDATE users_total SET users = users - 1 WHERE id = 1;
END;
