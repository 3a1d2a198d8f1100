//! Contract evidence and `migration.log`, written off the request path.
//!
//! Requests hand records to a [`Recorder`] through a bounded queue; a full
//! queue drops the record and counts it (`pve_network_evidence_dropped_total`)
//! instead of blocking a request. A dedicated writer thread appends:
//!
//! * evidence as JSON Lines in size-capped segments `segment-NNNNNNNNNNNN.jsonl`
//!   under `evidence.dir`, deleting the oldest segments beyond
//!   `evidence.max_bytes`;
//! * decision lines to `migration.log`;
//! * per-fingerprint counts and the first exemplar patches to
//!   `fingerprints.json` (rewritten atomically), so "the same difference" seen
//!   10 000 times is one entry with a count, and only the first
//!   `exemplars_per_fingerprint` records of a fingerprint carry the patch.
//!
//! Everything written is flushed and fsync'd at least once a second.
//! [`read_records`] skips a torn last line (a crash mid-write).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::EvidenceConfig;
use crate::metrics::Metrics;

/// The current UTC time as RFC 3339 with milliseconds
/// (`2026-11-26T15:43:59.856Z`). Written by hand: it runs for every log line
/// and evidence record, and a general formatter costs ten times as much.
pub fn now_rfc3339() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339_millis(since.as_secs(), since.subsec_millis())
}

/// RFC 3339 (UTC, milliseconds) for seconds since the Unix epoch.
fn rfc3339_millis(secs: u64, millis: u32) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar;
    // H. Hinnant's algorithm with eras of 400 years starting in March).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    for (v, at, width) in [
        (year, 0, 4),
        (month, 5, 2),
        (day, 8, 2),
        (hour, 11, 2),
        (minute, 14, 2),
        (second, 17, 2),
        (u64::from(millis), 20, 3),
    ] {
        let mut v = v;
        for d in out[at..at + width].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// One backend's side of a compared exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideRecord {
    /// HTTP status.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Time to the complete answer.
    pub latency_ms: f64,
    /// SHA-256 of the body (hex).
    pub body_sha256: String,
    /// Whether this side got the request as a dry-run.
    #[serde(default)]
    pub dry_run: bool,
}

/// Redacted bodies, kept only with `store_bodies = "on-mismatch"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBodies {
    /// The request body.
    pub request: serde_json::Value,
    /// Perl's answer.
    pub perl: serde_json::Value,
    /// Rust's answer.
    pub rust: serde_json::Value,
}

/// One compared (or skipped) exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// RFC 3339 time.
    pub time: String,
    /// W3C trace id.
    pub trace_id: String,
    /// Node name.
    pub node: String,
    /// Effective phase.
    pub phase: String,
    /// `exchange` (the client's request) or `read_after_write` (the check after a Rust write).
    pub kind: String,
    /// Endpoint id.
    pub endpoint: String,
    /// HTTP method.
    pub method: String,
    /// Path and query, secrets redacted.
    pub path: String,
    /// `perl`, `rust` or `none`.
    pub served_by: String,
    /// Whether Perl served after Rust failed as primary.
    pub used_fallback: bool,
    /// Why the fallback (or the Rust failure) happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// Perl's side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perl: Option<SideRecord>,
    /// Rust's side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust: Option<SideRecord>,
    /// `match`, `type-only`, `mismatch`, `critical`, `noise` or `skipped(reason)`.
    pub verdict: String,
    /// The critical kind, when critical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<String>,
    /// RFC 6902 patch from normalised Perl to normalised Rust (exemplars only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<serde_json::Value>,
    /// Representation-only differences (`perl-scalars`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub type_only: Vec<serde_json::Value>,
    /// Fingerprint of the difference.
    pub fingerprint: String,
    /// Whether this record carries the patch for its fingerprint.
    #[serde(default)]
    pub exemplar: bool,
    /// Digest of the configuration in force.
    pub config_digest: String,
    /// Redacted bodies (mismatches, when configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bodies: Option<StoredBodies>,
}

impl EvidenceRecord {
    /// Whether the verdict says the two sides really differ.
    pub fn is_mismatch(&self) -> bool {
        self.verdict == "mismatch" || self.verdict == "critical"
    }
}

/// Counts and exemplars of one fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FingerprintStats {
    /// Endpoint id.
    pub endpoint: String,
    /// Verdict of the first record.
    pub verdict: String,
    /// Records seen.
    pub count: u64,
    /// First seen (RFC 3339).
    pub first_seen: String,
    /// Last seen (RFC 3339).
    pub last_seen: String,
    /// The first patches (up to `exemplars_per_fingerprint`).
    pub exemplars: Vec<serde_json::Value>,
}

enum Item {
    Evidence(Box<EvidenceRecord>),
    Log(String),
    Flush(tokio::sync::oneshot::Sender<()>),
    /// Reopen migration.log (after logrotate moved it away).
    Reopen,
}

/// Items waiting for the writer thread. Producers append under a short lock
/// and wake the writer only for a full batch or an urgent item; otherwise the
/// writer drains every [`WRITER_TICK`]. (One wake-up per request would cost
/// more than the writing itself on a busy node.)
#[derive(Debug)]
struct Queue {
    items: Mutex<Vec<Item>>,
    wake: Condvar,
    capacity: usize,
}

/// Items after which producers wake the writer at once.
const BATCH: usize = 256;
/// The writer drains the queue at least this often.
const WRITER_TICK: Duration = Duration::from_millis(100);

impl Queue {
    /// Appends; `false` when full (unless `always`).
    fn push(&self, item: Item, always: bool) -> bool {
        let urgent = matches!(item, Item::Flush(_) | Item::Reopen);
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        if !always && items.len() >= self.capacity {
            return false;
        }
        items.push(item);
        let n = items.len();
        drop(items);
        if urgent || n == BATCH {
            self.wake.notify_one();
        }
        true
    }

    /// Waits up to [`WRITER_TICK`] for items and takes them all.
    fn take(&self) -> Vec<Item> {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        if items.is_empty() {
            items = self
                .wake
                .wait_timeout(items, WRITER_TICK)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        std::mem::take(&mut *items)
    }
}

/// The writer's front: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Recorder {
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Item::Evidence(_) => "Evidence",
            Item::Log(_) => "Log",
            Item::Flush(_) => "Flush",
            Item::Reopen => "Reopen",
        })
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct EvidenceError {
    /// The file or directory.
    pub path: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

impl Recorder {
    /// Opens the store and the log, and starts the writer thread.
    ///
    /// # Errors
    /// When the directory or the log file cannot be created.
    pub fn start(
        config: &EvidenceConfig,
        migration_log: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Recorder, EvidenceError> {
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| EvidenceError { path, source }
        };
        std::fs::create_dir_all(&config.dir).map_err(err(&config.dir))?;
        if let Some(parent) = migration_log.parent() {
            std::fs::create_dir_all(parent).map_err(err(parent))?;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(migration_log)
            .map_err(err(migration_log))?;
        let mut writer = Writer::open(
            config.clone(),
            migration_log.to_owned(),
            BufWriter::new(log),
        )?;
        let queue = Arc::new(Queue {
            items: Mutex::new(Vec::with_capacity(BATCH)),
            wake: Condvar::new(),
            capacity: config.queue,
        });
        let q = queue.clone();
        std::thread::Builder::new()
            .name("evidence-writer".into())
            .spawn(move || writer.run(&q))
            .map_err(err(&config.dir))?;
        Ok(Recorder { queue, metrics })
    }

    /// Queues an evidence record; drops and counts it when the queue is full.
    pub fn evidence(&self, record: EvidenceRecord) {
        if !self.queue.push(Item::Evidence(Box::new(record)), false) {
            self.metrics.evidence_dropped.inc();
        }
    }

    /// Queues a routine `migration.log` line (dropped and counted when the queue is full).
    pub fn log(&self, line: String) {
        if !self.queue.push(Item::Log(line), false) {
            self.metrics.evidence_dropped.inc();
        }
    }

    /// Queues a line that must not be lost (fallbacks, trips), even beyond the
    /// queue's capacity (they are rare).
    pub fn log_always(&self, line: String) {
        self.queue.push(Item::Log(line), true);
    }

    /// Reopens `migration.log` (SIGHUP after logrotate).
    pub fn reopen_log(&self) {
        self.queue.push(Item::Reopen, true);
    }

    /// Waits until everything queued so far is written and fsync'd.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.queue.push(Item::Flush(done), true);
        let _ = wait.await;
    }
}

struct Segment {
    seq: u64,
    file: BufWriter<File>,
    size: u64,
}

struct Writer {
    config: EvidenceConfig,
    log_path: PathBuf,
    log: BufWriter<File>,
    segment: Option<Segment>,
    fingerprints: BTreeMap<String, FingerprintStats>,
    fingerprints_dirty: bool,
    dirty: bool,
}

const FINGERPRINTS: &str = "fingerprints.json";

fn segment_name(seq: u64) -> String {
    format!("segment-{seq:012}.jsonl")
}

/// Segment files of a directory, oldest first.
pub fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let seq = name
                .strip_prefix("segment-")?
                .strip_suffix(".jsonl")?
                .parse()
                .ok()?;
            Some((seq, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Reads the fingerprint summary of a store.
pub fn read_fingerprints(dir: &Path) -> BTreeMap<String, FingerprintStats> {
    std::fs::read(dir.join(FINGERPRINTS))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

impl Writer {
    fn open(
        config: EvidenceConfig,
        log_path: PathBuf,
        log: BufWriter<File>,
    ) -> Result<Self, EvidenceError> {
        let fingerprints = read_fingerprints(&config.dir);
        Ok(Self {
            config,
            log_path,
            log,
            segment: None,
            fingerprints,
            fingerprints_dirty: false,
            dirty: false,
        })
    }

    fn run(&mut self, queue: &Arc<Queue>) {
        let mut last_sync = Instant::now();
        loop {
            for item in queue.take() {
                match item {
                    Item::Evidence(r) => self.write_evidence(*r),
                    Item::Log(line) => {
                        if let Err(e) = self.log.write_all(line.as_bytes()) {
                            tracing::error!(error = %e, "writing migration.log failed");
                        }
                        self.dirty = true;
                    }
                    Item::Reopen => {
                        self.sync();
                        match OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&self.log_path)
                        {
                            Ok(f) => self.log = BufWriter::new(f),
                            Err(e) => {
                                tracing::error!(error = %e, file = %self.log_path.display(), "cannot reopen migration.log")
                            }
                        }
                    }
                    Item::Flush(done) => {
                        self.sync();
                        last_sync = Instant::now();
                        let _ = done.send(());
                    }
                }
            }
            if last_sync.elapsed() >= Duration::from_secs(1) {
                self.sync();
                last_sync = Instant::now();
            }
            // Every Recorder is gone: write what is left and stop.
            if Arc::strong_count(queue) == 1
                && queue.items.lock().map(|i| i.is_empty()).unwrap_or(true)
            {
                self.sync();
                return;
            }
        }
    }

    fn write_evidence(&mut self, mut record: EvidenceRecord) {
        let key = format!("{}/{}", record.endpoint, record.fingerprint);
        let stats = self
            .fingerprints
            .entry(key)
            .or_insert_with(|| FingerprintStats {
                endpoint: record.endpoint.clone(),
                verdict: record.verdict.clone(),
                count: 0,
                first_seen: record.time.clone(),
                last_seen: record.time.clone(),
                exemplars: Vec::new(),
            });
        stats.count += 1;
        stats.last_seen.clone_from(&record.time);
        let has_patch = record
            .patch
            .as_ref()
            .is_some_and(|p| p.as_array().is_some_and(|a| !a.is_empty()));
        if stats.exemplars.len() < self.config.exemplars_per_fingerprint && has_patch {
            stats
                .exemplars
                .push(record.patch.clone().unwrap_or_default());
            record.exemplar = true;
        } else if has_patch {
            record.patch = None;
            record.bodies = None;
        }
        self.fingerprints_dirty = true;
        let mut line = match serde_json::to_vec(&record) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "serialising an evidence record failed");
                return;
            }
        };
        line.push(b'\n');
        if let Err(e) = self.append(&line) {
            tracing::error!(error = %e, dir = %self.config.dir.display(), "writing evidence failed");
        }
    }

    fn append(&mut self, line: &[u8]) -> std::io::Result<()> {
        let rotate = self
            .segment
            .as_ref()
            .is_none_or(|s| s.size > 0 && s.size + line.len() as u64 > self.config.segment_bytes);
        if rotate {
            let next = match &self.segment {
                Some(s) => s.seq + 1,
                None => segments(&self.config.dir)
                    .last()
                    .map_or(1, |(seq, _)| seq + 1),
            };
            if let Some(mut old) = self.segment.take() {
                old.file.flush()?;
                old.file.get_ref().sync_data()?;
            }
            let path = self.config.dir.join(segment_name(next));
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            self.segment = Some(Segment {
                seq: next,
                file: BufWriter::new(file),
                size: 0,
            });
            self.retain();
        }
        let seg = self.segment.as_mut().expect("opened above");
        seg.file.write_all(line)?;
        seg.size += line.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Deletes the oldest segments while the store is over `max_bytes`.
    fn retain(&self) {
        let all = segments(&self.config.dir);
        let mut total: u64 = all
            .iter()
            .filter_map(|(_, p)| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let current = self.segment.as_ref().map(|s| s.seq);
        for (seq, path) in all {
            if total <= self.config.max_bytes || Some(seq) == current {
                break;
            }
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(&path) {
                Ok(()) => total = total.saturating_sub(len),
                Err(e) => {
                    tracing::warn!(error = %e, file = %path.display(), "cannot delete an old evidence segment")
                }
            }
        }
    }

    fn sync(&mut self) {
        if self.dirty {
            let r = self
                .log
                .flush()
                .and_then(|()| self.log.get_ref().sync_data());
            if let Err(e) = r {
                tracing::error!(error = %e, "flushing migration.log failed");
            }
            if let Some(seg) = &mut self.segment {
                let r = seg
                    .file
                    .flush()
                    .and_then(|()| seg.file.get_ref().sync_data());
                if let Err(e) = r {
                    tracing::error!(error = %e, "flushing evidence failed");
                }
            }
            self.dirty = false;
        }
        if self.fingerprints_dirty {
            if let Err(e) = write_atomic(
                &self.config.dir.join(FINGERPRINTS),
                &serde_json::to_vec_pretty(&self.fingerprints).unwrap_or_default(),
            ) {
                tracing::error!(error = %e, "writing fingerprints.json failed");
            }
            self.fingerprints_dirty = false;
        }
    }
}

/// Writes a file atomically: temporary file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// What [`read_records`] found.
#[derive(Debug, Default)]
pub struct ReadResult {
    /// Records in write order.
    pub records: Vec<EvidenceRecord>,
    /// Lines that could not be parsed (a torn last line after a crash).
    pub skipped_lines: usize,
}

/// Reads every record of a store, oldest first, skipping torn or damaged lines.
pub fn read_records(dir: &Path) -> ReadResult {
    let mut out = ReadResult::default();
    for (_, path) in segments(dir) {
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // A line without its newline is torn: the writer died mid-line.
            let complete = line.last() == Some(&b'\n');
            match serde_json::from_slice::<EvidenceRecord>(&line) {
                Ok(r) if complete => out.records.push(r),
                _ => out.skipped_lines += 1,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreBodies;

    #[test]
    fn rfc3339_timestamps_parse_back_to_the_same_instant() {
        for secs in [
            0u64,
            951_782_400,     // 2000-02-29, leap day of a year divisible by 400
            4_107_542_399,   // 2100-02-28T23:59:59; 2100 is not a leap year
            1_798_761_599,   // 2026-12-31T23:59:59
            253_402_300_799, // 9999-12-31T23:59:59
        ] {
            for millis in [0u32, 7, 999] {
                let text = rfc3339_millis(secs, millis);
                assert_eq!(text.len(), 24, "{text}");
                let parsed = time::OffsetDateTime::parse(
                    &text,
                    &time::format_description::well_known::Rfc3339,
                )
                .unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(parsed.unix_timestamp(), secs as i64, "{text}");
                assert_eq!(u32::from(parsed.millisecond()), millis, "{text}");
            }
        }
        assert_eq!(
            rfc3339_millis(1_795_707_839, 856),
            "2026-11-26T15:43:59.856Z"
        );
    }

    fn record(i: usize, fp: &str) -> EvidenceRecord {
        EvidenceRecord {
            time: now_rfc3339(),
            trace_id: format!("{i:032x}"),
            node: "pve1".into(),
            phase: "shadow".into(),
            kind: "exchange".into(),
            endpoint: "node.network.list".into(),
            method: "GET".into(),
            path: "/api2/json/nodes/pve1/network".into(),
            served_by: "perl".into(),
            used_fallback: false,
            fallback_reason: None,
            perl: None,
            rust: None,
            verdict: "mismatch".into(),
            critical: None,
            patch: Some(serde_json::json!([{"op": "remove", "path": "/body/changes"}])),
            type_only: Vec::new(),
            fingerprint: fp.into(),
            exemplar: false,
            config_digest: "d".into(),
            bodies: None,
        }
    }

    fn config(dir: &Path, max_bytes: u64, segment_bytes: u64) -> EvidenceConfig {
        EvidenceConfig {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes,
            store_bodies: StoreBodies::Never,
            exemplars_per_fingerprint: 2,
            queue: 1024,
        }
    }

    #[tokio::test]
    async fn segments_rotate_retention_exemplars_and_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let ev = dir.path().join("evidence");
        let rec = Recorder::start(
            &config(&ev, 6_000, 2_000),
            &dir.path().join("log/migration.log"),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        for i in 0..40 {
            rec.evidence(record(i, if i % 2 == 0 { "aaaa" } else { "bbbb" }));
        }
        rec.log("event=test\n".into());
        rec.flush().await;
        let segs = segments(&ev);
        assert!(segs.len() >= 2, "rotated: {segs:?}");
        let total: u64 = segs
            .iter()
            .map(|(_, p)| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(
            total <= 6_000 + 2_000,
            "retention keeps about max_bytes: {total}"
        );
        assert!(segs[0].0 > 1, "the oldest segments were deleted");

        let fps = read_fingerprints(&ev);
        assert_eq!(fps["node.network.list/aaaa"].count, 20);
        assert_eq!(fps["node.network.list/aaaa"].exemplars.len(), 2);

        // A torn last line is skipped, the rest reads.
        let last = &segs.last().unwrap().1;
        let mut f = OpenOptions::new().append(true).open(last).unwrap();
        f.write_all(br#"{"time":"2026-"#).unwrap();
        let read = read_records(&ev);
        assert_eq!(read.skipped_lines, 1);
        assert!(!read.records.is_empty());
        assert!(read.records.iter().all(|r| r.exemplar == r.patch.is_some()));
        let log = std::fs::read_to_string(dir.path().join("log/migration.log")).unwrap();
        assert_eq!(log, "event=test\n");
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let mut c = config(dir.path(), 1 << 20, 1 << 16);
        c.queue = 1;
        let rec = Recorder::start(&c, &dir.path().join("m.log"), metrics.clone()).unwrap();
        for i in 0..10_000 {
            rec.evidence(record(i, "cccc"));
        }
        rec.flush().await;
        let written = read_records(dir.path()).records.len() as u64;
        assert_eq!(written + metrics.evidence_dropped.get(), 10_000);
    }
}

/// One line of `migration-ctl evidence summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Endpoint id.
    pub endpoint: String,
    /// Verdict.
    pub verdict: String,
    /// Fingerprint of the difference.
    pub fingerprint: String,
    /// Records in the period.
    pub count: u64,
    /// One exemplar patch (if the difference has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exemplar: Option<serde_json::Value>,
    /// Last seen, RFC 3339.
    pub last_seen: String,
}

/// Counts per endpoint, verdict and fingerprint of the records at or after
/// `since` (RFC 3339 comparison), optionally for one endpoint, with one
/// exemplar patch each (from the records, else from `fingerprints.json`).
/// Only segments written to since then are read.
pub fn summary(
    dir: &Path,
    since: Option<std::time::SystemTime>,
    endpoint: Option<&str>,
) -> Vec<SummaryRow> {
    let cutoff = since.map(|t| {
        let t = time::OffsetDateTime::from(t);
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    });
    let fingerprints = read_fingerprints(dir);
    let mut rows: BTreeMap<(String, String, String), SummaryRow> = BTreeMap::new();
    for (_, path) in segments(dir) {
        if let Some(since) = since
            && std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|m| m < since)
        {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        for line in BufReader::new(file).split(b'\n').map_while(Result::ok) {
            let Ok(r) = serde_json::from_slice::<EvidenceRecord>(&line) else {
                continue;
            };
            if cutoff
                .as_ref()
                .is_some_and(|c| r.time.as_str() < c.as_str())
            {
                continue;
            }
            if endpoint.is_some_and(|e| e != r.endpoint) {
                continue;
            }
            let key = (r.endpoint.clone(), r.verdict.clone(), r.fingerprint.clone());
            let row = rows.entry(key).or_insert_with(|| SummaryRow {
                endpoint: r.endpoint.clone(),
                verdict: r.verdict.clone(),
                fingerprint: r.fingerprint.clone(),
                count: 0,
                exemplar: None,
                last_seen: r.time.clone(),
            });
            row.count += 1;
            row.last_seen.clone_from(&r.time);
            if row.exemplar.is_none()
                && r.patch
                    .as_ref()
                    .is_some_and(|p| p.as_array().is_some_and(|a| !a.is_empty()))
            {
                row.exemplar = r.patch.clone();
            }
        }
    }
    let mut out: Vec<SummaryRow> = rows.into_values().collect();
    for row in &mut out {
        if row.exemplar.is_none() {
            row.exemplar = fingerprints
                .get(&format!("{}/{}", row.endpoint, row.fingerprint))
                .and_then(|f| f.exemplars.first().cloned());
        }
    }
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.endpoint.cmp(&b.endpoint))
    });
    out
}
