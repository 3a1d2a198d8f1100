//! `contract-test`: compare one endpoint (or a suite) of the Perl and the
//! Rust backend directly, outside the gateway, with the gateway's rules; and
//! re-check recorded mismatches (`contract-test replay`).
//!
//! Exit codes: 0 `match` / `type-only` / `noise` (replay: all fixed), 1
//! `mismatch` or `critical` (replay: some still mismatch), 2 error (bad
//! arguments, unknown route, unreachable backend, login failed).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand};
use pve_migration_certs::upstream::{UpstreamTrust, parse_fingerprint};
use pve_migration_rules::RuleSet;
use pve_network_migration::contract::{
    self, Backend, ContractError, Credentials, Outcome, Password, Prepared, ReplayFilter,
    ReplayItem, RequestSpec, Runner,
};
use serde_json::json;

const AFTER_HELP: &str = "\
PATHS
  --endpoint and suite paths are relative to /api2/json (/nodes/{node}/network,
  {node} is replaced by --node) or full /api2/json/... or /api2/extjs/... paths.
  Only migrated endpoints (a route in the rules) are accepted.

AUTHENTICATION (like proxmoxer)
  --token USER@REALM!TOKENID=SECRET (or --token-file FILE) sends
  'Authorization: PVEAPIToken=...'. --user USER@REALM logs in to each backend
  (POST /api2/json/access/ticket) with the password from --password-file FILE
  or the environment variable PVE_PASSWORD, then sends the PVEAuthCookie
  cookie and, on writes, the CSRFPreventionToken header. Passwords are never
  accepted as a flag value and never printed.

TRUST
  Each backend's certificate is verified against --ca (default
  /etc/pve/pve-root-ca.pem) and the URL's host name, or pinned with
  --perl-fingerprint / --rust-fingerprint (AA:BB:... as 'pveproxy' prints it).

WRITES
  A write (--method POST|PUT|DELETE) is refused unless --dry-run is given, and
  is then sent to both backends marked 'X-PVE-Dry-Run: 1', to Rust first and,
  after Rust answered, to Perl. pveproxy's Perl code does NOT know this marker
  and carries the write out for real: use --dry-run only against a Perl backend
  that honours the marker, or on a test system.

SUITE FILES (--suite FILE, repeatable)
  [[request]]
  name = \"bridges\"                 # optional label
  method = \"GET\"                   # default GET
  path = \"/nodes/{node}/network\"
  data = { type = \"bridge\" }       # query for GET/DELETE, form body for POST/PUT
  Values may be strings, numbers, booleans (sent as 1/0) or arrays (the key is
  repeated). Unknown keys are errors.

OUTPUT
  Per request: verdict, fingerprint, type-only count and the RFC 6902 patch
  from normalised Perl to normalised Rust. --json prints one JSON object per
  request. --output FILE writes one evidence record per request (JSON Lines,
  the gateway's format) that 'contract-test replay --evidence FILE' reads.

REPLAY
  contract-test replay --evidence DIR|FILE re-sends the GET exchanges recorded
  as mismatch or critical (the gateway's evidence directory, or a --output
  file) to both backends and reports which are fixed. Recorded writes are never
  re-sent; records whose path has <redacted> values are skipped with a note.

EXIT CODES
  0 match / type-only (replay: all fixed), 1 mismatch or critical (replay:
  some still mismatch), 2 error (bad arguments, unknown route, unreachable
  backend, login failed).

EXAMPLES
  contract-test --node pve1 --perl-url https://127.0.0.1:8006 \\
      --rust-url https://127.0.0.1:8016 --token 'root@pam!ct=...' \\
      --endpoint /nodes/{node}/network
  PVE_PASSWORD=... contract-test --user root@pam --perl-url ... --rust-url ... \\
      --suite network.toml --output results.jsonl
  contract-test --token-file /root/ct.token --perl-url ... --rust-url ... \\
      replay --evidence /var/lib/pve-network-migration/evidence --since 1d";

#[derive(Debug, Parser)]
#[command(
    name = "contract-test",
    version,
    about = "Compare the Perl and the Rust network API backends directly, with the gateway's contract rules",
    after_long_help = AFTER_HELP,
    group(ArgGroup::new("what").args(["endpoint", "suite"]).multiple(false)),
)]
struct Cli {
    /// API path to compare, e.g. /nodes/{node}/network (see PATHS in --help).
    #[arg(long, value_name = "PATH")]
    endpoint: Option<String>,
    /// HTTP method of --endpoint: GET, or POST/PUT/DELETE with --dry-run.
    #[arg(long, default_value = "GET", requires = "endpoint")]
    method: String,
    /// A parameter KEY=VALUE (repeatable): query for GET/DELETE, form body for POST/PUT.
    #[arg(long, value_name = "KEY=VALUE", requires = "endpoint")]
    data: Vec<String>,
    /// Send writes to both backends marked X-PVE-Dry-Run: 1. The Perl backend
    /// does not know the marker and carries the write out: only against a Perl
    /// backend that honours it, or on a test system.
    #[arg(long)]
    dry_run: bool,
    /// A suite file with [[request]] tables (repeatable; see SUITE FILES in --help).
    #[arg(long, value_name = "FILE")]
    suite: Vec<PathBuf>,
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Node name for {node} in paths [default: this host's name]; replay: only records of this node.
    #[arg(long, value_name = "NAME", global = true)]
    node: Option<String>,
    /// The Perl backend (pveproxy), e.g. https://127.0.0.1:8006.
    #[arg(long, value_name = "URL", global = true)]
    perl_url: Option<String>,
    /// The Rust backend, e.g. https://127.0.0.1:8016.
    #[arg(long, value_name = "URL", global = true)]
    rust_url: Option<String>,
    /// CA file verifying both backends [default: /etc/pve/pve-root-ca.pem].
    #[arg(long, value_name = "FILE", global = true)]
    ca: Option<PathBuf>,
    /// CA file for the Perl backend (overrides --ca).
    #[arg(
        long,
        value_name = "FILE",
        global = true,
        conflicts_with = "perl_fingerprint"
    )]
    perl_ca: Option<PathBuf>,
    /// CA file for the Rust backend (overrides --ca).
    #[arg(
        long,
        value_name = "FILE",
        global = true,
        conflicts_with = "rust_fingerprint"
    )]
    rust_ca: Option<PathBuf>,
    /// SHA-256 fingerprint (AA:BB:…) of the Perl backend's certificate, instead of a CA.
    #[arg(long, value_name = "FP", global = true)]
    perl_fingerprint: Option<String>,
    /// SHA-256 fingerprint (AA:BB:…) of the Rust backend's certificate, instead of a CA.
    #[arg(long, value_name = "FP", global = true)]
    rust_fingerprint: Option<String>,
    /// API token USER@REALM!TOKENID=SECRET.
    #[arg(long, value_name = "TOKEN", global = true, conflicts_with_all = ["token_file", "user"])]
    token: Option<String>,
    /// File whose first line is the API token USER@REALM!TOKENID=SECRET.
    #[arg(long, value_name = "FILE", global = true, conflicts_with = "user")]
    token_file: Option<PathBuf>,
    /// Log in as USER@REALM (password from --password-file or PVE_PASSWORD).
    #[arg(long, value_name = "USER@REALM", global = true)]
    user: Option<String>,
    /// File whose first line is the password of --user.
    #[arg(long, value_name = "FILE", global = true)]
    password_file: Option<PathBuf>,
    /// Operator rule file layered over the shipped defaults (repeatable, in order).
    #[arg(long, value_name = "FILE", global = true)]
    rules: Vec<PathBuf>,
    /// Write one evidence record per request to FILE (JSON Lines, replaced).
    #[arg(long, value_name = "FILE", global = true)]
    output: Option<PathBuf>,
    /// Keep the redacted request body and both answers in the --output records.
    #[arg(long, global = true, requires = "output")]
    with_bodies: bool,
    /// Print one JSON object per request instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds allowed for each answer (connect, TLS, request, body).
    #[arg(long, value_name = "SECONDS", default_value_t = 30, global = true)]
    timeout: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Re-send recorded mismatching GET exchanges to both backends and report which are fixed.
    Replay {
        /// The gateway's evidence directory, or a file written by --output.
        #[arg(long, value_name = "DIR|FILE")]
        evidence: PathBuf,
        /// Only records of this period, e.g. 15m, 2h, 1d.
        #[arg(long, value_name = "PERIOD")]
        since: Option<String>,
        /// Only records of this endpoint id (e.g. node.network.list).
        #[arg(long, value_name = "ID")]
        endpoint: Option<String>,
    },
}

/// The end of a run: an exit code, or an error message (exit 2).
type Fatal = ContractError;

fn credentials(c: &Common) -> Result<Credentials, Fatal> {
    if let Some(t) = &c.token {
        return Credentials::token(t);
    }
    if let Some(f) = &c.token_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| ContractError::Usage(format!("--token-file {}: {e}", f.display())))?;
        return Credentials::token(text.lines().next().unwrap_or(""));
    }
    if let Some(user) = &c.user {
        let password = match &c.password_file {
            Some(f) => Password::from_file(f)?,
            None => match std::env::var("PVE_PASSWORD") {
                Ok(p) if !p.is_empty() => Password::new(p),
                _ => {
                    return Err(ContractError::Usage(format!(
                        "--user {user}: no password: give --password-file FILE or set PVE_PASSWORD"
                    )));
                }
            },
        };
        return Credentials::user(user, password);
    }
    if c.password_file.is_some() {
        return Err(ContractError::Usage(
            "--password-file needs --user USER@REALM".into(),
        ));
    }
    Err(ContractError::Usage(
        "no credentials: give --token USER@REALM!TOKENID=SECRET (or --token-file FILE), \
         or --user USER@REALM with --password-file FILE or PVE_PASSWORD"
            .into(),
    ))
}

fn trust(
    ca: Option<&PathBuf>,
    side_ca: Option<&PathBuf>,
    fp: Option<&String>,
    flag: &str,
) -> Result<UpstreamTrust, Fatal> {
    if let Some(fp) = fp {
        return parse_fingerprint(fp)
            .map(UpstreamTrust::Fingerprint)
            .map_err(|e| ContractError::Usage(format!("--{flag}-fingerprint: {e}")));
    }
    Ok(UpstreamTrust::CaFile(
        side_ca
            .or(ca)
            .cloned()
            .unwrap_or_else(|| pve_migration_certs::pveproxy::CLUSTER_CA.into()),
    ))
}

fn runner(c: &Common) -> Result<Runner, Fatal> {
    let rules = if c.rules.is_empty() {
        RuleSet::with_defaults()
    } else {
        RuleSet::from_paths(&c.rules).map_err(|e| ContractError::Usage(format!("--rules: {e}")))?
    };
    let timeout = Duration::from_secs(c.timeout.max(1));
    let (Some(perl_url), Some(rust_url)) = (&c.perl_url, &c.rust_url) else {
        return Err(ContractError::Usage(
            "both --perl-url URL and --rust-url URL are required".into(),
        ));
    };
    let perl_trust = trust(
        c.ca.as_ref(),
        c.perl_ca.as_ref(),
        c.perl_fingerprint.as_ref(),
        "perl",
    )?;
    let rust_trust = trust(
        c.ca.as_ref(),
        c.rust_ca.as_ref(),
        c.rust_fingerprint.as_ref(),
        "rust",
    )?;
    Ok(Runner {
        rules,
        perl: Backend::new("perl", perl_url, &perl_trust, timeout)?,
        rust: Backend::new("rust", rust_url, &rust_trust, timeout)?,
        keep_bodies: c.with_bodies,
    })
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

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn side_line(name: &str, url: &str, s: &pve_network_migration::evidence::SideRecord) -> String {
    format!(
        "{name:<5} {url}  {} {}  {:.1} ms{}",
        s.status,
        s.reason.trim_end(),
        s.latency_ms,
        if s.dry_run { "  (dry-run)" } else { "" }
    )
}

fn print_outcome(o: &Outcome) {
    println!("{} {} → {} ({})", o.method, o.path, o.endpoint, o.class);
    println!("{}", side_line("perl", &o.perl_url, &o.perl));
    println!("{}", side_line("rust", &o.rust_url, &o.rust));
    match &o.critical {
        Some(k) => println!("verdict      {} ({k})", o.verdict),
        None => println!("verdict      {}", o.verdict),
    }
    println!("fingerprint  {}", o.fingerprint);
    if o.type_only > 0 {
        println!(
            "type-only    {} (Perl scalar representations: {})",
            o.type_only,
            o.type_only_summary()
        );
    } else {
        println!("type-only    0");
    }
    if o.patch.as_array().is_some_and(|a| !a.is_empty()) {
        println!("patch (RFC 6902, normalised Perl → normalised Rust):");
        println!("{}", pretty(&o.patch));
    }
}

fn print_suite(results: &[Result<Outcome, ContractError>], specs: &[Prepared]) {
    let mut rows = vec![
        [
            "#",
            "METHOD",
            "PATH",
            "ENDPOINT",
            "VERDICT",
            "PERL",
            "RUST",
            "TYPE-ONLY",
            "FINGERPRINT",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (i, (r, p)) in results.iter().zip(specs).enumerate() {
        let label = p.name.clone().unwrap_or_else(|| (i + 1).to_string());
        rows.push(match r {
            Ok(o) => vec![
                label,
                o.method.clone(),
                o.path.clone(),
                o.endpoint.clone(),
                o.verdict.clone(),
                o.perl.status.to_string(),
                o.rust.status.to_string(),
                o.type_only.to_string(),
                o.fingerprint.clone(),
            ],
            Err(_) => vec![
                label,
                p.method.to_string(),
                p.path_and_query.clone(),
                p.endpoint.clone(),
                "ERROR".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ],
        });
    }
    print_table(&rows);
    for (i, (r, p)) in results.iter().zip(specs).enumerate() {
        let label = p.name.clone().unwrap_or_else(|| (i + 1).to_string());
        match r {
            Ok(o) if o.exit_code() > 0 => {
                println!("\n#{label}:");
                print_outcome(o);
            }
            Ok(_) => {}
            Err(e) => println!("\n#{label}: error: {e}"),
        }
    }
}

fn write_output(
    path: &std::path::Path,
    records: &[pve_network_migration::evidence::EvidenceRecord],
) -> Result<(), Fatal> {
    let mut text = Vec::new();
    for r in records {
        serde_json::to_writer(&mut text, r).map_err(|e| ContractError::Usage(e.to_string()))?;
        text.push(b'\n');
    }
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(&text)?;
        f.sync_all()
    };
    write().map_err(|e| ContractError::Usage(format!("--output {}: {e}", path.display())))
}

fn warn_writes(prepared: &[Prepared], runner: &Runner) {
    for p in prepared.iter().filter(|p| p.method != http::Method::GET) {
        eprintln!(
            "contract-test: {} {} ({}) is sent marked X-PVE-Dry-Run: 1 to rust {} and then to perl {}; \
             a Perl backend that does not honour the marker carries it out for real",
            p.method,
            p.path_and_query,
            p.endpoint,
            runner.rust.url(),
            runner.perl.url()
        );
    }
}

async fn compare(cli: Cli) -> Result<u8, Fatal> {
    let c = &cli.common;
    let specs: Vec<RequestSpec> = if let Some(path) = &cli.endpoint {
        let data = cli
            .data
            .iter()
            .map(|d| contract::parse_data(d))
            .collect::<Result<_, _>>()?;
        vec![RequestSpec {
            name: None,
            method: cli.method.clone(),
            path: path.clone(),
            data,
        }]
    } else if !cli.suite.is_empty() {
        let mut all = Vec::new();
        for f in &cli.suite {
            all.extend(contract::read_suite(f)?);
        }
        all
    } else {
        return Err(ContractError::Usage(
            "nothing to compare: give --endpoint PATH or --suite FILE (or the replay command); see --help"
                .into(),
        ));
    };
    let credentials = credentials(c)?;
    let mut runner = runner(c)?;
    let node = match &c.node {
        Some(n) => n.clone(),
        None => contract::local_node_name().ok_or_else(|| {
            ContractError::Usage("--node NAME is needed (the host name could not be read)".into())
        })?,
    };
    let prepared: Vec<Prepared> = specs
        .iter()
        .map(|s| s.prepare(&runner.rules, &node, cli.dry_run))
        .collect::<Result<_, _>>()?;
    warn_writes(&prepared, &runner);
    runner.login(&credentials).await?;

    let mut results = Vec::with_capacity(prepared.len());
    for p in &prepared {
        results.push(runner.run(p).await);
    }
    finish(c, &node, &results, &prepared, !cli.suite.is_empty())
}

fn finish(
    c: &Common,
    node: &str,
    results: &[Result<Outcome, ContractError>],
    prepared: &[Prepared],
    table: bool,
) -> Result<u8, Fatal> {
    if let Some(out) = &c.output {
        let digest = contract::rules_digest(&c.rules);
        let records: Vec<_> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|o| o.to_record(node, &digest))
            .collect();
        write_output(out, &records)?;
    }
    if c.json {
        for (r, p) in results.iter().zip(prepared) {
            let line = match r {
                Ok(o) => serde_json::to_string(o).unwrap_or_default(),
                Err(e) => json!({
                    "method": p.method.as_str(),
                    "path": p.path_and_query,
                    "endpoint": p.endpoint,
                    "verdict": "error",
                    "error": e.to_string(),
                })
                .to_string(),
            };
            println!("{line}");
        }
    } else if table {
        print_suite(results, prepared);
    } else {
        for r in results {
            match r {
                Ok(o) => print_outcome(o),
                Err(e) => eprintln!("contract-test: {e}"),
            }
        }
    }
    if table || c.json {
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            eprintln!("contract-test: {e}");
        }
    }
    Ok(results
        .iter()
        .map(|r| r.as_ref().map_or(2, Outcome::exit_code))
        .max()
        .unwrap_or(0))
}

async fn replay(
    c: &Common,
    evidence: &std::path::Path,
    since: Option<&str>,
    endpoint: Option<&str>,
) -> Result<u8, Fatal> {
    let credentials = credentials(c)?;
    let mut runner = runner(c)?;
    let since = match since {
        None => None,
        Some(s) => Some(contract::rfc3339_ago(
            pve_network_migration::admin::parse_since(s).ok_or_else(|| {
                ContractError::Usage(format!("--since '{s}': expected e.g. 15m, 2h, 1d"))
            })?,
        )),
    };
    let loaded = contract::load_evidence(evidence)?;
    if loaded.skipped_lines > 0 {
        eprintln!(
            "contract-test: {}: {} unreadable line(s) skipped",
            evidence.display(),
            loaded.skipped_lines
        );
    }
    let filter = ReplayFilter {
        since,
        node: c.node.clone(),
        endpoint: endpoint.map(str::to_owned),
    };
    let (items, skips) = contract::replay_candidates(&loaded.records, &filter);
    for s in &skips {
        if c.json {
            println!(
                "{}",
                json!({"endpoint": s.endpoint, "method": s.method, "path": s.path, "skipped": s.reason})
            );
        } else {
            eprintln!(
                "note: skipped {} {} ({}): {}",
                s.method, s.path, s.endpoint, s.reason
            );
        }
    }
    if items.is_empty() {
        if !c.json {
            println!(
                "no recorded mismatching GET exchanges to replay in {} ({} records read)",
                evidence.display(),
                loaded.records.len()
            );
        }
        if let Some(out) = &c.output {
            write_output(out, &[])?;
        }
        return Ok(0);
    }
    // Route every item first (the rules may have changed since recording).
    let prepared: Vec<Result<Prepared, ContractError>> = items
        .iter()
        .map(|i| {
            RequestSpec {
                name: None,
                method: "GET".into(),
                path: i.path.clone(),
                data: Vec::new(),
            }
            .prepare(&runner.rules, "", false)
        })
        .collect();
    runner.login(&credentials).await?;
    let mut results: Vec<Result<Outcome, ContractError>> = Vec::with_capacity(items.len());
    for p in &prepared {
        results.push(match p {
            Ok(p) => runner.run(p).await,
            Err(e) => Err(ContractError::Usage(e.to_string())),
        });
    }
    if let Some(out) = &c.output {
        let digest = contract::rules_digest(&c.rules);
        let records: Vec<_> = results
            .iter()
            .zip(&items)
            .filter_map(|(r, i)| r.as_ref().ok().map(|o| o.to_record(&i.node, &digest)))
            .collect();
        write_output(out, &records)?;
    }
    let state = |i: &ReplayItem, r: &Result<Outcome, ContractError>| match r {
        Err(_) => "error",
        Ok(o) if o.exit_code() == 0 => "fixed",
        Ok(o) if o.fingerprint == i.fingerprint => "still mismatch",
        Ok(_) => "changed",
    };
    if c.json {
        for (i, r) in items.iter().zip(&results) {
            let mut v = json!({
                "endpoint": i.endpoint,
                "path": i.path,
                "records": i.records,
                "last_seen": i.last_seen,
                "old_verdict": i.verdict,
                "old_fingerprint": i.fingerprint,
                "state": state(i, r),
            });
            match r {
                Ok(o) => {
                    v["verdict"] = json!(o.verdict);
                    v["fingerprint"] = json!(o.fingerprint);
                    v["fixed"] = json!(o.exit_code() == 0);
                    v["patch"] = o.patch.clone();
                }
                Err(e) => {
                    v["verdict"] = json!("error");
                    v["error"] = json!(e.to_string());
                }
            }
            println!("{v}");
        }
    } else {
        let mut rows = vec![
            [
                "ENDPOINT",
                "PATH",
                "RECORDS",
                "OLD VERDICT",
                "NEW VERDICT",
                "OLD FINGERPRINT",
                "NEW FINGERPRINT",
                "STATE",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for (i, r) in items.iter().zip(&results) {
            let (verdict, fp) = match r {
                Ok(o) => (o.verdict.clone(), o.fingerprint.clone()),
                Err(_) => ("error".into(), "-".into()),
            };
            rows.push(vec![
                i.endpoint.clone(),
                i.path.clone(),
                i.records.to_string(),
                i.verdict.clone(),
                verdict,
                i.fingerprint.clone(),
                fp,
                state(i, r).to_owned(),
            ]);
        }
        print_table(&rows);
        for (i, r) in items.iter().zip(&results) {
            if let Ok(o) = r
                && o.exit_code() > 0
            {
                println!("\n{} {}:", i.endpoint, i.path);
                print_outcome(o);
            }
        }
        let fixed = results
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|o| o.exit_code() == 0))
            .count();
        println!("\n{fixed} of {} fixed", items.len());
    }
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        eprintln!("contract-test: {e}");
    }
    Ok(results
        .iter()
        .map(|r| r.as_ref().map_or(2, Outcome::exit_code))
        .max()
        .unwrap_or(0))
}

async fn run(cli: Cli) -> Result<u8, Fatal> {
    match &cli.command {
        Some(Command::Replay {
            evidence,
            since,
            endpoint,
        }) => {
            if cli.endpoint.is_some() || !cli.suite.is_empty() || cli.dry_run {
                return Err(ContractError::Usage(
                    "replay takes no --endpoint, --suite or --dry-run (it re-sends recorded GETs)"
                        .into(),
                ));
            }
            replay(&cli.common, evidence, since.as_deref(), endpoint.as_deref()).await
        }
        None => compare(cli).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match rt {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(ContractError::Usage(e.to_string())),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("contract-test: {e}");
            ExitCode::from(2)
        }
    }
}
