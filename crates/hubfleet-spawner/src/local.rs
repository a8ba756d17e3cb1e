//! [`LocalProcessSpawner`]: runs each single-user server as a local process, either as the hub's own
//! Unix user or as one Unix account per hub user.
//!
//! Servers must outlive the hub (it may be `kill -9`ed and restarted at any time), so a server never
//! depends on the hub process: its output goes to a log file rather than a pipe, it gets its own
//! process group, and everything needed to find it again (pid, start time, port, log path) is in the
//! [`SpawnerState`] the hub persists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use hubfleet_types::{
    PollStatus, ProgressSink, SpawnError, SpawnRequest, SpawnedServer, Spawner, SpawnerState,
    UserName,
};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Gid, Pid, Uid, User};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::procfs;
use crate::unix_account::{self, UnixAccount};

/// Variables kept from the hub's own environment (the same list as JupyterHub's `env_keep`).
/// Everything else in the hub's environment is withheld from user servers.
pub const ENV_KEEP: [&str; 9] = [
    "PATH",
    "PYTHONPATH",
    "CONDA_ROOT",
    "CONDA_DEFAULT_ENV",
    "VIRTUAL_ENV",
    "LANG",
    "LC_ALL",
    "LD_LIBRARY_PATH",
    "JUPYTERHUB_SINGLEUSER_APP",
];

/// How often `stop` re-checks whether the process group is gone.
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long to wait for the group to vanish after SIGKILL, which cannot be ignored.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Bytes read from the end of a log for `log_tail`; enough for any sensible number of lines.
const LOG_TAIL_MAX_BYTES: u64 = 256 * 1024;

/// Which Unix account user servers run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    /// [`RunAs::SystemUsers`] with prefix `hf-` when the hub runs as root, else [`RunAs::HubUser`].
    Auto,
    /// Every server runs as the hub's own user (JupyterHub's `SimpleLocalProcessSpawner`). When
    /// that is root, `--allow-root` is appended to the command so `jupyterhub-singleuser` agrees to start.
    HubUser,
    /// One Unix account per hub user, named `prefix` + a sanitised hub user name, created with
    /// `useradd` on first spawn. Needs the hub to run as root.
    SystemUsers { prefix: String },
}

#[derive(Debug, Clone)]
pub struct LocalSpawnerConfig {
    pub run_as: RunAs,
    /// How long `stop` waits after SIGTERM before it sends SIGKILL to the server's process group.
    pub stop_timeout: Duration,
    /// `SHELL` for servers (terminals use it) and the login shell of created accounts.
    pub shell: PathBuf,
}

impl Default for LocalSpawnerConfig {
    fn default() -> Self {
        LocalSpawnerConfig {
            run_as: RunAs::Auto,
            stop_timeout: Duration::from_secs(10),
            shell: PathBuf::from("/bin/bash"),
        }
    }
}

/// What the hub persists for one local server. It holds no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LocalServerState {
    /// Pid of the server process, which is also its process group id.
    pid: u32,
    /// Start time from `/proc/<pid>/stat`, so a recycled pid is not mistaken for the server.
    start_time: u64,
    port: u16,
    log_path: PathBuf,
    unix_user: String,
    uid: u32,
}

impl LocalServerState {
    fn from_state(state: &SpawnerState) -> Option<Self> {
        match serde_json::from_value(state.0.clone()) {
            Ok(server) => Some(server),
            Err(err) => {
                tracing::warn!(error = %err, "local spawner state is unreadable; treating the server as gone");
                None
            }
        }
    }

    fn to_state(&self) -> SpawnerState {
        SpawnerState(serde_json::to_value(self).expect("plain struct serialises"))
    }

    fn process_group(&self) -> Pid {
        Pid::from_raw(self.pid as i32)
    }
}

/// A server process started by this spawner instance, kept so it can be reaped (no zombies) and its
/// exit status reported.
#[derive(Debug)]
struct TrackedChild {
    start_time: u64,
    child: Child,
    /// Set once reaped, and kept until `poll` has reported it (a `stop` reaps before the hub polls).
    exit_code: Option<i32>,
}

/// Reaped children whose exit code nobody asked for are forgotten beyond this many.
const MAX_UNREPORTED_EXITS: usize = 256;

/// Runs single-user servers as local processes. See the module docs.
#[derive(Debug)]
pub struct LocalProcessSpawner {
    config: LocalSpawnerConfig,
    /// `config.run_as` with [`RunAs::Auto`] resolved.
    run_as: RunAs,
    children: Mutex<HashMap<u32, TrackedChild>>,
    /// Serialises account creation so two spawns for one new user do not race in `useradd`.
    account_creation: tokio::sync::Mutex<()>,
    /// Where servers' ports come from.
    port_source: PortSource,
    /// Ports handed out recently. Between our probe releasing a port and the server binding it the
    /// next probe may pick the same port; two concurrent starts must never share one, or the hub's
    /// readiness check would reach the other user's server.
    recent_ports: Mutex<HashMap<u16, Instant>>,
}

/// Where the spawner finds ports for servers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PortSource {
    /// Random ports from this range, just below the kernel's ephemeral range. The kernel never
    /// hands these out to `bind(0)` or to outgoing connections, so between our probe and the
    /// server's bind no other process is given the port by chance.
    BelowEphemeral(Range<u16>),
    /// The kernel's choice, when the ephemeral range leaves too little room below it.
    Kernel,
}

impl PortSource {
    /// How many ports below the ephemeral range servers may use (20000–32767 on Linux's default).
    const SPAN: u16 = 12_768;
    /// Fewer free ports than this below the ephemeral range and the kernel chooses instead.
    const MIN_SPAN: u16 = 1_024;

    /// From the ephemeral range's first port (`/proc/sys/net/ipv4/ip_local_port_range`).
    fn below(ephemeral_start: u16) -> PortSource {
        let start = ephemeral_start.saturating_sub(Self::SPAN).max(1_024);
        if ephemeral_start.saturating_sub(start) < Self::MIN_SPAN {
            PortSource::Kernel
        } else {
            PortSource::BelowEphemeral(start..ephemeral_start)
        }
    }

    fn of_this_machine() -> PortSource {
        match ephemeral_range_start() {
            Some(start) => PortSource::below(start),
            None => PortSource::Kernel,
        }
    }

    /// A port nobody listens on now.
    fn free_port(&self) -> io::Result<u16> {
        match self {
            PortSource::BelowEphemeral(range) => {
                let mut rng = rand::rng();
                for _ in 0..64 {
                    let port = rng.random_range(range.clone());
                    if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                        return Ok(port);
                    }
                }
                Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("no free loopback port found in {range:?}"),
                ))
            }
            PortSource::Kernel => free_loopback_port(),
        }
    }
}

/// The first port of the kernel's ephemeral range, if it can be read.
fn ephemeral_range_start() -> Option<u16> {
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_ascii_whitespace().next()?.parse().ok()
}

impl LocalProcessSpawner {
    pub fn new(config: LocalSpawnerConfig) -> Self {
        let run_as = match &config.run_as {
            RunAs::Auto if Uid::effective().is_root() => RunAs::SystemUsers {
                prefix: "hf-".to_string(),
            },
            RunAs::Auto => RunAs::HubUser,
            other => other.clone(),
        };
        LocalProcessSpawner {
            config,
            run_as,
            children: Mutex::new(HashMap::new()),
            account_creation: tokio::sync::Mutex::new(()),
            port_source: PortSource::of_this_machine(),
            recent_ports: Mutex::new(HashMap::new()),
        }
    }

    /// A free loopback port not handed out by this spawner within [`PORT_QUARANTINE`].
    fn reserve_port(&self) -> io::Result<u16> {
        let mut recent = self.recent_ports.lock().expect("port table poisoned");
        let now = Instant::now();
        recent.retain(|_, handed_out| now.duration_since(*handed_out) < PORT_QUARANTINE);
        for _ in 0..64 {
            let port = self.port_source.free_port()?;
            if let std::collections::hash_map::Entry::Vacant(slot) = recent.entry(port) {
                slot.insert(now);
                return Ok(port);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "no loopback port left that was not handed out in the last few minutes",
        ))
    }

    /// The effective mode: never [`RunAs::Auto`].
    pub fn run_as(&self) -> &RunAs {
        &self.run_as
    }

    async fn account_for(
        &self,
        request: &SpawnRequest,
        home: &Path,
    ) -> Result<UnixAccount, SpawnError> {
        match &self.run_as {
            RunAs::SystemUsers { prefix } => {
                let name = unix_account::account_name_for(prefix, request.user.as_str());
                let _creating = self.account_creation.lock().await;
                unix_account::ensure_account(&name, home, &self.config.shell)
                    .await
                    .map_err(|err| SpawnError::failed(err.to_string()))
            }
            RunAs::HubUser | RunAs::Auto => {
                let uid = Uid::effective();
                let name = match User::from_uid(uid) {
                    Ok(Some(user)) => user.name,
                    // A uid without a passwd entry (common in containers) still works.
                    _ => uid.to_string(),
                };
                Ok(UnixAccount {
                    name,
                    uid,
                    gid: Gid::effective(),
                })
            }
        }
    }

    /// Reaps a child of this instance if it has exited. `None` when the server is not our child.
    /// With `report`, an exited child is forgotten once its status has been returned.
    fn check_tracked_child(&self, server: &LocalServerState, report: bool) -> Option<PollStatus> {
        let mut children = self.children.lock().expect("children lock poisoned");
        let tracked = children.get_mut(&server.pid)?;
        if tracked.start_time != server.start_time {
            return None;
        }
        if tracked.exit_code.is_none() {
            match tracked.child.try_wait() {
                Ok(None) => return Some(PollStatus::Running),
                Ok(Some(status)) => tracked.exit_code = Some(exit_code(status)),
                Err(err) => {
                    tracing::warn!(pid = server.pid, error = %err, "could not check on a server process; using /proc instead");
                    children.remove(&server.pid);
                    return None;
                }
            }
        }
        let code = tracked.exit_code;
        if report {
            children.remove(&server.pid);
        }
        Some(PollStatus::Exited { code })
    }

    fn forget_old_exits(&self) {
        let mut children = self.children.lock().expect("children lock poisoned");
        let unreported = children.values().filter(|c| c.exit_code.is_some()).count();
        if unreported > MAX_UNREPORTED_EXITS {
            children.retain(|_, c| c.exit_code.is_none());
        }
    }

    fn is_running(&self, server: &LocalServerState) -> PollStatus {
        if let Some(status) = self.check_tracked_child(server, true) {
            return status;
        }
        match procfs::read_stat(server.pid) {
            Ok(Some(stat))
                if stat.start_time == server.start_time
                    && (!stat.is_exited() || procfs::has_live_threads(server.pid)) =>
            {
                PollStatus::Running
            }
            Ok(_) => PollStatus::Exited { code: None },
            Err(err) => {
                // Unreadable is not proof of death; stopping a live server would be worse.
                tracing::warn!(pid = server.pid, error = %err, "could not read /proc for a server; assuming it still runs");
                PollStatus::Running
            }
        }
    }

    /// Whether the process group named in the state can still be ours. A pid and its group id are
    /// not reused while any member of the group lives, so a leader that is gone or matches the
    /// recorded start time means the group (if any) is the server's.
    fn group_may_be_ours(server: &LocalServerState) -> io::Result<bool> {
        Ok(match procfs::read_stat(server.pid)? {
            None => true,
            Some(stat) => stat.start_time == server.start_time,
        })
    }

    /// Polls until no live process is left in the server's group, or the deadline passes.
    async fn wait_group_gone(
        &self,
        server: &LocalServerState,
        timeout: Duration,
    ) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            // Reaping our own child turns its zombie into nothing, so it stops counting.
            self.check_tracked_child(server, false);
            if procfs::live_group_members(server.pid as i32)?.is_empty() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(STOP_POLL_INTERVAL).await;
        }
    }
}

/// The exit code, or 128 + signal number for a process killed by a signal (the shell convention).
fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(-1)
}

/// `<user>` or `<user>--<server>`; server names cannot contain `--`, so this is unambiguous.
fn server_label(request: &SpawnRequest) -> String {
    if request.server_name.is_default() {
        request.user.as_str().to_string()
    } else {
        format!("{}--{}", request.user, request.server_name)
    }
}

fn io_failure(what: &str, path: &Path, err: io::Error) -> SpawnError {
    SpawnError::failed(format!("could not {what} `{}`: {err}", path.display()))
}

/// Where users' home directories live: `<data_dir>/homes/<user name>`.
fn homes_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("homes")
}

/// Creates `<data_dir>/homes` (0711: others may pass through but not list it) and the user's home
/// (0700, owned by the account that runs the server).
fn prepare_home(
    data_dir: &Path,
    homes_dir: &Path,
    home: &Path,
    account: &UnixAccount,
    separate_accounts: bool,
) -> Result<(), SpawnError> {
    fs::create_dir_all(data_dir).map_err(|e| io_failure("create", data_dir, e))?;
    if separate_accounts {
        // Other accounts must be able to traverse the data dir to reach their homes. Only the
        // search bit is granted, never read, so nothing in it can be listed.
        let meta = fs::metadata(data_dir).map_err(|e| io_failure("inspect", data_dir, e))?;
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            fs::set_permissions(data_dir, Permissions::from_mode((mode & 0o7777) | 0o001))
                .map_err(|e| io_failure("set permissions on", data_dir, e))?;
        }
    }
    match fs::create_dir(homes_dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(io_failure("create", homes_dir, err)),
    }
    fs::set_permissions(homes_dir, Permissions::from_mode(0o711))
        .map_err(|e| io_failure("set permissions on", homes_dir, e))?;
    match fs::symlink_metadata(home) {
        Ok(meta) if !meta.is_dir() => {
            return Err(SpawnError::failed(format!(
                "the home directory `{}` exists but is not a directory",
                home.display()
            )));
        }
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(home).map_err(|e| io_failure("create", home, e))?;
        }
        Err(err) => return Err(io_failure("inspect", home, err)),
    }
    fs::set_permissions(home, Permissions::from_mode(0o700))
        .map_err(|e| io_failure("set permissions on", home, e))?;
    if separate_accounts {
        std::os::unix::fs::lchown(home, Some(account.uid.as_raw()), Some(account.gid.as_raw()))
            .map_err(|e| io_failure("change the owner of", home, e))?;
    }
    Ok(())
}

/// Opens (truncating) the server's log file, 0600 and owned by the hub: the server writes to the
/// inherited descriptor, so it needs no access to the path itself.
fn open_log(log_path: &Path) -> Result<File, SpawnError> {
    let logs_dir = log_path.parent().expect("log path has a parent");
    fs::create_dir_all(logs_dir).map_err(|e| io_failure("create", logs_dir, e))?;
    fs::set_permissions(logs_dir, Permissions::from_mode(0o700))
        .map_err(|e| io_failure("set permissions on", logs_dir, e))?;
    let log = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(log_path)
        .map_err(|e| io_failure("open the log file", log_path, e))?;
    // `mode` only applies to new files; an older log may have other permissions.
    log.set_permissions(Permissions::from_mode(0o600))
        .map_err(|e| io_failure("set permissions on", log_path, e))?;
    Ok(log)
}

/// How long a handed-out port is not handed out again (longer than any server takes to bind).
const PORT_QUARANTINE: Duration = Duration::from_secs(300);

/// Asks the kernel for a free port on the loopback interface. Another process could be given it
/// before the server binds it; [`Spawner::answered_by_server`] then tells the hub.
fn free_loopback_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether every socket listening on the server's port belongs to the server's process group.
/// `true` too when that cannot be known (nothing listens any more, `/proc` is unreadable).
fn server_holds_its_port(server: &LocalServerState) -> bool {
    let listening = match procfs::listening_socket_inodes(server.port) {
        Ok(listening) if !listening.is_empty() => listening,
        _ => return true,
    };
    let Ok(members) = procfs::live_group_members(server.process_group().as_raw()) else {
        return true;
    };
    let mut held = HashSet::new();
    for pid in members {
        match procfs::socket_inodes_of(pid) {
            Ok(sockets) => held.extend(sockets),
            Err(_) => return true,
        }
    }
    listening.is_subset(&held)
}

/// The server's whole environment: [`ENV_KEEP`] from the hub's environment, then the hub-computed
/// variables, then what only the spawner knows.
fn server_environment(
    hub_env: impl IntoIterator<Item = (OsString, OsString)>,
    request_env: &BTreeMap<String, String>,
    account: &UnixAccount,
    home: &Path,
    shell: &Path,
    service_url: &str,
) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = hub_env
        .into_iter()
        .filter(|(key, _)| ENV_KEEP.iter().any(|kept| key == kept))
        .collect();
    env.extend(
        request_env
            .iter()
            .map(|(key, value)| (OsString::from(key), OsString::from(value))),
    );
    env.insert("HOME".into(), home.into());
    env.insert("USER".into(), account.name.clone().into());
    env.insert("SHELL".into(), shell.into());
    env.insert("JUPYTERHUB_SERVICE_URL".into(), service_url.into());
    env
}

/// Reads the last `max_lines` lines of a file, looking at no more than its last
/// [`LOG_TAIL_MAX_BYTES`].
fn read_tail(path: &Path, max_lines: usize) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(LOG_TAIL_MAX_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    // When the read started mid-file, the first line is probably partial; drop it.
    let complete = if start > 0 && lines.len() > 1 {
        &lines[1..]
    } else {
        &lines[..]
    };
    let skip = complete.len().saturating_sub(max_lines);
    Ok(complete[skip..].join("\n"))
}

#[async_trait]
impl Spawner for LocalProcessSpawner {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn start(
        &self,
        request: SpawnRequest,
        progress: ProgressSink,
    ) -> Result<SpawnedServer, SpawnError> {
        let Some(program) = request.cmd.first().cloned() else {
            return Err(SpawnError::failed("the server command is empty"));
        };
        let separate_accounts = matches!(self.run_as, RunAs::SystemUsers { .. });
        let homes_dir = homes_dir(&request.data_dir);
        let home = homes_dir.join(request.user.as_str());

        if separate_accounts {
            progress.send(10, "Preparing the Unix account");
        }
        let account = self.account_for(&request, &home).await?;

        progress.send(20, "Creating home directory");
        prepare_home(
            &request.data_dir,
            &homes_dir,
            &home,
            &account,
            separate_accounts,
        )?;

        let label = server_label(&request);
        let log_path = request.data_dir.join("logs").join(format!("{label}.log"));
        let log = open_log(&log_path)?;
        let log_for_stderr = log
            .try_clone()
            .map_err(|e| io_failure("duplicate the log file", &log_path, e))?;

        let port = self.reserve_port()?;
        let service_url = format!("http://127.0.0.1:{port}{}", request.service_prefix);
        let env = server_environment(
            std::env::vars_os(),
            &request.env,
            &account,
            &home,
            &self.config.shell,
            &service_url,
        );

        let mut args: Vec<String> = request.cmd[1..].to_vec();
        if !separate_accounts && account.uid.is_root() && !args.iter().any(|a| a == "--allow-root")
        {
            args.push("--allow-root".to_string());
        }

        let program_name = Path::new(&program)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| program.clone());
        progress.send(40, format!("Starting {program_name}…"));

        let mut command = Command::new(&program);
        command
            .args(&args)
            .env_clear()
            .envs(&env)
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr))
            // Its own process group: signals aimed at the hub's group (Ctrl-C, a supervisor's
            // group kill) do not reach it, and `stop` can signal the server and all it started.
            .process_group(0)
            .kill_on_drop(false);
        if separate_accounts {
            // std drops supplementary groups when a root parent sets the uid.
            command.uid(account.uid.as_raw()).gid(account.gid.as_raw());
        }
        let child = command.spawn().map_err(|err| SpawnError::Failed {
            message: format!("could not start `{program}` as `{}`: {err}", account.name),
            log_tail: None,
        })?;
        let pid = child.id().ok_or_else(|| {
            SpawnError::failed(format!("`{program}` exited before it could be tracked"))
        })?;
        let start_time = match procfs::read_stat(pid)? {
            Some(stat) => stat.start_time,
            // Our unreaped child always has a /proc entry, even as a zombie.
            None => {
                return Err(SpawnError::failed(format!(
                    "`{program}` vanished right after it started"
                )));
            }
        };
        self.forget_old_exits();
        self.children
            .lock()
            .expect("children lock poisoned")
            .insert(
                pid,
                TrackedChild {
                    start_time,
                    child,
                    exit_code: None,
                },
            );

        tracing::info!(
            user = %request.user,
            server = %request.server_name,
            pid,
            port,
            unix_user = %account.name,
            log = %log_path.display(),
            "started single-user server process"
        );
        let server = LocalServerState {
            pid,
            start_time,
            port,
            log_path,
            unix_user: account.name,
            uid: account.uid.as_raw(),
        };
        Ok(SpawnedServer {
            url: format!("http://127.0.0.1:{port}"),
            state: server.to_state(),
        })
    }

    async fn poll(&self, state: &SpawnerState) -> PollStatus {
        match LocalServerState::from_state(state) {
            Some(server) => self.is_running(&server),
            None => PollStatus::Exited { code: None },
        }
    }

    async fn answered_by_server(&self, state: &SpawnerState) -> bool {
        let Some(server) = LocalServerState::from_state(state) else {
            return true;
        };
        tokio::task::spawn_blocking(move || server_holds_its_port(&server))
            .await
            .unwrap_or(true)
    }

    async fn stop(&self, state: &SpawnerState) -> Result<(), SpawnError> {
        let Some(server) = LocalServerState::from_state(state) else {
            return Ok(());
        };
        if !Self::group_may_be_ours(&server)? {
            tracing::info!(
                pid = server.pid,
                "server pid now belongs to another process; nothing to stop"
            );
            return Ok(());
        }
        for (signal, wait) in [
            (Signal::SIGTERM, self.config.stop_timeout),
            (Signal::SIGKILL, KILL_WAIT),
        ] {
            match killpg(server.process_group(), signal) {
                Ok(()) => {}
                // No process left in the group: already stopped.
                Err(Errno::ESRCH) => {
                    self.check_tracked_child(&server, false);
                    return Ok(());
                }
                Err(errno) => {
                    return Err(SpawnError::failed(format!(
                        "could not send {signal} to the server (process group {}): {errno}",
                        server.pid
                    )));
                }
            }
            if self.wait_group_gone(&server, wait).await? {
                tracing::info!(pid = server.pid, %signal, "stopped single-user server");
                return Ok(());
            }
            tracing::warn!(pid = server.pid, %signal, "server process group still alive after {wait:?}");
        }
        Err(SpawnError::failed(format!(
            "the server (process group {}) is still running after SIGKILL",
            server.pid
        )))
    }

    async fn log_tail(&self, state: &SpawnerState, max_lines: usize) -> Option<String> {
        let server = LocalServerState::from_state(state)?;
        let path = server.log_path;
        let result = tokio::task::spawn_blocking(move || read_tail(&path, max_lines)).await;
        match result {
            Ok(Ok(tail)) => Some(tail),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "could not read a server log");
                None
            }
            Err(_) => None,
        }
    }

    async fn forget_user(&self, data_dir: &Path, user: &UserName) -> Result<(), SpawnError> {
        let home = homes_dir(data_dir).join(user.as_str());
        let removing = home.clone();
        let removed = tokio::task::spawn_blocking(move || fs::remove_dir_all(&removing))
            .await
            .map_err(|err| SpawnError::failed(format!("removing {}: {err}", home.display())))?;
        match removed {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(io_failure("remove", &home, err));
            }
            _ => {}
        }
        if let RunAs::SystemUsers { prefix } = &self.run_as {
            let name = unix_account::account_name_for(prefix, user.as_str());
            let _changing = self.account_creation.lock().await;
            unix_account::remove_account(&name, &home)
                .await
                .map_err(|err| SpawnError::failed(err.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_never_handed_out_twice() {
        let spawner = LocalProcessSpawner::new(LocalSpawnerConfig {
            run_as: RunAs::HubUser,
            ..LocalSpawnerConfig::default()
        });
        // Without reservations the kernel readily offers a just-released port again.
        let ports: Vec<u16> = (0..500).map(|_| spawner.reserve_port().unwrap()).collect();
        let unique: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
    }

    #[test]
    fn server_ports_come_from_below_the_kernels_ephemeral_range() {
        assert_eq!(
            PortSource::below(32_768),
            PortSource::BelowEphemeral(20_000..32_768)
        );
        assert_eq!(
            PortSource::below(9_000),
            PortSource::BelowEphemeral(1_024..9_000)
        );
        assert_eq!(PortSource::below(1_500), PortSource::Kernel);

        let spawner = LocalProcessSpawner::new(LocalSpawnerConfig::default());
        let ephemeral_start = ephemeral_range_start().expect("Linux has an ephemeral range");
        for _ in 0..100 {
            let port = spawner.reserve_port().unwrap();
            assert!(port < ephemeral_start, "{port} is in the ephemeral range");
        }
    }

    /// A process in its own group that listens on a loopback port, and that port.
    fn listening_child() -> (std::process::Child, u16) {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import socket, time\n\
                 s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
                 print(s.getsockname()[1], flush=True); time.sleep(60)",
            ])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        (
            child,
            line.trim().parse().expect("the child prints its port"),
        )
    }

    fn state_of(child: &std::process::Child, port: u16) -> LocalServerState {
        LocalServerState {
            pid: child.id(),
            start_time: procfs::read_stat(child.id()).unwrap().unwrap().start_time,
            port,
            log_path: PathBuf::from("/dev/null"),
            unix_user: "nobody".into(),
            uid: 0,
        }
    }

    #[test]
    fn a_port_is_the_servers_only_when_its_own_process_group_listens_on_it() {
        let (mut server, port) = listening_child();
        assert!(server_holds_its_port(&state_of(&server, port)));

        // Another process (this test) listening on the port the server was given.
        let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let squatted = squatter.local_addr().unwrap().port();
        assert!(!server_holds_its_port(&state_of(&server, squatted)));

        server.kill().unwrap();
        server.wait().unwrap();
    }

    fn account() -> UnixAccount {
        UnixAccount {
            name: "hf-alice".into(),
            uid: Uid::from_raw(1234),
            gid: Gid::from_raw(1234),
        }
    }

    #[test]
    fn environment_keeps_only_the_keep_list_and_adds_spawner_variables() {
        let hub_env = [
            ("PATH", "/usr/bin"),
            ("LANG", "C.UTF-8"),
            ("HUB_DB_PASSWORD", "secret"),
            ("HOME", "/root"),
            ("JUPYTERHUB_SINGLEUSER_APP", "lab"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let request_env = BTreeMap::from([
            ("JUPYTERHUB_API_TOKEN".to_string(), "tok".to_string()),
            ("USER".to_string(), "overridden-by-spawner".to_string()),
        ]);
        let env = server_environment(
            hub_env,
            &request_env,
            &account(),
            Path::new("/data/homes/alice"),
            Path::new("/bin/bash"),
            "http://127.0.0.1:1/user/alice/",
        );
        let env: BTreeMap<String, String> = env
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect();
        let expected = BTreeMap::from(
            [
                ("PATH", "/usr/bin"),
                ("LANG", "C.UTF-8"),
                ("JUPYTERHUB_SINGLEUSER_APP", "lab"),
                ("JUPYTERHUB_API_TOKEN", "tok"),
                ("HOME", "/data/homes/alice"),
                ("USER", "hf-alice"),
                ("SHELL", "/bin/bash"),
                ("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:1/user/alice/"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        assert_eq!(env, expected);
    }

    #[test]
    fn read_tail_returns_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        fs::write(&path, "one\ntwo\nthree\nfour\n").unwrap();
        assert_eq!(read_tail(&path, 2).unwrap(), "three\nfour");
        assert_eq!(read_tail(&path, 10).unwrap(), "one\ntwo\nthree\nfour");
    }
}
