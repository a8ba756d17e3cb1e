//! A stand-in single-user server for tests that need many "servers" but not JupyterLab: a Python
//! stdlib HTTP server that takes a configurable time to start and then answers every GET with 200
//! on `$JUPYTERHUB_SERVICE_URL` (or, under `…/hubfleet-test-env/NAME`, with the variable `NAME` of
//! its environment). It is enough for the hub's readiness check, the proxy's routes
//! and activity, the spawn queue and the culler. It is not JupyterLab and does no OAuth.

use std::path::Path;

/// A temporary directory other Unix accounts can read (servers run as `hf-<user>`).
pub fn world_readable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod tempdir");
    dir
}

/// Writes the stand-in into `dir` and returns the `spawner.cmd` that runs it; it sleeps
/// `delay_seconds` before listening, to make starts slow on purpose.
pub fn standin_server(dir: &Path, delay_seconds: f64) -> Vec<String> {
    let script = dir.join("standin-server.py");
    std::fs::write(
        &script,
        format!(
            r#"import http.server, os, time, urllib.parse
time.sleep({delay_seconds})
url = urllib.parse.urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        # `…/hubfleet-test-env/NAME` answers with that variable of the server's environment.
        head, marker, name = self.path.partition("/hubfleet-test-env/")
        body = os.environ.get(name, "").encode() if marker else b"stand-in"
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer((url.hostname, url.port), Handler).serve_forever()
"#
        ),
    )
    .expect("write the stand-in server");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod the stand-in server");
    vec![
        "/usr/bin/python3".into(),
        script.to_string_lossy().into_owned(),
    ]
}
