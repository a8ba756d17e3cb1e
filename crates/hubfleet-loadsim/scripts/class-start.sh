#!/usr/bin/env bash
# Class-start load: runs a hubfleet-loadsim scenario (default class-600 with kernel phases off)
# against a fresh `hubfleet serve` or a fresh stock JupyterHub 6.1.1 + configurable-http-proxy,
# both spawning the same lightweight single-user stand-in, and reports the hub processes' CPU
# seconds and peak RSS. Everything listens on 127.0.0.1; everything it started is killed at exit.
#
#   crates/hubfleet-loadsim/scripts/class-start.sh hubfleet|jupyterhub [extra hubfleet-loadsim run args]
#
# Environment: HUBFLEET_BIN (default target/release/hubfleet), LOADSIM_BIN (default
# target/release/hubfleet-loadsim), SCENARIO (default class-600), OUT (JSON report path),
# DB_URL (hubfleet only: a PostgreSQL URL instead of SQLite, e.g. a fresh database).
set -euo pipefail
cd "$(dirname "$0")/../../.."
root=$(pwd)
target=${1:?usage: class-start.sh hubfleet|jupyterhub [loadsim args]}
shift
hubfleet_bin=$(realpath "${HUBFLEET_BIN:-$root/target/release/hubfleet}")
loadsim_bin=$(realpath "${LOADSIM_BIN:-$root/target/release/hubfleet-loadsim}")
scenario=${SCENARIO:-class-600}
out=${OUT:-/tmp/loadsim-$target-$scenario.json}
standin=$root/crates/hubfleet-loadsim/assets/lightweight-singleuser.py
password="loadsim-class-password"
token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
public=$(free_port); hub=$(free_port); proxy_api=$(free_port)
dir=$(mktemp -d /tmp/loadsim-class-XXXXXX)
chmod 755 "$dir"

cleanup() {
  # Everything we started runs in $dir or names it on its command line.
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [ "$pid" = "$$" ] && continue
    cwd=$(readlink "$proc/cwd" 2>/dev/null || true)
    if [[ "$cwd" == "$dir"* ]] || cat "$proc/cmdline" 2>/dev/null | tr '\0' ' '  | grep -qF "$dir"; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$dir"
}
trap cleanup EXIT

wait_for() { # url
  for _ in $(seq 1 240); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  echo "timed out waiting for $1; hub log:" >&2
  tail -20 "$dir/hub.log" >&2
  exit 1
}

case "$target" in
  hubfleet)
    cat > "$dir/hubfleet.yaml" <<EOF
listen: 127.0.0.1:$public
data_dir: $dir/data
hub:
  listen: 127.0.0.1:$hub
proxy:
  api_listen: 127.0.0.1:$proxy_api
auth:
  kind: shared-password
  shared_password: "$password"
spawner:
  cmd: ["/usr/bin/python3", "$standin"]
  run_as: hub-user
services:
  - name: loadsim-admin
    api_token: "$token"
    admin: true
EOF
    if [ -n "${DB_URL:-}" ]; then
      printf 'db:\n  url: "%s"\n' "$DB_URL" >> "$dir/hubfleet.yaml"
    fi
    (cd "$dir" && exec "$hubfleet_bin" serve --config "$dir/hubfleet.yaml" > "$dir/hub.log" 2>&1) &
    hub_pid=$!
    wait_for "http://127.0.0.1:$public/hub/api"
    proxy_pid=$(pgrep -f -- "$dir/data" | grep -v "^$hub_pid\$" | head -1)
    echo "hubfleet $("$hubfleet_bin" --version 2>/dev/null || true) at $(git rev-parse --short HEAD) (working tree: $(git status --porcelain | wc -l) changed files); hub pid $hub_pid, proxy pid $proxy_pid" >&2
    ;;
  jupyterhub)
    venv=${HUBFLEET_TEST_ENVS:-$root/.cache/envs}/jh-6.1.1
    chp=$root/.cache/node/node_modules/.bin/configurable-http-proxy
    [ -x "$chp" ] || (mkdir -p "$root/.cache/node" && cd "$root/.cache/node" && npm install --silent configurable-http-proxy@5.3.0)
    cat > "$dir/jupyterhub_config.py" <<EOF
c = get_config()  # noqa
c.JupyterHub.ip = '127.0.0.1'
c.JupyterHub.port = $public
c.JupyterHub.hub_ip = '127.0.0.1'
c.JupyterHub.hub_port = $hub
c.JupyterHub.db_url = 'sqlite:///$dir/jupyterhub.sqlite'
c.JupyterHub.cookie_secret_file = '$dir/cookie_secret'
c.JupyterHub.authenticator_class = 'dummy'
c.DummyAuthenticator.password = '$password'
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = 'simple'
c.SimpleLocalProcessSpawner.home_dir_template = '$dir/homes/{username}'
c.Spawner.cmd = ['/usr/bin/python3', '$standin']
c.Spawner.default_url = '/lab'
c.ConfigurableHTTPProxy.command = ['$chp']
c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:$proxy_api'
c.JupyterHub.services = [{'name': 'loadsim-admin', 'api_token': '$token'}]
c.JupyterHub.load_roles = [{'name': 'loadsim-admin-role', 'scopes': ['admin:users', 'admin:servers', 'list:users'], 'services': ['loadsim-admin']}]
EOF
    (cd "$dir" && PATH="$venv/bin:$PATH" exec "$venv/bin/jupyterhub" -f "$dir/jupyterhub_config.py" > "$dir/hub.log" 2>&1) &
    hub_pid=$!
    wait_for "http://127.0.0.1:$public/hub/login"
    proxy_pid=$(pgrep -f -- "configurable-http-proxy.*--port $public" | head -1)
    echo "jupyterhub $("$venv/bin/jupyterhub" --version); hub pid $hub_pid, proxy pid $proxy_pid" >&2
    ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac

HUBFLEET_LOADSIM_PASSWORD=$password HUBFLEET_LOADSIM_API_TOKEN=$token \
  "$loadsim_bin" run --url "http://127.0.0.1:$public" --scenario "$scenario" --no-kernel \
  --hub-pid "$hub_pid" --hub-pid "$proxy_pid" --json "$out" "$@"
echo "hub log: $(grep -c . "$dir/hub.log") lines; 429s logged: $(grep -c ' 429 ' "$dir/hub.log" || true)" >&2
