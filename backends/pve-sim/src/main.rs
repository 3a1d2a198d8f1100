//! `pve-sim`: run a simulated pveproxy on a TLS port.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use pve_sim::{Flavor, SimConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FlavorArg {
    Perl,
    Rust,
}

/// A simulated pveproxy with the Proxmox VE network API.
#[derive(Debug, Parser)]
#[command(name = "pve-sim", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8006")]
    listen: SocketAddr,
    /// Certificate chain (PEM).
    #[arg(long)]
    tls_cert: PathBuf,
    /// Private key (PEM).
    #[arg(long)]
    tls_key: PathBuf,
    /// The interfaces file to serve and edit.
    #[arg(long, default_value = "/etc/network/interfaces")]
    interfaces: PathBuf,
    /// Node name.
    #[arg(long, default_value = "pve1")]
    node: String,
    /// A user, `USER@REALM:PASSWORD` (repeatable).
    #[arg(long = "user")]
    users: Vec<String>,
    /// An API token, `USER@REALM!TOKENID=SECRET` (repeatable).
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// Key that signs tickets; simulators sharing it accept each other's tickets.
    #[arg(long, default_value = "pve-sim")]
    auth_key: String,
    /// Which backend to play.
    #[arg(long, value_enum, default_value = "perl")]
    flavor: FlavorArg,
    /// Seed of the Perl flavour's key and list order shuffle.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A named divergence of the Rust flavour (repeatable): rename-bridge-ports,
    /// missing-changes, different-error-message, mtu-as-string-typo, flags-omitted-when-false.
    #[arg(long = "diverge", value_name = "NAME")]
    diverge: Vec<String>,
}

fn split_pair(s: &str, sep: char, what: &str) -> anyhow::Result<(String, String)> {
    let (a, b) = s
        .rsplit_once(sep)
        .ok_or_else(|| anyhow::anyhow!("invalid {what} '{s}'"))?;
    Ok((a.to_owned(), b.to_owned()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let users = cli
        .users
        .iter()
        .map(|u| {
            let (user, pass) = u.split_once(':').ok_or_else(|| {
                anyhow::anyhow!("invalid --user '{u}', expected USER@REALM:PASSWORD")
            })?;
            Ok((user.to_owned(), pass.to_owned()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tokens = cli
        .tokens
        .iter()
        .map(|t| split_pair(t, '=', "--token (expected USER@REALM!TOKENID=SECRET)"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = SimConfig {
        listen: cli.listen,
        tls_cert: cli.tls_cert,
        tls_key: cli.tls_key,
        node: cli.node,
        users,
        tokens,
        auth_key: cli.auth_key,
        interfaces: cli.interfaces,
        flavor: match cli.flavor {
            FlavorArg::Perl => Flavor::Perl,
            FlavorArg::Rust => Flavor::Rust,
        },
        seed: cli.seed,
        divergences: pve_sim::network::Divergences::parse_list(&cli.diverge.join(","))?,
    };
    let sim = pve_sim::start(config).await?;
    tracing::info!(addr = %sim.addr(), "pve-sim listening");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
