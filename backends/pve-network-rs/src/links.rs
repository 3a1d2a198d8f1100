//! Where the kernel's view of the links comes from: `ip -details -json link
//! show` (what PVE runs on every read), or a file holding that output
//! (`--links`, for tests, the demo and the oracle replay).

use std::path::PathBuf;
use std::process::Command;

use pve_network_core::HostState;

/// The source of link state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkSource {
    /// Ask the kernel (`ip -details -json link show`).
    Kernel,
    /// A file with that command's output.
    File(PathBuf),
}

impl LinkSource {
    /// The current link state.
    ///
    /// # Errors
    ///
    /// PVE's message when `ip` fails (`command 'ip -details -json link show'
    /// failed: …`), or when the file is missing or not `ip`'s JSON.
    pub fn read(&self) -> Result<HostState, String> {
        let text = self.read_text()?;
        HostState::from_ip_json(&text).map_err(|e| e.to_string())
    }

    /// The raw JSON (what [`LinkSource::read`] parses).
    ///
    /// # Errors
    ///
    /// As [`LinkSource::read`], before parsing.
    pub fn read_text(&self) -> Result<String, String> {
        Ok(match self {
            LinkSource::Kernel => {
                let out = Command::new("ip")
                    .args(["-details", "-json", "link", "show"])
                    .env("LC_ALL", "C")
                    .output()
                    .map_err(|e| format!("command 'ip -details -json link show' failed: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "command 'ip -details -json link show' failed: exit code {}",
                        out.status.code().unwrap_or(-1)
                    ));
                }
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
            LinkSource::File(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("unable to read links file '{}' - {e}", p.display()))?,
        })
    }
}
