//! The default user environment: a Python venv with pinned `jupyterhub` and `jupyterlab`, built from
//! Debian's `/usr/bin/python3` so that every Unix account can run it.
//!
//! Layout: `<env_dir>/jupyterhub-<v>-jupyterlab-<v>/` is the venv. Venv scripts embed the venv's
//! absolute path, so it is built in place; a marker file written last says it is complete, and an
//! unmarked directory (an interrupted build) is wiped before the next attempt. Each pinned version set
//! gets its own directory, so an upgrade never pulls files from under servers still running on the
//! old one.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::fcntl::{Flock, FlockArg};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

pub const JUPYTERHUB_VERSION: &str = "6.1.1";
pub const JUPYTERLAB_VERSION: &str = "4.6.6";

/// Debian's interpreter. Never one under `/root` (pyenv): other accounts cannot run it.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";
/// Written last; its presence with the expected contents means the venv is complete.
const MARKER_FILE: &str = ".hubfleet-env-complete";
/// Serialises builds across hub processes (and within one: `flock` locks are per open file).
const LOCK_FILE: &str = ".hubfleet-env.lock";
/// Lines of tool output kept for error messages.
const OUTPUT_TAIL_LINES: usize = 30;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("`{}` not found: install it with `apt-get install python3 python3-venv`", python.display())]
    PythonMissing { python: PathBuf },
    #[error(
        "the Python `venv` module is not usable: install it with `apt-get install python3-venv`"
    )]
    VenvModuleMissing {
        /// Output of the failed `python3 -m venv`, for logs.
        details: String,
    },
    #[error("`{} -m venv` failed:\n{output_tail}", python.display())]
    VenvFailed {
        python: PathBuf,
        output_tail: String,
    },
    #[error("`pip install {packages}` failed:\n{output_tail}")]
    PipFailed {
        packages: String,
        output_tail: String,
    },
    #[error("could not run `{program}`: {source}")]
    Run {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("could not {action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ProvisionError {
    let path = path.to_path_buf();
    move |source| ProvisionError::Io {
        action,
        path,
        source,
    }
}

/// `<data_dir>/user-env`.
pub fn default_env_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("user-env")
}

/// Makes sure the default environment exists under `env_dir` and returns the path of its
/// `jupyterhub-singleuser`. A complete environment is reused at once; otherwise one is built, with
/// pip's progress lines passed to `report` (a first build downloads about 100 MB and takes ~30 s).
pub async fn ensure_default_env(
    env_dir: &Path,
    report: &(dyn Fn(&str) + Sync),
) -> Result<PathBuf, ProvisionError> {
    let packages = [
        format!("jupyterhub=={JUPYTERHUB_VERSION}"),
        format!("jupyterlab=={JUPYTERLAB_VERSION}"),
    ];
    let venv = ensure_venv(Path::new(SYSTEM_PYTHON), env_dir, &packages, report).await?;
    Ok(venv.join("bin").join("jupyterhub-singleuser"))
}

/// Directory name for a package set: `jupyterhub==6.1.1` + `jupyterlab==4.6.6` →
/// `jupyterhub-6.1.1-jupyterlab-4.6.6`.
fn venv_dir_name(packages: &[String]) -> String {
    packages
        .iter()
        .map(|spec| spec.replace("==", "-"))
        .collect::<Vec<_>>()
        .join("-")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn marker_contents(python: &Path, packages: &[String]) -> String {
    format!("python={}\n{}\n", python.display(), packages.join("\n"))
}

fn is_complete(venv: &Path, expected_marker: &str) -> bool {
    fs::read_to_string(venv.join(MARKER_FILE)).is_ok_and(|marker| marker == expected_marker)
}

/// The engine behind [`ensure_default_env`], with the interpreter and packages as parameters.
async fn ensure_venv(
    python: &Path,
    env_dir: &Path,
    packages: &[String],
    report: &(dyn Fn(&str) + Sync),
) -> Result<PathBuf, ProvisionError> {
    let venv = env_dir.join(venv_dir_name(packages));
    let expected_marker = marker_contents(python, packages);
    if is_complete(&venv, &expected_marker) {
        return Ok(venv);
    }
    if !python.exists() {
        return Err(ProvisionError::PythonMissing {
            python: python.to_path_buf(),
        });
    }

    fs::create_dir_all(env_dir).map_err(io_error("create", env_dir))?;
    fs::set_permissions(env_dir, Permissions::from_mode(0o755))
        .map_err(io_error("set permissions on", env_dir))?;
    let _lock = lock_env_dir(env_dir).await?;
    // Another process may have finished the build while we waited for the lock.
    if is_complete(&venv, &expected_marker) {
        return Ok(venv);
    }
    if venv.exists() {
        report("Removing an incomplete user environment");
        fs::remove_dir_all(&venv).map_err(io_error("remove", &venv))?;
    }

    report("Creating the user environment (Python venv)");
    let output = Command::new(python)
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| ProvisionError::Run {
            program: python.display().to_string(),
            source,
        })?;
    if !output.status.success() {
        let combined = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if combined.contains("ensurepip is not available")
            || combined.contains("No module named venv")
        {
            return Err(ProvisionError::VenvModuleMissing { details: combined });
        }
        return Err(ProvisionError::VenvFailed {
            python: python.to_path_buf(),
            output_tail: last_lines(&combined, OUTPUT_TAIL_LINES),
        });
    }

    report(&format!("Installing {}", packages.join(" ")));
    pip_install(&venv, packages, report).await?;

    let venv_for_walk = venv.clone();
    tokio::task::spawn_blocking(move || make_readable_by_all(&venv_for_walk))
        .await
        .expect("permission walk does not panic")?;
    write_marker(&venv, &expected_marker)?;
    report("User environment ready");
    Ok(venv)
}

async fn lock_env_dir(env_dir: &Path) -> Result<Flock<File>, ProvisionError> {
    let lock_path = env_dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error("open", &lock_path))?;
    tokio::task::spawn_blocking(move || Flock::lock(file, FlockArg::LockExclusive))
        .await
        .expect("flock does not panic")
        .map_err(|(_, errno)| ProvisionError::Io {
            action: "lock",
            path: lock_path,
            source: io::Error::from(errno),
        })
}

async fn pip_install(
    venv: &Path,
    packages: &[String],
    report: &(dyn Fn(&str) + Sync),
) -> Result<(), ProvisionError> {
    let venv_python = venv.join("bin").join("python");
    let mut child = Command::new(&venv_python)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .args(["--progress-bar", "off"])
        .args(packages)
        // The hub's own Python settings must not leak into the build.
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env_remove("VIRTUAL_ENV")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ProvisionError::Run {
            program: venv_python.display().to_string(),
            source,
        })?;

    // Both streams feed one channel so lines keep their order and neither pipe fills up.
    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<String>();
    forward_lines(child.stdout.take().expect("stdout piped"), line_tx.clone());
    forward_lines(child.stderr.take().expect("stderr piped"), line_tx);
    let mut tail: VecDeque<String> = VecDeque::with_capacity(OUTPUT_TAIL_LINES);
    while let Some(line) = line_rx.recv().await {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        report(line.trim_start());
        if tail.len() == OUTPUT_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    }
    let status = child.wait().await.map_err(|source| ProvisionError::Run {
        program: venv_python.display().to_string(),
        source,
    })?;
    if !status.success() {
        return Err(ProvisionError::PipFailed {
            packages: packages.join(" "),
            output_tail: Vec::from(tail).join("\n"),
        });
    }
    Ok(())
}

fn forward_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    lines: mpsc::UnboundedSender<String>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Directories 0755-or-wider, files readable by all and executable by all where the owner can
/// execute them, whatever umask the hub runs under. Symlinks are left alone.
fn make_readable_by_all(path: &Path) -> Result<(), ProvisionError> {
    let meta = fs::symlink_metadata(path).map_err(io_error("inspect", path))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    let wanted = if meta.is_dir() {
        mode | 0o755
    } else if mode & 0o100 != 0 {
        mode | 0o055
    } else {
        mode | 0o044
    };
    if wanted != mode {
        fs::set_permissions(path, Permissions::from_mode(wanted))
            .map_err(io_error("set permissions on", path))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(io_error("list", path))? {
            let entry = entry.map_err(io_error("list", path))?;
            make_readable_by_all(&entry.path())?;
        }
    }
    Ok(())
}

fn write_marker(venv: &Path, contents: &str) -> Result<(), ProvisionError> {
    let marker = venv.join(MARKER_FILE);
    let staging = venv.join(format!("{MARKER_FILE}.tmp"));
    fs::write(&staging, contents).map_err(io_error("write", &staging))?;
    File::open(&staging)
        .and_then(|file| file.sync_all())
        .map_err(io_error("sync", &staging))?;
    fs::set_permissions(&staging, Permissions::from_mode(0o644))
        .map_err(io_error("set permissions on", &staging))?;
    // The rename makes the marker appear whole or not at all.
    fs::rename(&staging, &marker).map_err(io_error("rename", &staging))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn default_packages() -> Vec<String> {
        vec![
            format!("jupyterhub=={JUPYTERHUB_VERSION}"),
            format!("jupyterlab=={JUPYTERLAB_VERSION}"),
        ]
    }

    #[test]
    fn venv_dir_name_names_the_versions() {
        assert_eq!(
            venv_dir_name(&default_packages()),
            "jupyterhub-6.1.1-jupyterlab-4.6.6"
        );
    }

    #[tokio::test]
    async fn complete_env_is_reused_without_running_anything() {
        let env_dir = tempfile::tempdir().unwrap();
        let packages = default_packages();
        let python = Path::new(SYSTEM_PYTHON);
        let venv = env_dir.path().join(venv_dir_name(&packages));
        fs::create_dir_all(venv.join("bin")).unwrap();
        fs::write(venv.join(MARKER_FILE), marker_contents(python, &packages)).unwrap();

        let reports = Mutex::new(Vec::<String>::new());
        let report = |line: &str| reports.lock().unwrap().push(line.to_string());
        let started = std::time::Instant::now();
        let path = ensure_default_env(env_dir.path(), &report).await.unwrap();
        assert_eq!(path, venv.join("bin").join("jupyterhub-singleuser"));
        assert!(reports.lock().unwrap().is_empty(), "nothing was built");
        // Nothing ran: no venv was created (no pyvenv.cfg) and it took no pip-sized time.
        assert!(!venv.join("pyvenv.cfg").exists());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[tokio::test]
    async fn missing_python_says_what_to_install() {
        let env_dir = tempfile::tempdir().unwrap();
        let err = ensure_venv(
            Path::new("/nonexistent/python3"),
            env_dir.path(),
            &default_packages(),
            &|_| {},
        )
        .await
        .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, ProvisionError::PythonMissing { .. }));
        assert_eq!(
            message,
            "`/nonexistent/python3` not found: install it with `apt-get install python3 python3-venv`"
        );
    }

    #[tokio::test]
    async fn marker_for_other_versions_is_not_reused() {
        let env_dir = tempfile::tempdir().unwrap();
        let packages = default_packages();
        let venv = env_dir.path().join(venv_dir_name(&packages));
        fs::create_dir_all(&venv).unwrap();
        fs::write(
            venv.join(MARKER_FILE),
            "python=/usr/bin/python3\njupyterhub==0.1\n",
        )
        .unwrap();
        // With a missing interpreter the rebuild fails early, which proves it was attempted.
        let err = ensure_venv(
            Path::new("/nonexistent/python3"),
            env_dir.path(),
            &packages,
            &|_| {},
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ProvisionError::PythonMissing { .. }));
    }

    /// Builds a real venv (with a pip run that needs no network) over the remains of an interrupted
    /// build, and checks the result is complete, marked and readable by other users.
    #[tokio::test]
    async fn interrupted_build_is_wiped_and_rebuilt() {
        let env_dir = tempfile::tempdir().unwrap();
        let packages = vec!["pip".to_string()];
        let venv = env_dir.path().join(venv_dir_name(&packages));
        fs::create_dir_all(venv.join("bin")).unwrap();
        fs::write(venv.join("leftover"), "half-built").unwrap();

        let reports = Mutex::new(Vec::<String>::new());
        let report = |line: &str| reports.lock().unwrap().push(line.to_string());
        let built = ensure_venv(Path::new(SYSTEM_PYTHON), env_dir.path(), &packages, &report)
            .await
            .unwrap();
        assert_eq!(built, venv);
        assert!(!venv.join("leftover").exists(), "unmarked dir was wiped");
        assert!(is_complete(
            &venv,
            &marker_contents(Path::new(SYSTEM_PYTHON), &packages)
        ));
        let reports = reports.into_inner().unwrap();
        assert!(
            reports
                .iter()
                .any(|line| line.contains("Requirement already satisfied: pip")),
            "pip output was streamed: {reports:?}"
        );
        let bin_mode = fs::metadata(venv.join("bin")).unwrap().permissions().mode();
        assert_eq!(bin_mode & 0o755, 0o755);
        let pip_mode = fs::metadata(venv.join("bin/pip"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(pip_mode & 0o055, 0o055);

        // Second call: reused as is.
        let again = ensure_venv(
            Path::new(SYSTEM_PYTHON),
            env_dir.path(),
            &packages,
            &|line| panic!("nothing should be reported on reuse, got {line:?}"),
        )
        .await
        .unwrap();
        assert_eq!(again, venv);
    }
}
