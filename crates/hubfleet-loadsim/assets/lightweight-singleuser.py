#!/usr/bin/env python3
"""A lightweight STAND-IN for `jupyterhub-singleuser`, for load runs (hubfleet-loadsim).

This is not JupyterLab and runs no kernels. It speaks just enough of the single-user server's
side of JupyterHub's protocol to exercise a hub for real, in a few MiB per server instead of
~100 MiB, so hundreds of "servers" fit on one machine:

- it binds to the host and port of $JUPYTERHUB_SERVICE_URL and serves under
  $JUPYTERHUB_SERVICE_PREFIX (e.g. /user/alice/);
- at start-up it checks the hub, like the real server: GET $JUPYTERHUB_API_URL with its token;
- GET <prefix>api answers 200 (the hub's readiness poll);
- GET <prefix>lab (or any page) without a valid session cookie starts the OAuth2 code flow:
  302 to <hub>/hub/api/oauth2/authorize?client_id=…&redirect_uri=…&response_type=code&state=…,
  with a state cookie;
- GET <prefix>oauth_callback checks the state, exchanges the code at
  $JUPYTERHUB_API_URL/oauth2/token (client_id, client_secret = $JUPYTERHUB_API_TOKEN), asks
  $JUPYTERHUB_API_URL/user who the token belongs to, admits the browser only if the returned
  `scopes` contain one of the access scopes ($JUPYTERHUB_OAUTH_ACCESS_SCOPES, default
  access:servers!server=<user>/ and access:servers!user=<user>), sets a session cookie named
  $JUPYTERHUB_CLIENT_ID and redirects back;
- with that cookie, pages answer 200 with HTML containing "JupyterLab-standin".

Python standard library only. It works as the spawner command of hubfleet
(`spawner.cmd: [/usr/bin/python3, <this file>]`) and of stock JupyterHub (`c.Spawner.cmd`);
extra command-line arguments (such as `--allow-root`) are ignored.
"""

import http.cookies
import http.server
import json
import os
import secrets
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

ENV = os.environ
SERVICE_URL = urllib.parse.urlsplit(ENV["JUPYTERHUB_SERVICE_URL"])
PREFIX = ENV.get("JUPYTERHUB_SERVICE_PREFIX", "/")
API_TOKEN = ENV["JUPYTERHUB_API_TOKEN"]
API_URL = ENV["JUPYTERHUB_API_URL"].rstrip("/")
CLIENT_ID = ENV["JUPYTERHUB_CLIENT_ID"]
CALLBACK_URL = ENV.get("JUPYTERHUB_OAUTH_CALLBACK_URL", PREFIX + "oauth_callback")
USER = ENV.get("JUPYTERHUB_USER", "")
BASE_URL = ENV.get("JUPYTERHUB_BASE_URL", "/")
HUB_HOST = ENV.get("JUPYTERHUB_HOST", "")
try:
    ACCESS_SCOPES = set(json.loads(ENV.get("JUPYTERHUB_OAUTH_ACCESS_SCOPES", "[]")))
except ValueError:
    ACCESS_SCOPES = set()
if not ACCESS_SCOPES:
    ACCESS_SCOPES = {f"access:servers!server={USER}/", f"access:servers!user={USER}"}

STATE_COOKIE = CLIENT_ID + "-oauth-state"
# state -> URL to return to; session id -> user name. In memory, like the real server's states.
PENDING_STATES = {}
SESSIONS = {}
LOCK = threading.Lock()

PAGE = """<!doctype html>
<html><head><title>JupyterLab-standin</title></head>
<body><h1>JupyterLab-standin</h1>
<p>Lightweight single-user stand-in for load tests, serving {user}. This is not JupyterLab.</p>
</body></html>
"""


def hub_request(method, url, token, form=None):
    """Calls the hub directly (not through the proxy), as jupyterhub-singleuser does."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", "token " + token)
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "lightweight-singleuser-standin/1"

    def log_message(self, format, *args):  # noqa: A002 (stdlib signature)
        # Log the path only: query strings carry OAuth codes and states.
        path = self.path.split("?", 1)[0]
        sys.stderr.write(f"[standin {USER}] {self.command} {path} -> {args[1] if len(args) > 1 else ''}\n")

    def cookies(self):
        jar = http.cookies.SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except http.cookies.CookieError:
            pass
        return {key: morsel.value for key, morsel in jar.items()}

    def send(self, status, body=b"", content_type="text/plain", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        if not (path + "/").startswith(PREFIX):
            return self.send(404, b"not under this server's prefix\n")
        rest = path[len(PREFIX):] if path.startswith(PREFIX) else ""
        if rest in ("api", "api/", "api/status"):
            body = json.dumps({"version": "standin", "started": True}).encode()
            return self.send(200, body, "application/json")
        if rest == "oauth_callback":
            return self.oauth_callback(urllib.parse.parse_qs(url.query))
        if rest == "":
            return self.send(302, headers=[("Location", PREFIX + "lab")])
        session = self.cookies().get(CLIENT_ID)
        with LOCK:
            user = SESSIONS.get(session) if session else None
        if user is None:
            return self.start_oauth(self.path)
        self.send(200, PAGE.format(user=user).encode(), "text/html; charset=utf-8")

    def start_oauth(self, next_url):
        state = secrets.token_urlsafe(16)
        with LOCK:
            PENDING_STATES[state] = next_url
        query = urllib.parse.urlencode({
            "client_id": CLIENT_ID,
            "redirect_uri": CALLBACK_URL,
            "response_type": "code",
            "state": state,
        })
        location = f"{HUB_HOST}{BASE_URL}hub/api/oauth2/authorize?{query}"
        cookie = f"{STATE_COOKIE}={state}; Path={PREFIX}; HttpOnly; SameSite=Lax; Max-Age=600"
        self.send(302, headers=[("Location", location), ("Set-Cookie", cookie)])

    def oauth_callback(self, query):
        state = (query.get("state") or [""])[0]
        code = (query.get("code") or [""])[0]
        if not state or self.cookies().get(STATE_COOKIE) != state:
            return self.send(403, b"OAuth state mismatch\n")
        with LOCK:
            next_url = PENDING_STATES.pop(state, None)
        if next_url is None or not code:
            return self.send(403, b"unknown OAuth state or no code\n")
        try:
            token = hub_request("POST", API_URL + "/oauth2/token", API_TOKEN, form={
                "client_id": CLIENT_ID,
                "client_secret": API_TOKEN,
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": CALLBACK_URL,
            })["access_token"]
            model = hub_request("GET", API_URL + "/user", token)
        except (urllib.error.URLError, KeyError, TypeError, ValueError) as error:
            return self.send(500, f"OAuth with the hub failed: {type(error).__name__}\n".encode())
        if not ACCESS_SCOPES.intersection(model.get("scopes") or []):
            return self.send(403, b"the hub did not grant access to this server\n")
        session = secrets.token_urlsafe(24)
        with LOCK:
            SESSIONS[session] = model.get("name", "")
        cookies = [
            ("Set-Cookie", f"{CLIENT_ID}={session}; Path={PREFIX}; HttpOnly; SameSite=Lax"),
            ("Set-Cookie", f"{STATE_COOKIE}=; Path={PREFIX}; Max-Age=0"),
        ]
        self.send(302, headers=[("Location", next_url)] + cookies)


def check_hub():
    """Like jupyterhub-singleuser's start-up version check; failure is only a warning here."""
    try:
        request = urllib.request.Request(API_URL)
        request.add_header("Authorization", "token " + API_TOKEN)
        with urllib.request.urlopen(request, timeout=10) as response:
            version = response.headers.get("X-JupyterHub-Version", "?")
        sys.stderr.write(f"[standin {USER}] hub at {API_URL} is version {version}\n")
    except (urllib.error.URLError, OSError) as error:
        sys.stderr.write(f"[standin {USER}] warning: hub check failed: {type(error).__name__}\n")


def main():
    check_hub()
    host = SERVICE_URL.hostname or "127.0.0.1"
    server = http.server.ThreadingHTTPServer((host, SERVICE_URL.port or 8888), Handler)
    server.daemon_threads = True
    sys.stderr.write(f"[standin {USER}] serving {PREFIX} on {host}:{server.server_address[1]}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
