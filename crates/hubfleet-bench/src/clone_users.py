# Adds users to a stopped JupyterHub's SQLite database by cloning the rows JupyterHub's own API
# wrote for a template user (one it created through `POST /hub/api/users`): its `users` row with
# a fresh `cookie_id`, its role assignments and its spawner row. New names come one per line on
# stdin. Fails if the template has rows in any other table referring to users, so a JupyterHub
# version that writes more per user is noticed rather than half-cloned.
# Usage: python clone_users.py <jupyterhub.sqlite> <template user>  (prints the user count)
import sqlite3
import sys
import uuid

db_path, template = sys.argv[1], sys.argv[2]
names = [line.strip() for line in sys.stdin if line.strip()]
db = sqlite3.connect(db_path)
db.execute("PRAGMA foreign_keys = ON")
row = db.execute("SELECT id FROM users WHERE name = ?", (template,)).fetchone()
if row is None:
    sys.exit(f"no template user {template!r}")
(template_id,) = row


def columns(table):
    return [c[1] for c in db.execute(f"PRAGMA table_info({table})") if c[1] != "id"]


per_user = ["user_role_map", "spawners"]
tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
for table in tables:
    for fk in db.execute(f"PRAGMA foreign_key_list({table})").fetchall():
        if fk[2] == "users" and table not in per_user:
            (count,) = db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {fk[3]} = ?", (template_id,)
            ).fetchone()
            if count:
                sys.exit(f"the template user has {count} rows in {table}; cannot clone it")

user_columns = [c for c in columns("users") if c not in ("name", "cookie_id")]
user_row = db.execute(
    f"SELECT {', '.join(user_columns)} FROM users WHERE id = ?", (template_id,)
).fetchone()
insert_user = (
    f"INSERT INTO users (name, cookie_id, {', '.join(user_columns)}) "
    f"VALUES (?, ?, {', '.join('?' * len(user_columns))})"
)
clones = []
for table in per_user:
    cols = [c for c in columns(table) if c != "user_id"]
    rows = db.execute(
        f"SELECT {', '.join(cols)} FROM {table} WHERE user_id = ?", (template_id,)
    ).fetchall()
    if not rows:
        sys.exit(f"the template user has no rows in {table}; is it a user the API created?")
    insert = (
        f"INSERT INTO {table} (user_id, {', '.join(cols)}) "
        f"VALUES (?, {', '.join('?' * len(cols))})"
    )
    clones.append((insert, rows))
with db:
    for name in names:
        user_id = db.execute(insert_user, (name, uuid.uuid4().hex, *user_row)).lastrowid
        for insert, rows in clones:
            db.executemany(insert, [(user_id, *r) for r in rows])
(total,) = db.execute("SELECT COUNT(*) FROM users").fetchone()
print(total)
