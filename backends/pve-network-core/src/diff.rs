//! The `changes` text: what `diff -b -N -u` prints for the applied file and
//! the pending `interfaces.new`.
//!
//! PVE runs `/usr/bin/diff -b -N -u /etc/network/interfaces
//! /etc/network/interfaces.new` and returns its output (or nothing when the
//! files do not differ). This module reproduces that output: GNU's header lines
//! with nanosecond timestamps, three lines of context, hunks merged when at most
//! six unchanged lines separate them, `-b` (changes in the amount of white space
//! are ignored) and the `\ No newline at end of file` marker. The timestamps are
//! printed in UTC (`+0000`), the simulated node's time zone.

/// The path PVE diffs against.
pub const INTERFACES_PATH: &str = "/etc/network/interfaces";
/// The pending copy PVE writes to.
pub const INTERFACES_NEW_PATH: &str = "/etc/network/interfaces.new";

const CONTEXT: usize = 3;

/// A file modification time (seconds and nanoseconds since the Unix epoch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileTime {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

impl FileTime {
    /// A time with whole seconds.
    pub fn from_secs(secs: i64) -> Self {
        Self { secs, nanos: 0 }
    }

    /// The current system time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: d.subsec_nanos(),
        }
    }

    /// GNU diff's header time: `2024-03-05 14:07:09.123456789 +0000`.
    pub fn diff_timestamp(&self) -> String {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:09} +0000",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60,
            self.nanos
        )
    }
}

/// A Unix time as UTC calendar date and time: (year, month, day, hour,
/// minute, second).
pub fn utc_civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400) as u32;
    (y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Days since the epoch to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// One line of a file: its text and whether it ended with a newline.
#[derive(Clone, Debug)]
struct Line<'a> {
    text: &'a str,
    complete: bool,
    key: String,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.split_inclusive('\n')
        .map(|l| {
            let (text, complete) = match l.strip_suffix('\n') {
                Some(t) => (t, true),
                None => (l, false),
            };
            Line {
                text,
                complete,
                key: ignore_space_change(text),
            }
        })
        .collect()
}

/// `diff -b`: runs of white space compare equal, trailing white space is
/// ignored.
fn ignore_space_change(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.chars() {
        if c == ' ' || c == '\t' || c == '\r' || c == '\x0B' || c == '\x0C' {
            pending_space = true;
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

fn same(a: &Line<'_>, b: &Line<'_>) -> bool {
    a.key == b.key && a.complete == b.complete
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Equal(usize, usize),
    Delete(usize),
    Insert(usize),
}

/// A longest-common-subsequence edit script (deletions before insertions).
fn edit_script(a: &[Line<'_>], b: &[Line<'_>]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j] = LCS length of a[i..] and b[j..]
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if same(&a[i], &b[j]) {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && same(&a[i], &b[j]) {
            ops.push(Op::Equal(i, j));
            i += 1;
            j += 1;
        } else if j >= m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(Op::Delete(i));
            i += 1;
        } else {
            ops.push(Op::Insert(j));
            j += 1;
        }
    }
    // within each run of changes print all deletions first, as diff does
    let mut out = Vec::with_capacity(ops.len());
    let mut k = 0;
    while k < ops.len() {
        if matches!(ops[k], Op::Equal(..)) {
            out.push(ops[k]);
            k += 1;
            continue;
        }
        let start = k;
        while k < ops.len() && !matches!(ops[k], Op::Equal(..)) {
            k += 1;
        }
        out.extend(ops[start..k].iter().filter(|o| matches!(o, Op::Delete(_))));
        out.extend(ops[start..k].iter().filter(|o| matches!(o, Op::Insert(_))));
    }
    out
}

fn range(start: usize, count: usize) -> String {
    // GNU: an empty range is shown as the line before it
    let first = if count == 0 { start } else { start + 1 };
    if count == 1 {
        format!("{first}")
    } else {
        format!("{first},{count}")
    }
}

/// Unified diff (`diff -b -N -u`) of two texts with the given labels and
/// modification times, or `None` when they do not differ. Every output line,
/// including the last, ends with a newline.
pub fn unified_diff(
    old_label: &str,
    old: &str,
    old_mtime: FileTime,
    new_label: &str,
    new: &str,
    new_mtime: FileTime,
) -> Option<String> {
    let a = lines(old);
    let b = lines(new);
    let ops = edit_script(&a, &b);
    if ops.iter().all(|o| matches!(o, Op::Equal(..))) {
        return None;
    }

    let mut out = format!(
        "--- {old_label}\t{}\n+++ {new_label}\t{}\n",
        old_mtime.diff_timestamp(),
        new_mtime.diff_timestamp()
    );

    // group changes into hunks
    let change_idx: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Equal(..)))
        .map(|(i, _)| i)
        .collect();
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &ci in &change_idx {
        match hunks.last_mut() {
            Some((_, end)) if ci - *end <= 2 * CONTEXT + 1 => *end = ci,
            _ => hunks.push((ci, ci)),
        }
    }

    for (first, last) in hunks {
        let start = first.saturating_sub(CONTEXT);
        let end = (last + CONTEXT + 1).min(ops.len());
        let slice = &ops[start..end];

        // positions of the hunk in both files
        let (mut a_start, mut b_start) = (None, None);
        let (mut a_count, mut b_count) = (0, 0);
        for op in slice {
            match *op {
                Op::Equal(i, j) => {
                    a_start.get_or_insert(i);
                    b_start.get_or_insert(j);
                    a_count += 1;
                    b_count += 1;
                }
                Op::Delete(i) => {
                    a_start.get_or_insert(i);
                    a_count += 1;
                }
                Op::Insert(j) => {
                    b_start.get_or_insert(j);
                    b_count += 1;
                }
            }
        }
        let a_pos = a_start.unwrap_or_else(|| position_before(&ops[..start], true));
        let b_pos = b_start.unwrap_or_else(|| position_before(&ops[..start], false));
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            range(a_pos, a_count),
            range(b_pos, b_count)
        ));

        for op in slice {
            let (prefix, line) = match *op {
                Op::Equal(i, _) => (' ', &a[i]),
                Op::Delete(i) => ('-', &a[i]),
                Op::Insert(j) => ('+', &b[j]),
            };
            out.push(prefix);
            out.push_str(line.text);
            out.push('\n');
            if !line.complete {
                out.push_str("\\ No newline at end of file\n");
            }
        }
    }
    Some(out)
}

/// Number of lines of file a (or b) consumed by the operations before a hunk.
fn position_before(ops: &[Op], old: bool) -> usize {
    ops.iter()
        .filter(|o| match o {
            Op::Equal(..) => true,
            Op::Delete(_) => old,
            Op::Insert(_) => !old,
        })
        .count()
}

/// The `changes` PVE reports: the diff from `/etc/network/interfaces` to
/// `/etc/network/interfaces.new`, `None` when they do not differ.
pub fn interfaces_changes(
    old: &str,
    new: &str,
    old_mtime: FileTime,
    new_mtime: FileTime,
) -> Option<String> {
    unified_diff(
        INTERFACES_PATH,
        old,
        old_mtime,
        INTERFACES_NEW_PATH,
        new,
        new_mtime,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: FileTime = FileTime {
        secs: 1_700_000_000,
        nanos: 123_456_789,
    };
    const T1: FileTime = FileTime {
        secs: 1_700_000_100,
        nanos: 0,
    };

    #[test]
    fn timestamps() {
        assert_eq!(T0.diff_timestamp(), "2023-11-14 22:13:20.123456789 +0000");
        assert_eq!(
            FileTime::from_secs(0).diff_timestamp(),
            "1970-01-01 00:00:00.000000000 +0000"
        );
        assert_eq!(
            FileTime::from_secs(951_782_400).diff_timestamp(),
            "2000-02-29 00:00:00.000000000 +0000"
        );
    }

    #[test]
    fn identical_and_whitespace_only_changes_are_no_changes() {
        assert_eq!(interfaces_changes("a\nb\n", "a\nb\n", T0, T1), None);
        assert_eq!(interfaces_changes("a  b\n", "a\tb \n", T0, T1), None);
    }

    #[test]
    fn single_hunk() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n";
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n";
        let d = interfaces_changes(old, new, T0, T1).unwrap();
        assert_eq!(
            d,
            "--- /etc/network/interfaces\t2023-11-14 22:13:20.123456789 +0000\n\
             +++ /etc/network/interfaces.new\t2023-11-14 22:15:00.000000000 +0000\n\
             @@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
        );
    }

    #[test]
    fn hunks_merge_within_six_lines_and_split_beyond() {
        let text = |x: usize, y: usize| -> String {
            (1..=20)
                .map(|i| match i {
                    _ if i == x => "x\n".to_string(),
                    _ if i == y => "y\n".to_string(),
                    _ => format!("{i}\n"),
                })
                .collect()
        };
        let old = text(0, 0);
        let merged = text(3, 10);
        let d = interfaces_changes(&old, &merged, T0, T1).unwrap();
        assert_eq!(d.matches("@@ -").count(), 1, "{d}");
        let split = text(3, 11);
        let d = interfaces_changes(&old, &split, T0, T1).unwrap();
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        assert!(d.contains("@@ -1,6 +1,6 @@\n"), "{d}");
        assert!(d.contains("@@ -8,7 +8,7 @@\n"), "{d}");
    }

    #[test]
    fn pure_insertions_and_deletions() {
        let d = interfaces_changes("", "a\nb\n", T0, T1).unwrap();
        assert!(d.ends_with("@@ -0,0 +1,2 @@\n+a\n+b\n"), "{d}");
        let d = interfaces_changes("a\nb\nc\n", "a\nc\n", T0, T1).unwrap();
        assert!(d.ends_with("@@ -1,3 +1,2 @@\n a\n-b\n c\n"), "{d}");
        let d = interfaces_changes("a\n", "a\nb\n", T0, T1).unwrap();
        assert!(d.ends_with("@@ -1 +1,2 @@\n a\n+b\n"), "{d}");
    }

    #[test]
    fn missing_newline_marker() {
        let d = interfaces_changes("a\nb", "a\nc\n", T0, T1).unwrap();
        assert!(
            d.ends_with("@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n"),
            "{d}"
        );
    }

    #[test]
    fn deletions_are_printed_before_insertions() {
        let d = interfaces_changes("x\na\nb\ny\n", "x\nc\nd\ny\n", T0, T1).unwrap();
        assert!(d.ends_with(" x\n-a\n-b\n+c\n+d\n y\n"), "{d}");
    }
}
