//! `pve-network-rs-daemon`: the Rust network API of one Proxmox VE node.
//!
//! Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 when it cannot
//! start (certificate, address), 2 for bad flags or a bad `--config` file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser};
use pve_migration_certs::reload::CertSource;
use pve_network_rs::api::Backend;
use pve_network_rs::config::{CertChoice, RawSettings};
use pve_network_rs::links::LinkSource;
use pve_network_rs::paths::HostPaths;
use pve_network_rs::server::Server;
use pve_network_rs::worker::{self, TaskSpawner, WORKER_COMMAND, WorkerArgs};

// A list or a write allocates a few thousand small strings (one 200-interface
// file parsed, validated, written, rendered); mimalloc halves the handler
// time against glibc's allocator (docs/backend.md, "Performance").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Rust network API of a Proxmox VE node (node network interfaces,
/// pending changes, apply), answering like PVE's Perl.
#[derive(Debug, Parser)]
#[command(name = "pve-network-rs-daemon", version)]
struct Cli {
    #[command(flatten)]
    settings: SettingFlags,
    /// The same settings in a TOML file (flags override it).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SettingFlags {
    /// Address to listen on [default: 127.0.0.1:8016].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Certificate chain (PEM) [default: pveproxy's choice in /etc/pve/local].
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The node served [default: the host name up to the first dot].
    #[arg(long)]
    node: Option<String>,
    /// Resolve every host path (/etc/network, /etc/pve, /usr/sbin/ifreload,
    /// /var/log/pve/tasks, …) under DIR [default: /].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Link state from FILE (the output of `ip -details -json link show`)
    /// instead of the kernel.
    #[arg(long, value_name = "FILE")]
    links: Option<PathBuf>,
    /// Verbose logs.
    #[arg(long)]
    debug: bool,
}

/// The apply worker (started by the daemon, not by people).
#[derive(Debug, Parser)]
#[command(name = "pve-network-rs-daemon task-worker", hide = true)]
struct WorkerCli {
    #[arg(long)]
    root: PathBuf,
    #[arg(long)]
    links: Option<PathBuf>,
    #[arg(long)]
    node: String,
    #[arg(long)]
    user: String,
    #[arg(long)]
    starttime: i64,
    #[arg(long)]
    regenerate_frr: Option<u8>,
}

fn init_logging(debug: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if debug { "debug" } else { "info" })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

fn main() {
    let mut args = std::env::args_os();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == WORKER_COMMAND)
    {
        let rest: Vec<_> = std::iter::once(args.next().unwrap_or_default())
            .chain(args.skip(1))
            .collect();
        let w = WorkerCli::parse_from(rest);
        init_logging(false);
        std::process::exit(worker::run_worker(&WorkerArgs {
            root: w.root,
            links: w.links,
            node: w.node,
            user: w.user,
            starttime: w.starttime,
            regenerate_frr: w.regenerate_frr.map(|v| v != 0),
        }));
    }
    let cli = Cli::parse();
    let flags = RawSettings {
        listen: cli.settings.listen,
        tls_cert: cli.settings.tls_cert,
        tls_key: cli.settings.tls_key,
        node: cli.settings.node,
        root: cli.settings.root,
        links: cli.settings.links,
        debug: cli.settings.debug.then_some(true),
    };
    let (raw, origin) = match &cli.config {
        Some(path) => match RawSettings::from_file(path) {
            Ok(file) => (
                file.overridden_by(flags),
                format!("{} (with flags)", path.display()),
            ),
            Err(e) => {
                eprintln!("pve-network-rs-daemon: {e}");
                std::process::exit(2);
            }
        },
        None => (flags, "flags".to_string()),
    };
    let settings = match raw.validate(&origin) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pve-network-rs-daemon: {e}");
            std::process::exit(2);
        }
    };
    init_logging(settings.debug);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pve-network-rs-daemon: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    std::process::exit(runtime.block_on(run(settings)));
}

async fn run(settings: pve_network_rs::config::Settings) -> i32 {
    let paths = HostPaths::new(&settings.root);
    let links = settings
        .links
        .clone()
        .map_or(LinkSource::Kernel, LinkSource::File);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot find my own binary for apply workers");
            return 1;
        }
    };
    let tasks = TaskSpawner::new(exe, paths.clone(), links.clone());
    let backend = Arc::new(Backend::new(
        settings.node.clone(),
        paths.clone(),
        links,
        tasks,
    ));
    let cert = match settings.cert {
        CertChoice::Files { cert, key } => CertSource::Files { cert, key },
        CertChoice::NodeDir(dir) => CertSource::PveproxyDir(dir),
    };
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listen = %settings.listen, error = %e, "cannot listen");
            return 1;
        }
    };
    let server = match Server::start(listener, cert, backend) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return 1;
        }
    };
    if paths.migration_toml().exists() {
        tracing::info!("writes follow the node's phase in /etc/pve/network/migration.toml");
    } else {
        tracing::info!(
            "no /etc/pve/network/migration.toml: writes are not restricted by a migration phase"
        );
    }
    tracing::info!(addr = %server.local_addr(), node = %settings.node, root = %settings.root.display(), "listening");
    pve_migration_certs::sd_notify::notify("READY=1");
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot handle SIGTERM");
            return 1;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    pve_migration_certs::sd_notify::notify("STOPPING=1");
    tracing::info!("stopping");
    server.shutdown(Duration::from_secs(10)).await;
    0
}
