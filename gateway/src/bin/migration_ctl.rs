//! `migration-ctl`: the operator's tool, talking to the gateway's admin socket.
//!
//! Exit codes: 0 success (for `health`: healthy), 1 the gateway refused or
//! reported a problem (for `health`: degraded), 2 the gateway cannot be reached.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{CommandFactory, Parser, Subcommand};
use http::{Method, StatusCode};
use pve_network_migration::config::DEFAULT_ADMIN_SOCKET;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "migration-ctl",
    version,
    about = "Operate the pve-network-migration gateway of this node"
)]
struct Cli {
    /// The gateway's admin socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_ADMIN_SOCKET, global = true)]
    socket: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Phases, trip, backends, configuration, certificate, recent fallbacks (exit 0 healthy, 1 degraded, 2 unreachable).
    Health,
    /// Show or set phases.
    #[command(subcommand)]
    Phase(PhaseCommand),
    /// Show or lift the automatic trip back to Perl.
    #[command(subcommand)]
    Trip(TripCommand),
    /// Contract evidence.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Write a tar.gz with health, redacted configuration, recent log lines, evidence summary and metrics.
    Diagnostics {
        /// Output file [default: pve-network-migration-diagnostics-<time>.tar.gz].
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, …
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum PhaseCommand {
    /// Configured and effective phase of this node, and the file's phases.
    Get,
    /// Set a node's phase in migration.toml (this node unless --node or --cluster).
    Set {
        /// perl-only, shadow, rust-read-only, rust-basic-write or rust-full.
        phase: String,
        /// The node whose `[nodes.NAME]` section to set.
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// Set the cluster-wide default instead.
        #[arg(long, conflicts_with = "node")]
        cluster: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TripCommand {
    /// Whether the node is tripped, when and why.
    Status,
    /// Re-arm the node: the configured phase applies again.
    Reset,
}

#[derive(Debug, Subcommand)]
enum EvidenceCommand {
    /// Counts per endpoint, verdict and fingerprint, with one exemplar patch each.
    Summary {
        /// Period, e.g. 15m, 2h, 1d.
        #[arg(long, default_value = "15m")]
        since: String,
        /// Only this endpoint id.
        #[arg(long, value_name = "ID")]
        endpoint: Option<String>,
    },
}

/// Why a call did not produce an answer.
enum CallError {
    Unreachable(String),
    Refused(StatusCode, String),
}

async fn call(
    socket: &std::path::Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Bytes, CallError> {
    let (status, body) = pve_network_migration::admin::call(socket, method, path, body.as_ref())
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::PermissionDenied => {
                CallError::Unreachable(format!("cannot connect to {}: {e}", socket.display()))
            }
            _ => CallError::Unreachable(format!(
                "{}: the gateway closed the connection ({e}); is this user root?",
                socket.display()
            )),
        })?;
    if !status.is_success() {
        let msg = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(CallError::Refused(status, msg));
    }
    Ok(body)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_table(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn print_health(h: &Value) {
    let backend = |b: &Value| {
        if b.is_null() {
            return "not configured".to_owned();
        }
        if b["reachable"].as_bool() == Some(true) {
            format!(
                "{} reachable ({:.1} ms)",
                s(&b["url"]),
                b["latency_ms"].as_f64().unwrap_or(0.0)
            )
        } else {
            format!("{} UNREACHABLE: {}", s(&b["url"]), s(&b["error"]))
        }
    };
    let state = if h["degraded"].as_bool() == Some(true) {
        "DEGRADED"
    } else {
        "healthy"
    };
    println!("node {}: {state}", s(&h["node"]));
    print_table(&[
        vec![
            "phase".into(),
            format!(
                "configured {}, effective {}",
                s(&h["configured_phase"]),
                s(&h["effective_phase"])
            ),
        ],
        vec![
            "trip".into(),
            match h["trip"].is_null() {
                true => "armed".into(),
                false => format!(
                    "TRIPPED at {} to {}: {}",
                    s(&h["trip"]["at"]),
                    s(&h["trip"]["effective_phase"]),
                    s(&h["trip"]["reason"])
                ),
            },
        ],
        vec!["perl".into(), backend(&h["perl"])],
        vec!["rust".into(), backend(&h["rust"])],
        vec![
            "config".into(),
            format!(
                "{} (digest {})",
                s(&h["config_file"]),
                s(&h["config_digest"])
            ),
        ],
        vec![
            "last reload".into(),
            match s(&h["last_reload"]["result"]).as_str() {
                "" | "-" => "none since start".into(),
                r => format!(
                    "{r} at {} {}",
                    s(&h["last_reload"]["at"]),
                    h["last_reload"]["error"].as_str().unwrap_or("")
                ),
            },
        ],
        vec![
            "certificate".into(),
            format!(
                "{} until {} ({} days)",
                s(&h["certificate_subject"]),
                s(&h["certificate_not_after"]),
                s(&h["certificate_days_left"])
            ),
        ],
        vec![
            "last 15 min".into(),
            format!(
                "{} fallbacks, {} mismatches",
                s(&h["fallbacks_15m"]),
                s(&h["mismatches_15m"])
            ),
        ],
    ]);
    for p in h["problems"].as_array().into_iter().flatten() {
        println!("problem: {}", s(p));
    }
}

async fn run(cli: Cli) -> ExitCode {
    let sock = &cli.socket;
    let result = match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "migration-ctl", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Health => call(sock, Method::GET, "/health", None).await.map(|b| {
            let h: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&h).unwrap_or_default());
            } else {
                print_health(&h);
            }
            if h["degraded"].as_bool() == Some(false) { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }),
        Command::Phase(PhaseCommand::Get) => call(sock, Method::GET, "/phase", None).await.map(|b| {
            let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                println!("node {}: configured {}, effective {}", s(&v["node"]), s(&v["configured"]), s(&v["effective"]));
                let mut rows = vec![vec!["NODE".into(), "PHASE".into()], vec!["(cluster default)".into(), s(&v["cluster_default"])]];
                for (n, p) in v["nodes"].as_object().into_iter().flatten() {
                    rows.push(vec![n.clone(), s(p)]);
                }
                print_table(&rows);
            }
            ExitCode::SUCCESS
        }),
        Command::Phase(PhaseCommand::Set { phase, node, cluster }) => {
            // Read the file's digest first: the gateway refuses the edit if
            // someone else changed the file in between.
            match call(sock, Method::GET, "/phase", None).await {
                Err(e) => Err(e),
                Ok(b) => {
                    let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                    let mut req = json!({"phase": phase, "cluster": cluster});
                    if let Some(n) = node {
                        req["node"] = json!(n);
                    }
                    if let Some(d) = v["file_digest"].as_str() {
                        req["expect_digest"] = json!(d);
                    }
                    call(sock, Method::POST, "/phase", Some(req)).await.map(|b| {
                        let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                        if cli.json {
                            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                        } else {
                            let target = if *cluster { "cluster default".into() } else { node.clone().unwrap_or_else(|| s(&v["node"])) };
                            println!("{target}: phase set to {phase}; this node is now configured {}, effective {}", s(&v["configured"]), s(&v["effective"]));
                        }
                        ExitCode::SUCCESS
                    })
                }
            }
        }
        Command::Trip(TripCommand::Status) => call(sock, Method::GET, "/trip", None).await.map(|b| {
            let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else if v["state"] == "tripped" {
                println!(
                    "TRIPPED at {}: {} → {}\nreason: {}\ntrace id: {}\nre-arm with: migration-ctl trip reset",
                    s(&v["trip"]["at"]), s(&v["trip"]["configured_phase"]), s(&v["trip"]["effective_phase"]), s(&v["trip"]["reason"]), s(&v["trip"]["trace_id"])
                );
            } else {
                println!("armed: configured {}, effective {}", s(&v["configured"]), s(&v["effective"]));
            }
            ExitCode::SUCCESS
        }),
        Command::Trip(TripCommand::Reset) => call(sock, Method::POST, "/trip/reset", None).await.map(|b| {
            let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else if v["lifted"].is_null() {
                println!("not tripped; phase {}", s(&v["effective"]));
            } else {
                println!("trip lifted; phase {} applies again", s(&v["effective"]));
            }
            ExitCode::SUCCESS
        }),
        Command::Evidence(EvidenceCommand::Summary { since, endpoint }) => {
            let mut path = format!("/evidence/summary?since={since}");
            if let Some(e) = endpoint {
                path.push_str(&format!("&endpoint={e}"));
            }
            call(sock, Method::GET, &path, None).await.map(|b| {
                let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                if cli.json {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    return ExitCode::SUCCESS;
                }
                let rows = v.as_array().cloned().unwrap_or_default();
                if rows.is_empty() {
                    println!("no evidence in the last {since}");
                    return ExitCode::SUCCESS;
                }
                let mut table = vec![vec!["COUNT".into(), "ENDPOINT".into(), "VERDICT".into(), "FINGERPRINT".into()]];
                for r in &rows {
                    table.push(vec![s(&r["count"]), s(&r["endpoint"]), s(&r["verdict"]), s(&r["fingerprint"])]);
                }
                print_table(&table);
                for r in rows.iter().filter(|r| !r["exemplar"].is_null()) {
                    println!("\n{} {} ({}):", s(&r["endpoint"]), s(&r["fingerprint"]), s(&r["verdict"]));
                    println!("{}", serde_json::to_string_pretty(&r["exemplar"]).unwrap_or_default());
                }
                ExitCode::SUCCESS
            })
        }
        Command::Diagnostics { output } => call(sock, Method::GET, "/diagnostics", None).await.map(|b| {
            let path = output.clone().unwrap_or_else(|| {
                let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                PathBuf::from(format!("pve-network-migration-diagnostics-{t}.tar.gz"))
            });
            match std::fs::write(&path, &b) {
                Ok(()) => {
                    if cli.json {
                        println!("{}", json!({"file": path, "bytes": b.len()}));
                    } else {
                        println!("wrote {} ({} bytes)", path.display(), b.len());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("migration-ctl: {}: {e}", path.display());
                    ExitCode::from(1)
                }
            }
        }),
    };
    match result {
        Ok(code) => code,
        Err(CallError::Unreachable(msg)) => {
            eprintln!("migration-ctl: {msg}");
            ExitCode::from(2)
        }
        Err(CallError::Refused(status, msg)) => {
            eprintln!("migration-ctl: {msg} ({status})");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match rt {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            eprintln!("migration-ctl: {e}");
            ExitCode::from(2)
        }
    }
}
