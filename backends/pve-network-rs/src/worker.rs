//! Apply tasks as processes of their own, as PVE forks them.
//!
//! PVE's task API considers a task running while a process with the PID and
//! start time of its UPID exists, and reads its end from the log's last
//! line. So the apply runs in a child process (the daemon's binary started
//! as `pve-network-rs-daemon task-worker …`, in a process group of its own):
//!
//! 1. the daemon takes the start time and starts the worker;
//! 2. the worker builds its UPID from its own PID and start time, creates the
//!    task log, prints the UPID on stdout (or `ERROR: …`) and runs the
//!    [`NetworkApplier`];
//! 3. the daemon lists the task in `active` and answers with the UPID; when
//!    the worker exits it records the end in `active` and `index`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pve_network_core::ApiError;
use pve_network_core::api::ApplyRequest;

use crate::apply::{NetworkApplier, worker_args};
use crate::links::LinkSource;
use crate::paths::HostPaths;
use crate::task::{TaskLists, Upid, create_log, finish_log, proc_starttime, read_status};

/// The name of the worker mode of the daemon's binary.
pub const WORKER_COMMAND: &str = "task-worker";

/// How long the daemon waits for a worker to report its UPID.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Starts apply workers.
#[derive(Clone, Debug)]
pub struct TaskSpawner {
    exe: PathBuf,
    paths: HostPaths,
    links: LinkSource,
    finish_wait: Duration,
}

/// How long [`TaskSpawner::start`] waits for a task to finish before it
/// answers with the UPID of a task still running.
pub const FINISH_WAIT: Duration = Duration::from_secs(10);

/// The first line `ifreload -V` prints.
///
/// # Errors
///
/// PVE's `command 'ifreload -V' failed: exit code N` when it cannot be run
/// or fails.
pub fn ifreload_version(exe: &Path) -> Result<Option<String>, ApiError> {
    let out = Command::new(exe)
        .arg("-V")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|_| ApiError::internal("command 'ifreload -V' failed: exit code 1"))?;
    if !out.status.success() {
        return Err(ApiError::internal(format!(
            "command 'ifreload -V' failed: exit code {}",
            out.status.code().unwrap_or(1)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string))
}

/// The UPID a dry-run apply answers with: the shape of a real one (this
/// process's PID and start time, now), no task behind it.
pub fn dry_run_upid(node: &str, user: &str) -> String {
    let pid = std::process::id();
    Upid {
        node: node.to_string(),
        pid,
        pstart: proc_starttime(pid),
        starttime: now(),
        worker_type: "srvreload".into(),
        id: "networking".into(),
        user: user.to_string(),
    }
    .encode()
}

impl TaskSpawner {
    /// Workers are `exe task-worker …` for the host `paths`.
    pub fn new(exe: impl Into<PathBuf>, paths: HostPaths, links: LinkSource) -> Self {
        Self {
            exe: exe.into(),
            paths,
            links,
            finish_wait: FINISH_WAIT,
        }
    }

    /// Waits at most `wait` for a started task to finish before answering.
    pub fn with_finish_wait(mut self, wait: Duration) -> Self {
        self.finish_wait = wait;
        self
    }

    /// Starts an apply for `user` and returns its UPID once the worker runs.
    ///
    /// # Errors
    ///
    /// PVE's messages when the worker cannot be started (`got no worker upid
    /// - start worker failed`, `starting worker failed: …`).
    pub fn start(
        &self,
        node: &str,
        user: &str,
        request: &ApplyRequest,
    ) -> Result<String, ApiError> {
        let starttime = now();
        let mut cmd = Command::new(&self.exe);
        cmd.arg(WORKER_COMMAND)
            .args(worker_args(&self.paths, &self.links))
            .args([
                "--node",
                node,
                "--user",
                user,
                "--starttime",
                &starttime.to_string(),
            ]);
        if let Some(frr) = request.regenerate_frr {
            cmd.args(["--regenerate-frr", if frr { "1" } else { "0" }]);
        }
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| ApiError::internal(format!("starting worker failed: {e}")))?;
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            if let Some(out) = stdout {
                let _ = BufReader::new(out).read_line(&mut line);
            }
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(HANDSHAKE_TIMEOUT).unwrap_or_default();
        let line = line.trim_end();
        let upid = match Upid::decode(line) {
            Some(u) if u.starttime == starttime && u.node == node => line.to_string(),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ApiError::internal(match line.strip_prefix("ERROR: ") {
                    Some(e) => format!("starting worker failed: {e}"),
                    None if line.is_empty() => "got no worker upid - start worker failed".into(),
                    None => format!("got strange worker upid ('{line}') - start worker failed"),
                }));
            }
        };
        let lists = TaskLists::new(self.paths.tasks_dir());
        if let Err(e) = lists.started(&upid) {
            tracing::warn!(error = %e, "cannot list the task in /var/log/pve/tasks/active");
        }
        tracing::info!(%upid, %user, "starting task");
        let log = Upid::decode(&upid).map(|u| u.log_path(&self.paths.tasks_dir()));
        let reaped = upid.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let exit = child.wait();
            let status = log
                .as_deref()
                .map_or_else(|| "unexpected status".into(), read_status);
            if let Err(e) = lists.finished(&reaped, now(), &status) {
                tracing::warn!(error = %e, "cannot record the task's end");
            }
            tracing::info!(upid = %reaped, %status, exit = ?exit.ok(), "end task");
            let _ = done_tx.send(());
        });
        // PVE answers as soon as the worker runs. Waiting (boundedly) for it
        // to finish answers the same UPID, but a client or the gateway's
        // read-after-write check that reads right after the answer sees the
        // applied state; a reload slower than the bound is answered while
        // it still runs, as PVE would.
        let _ = done_rx.recv_timeout(self.finish_wait);
        Ok(upid)
    }
}

/// What the worker mode is given on its command line.
#[derive(Clone, Debug)]
pub struct WorkerArgs {
    /// The host root.
    pub root: PathBuf,
    /// Link state from a file instead of the kernel.
    pub links: Option<PathBuf>,
    /// Node name.
    pub node: String,
    /// The user the task runs for.
    pub user: String,
    /// The start time the daemon took.
    pub starttime: i64,
    /// `regenerate-frr`.
    pub regenerate_frr: Option<bool>,
}

/// The worker process: the task log, the UPID handshake, the apply.
/// Returns the process exit code.
pub fn run_worker(args: &WorkerArgs) -> i32 {
    let paths = HostPaths::new(&args.root);
    let links = args
        .links
        .clone()
        .map_or(LinkSource::Kernel, LinkSource::File);
    let pid = std::process::id();
    let upid = Upid {
        node: args.node.clone(),
        pid,
        pstart: proc_starttime(pid),
        starttime: args.starttime,
        worker_type: "srvreload".into(),
        id: "networking".into(),
        user: args.user.clone(),
    };
    let mut stdout = std::io::stdout();
    let mut log = match create_log(&args.root, &paths.tasks_dir(), &upid) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(stdout, "ERROR: unable to create output file - {e}");
            return 1;
        }
    };
    let encoded = upid.encode();
    let _ = writeln!(stdout, "{encoded}");
    let _ = stdout.flush();
    let applier = NetworkApplier::new(paths, links);
    let request = ApplyRequest {
        regenerate_frr: args.regenerate_frr,
    };
    let end = applier.run(&request, &encoded, now(), &mut log);
    let _ = finish_log(&mut log, &end);
    i32::from(!matches!(end, crate::task::TaskEnd::Ok))
}
