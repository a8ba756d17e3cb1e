//! The `hubfleet` binary: parses the command line and wires the crates together.
//!
//! This is the only place that knows every concrete implementation (which spawner, which
//! authenticator, which store) and the only crate that uses `anyhow`.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hubfleet_config::{AuthMethod, Config, RunAsSetting};
use hubfleet_hub::{HubDeps, ProxyLauncher, ProxyLink};
use hubfleet_spawner::{LocalProcessSpawner, LocalSpawnerConfig, RunAs};
use hubfleet_types::Authenticator;

#[derive(Parser)]
#[command(
    name = "hubfleet",
    version,
    about = "A JupyterHub-compatible hub, proxy and spawner in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a hub: the proxy (as its own process), the hub, and user servers.
    Serve {
        /// YAML configuration file; without it, embedded defaults run a hub on 127.0.0.1:8000.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Overrides `data_dir` from the configuration.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Validate a configuration file without starting anything.
    CheckConfig { file: PathBuf },
    /// Run the routing proxy alone: a drop-in replacement for configurable-http-proxy.
    Proxy(Box<hubfleet_proxy::cli::ChpArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config, data_dir } => serve(config, data_dir).await,
            Command::CheckConfig { file } => check_config(&file),
            Command::Proxy(args) => hubfleet_proxy::cli::run(*args).await.map_err(Into::into),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HUBFLEET_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn check_config(file: &Path) -> anyhow::Result<()> {
    let config = hubfleet_config::load(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{}: OK (hub at http://{}{})",
        file.display(),
        config.listen,
        config.base_url
    );
    Ok(())
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => hubfleet_config::load(path).map_err(|e| anyhow::anyhow!("{e}")),
        None => {
            let cwd = std::env::current_dir().context("reading the current directory")?;
            Ok(hubfleet_config::embedded_defaults(&cwd))
        }
    }
}

async fn serve(config_path: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = load_config(config_path.as_deref())?;
    if let Some(dir) = data_dir {
        config.data_dir = std::path::absolute(dir).context("resolving --data-dir")?;
    }
    let data_dir = config.data_dir.clone();
    // 0711: user accounts may traverse to their home and the user environment, but not list.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o711))
        .with_context(|| format!("setting permissions on {}", data_dir.display()))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir.join("logs"))
        .context("creating the logs directory")?;

    let default_single_user_cmd = match &config.spawner.cmd {
        Some(_) => Vec::new(),
        None => vec![provision_default_env(&data_dir).await?],
    };

    let store = match &config.db_url {
        // The URL may hold a password: it goes to the store, never to a message.
        Some(url) => hubfleet_store::Store::open(url.expose())
            .await
            .context("opening the database at db.url")?,
        None => hubfleet_store::Store::open_sqlite(&data_dir.join("hubfleet.sqlite"))
            .await
            .context("opening the database")?,
    };

    let run_as = match config.spawner.run_as {
        RunAsSetting::Auto => RunAs::Auto,
        RunAsSetting::HubUser => RunAs::HubUser,
        RunAsSetting::SystemUsers => RunAs::SystemUsers {
            prefix: config.spawner.system_user_prefix.clone(),
        },
    };
    let spawner = Arc::new(LocalProcessSpawner::new(LocalSpawnerConfig {
        run_as,
        ..LocalSpawnerConfig::default()
    }));

    let authenticator: Arc<dyn Authenticator> = match &config.auth.method {
        AuthMethod::SharedPassword {
            password,
            expires_at,
        } => Arc::new(
            hubfleet_auth::SharedPasswordAuthenticator::new(password.expose())
                .with_expiry(*expires_at),
        ),
        AuthMethod::Dummy => {
            tracing::warn!("auth.kind is dummy: any password logs in (loopback only)");
            Arc::new(hubfleet_auth::DummyAuthenticator)
        }
        AuthMethod::Oidc(settings) => Arc::new(hubfleet_auth::OidcAuthenticator::new(
            settings.clone(),
            hubfleet_auth::OidcFlavour::Generic,
        )),
        AuthMethod::Cilogon(settings) => Arc::new(hubfleet_auth::OidcAuthenticator::new(
            settings.clone(),
            hubfleet_auth::OidcFlavour::Cilogon,
        )),
        AuthMethod::Tmp => Arc::new(hubfleet_auth::TmpAuthenticator),
        AuthMethod::Native => Arc::new(hubfleet_auth::NativeAuthenticator::new(
            Arc::new(StoreAccounts(store.clone())),
            config.auth.admin_users.clone(),
        )),
        AuthMethod::Github(settings) => {
            Arc::new(hubfleet_auth::GithubAuthenticator::new(settings.clone()))
        }
    };

    let proxy = proxy_link(&config)?;
    tracing::info!("hubfleet: http://{}{}", config.listen, config.base_url);
    let deps = HubDeps {
        config,
        store,
        spawner,
        authenticator,
        proxy,
        default_single_user_cmd,
    };
    hubfleet_hub::run(deps, shutdown_signal()).await?;
    tracing::info!(
        "hub stopped; the proxy and user servers keep running and the next `hubfleet serve` re-adopts them"
    );
    Ok(())
}

async fn provision_default_env(data_dir: &Path) -> anyhow::Result<String> {
    let env_dir = hubfleet_spawner::provision::default_env_dir(data_dir);
    let report = |line: &str| eprintln!("  {line}");
    let bin = hubfleet_spawner::provision::ensure_default_env(&env_dir, &report)
        .await
        .context("preparing the default user environment")?;
    Ok(bin.to_string_lossy().into_owned())
}

/// The link to the proxy process, which this hub launches (or adopts) with a token kept in the
/// data directory so that a restarted hub can talk to the proxy the previous one started.
fn proxy_link(config: &Config) -> anyhow::Result<ProxyLink> {
    let token_path = config.data_dir.join("proxy-token");
    let token = match std::fs::read_to_string(&token_path) {
        Ok(token) if token.trim().len() >= 32 => token.trim().to_string(),
        _ => {
            let token = hubfleet_core::token::generate_token();
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&token_path)
                .with_context(|| format!("writing {}", token_path.display()))?;
            std::io::Write::write_all(&mut file, token.as_bytes())?;
            token
        }
    };
    let hub = config.hub.listen;
    let mut args = vec![
        "proxy".to_string(),
        "--ip".into(),
        config.listen.ip().to_string(),
        "--port".into(),
        config.listen.port().to_string(),
        "--api-ip".into(),
        config.proxy.api_listen.ip().to_string(),
        "--api-port".into(),
        config.proxy.api_listen.port().to_string(),
        "--default-target".into(),
        format!("http://{hub}"),
        "--error-target".into(),
        format!("http://{hub}{}hub/error", config.base_url),
        "--pid-file".into(),
        config
            .data_dir
            .join("proxy.pid")
            .to_string_lossy()
            .into_owned(),
    ];
    if let Some(tls) = &config.proxy.tls {
        args.extend([
            "--ssl-cert".into(),
            tls.cert.to_string_lossy().into_owned(),
            "--ssl-key".into(),
            tls.key.to_string_lossy().into_owned(),
        ]);
    }
    if let Some(redirect) = config.proxy.redirect_http_from {
        args.extend(["--redirect-port".into(), redirect.port().to_string()]);
    }
    let launcher = ProxyLauncher {
        program: own_executable()?,
        args,
        auth_token: token.clone(),
        log_file: config.data_dir.join("logs").join("proxy.log"),
    };
    let api_url = format!("http://{}", config.proxy.api_listen);
    ProxyLink::new(&api_url, Some(token), Some(launcher)).map_err(Into::into)
}

/// This executable's path, for launching the proxy. After an in-place upgrade Linux reports the
/// running file as `<path> (deleted)`; the path itself then holds the new binary, which is the
/// one to launch.
fn own_executable() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe().context("locating the hubfleet executable")?;
    let text = path.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(original) => PathBuf::from(original),
        None => path,
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// The `native` authenticator's accounts, kept in the hub database.
struct StoreAccounts(hubfleet_store::Store);

fn account_error(error: hubfleet_store::StoreError) -> hubfleet_types::AuthError {
    hubfleet_types::AuthError::Backend(error.to_string())
}

#[async_trait::async_trait]
impl hubfleet_types::auth::NativeAccounts for StoreAccounts {
    async fn get(
        &self,
        name: &hubfleet_types::UserName,
    ) -> Result<Option<hubfleet_types::auth::NativeAccount>, hubfleet_types::AuthError> {
        Ok(self
            .0
            .get_native_account(name.as_str())
            .await
            .map_err(account_error)?
            .map(|row| hubfleet_types::auth::NativeAccount {
                hash: row.hash,
                approved: row.approved,
            }))
    }

    async fn create(
        &self,
        name: &hubfleet_types::UserName,
        hash: &str,
    ) -> Result<bool, hubfleet_types::AuthError> {
        match self.0.create_native_account(name.as_str(), hash).await {
            Ok(()) => Ok(true),
            Err(hubfleet_store::StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(account_error(e)),
        }
    }

    async fn approve(
        &self,
        name: &hubfleet_types::UserName,
    ) -> Result<bool, hubfleet_types::AuthError> {
        match self.0.approve_native_account(name.as_str()).await {
            Ok(()) => Ok(true),
            Err(hubfleet_store::StoreError::NotFound) => Ok(false),
            Err(e) => Err(account_error(e)),
        }
    }

    async fn pending(&self) -> Result<Vec<hubfleet_types::UserName>, hubfleet_types::AuthError> {
        let names = self
            .0
            .pending_native_accounts(200)
            .await
            .map_err(account_error)?;
        Ok(names
            .iter()
            .filter_map(|n| hubfleet_types::UserName::parse(n).ok())
            .collect())
    }
}
