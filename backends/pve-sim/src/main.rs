//! `pve-sim`: run a simulated pveproxy on a TLS port.
//!
//! See `backends/pve-sim/README.md` for the flags, fault kinds and the
//! control endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use pve_sim::{Fault, FaultScope, Flavor, SimConfig};

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
    /// A node's /etc/pve with its ticket keys (priv/authkey.key, authkey.pub,
    /// priv/pve-www.key): logins then issue PVE's own tickets and CSRF tokens.
    #[arg(long, value_name = "DIR")]
    pve_keys: Option<PathBuf>,
    /// The SDN configuration directory (PVE's /etc/pve/sdn) [default: <interfaces>.sdn].
    #[arg(long, value_name = "DIR")]
    sdn_dir: Option<PathBuf>,
    /// A fault to inject (repeatable): latency=MS[+JITTER], error-rate=P,
    /// reset-before-head, reset-after-head, malformed-json, refuse, auth-bypass.
    #[arg(long = "fault", value_name = "KIND[=VALUE]", value_parser = Fault::parse)]
    faults: Vec<Fault>,
    /// Which requests the --fault flags apply to: all API requests, or only
    /// writes (not GET/HEAD).
    #[arg(long, value_name = "all|writes", default_value = "all", value_parser = parse_scope)]
    fault_scope: FaultScope,
    /// Secret of the control endpoint /_sim/faults (header X-Sim-Control-Secret);
    /// without it the endpoint is disabled.
    #[arg(long, value_name = "SECRET")]
    control_secret: Option<String>,
}

fn parse_scope(s: &str) -> Result<FaultScope, pve_sim::faults::FaultError> {
    s.parse()
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
        sdn_dir: cli.sdn_dir,
        faults: cli
            .faults
            .into_iter()
            .map(|f| f.with_scope(cli.fault_scope))
            .collect(),
        control_secret: cli.control_secret.filter(|s| !s.is_empty()),
        pve_keys: cli.pve_keys,
    };
    let faults: Vec<String> = config.faults.iter().map(ToString::to_string).collect();
    let sim = pve_sim::start(config).await?;
    tracing::info!(addr = %sim.addr(), sdn_dir = %sim.state().config.sdn_dir().display(), ?faults, "pve-sim listening");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
