//! PVE tasks: the UPID, the task log where PVE's own task API finds it, and
//! the `active` / `index` lists.
//!
//! * UPID: `UPID:NODE:PID:PSTART:STARTTIME:TYPE:ID:USER:` with PID, PSTART
//!   (the process start in clock ticks since boot, field 22 of
//!   `/proc/PID/stat`) and STARTTIME (Unix time) as at least 8 upper-case hex
//!   digits. PVE's task API calls a task running while a process with that
//!   PID and start time exists, so the worker is a real process of its own.
//! * Log: `/var/log/pve/tasks/X/UPID…`, X the last hex digit of STARTTIME,
//!   mode 0640, owned by `www-data` when that user exists. The last line is
//!   `TASK OK`, `TASK ERROR: message` or `TASK WARNINGS: N`.
//! * `active`: `UPID 0` while running; when done `UPID 1 ENDTIME STATUS`;
//!   finished tasks are appended to `index` as `UPID ENDTIME STATUS` — under
//!   `/var/log/pve/tasks/.active.lock`, the lock PVE takes for the same
//!   files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pve_network_core::fs::{NodePath, lock, write_atomic};

/// A decoded UPID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upid {
    /// Node name.
    pub node: String,
    /// Worker process id.
    pub pid: u32,
    /// Worker process start (clock ticks since boot).
    pub pstart: u64,
    /// Task start (Unix time).
    pub starttime: i64,
    /// Worker type (`srvreload`).
    pub worker_type: String,
    /// Worker id (`networking`).
    pub id: String,
    /// The user (or token id) the task runs for.
    pub user: String,
}

impl Upid {
    /// The UPID string.
    pub fn encode(&self) -> String {
        format!(
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.worker_type, self.id, self.user
        )
    }

    /// Parse a UPID string (PVE's `upid_decode`).
    pub fn decode(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("UPID:")?.strip_suffix(':')?;
        let f: Vec<&str> = rest.split(':').collect();
        let [node, pid, pstart, start, wtype, id, user] = f.as_slice() else {
            return None;
        };
        let hex = |s: &str, min: usize, max: usize| {
            (s.len() >= min && s.len() <= max && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u64::from_str_radix(s, 16).ok())
                .flatten()
        };
        let bad = |s: &str| s.contains(|c: char| c == '/' || c.is_whitespace());
        if node.is_empty()
            || wtype.is_empty()
            || user.is_empty()
            || bad(wtype)
            || bad(id)
            || bad(user)
        {
            return None;
        }
        Some(Self {
            node: (*node).to_string(),
            pid: u32::try_from(hex(pid, 8, 8)?).ok()?,
            pstart: hex(pstart, 8, 9)?,
            starttime: i64::try_from(hex(start, 8, 8)?).ok()?,
            worker_type: (*wtype).to_string(),
            id: (*id).to_string(),
            user: (*user).to_string(),
        })
    }

    /// The log file below the tasks directory.
    pub fn log_path(&self, tasks_dir: &Path) -> PathBuf {
        let encoded = self.encode();
        let start = format!("{:08X}", self.starttime);
        let sub = &start[start.len() - 1..];
        tasks_dir.join(sub).join(encoded)
    }
}

/// Field 22 of `/proc/PID/stat` (the start time in clock ticks), 0 when it
/// cannot be read (as PVE's `read_proc_starttime`).
pub fn proc_starttime(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // the command name is in parentheses and may contain anything: count
    // fields after the last ')'
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    // after ')' come field 3 (state) onwards; starttime is field 22
    after
        .split_ascii_whitespace()
        .nth(22 - 3)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The uid and gid of `www-data` in `ROOT/etc/passwd`.
fn www_data(root: &Path) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"www-data"))
            .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
            .flatten()
    })
}

/// Creates the task log (fails if it exists), mode 0640, handed to
/// `www-data` like PVE's when running as root.
///
/// # Errors
///
/// When the directory or the file cannot be created.
pub fn create_log(root: &Path, tasks_dir: &Path, upid: &Upid) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = upid.log_path(tasks_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&path)?;
    if let Some((uid, _)) = www_data(root) {
        // only root may hand a file over; elsewhere the log stays ours
        let _ = std::os::unix::fs::chown(&path, Some(uid), None);
    }
    Ok(file)
}

/// How a task ended, as its last log line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskEnd {
    /// `TASK OK`.
    Ok,
    /// `TASK WARNINGS: N`.
    Warnings(u32),
    /// `TASK ERROR: message`.
    Error(String),
}

impl TaskEnd {
    /// The last line of the log (without newline).
    pub fn log_line(&self) -> String {
        match self {
            TaskEnd::Ok => "TASK OK".into(),
            TaskEnd::Warnings(n) => format!("TASK WARNINGS: {n}"),
            TaskEnd::Error(m) => format!("TASK ERROR: {}", m.trim_end_matches('\n')),
        }
    }

    /// The status PVE's task list shows (`OK`, `WARNINGS: N`, the error).
    pub fn status(&self) -> String {
        match self {
            TaskEnd::Ok => "OK".into(),
            TaskEnd::Warnings(n) => format!("WARNINGS: {n}"),
            TaskEnd::Error(m) => m.trim_end_matches('\n').to_string(),
        }
    }
}

/// PVE's `read_status`: the end of a task from its log's last line.
pub fn read_status(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return "unexpected status".into();
    };
    let last = text
        .trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .unwrap_or("");
    if last == "TASK OK" {
        "OK".into()
    } else if let Some(m) = last.strip_prefix("TASK ERROR: ") {
        m.to_string()
    } else if let Some(n) = last.strip_prefix("TASK WARNINGS: ") {
        format!("WARNINGS: {n}")
    } else {
        "unexpected status".into()
    }
}

/// Writes the end line of a task log.
///
/// # Errors
///
/// When the log cannot be written.
pub fn finish_log(log: &mut impl Write, end: &TaskEnd) -> std::io::Result<()> {
    writeln!(log, "{}", end.log_line())?;
    log.flush()
}

/// One line of the `active` file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ActiveLine {
    upid: String,
    saved: bool,
    end: Option<(i64, String)>,
}

fn parse_active(text: &str) -> Vec<ActiveLine> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, ' ');
            let upid = parts.next()?.to_string();
            Upid::decode(&upid)?;
            let saved = match parts.next()? {
                "0" => false,
                "1" => true,
                _ => return None,
            };
            let end = match (parts.next(), parts.next()) {
                (Some(t), status) if t.len() == 8 => Some((
                    i64::from_str_radix(t, 16).ok()?,
                    status.unwrap_or("").trim_start().to_string(),
                )),
                (None, _) => None,
                _ => return None,
            };
            Some(ActiveLine { upid, saved, end })
        })
        .collect()
}

fn render_active(lines: &[ActiveLine]) -> String {
    let mut out = String::new();
    for l in lines {
        match &l.end {
            None => out.push_str(&format!("{} {}\n", l.upid, u8::from(l.saved))),
            Some((t, s)) if s.is_empty() => {
                out.push_str(&format!("{} {} {t:08X}\n", l.upid, u8::from(l.saved)));
            }
            Some((t, s)) => {
                out.push_str(&format!("{} {} {t:08X} {s}\n", l.upid, u8::from(l.saved)))
            }
        }
    }
    out
}

/// The task lists of one node.
#[derive(Clone, Debug)]
pub struct TaskLists {
    dir: PathBuf,
}

impl TaskLists {
    /// The lists in `tasks_dir` (`/var/log/pve/tasks`).
    pub fn new(tasks_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: tasks_dir.into(),
        }
    }

    fn edit(&self, change: impl FnOnce(&mut Vec<ActiveLine>)) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let lock_path = NodePath {
            local: self.dir.join(".active.lock"),
            host: "/var/log/pve/tasks/.active.lock",
        };
        let _lock = lock(&lock_path, Duration::from_secs(10))
            .map_err(|e| std::io::Error::other(e.message))?;
        let active = self.dir.join("active");
        let text = std::fs::read_to_string(&active).unwrap_or_default();
        let mut lines = parse_active(&text);
        change(&mut lines);
        // archive what finished and is not in the index yet
        let mut index = String::new();
        for l in lines.iter_mut() {
            if let (Some((t, s)), false) = (&l.end, l.saved) {
                index.push_str(&format!("{} {t:08X} {s}\n", l.upid));
                l.saved = true;
            }
        }
        if !index.is_empty() {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("index"))?;
            f.write_all(index.as_bytes())?;
        }
        // running tasks first, then at most 25 in all with the newest
        // finished ones
        let (running, mut done): (Vec<_>, Vec<_>) =
            lines.into_iter().partition(|l| l.end.is_none());
        done.sort_by_key(|l| std::cmp::Reverse(Upid::decode(&l.upid).map_or(0, |u| u.starttime)));
        let keep = 25usize.saturating_sub(running.len());
        let mut all = running;
        all.extend(done.into_iter().take(keep));
        let active_path = NodePath {
            local: active,
            host: "/var/log/pve/tasks/active",
        };
        write_atomic(&active_path, render_active(&all).as_bytes())
            .map_err(|e| std::io::Error::other(e.message))
    }

    /// Lists a task that has just started.
    ///
    /// # Errors
    ///
    /// When the lists cannot be written.
    pub fn started(&self, upid: &str) -> std::io::Result<()> {
        self.edit(|lines| {
            if !lines.iter().any(|l| l.upid == upid) {
                lines.push(ActiveLine {
                    upid: upid.to_string(),
                    saved: false,
                    end: None,
                });
            }
        })
    }

    /// Records the end of a task (and archives it to `index`).
    ///
    /// # Errors
    ///
    /// When the lists cannot be written.
    pub fn finished(&self, upid: &str, endtime: i64, status: &str) -> std::io::Result<()> {
        self.edit(|lines| {
            let entry = ActiveLine {
                upid: upid.to_string(),
                saved: false,
                end: Some((endtime, status.to_string())),
            };
            match lines.iter_mut().find(|l| l.upid == upid) {
                Some(l) if l.end.is_none() => *l = entry,
                Some(_) => {}
                None => lines.push(entry),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upid() -> Upid {
        Upid {
            node: "pve".into(),
            pid: 0x7C2F,
            pstart: 0x1D545,
            starttime: 0x6B0F_2D7F,
            worker_type: "srvreload".into(),
            id: "networking".into(),
            user: "root@pam!ci".into(),
        }
    }

    #[test]
    fn upid_round_trip_and_log_path() {
        let u = upid();
        let s = u.encode();
        assert_eq!(
            s,
            "UPID:pve:00007C2F:0001D545:6B0F2D7F:srvreload:networking:root@pam!ci:"
        );
        assert_eq!(Upid::decode(&s), Some(u.clone()));
        assert_eq!(u.log_path(Path::new("/t")), Path::new("/t/F").join(&s));
        assert_eq!(Upid::decode("UPID:pve:7C2F:0001D545:6B0F2D7F:a:b:c:"), None);
        assert_eq!(
            Upid::decode("UPID:pve:00007C2F:0001D545:6B0F2D7F:a:b:c"),
            None
        );
    }

    #[test]
    fn own_process_start_time() {
        let me = proc_starttime(std::process::id());
        assert!(me > 0);
        assert_eq!(proc_starttime(std::process::id()), me);
        assert_eq!(proc_starttime(u32::MAX), 0);
    }

    #[test]
    fn active_and_index_like_pve() {
        let dir = tempfile::tempdir().unwrap();
        let lists = TaskLists::new(dir.path());
        let a = upid().encode();
        lists.started(&a).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("active")).unwrap(),
            format!("{a} 0\n")
        );
        lists.finished(&a, 0x6B0F_2D80, "OK").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("active")).unwrap(),
            format!("{a} 1 6B0F2D80 OK\n")
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("index")).unwrap(),
            format!("{a} 6B0F2D80 OK\n")
        );
        // archived once only
        lists.finished(&a, 0x6B0F_2D81, "OK").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("index"))
                .unwrap()
                .lines()
                .count(),
            1
        );
    }

    #[test]
    fn status_from_the_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        for (text, status) in [
            ("x\nTASK OK\n", "OK"),
            (
                "TASK ERROR: command 'ifreload -a' failed: exit code 1\n",
                "command 'ifreload -a' failed: exit code 1",
            ),
            ("TASK WARNINGS: 2\n", "WARNINGS: 2"),
            ("half", "unexpected status"),
        ] {
            std::fs::write(&p, text).unwrap();
            assert_eq!(read_status(&p), status);
        }
        assert_eq!(read_status(&dir.path().join("none")), "unexpected status");
    }
}
