//! Runs the proxy exactly as `hubfleet proxy` will (same flags), for manual tests and load tests before the
//! binary wires it: `cargo run --release -p hubfleet-proxy --example proxy -- --ip 127.0.0.1 --port 8000`.

use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: hubfleet_proxy::cli::ChpArgs,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(hubfleet_proxy::cli::run(cli.args))?;
    Ok(())
}
