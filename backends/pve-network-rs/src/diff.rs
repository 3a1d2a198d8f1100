//! The list's `changes`: what PVE shows as pending changes.
//!
//! PVE runs `/usr/bin/diff -b -N -u /etc/network/interfaces
//! /etc/network/interfaces.new` (`LC_ALL=C`) and returns its lines, each
//! UTF-8-decoded and ended with `\n`, or nothing when they do not differ.
//! GNU diff's choice among equally short edit scripts and its handling of
//! white space under `-b` are what clients see, so the backend runs the same
//! program; the header lines name the host paths (the files may be under
//! `--root`) and carry the node's local time, as diff prints it. Without
//! `/usr/bin/diff` the core's own unified diff is used (the same format; for
//! some edits it aligns lines differently).

use std::process::Command;

use pve_network_core::NetworkFiles;

use crate::paths::HostPaths;

/// GNU diff's output for the two files, with host paths in the header.
pub fn changes(paths: &HostPaths, files: &NetworkFiles) -> Option<String> {
    files.pending.as_ref()?;
    let net = &paths.network;
    let out = Command::new("/usr/bin/diff")
        .args(["-b", "-N", "-u"])
        .arg(&net.interfaces.local)
        .arg(&net.pending.local)
        .env("LC_ALL", "C")
        .output();
    let out = match out {
        Ok(o) if o.status.code().is_some_and(|c| c <= 1) => o,
        other => {
            tracing::warn!(result = ?other.map(|o| o.status), "/usr/bin/diff failed; using the built-in diff");
            return files.changes();
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let local_a = net.interfaces.local.to_string_lossy();
    let local_b = net.pending.local.to_string_lossy();
    let mut result = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = match i {
            0 => line
                .strip_prefix(&format!("--- {local_a}"))
                .map(|rest| format!("--- {}{rest}", net.interfaces.host)),
            1 => line
                .strip_prefix(&format!("+++ {local_b}"))
                .map(|rest| format!("+++ {}{rest}", net.pending.host)),
            _ => None,
        }
        .unwrap_or_else(|| line.to_string());
        result.push_str(&line);
        result.push('\n');
    }
    if result.is_empty() {
        return None;
    }
    Some(result)
}
