-- Version 6: the number of users, kept current by triggers in the same transaction as the change,
-- so a paged listing of all users (whose `_pagination.total` is this number) reads one row
-- instead of counting the whole table on every page. Statement-level triggers: one update of the
-- row per statement, however many users it inserts or deletes.

CREATE TABLE users_total (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    users BIGINT NOT NULL
);

INSERT INTO users_total (id, users) SELECT 1, COUNT(*) FROM users;

CREATE FUNCTION users_total_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users_total SET users = users + (SELECT COUNT(*) FROM added_users) WHERE id = 1;
    RETURN NULL;
END;
$$;

CREATE FUNCTION users_total_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users_total SET users = users - (SELECT COUNT(*) FROM removed_users) WHERE id = 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_total_insert AFTER INSERT ON users
    REFERENCING NEW TABLE AS added_users
    FOR EACH STATEMENT EXECUTE FUNCTION users_total_added();

CREATE TRIGGER users_total_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS removed_users
    FOR EACH STATEMENT EXECUTE FUNCTION users_total_removed();
