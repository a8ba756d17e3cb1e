//! [`ProcessGuard`]: a child process in its own process group whose output goes to a log file,
//! killed together with everything it started when the guard drops.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How much of the log a failing test prints.
const LOG_TAIL_BYTES: u64 = 16 * 1024;

/// A spawned child process, killed with its process group and all its descendants on drop.
///
/// Descendants matter because JupyterHub starts the proxy and every single-user server in
/// sessions of their own (`start_new_session=True`), out of reach of a process-group kill.
/// When the test is panicking, the tail of the captured stdout/stderr is printed first.
#[derive(Debug)]
pub struct ProcessGuard {
    name: String,
    child: Child,
    log_path: PathBuf,
    /// Descendants seen when the child itself was killed early; they are killed on drop.
    orphans: BTreeSet<u32>,
    _log_dir: tempfile::TempDir,
}

impl ProcessGuard {
    /// Spawns `command` in a new process group with stdout and stderr appended to one log file.
    pub fn spawn(name: &str, mut command: Command) -> Self {
        let log_dir = tempfile::Builder::new()
            .prefix(&format!("hubfleet-it-{name}-"))
            .tempdir()
            .expect("create a log tempdir");
        let log_path = log_dir.path().join(format!("{name}.log"));
        let log = File::create(&log_path).expect("create the log file");
        let log_for_stderr = log.try_clone().expect("clone the log file handle");
        command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {name} ({command:?}): {err}"));
        Self {
            name: name.to_owned(),
            child,
            log_path,
            orphans: BTreeSet::new(),
            _log_dir: log_dir,
        }
    }

    /// The child's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last few KiB of the captured output.
    pub fn log_tail(&self) -> String {
        read_tail(&self.log_path, LOG_TAIL_BYTES)
    }

    /// The exit status, if the child has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll the child's exit status")
    }

    /// Kills the child's process group with SIGKILL and reaps it, leaving processes it started in
    /// other sessions running (as a crash would); those are still killed when the guard drops.
    pub fn kill(&mut self) {
        self.orphans.extend(descendant_pids(self.pid()));
        let group = Pid::from_raw(self.pid() as i32);
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// Sends `signal` to the child process only.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid() as i32), signal)
            .unwrap_or_else(|err| panic!("send {signal} to {}: {err}", self.name));
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- last output of {} (pid {}, log {}) -----\n{}\n----- end of {} output -----",
                self.name,
                self.pid(),
                self.log_path.display(),
                self.log_tail(),
                self.name
            );
        }
        let mut doomed = descendant_pids(self.pid());
        doomed.append(&mut self.orphans);
        let _ = killpg(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
        for pid in doomed {
            let pid = Pid::from_raw(pid as i32);
            // A descendant that started its own session leads its own group; take that down too.
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = kill(pid, Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// All processes below `root` in the parent/child tree, read from /proc.
pub fn descendant_pids(root: u32) -> BTreeSet<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = parent_pid(pid) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = BTreeSet::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parent_of {
            if ppid == parent && found.insert(pid) {
                frontier.push(pid);
            }
        }
    }
    found
}

fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

fn read_tail(path: &Path, max_bytes: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::from("<log file unreadable>");
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}
