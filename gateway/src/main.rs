//! `pve-network-migration`: the gateway daemon.
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when it cannot
//! start (address in use, unreadable certificate), 2 for configuration errors.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pve_network_migration::config::{Config, DEFAULT_CONFIG, Overrides};
use pve_network_migration::server::Gateway;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "pve-network-migration",
    version,
    about = "HTTPS gateway migrating the Proxmox VE network API from Perl to Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (flags override values from the configuration file).
    Serve(Box<ServeArgs>),
    /// Start simulated backends and the gateway on loopback and walk through what it does.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Keep everything running afterwards and print commands to try.
    #[arg(long)]
    serve: bool,
    /// Work directory (kept afterwards) instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Configuration file [default: /etc/pve/network/migration.toml when it exists].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 192.0.2.10:8006 (repeatable).
    #[arg(long, value_name = "ADDR")]
    listen: Vec<String>,
    /// Certificate chain to serve (PEM).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Private key of the served certificate (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// pveproxy's address, e.g. https://127.0.0.1:8006.
    #[arg(long, value_name = "URL")]
    perl_url: Option<String>,
    /// CA file to verify pveproxy with.
    #[arg(long, value_name = "FILE")]
    perl_ca: Option<PathBuf>,
    /// The Rust backend's address, e.g. https://127.0.0.1:8016.
    #[arg(long, value_name = "URL")]
    rust_url: Option<String>,
    /// CA file to verify the Rust backend with.
    #[arg(long, value_name = "FILE")]
    rust_ca: Option<PathBuf>,
    /// Cluster-wide default phase.
    #[arg(long, value_name = "PHASE")]
    phase: Option<String>,
    /// This node's name [default: the host name].
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// State directory (trip state).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Admin socket for migration-ctl.
    #[arg(long, value_name = "PATH")]
    admin_socket: Option<PathBuf>,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            perl_url: self.perl_url.clone(),
            perl_ca: self.perl_ca.clone(),
            rust_url: self.rust_url.clone(),
            rust_ca: self.rust_ca.clone(),
            phase: self.phase.clone(),
            node: self.node.clone(),
            state_dir: self.state_dir.clone(),
            admin_socket: self.admin_socket.clone(),
        }
    }

    fn load_config(&self) -> Result<Config, pve_network_migration::ConfigError> {
        let overrides = self.overrides();
        match &self.config {
            Some(path) => Config::load(path, &overrides),
            None if std::path::Path::new(DEFAULT_CONFIG).exists() => {
                Config::load(DEFAULT_CONFIG.as_ref(), &overrides)
            }
            None => Config::from_overrides(&overrides),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Demo(args) => demo(&args),
    }
}

fn demo(args: &DemoArgs) -> ExitCode {
    // The demo prints its own report; keep the log to warnings there.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pve-network-migration: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = pve_network_migration::demo::DemoOptions {
        serve: args.serve,
        dir: args.dir.clone(),
    };
    match runtime.block_on(pve_network_migration::demo::run(
        &opts,
        &mut std::io::stdout(),
    )) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pve-network-migration demo: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let config = match args.load_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pve-network-migration: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any thread starts: the descriptors systemd passed, if any.
    let inherited = match pve_network_migration::listen::inherited() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pve-network-migration: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pve-network-migration: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let telemetry = {
        let _in_runtime = runtime.enter();
        match pve_network_migration::telemetry::init(&config.telemetry, "info") {
            Ok(t) => t,
            Err(e) => {
                eprintln!("pve-network-migration: configuration error: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let code = runtime.block_on(async {
        let started = if inherited.is_empty() {
            Gateway::start(config).await
        } else {
            log_inherited(&inherited, &config.listen.addresses);
            Gateway::start_on(config, inherited.into_iter().map(|i| i.listener).collect()).await
        };
        let mut gateway = match started {
            Ok(g) => g,
            Err(e) => {
                eprintln!("pve-network-migration: {e}");
                return ExitCode::from(1);
            }
        };
        pve_migration_certs::sd_notify::notify("READY=1");
        if let Err(e) = wait_for_stop_signal(&gateway).await {
            eprintln!("pve-network-migration: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
        pve_migration_certs::sd_notify::notify("STOPPING=1");
        gateway.stop_accepting().await;
        tracing::info!("stopped accepting connections, draining in-flight requests");
        let report = gateway.shutdown().await;
        tracing::info!(drained = report.drained, "shut down");
        ExitCode::SUCCESS
    });
    // Flush spans while the runtime still runs the exporter's requests.
    runtime.block_on(async {
        let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    });
    code
}

/// Socket activation: the socket unit decides the addresses; say so when the
/// configuration names others (they are not bound).
fn log_inherited(
    inherited: &[pve_network_migration::listen::Inherited],
    configured: &[std::net::SocketAddr],
) {
    for i in inherited {
        tracing::info!(addr = %i.addr, name = %i.name, "listening socket passed by systemd");
    }
    let passed: Vec<_> = inherited.iter().map(|i| i.addr).collect();
    let ignored: Vec<String> = configured
        .iter()
        .filter(|a| !passed.contains(a))
        .map(ToString::to_string)
        .collect();
    if !ignored.is_empty() {
        tracing::warn!(
            ignored = %ignored.join(" "),
            "socket activated: listen.addresses not in pve-network-migration.socket are not bound; \
             add them as ListenStream= to the socket unit"
        );
    }
}

/// Waits for SIGTERM or SIGINT; SIGHUP reloads (see [`Gateway::reload`]).
async fn wait_for_stop_signal(gateway: &Gateway) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                pve_migration_certs::sd_notify::notify("RELOADING=1");
                tracing::info!("SIGHUP: reloading configuration, certificate and access policy; reopening migration.log");
                gateway.reload().await;
                pve_migration_certs::sd_notify::notify("READY=1");
            }
        }
    }
}
