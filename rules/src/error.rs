//! Errors raised while loading rule files.
//!
//! Every problem found in a rule file is reported as a [`RuleError`] that
//! names the file, the endpoint (by id) and the key involved, plus the line
//! when it can be determined, e.g.
//! `rules/site.toml: endpoint "node.network.list": unknown key "sortby" (line 12)`.

use std::fmt;
use std::path::PathBuf;

/// A problem in one rule file: syntax, unknown key, bad value, duplicate id…
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Name of the rule file (as given to the loader).
    pub file: String,
    /// 1-based line of the problem, when known.
    pub line: Option<usize>,
    /// Endpoint id of the `[[endpoint]]` entry involved, when known.
    pub endpoint: Option<String>,
    /// The offending key (`"sort"`, `"class"`, …), when known.
    pub key: Option<String>,
    /// Human readable description; already mentions the key.
    pub message: String,
}

impl RuleError {
    pub(crate) fn new(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            endpoint: None,
            key: None,
            message: message.into(),
        }
    }

    pub(crate) fn endpoint(mut self, id: impl Into<String>) -> Self {
        self.endpoint = Some(id.into());
        self
    }

    pub(crate) fn line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }

    /// Builds the error for a bad value of `key`; the message reads
    /// `key "<key>": <problem>`.
    pub(crate) fn bad_key(file: &str, key: &str, problem: impl fmt::Display) -> Self {
        let mut err = Self::new(file, format!("key \"{key}\": {problem}"));
        err.key = Some(key.to_owned());
        err
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if let Some(id) = &self.endpoint {
            write!(f, "endpoint \"{id}\": ")?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleError {}

/// Error returned by the rule loaders.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule file could not be read from disk.
    #[error("{}: cannot read rule file: {source}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A rule file is invalid.
    #[error(transparent)]
    Rule(#[from] RuleError),
}
