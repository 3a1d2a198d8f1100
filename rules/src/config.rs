//! Rule files: TOML parsing, validation and layering.
//!
//! A file is deserialised into raw structures that reject unknown keys,
//! then every value is validated (methods, path templates, pointers,
//! regular expressions) into typed settings. Files are applied in order:
//! an `[[endpoint]]` whose id is new must give `method`, `path` and
//! `class`; one whose id an earlier file defined overrides only the keys it
//! sets. A file's `[defaults]` table supplies settings for the endpoints
//! that file introduces. Errors name the file, the endpoint and the key.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Deserialize;

use crate::bodyrules::BodyRules;
use crate::endpoint::{
    Endpoint, EndpointClass, Method, PatternKind, PatternRule, Settings, SortRule,
};
use crate::error::RuleError;
use crate::pointer::PointerPattern;
use crate::route::{Router, Template};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: Option<RawDefaults>,
    #[serde(default)]
    endpoint: Vec<RawEndpoint>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    headers: Option<Vec<String>>,
    perl_scalars: Option<bool>,
    flags: Option<Vec<String>>,
    ignore: Option<Vec<String>>,
    sort: Option<Vec<RawSort>>,
    patterns: Option<Vec<RawPattern>>,
    trim: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    id: String,
    method: Option<String>,
    path: Option<String>,
    class: Option<EndpointClass>,
    enabled: Option<bool>,
    headers: Option<Vec<String>>,
    perl_scalars: Option<bool>,
    flags: Option<Vec<String>>,
    ignore: Option<Vec<String>>,
    sort: Option<Vec<RawSort>>,
    patterns: Option<Vec<RawPattern>>,
    trim: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSort {
    pointer: String,
    by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPattern {
    pointer: String,
    kind: PatternKind,
    regex: Option<String>,
}

/// Settings where every key is optional (one layer's contribution).
#[derive(Debug, Default, Clone)]
struct PartialSettings {
    headers: Option<Vec<String>>,
    perl_scalars: Option<bool>,
    flags: Option<BTreeSet<String>>,
    ignore: Option<Vec<PointerPattern>>,
    sort: Option<Vec<SortRule>>,
    patterns: Option<Vec<PatternRule>>,
    trim: Option<Vec<PointerPattern>>,
}

impl PartialSettings {
    /// Keys set in `later` replace ours.
    fn overlay(&mut self, later: PartialSettings) {
        macro_rules! take {
            ($($f:ident),*) => {$( if later.$f.is_some() { self.$f = later.$f; } )*};
        }
        take!(headers, perl_scalars, flags, ignore, sort, patterns, trim);
    }

    fn resolve(self) -> Result<Settings, String> {
        let mut settings = Settings {
            headers: self
                .headers
                .unwrap_or_else(|| vec!["content-type".to_owned()]),
            perl_scalars: self.perl_scalars.unwrap_or(false),
            flags: self.flags.unwrap_or_default(),
            ignore: self.ignore.unwrap_or_default(),
            sort: self.sort.unwrap_or_default(),
            patterns: self.patterns.unwrap_or_default(),
            trim: self.trim.unwrap_or_default(),
            body: BodyRules::default(),
        };
        settings.body = BodyRules::compile(&settings)?;
        Ok(settings)
    }
}

/// One `[[endpoint]]` entry after validation.
#[derive(Debug)]
struct PartialEndpoint {
    id: String,
    method: Option<Method>,
    template: Option<Template>,
    class: Option<EndpointClass>,
    enabled: Option<bool>,
    settings: PartialSettings,
    line: Option<usize>,
}

/// Where an error occurred while validating one file.
struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    endpoint: Option<&'a str>,
    /// Line range `[start, end)` (1-based) of the entry being validated.
    lines: Option<(usize, usize)>,
}

impl Ctx<'_> {
    fn err(&self, key: &str, problem: impl std::fmt::Display) -> RuleError {
        let mut err = RuleError::bad_key(self.file, key, problem).line(self.key_line(key));
        if let Some(id) = self.endpoint {
            err = err.endpoint(id);
        }
        err
    }

    /// Line of `key = …` within the current entry, else the entry's header.
    fn key_line(&self, key: &str) -> Option<usize> {
        let (start, end) = self.lines?;
        self.text
            .lines()
            .enumerate()
            .skip(start - 1)
            .take(end - start)
            .find(|(_, l)| {
                l.trim_start()
                    .strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with('='))
            })
            .map(|(i, _)| i + 1)
            .or(Some(start))
    }

    fn pointer(&self, key: &str, raw: &str) -> Result<PointerPattern, RuleError> {
        PointerPattern::parse(raw).map_err(|e| self.err(key, e))
    }

    fn settings(&self, raw: RawDefaults) -> Result<PartialSettings, RuleError> {
        let RawDefaults {
            headers,
            perl_scalars,
            flags,
            ignore,
            sort,
            patterns,
            trim,
        } = raw;
        let mut out = PartialSettings {
            perl_scalars,
            ..PartialSettings::default()
        };
        if let Some(headers) = headers {
            let mut names = Vec::with_capacity(headers.len());
            for h in headers {
                let valid = !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !valid {
                    return Err(self.err("headers", format!("bad header name \"{h}\"")));
                }
                let h = h.to_ascii_lowercase();
                if !names.contains(&h) {
                    names.push(h);
                }
            }
            out.headers = Some(names);
        }
        if let Some(flags) = flags {
            if let Some(bad) = flags.iter().find(|f| f.is_empty()) {
                return Err(self.err("flags", format!("bad flag name \"{bad}\"")));
            }
            out.flags = Some(flags.into_iter().collect());
        }
        if let Some(ignore) = ignore {
            let mut v = Vec::with_capacity(ignore.len());
            for raw in ignore {
                let p = self.pointer("ignore", &raw)?;
                if p.is_root() {
                    return Err(self.err("ignore", "cannot ignore the whole body (\"\")"));
                }
                v.push(p);
            }
            out.ignore = Some(v);
        }
        if let Some(trim) = trim {
            let v: Result<Vec<_>, _> = trim.iter().map(|r| self.pointer("trim", r)).collect();
            out.trim = Some(v?);
        }
        if let Some(sort) = sort {
            let mut v = Vec::with_capacity(sort.len());
            for raw in sort {
                let pointer = self.pointer("sort", &raw.pointer)?;
                if raw.by.as_deref() == Some("") {
                    return Err(self.err("sort", "\"by\" must not be empty"));
                }
                v.push(SortRule {
                    pointer,
                    by: raw.by,
                });
            }
            out.sort = Some(v);
        }
        if let Some(patterns) = patterns {
            let mut v = Vec::with_capacity(patterns.len());
            for raw in patterns {
                let pointer = self.pointer("patterns", &raw.pointer)?;
                let regex = match (raw.kind, raw.regex) {
                    (PatternKind::Regex, Some(re)) => {
                        Some(regex_lite::Regex::new(&re).map_err(|e| {
                            self.err("patterns", format!("bad regex \"{re}\": {e}"))
                        })?)
                    }
                    (PatternKind::Regex, None) => {
                        return Err(self.err("patterns", "kind \"regex\" needs a \"regex\" key"));
                    }
                    (kind, Some(_)) => {
                        return Err(self.err(
                            "patterns",
                            format!(
                                "\"regex\" is only allowed with kind \"regex\", not \"{}\"",
                                kind.as_str()
                            ),
                        ));
                    }
                    (_, None) => None,
                };
                v.push(PatternRule {
                    pointer,
                    kind: raw.kind,
                    regex,
                });
            }
            out.patterns = Some(v);
        }
        Ok(out)
    }
}

/// A parsed and validated rule file.
struct ParsedFile {
    defaults: PartialSettings,
    endpoints: Vec<PartialEndpoint>,
}

/// Lines (1-based) where a `[[endpoint]]` or `[defaults]` header starts.
fn section_lines(text: &str) -> Vec<(usize, bool)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.trim_start();
            let rest = |h: &str| {
                l.strip_prefix(h)
                    .is_some_and(|r| r.trim_start().is_empty() || r.trim_start().starts_with('#'))
            };
            if rest("[[endpoint]]") {
                Some((i + 1, true))
            } else if rest("[defaults]") {
                Some((i + 1, false))
            } else {
                None
            }
        })
        .collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Turns a TOML error into a rule error naming the endpoint and key.
fn toml_error(file: &str, text: &str, err: &toml::de::Error) -> RuleError {
    let msg = err.message().trim().to_owned();
    let Some(span) = err.span() else {
        return RuleError::new(file, msg);
    };
    let line = line_of(text, span.start);
    let mut out = RuleError::new(file, msg.clone()).line(Some(line));

    // Which section holds the error?
    let sections = section_lines(text);
    let section = sections.iter().rev().find(|(l, _)| *l <= line);
    match section {
        Some((_, true)) => {
            let index = sections
                .iter()
                .filter(|(l, is_ep)| *is_ep && *l <= line)
                .count()
                - 1;
            let id = toml::from_str::<toml::Table>(text)
                .ok()
                .and_then(|t| {
                    t.get("endpoint")?
                        .as_array()?
                        .get(index)?
                        .get("id")?
                        .as_str()
                        .map(str::to_owned)
                })
                .or_else(|| scan_id(text, &sections, index));
            if let Some(id) = id {
                out.endpoint = Some(id);
            }
        }
        Some((_, false)) => out.message = format!("[defaults]: {msg}"),
        None => {}
    }

    // Which key?
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some((key, tail)) = rest.split_once('`')
    {
        let expected = tail.trim_start_matches(',').trim();
        let prefix = if matches!(section, Some((_, false))) {
            "[defaults]: "
        } else {
            ""
        };
        out.message = if expected.is_empty() {
            format!("{prefix}unknown key \"{key}\"")
        } else {
            format!("{prefix}unknown key \"{key}\", {expected}")
        };
        out.key = Some(key.to_owned());
        return out;
    }
    let upto = text.get(..span.start).unwrap_or(text);
    let line_start = upto.rfind('\n').map_or(0, |i| i + 1);
    let before = upto.get(line_start..).unwrap_or("");
    if let Some(eq) = before.rfind('=') {
        let key = before[..eq]
            .trim_end()
            .rsplit(|c: char| c.is_whitespace() || c == '{' || c == ',' || c == '[')
            .next()
            .unwrap_or("")
            .trim_matches('"');
        if !key.is_empty() {
            out.key = Some(key.to_owned());
            out.message = match section {
                Some((_, false)) => format!("[defaults]: key \"{key}\": {msg}"),
                _ => format!("key \"{key}\": {msg}"),
            };
        }
    }
    out
}

/// Finds `id = "…"` in the `index`-th endpoint section by scanning lines
/// (used when the file does not parse at all).
fn scan_id(text: &str, sections: &[(usize, bool)], index: usize) -> Option<String> {
    let start = sections.iter().filter(|(_, ep)| *ep).nth(index)?.0;
    let end = sections
        .iter()
        .map(|(l, _)| *l)
        .find(|&l| l > start)
        .unwrap_or(usize::MAX);
    text.lines()
        .enumerate()
        .skip(start)
        .take(end.saturating_sub(start + 1))
        .find_map(|(_, line)| {
            let rest = line.trim_start().strip_prefix("id")?.trim_start();
            let value = rest.strip_prefix('=')?.trim();
            let value = value.strip_prefix('"')?;
            Some(value[..value.find('"')?].to_owned())
        })
}

fn parse_file(file: &str, text: &str) -> Result<ParsedFile, RuleError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    let sections = section_lines(text);
    let total_lines = text.lines().count() + 1;
    let endpoint_lines: Vec<usize> = sections
        .iter()
        .filter(|(_, ep)| *ep)
        .map(|(l, _)| *l)
        .collect();
    let range_of = |start: usize| {
        let end = sections
            .iter()
            .map(|(l, _)| *l)
            .find(|&l| l > start)
            .unwrap_or(total_lines);
        (start, end)
    };
    let line_map_ok = endpoint_lines.len() == raw.endpoint.len();

    let defaults = {
        let ctx = Ctx {
            file,
            text,
            endpoint: None,
            lines: sections
                .iter()
                .find(|(_, ep)| !ep)
                .map(|(l, _)| range_of(*l)),
        };
        ctx.settings(raw.defaults.unwrap_or_default())
            .map_err(|mut e| {
                e.message = format!("[defaults]: {}", e.message);
                e
            })?
    };

    let mut seen = HashSet::new();
    let mut endpoints = Vec::with_capacity(raw.endpoint.len());
    for (index, ep) in raw.endpoint.into_iter().enumerate() {
        let lines = line_map_ok.then(|| range_of(endpoint_lines[index]));
        let ctx = Ctx {
            file,
            text,
            endpoint: Some(&ep.id),
            lines,
        };
        let id_ok = !ep.id.is_empty()
            && ep.id.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if !id_ok {
            return Err(ctx.err(
                "id",
                format!(
                    "bad endpoint id \"{}\": use a-z, 0-9, '.', '_' and '-'",
                    ep.id
                ),
            ));
        }
        if !seen.insert(ep.id.clone()) {
            return Err(ctx
                .err(
                    "id",
                    format!("duplicate endpoint id \"{}\" in this file", ep.id),
                )
                .line(lines.map(|(s, _)| s)));
        }
        let method = match &ep.method {
            Some(m) => Some(Method::parse(m).ok_or_else(|| {
                ctx.err(
                    "method",
                    format!("bad method \"{m}\": expected GET, POST, PUT or DELETE"),
                )
            })?),
            None => None,
        };
        let template = match &ep.path {
            Some(p) => Some(Template::parse(p).map_err(|e| ctx.err("path", e))?),
            None => None,
        };
        let settings = ctx.settings(RawDefaults {
            headers: ep.headers,
            perl_scalars: ep.perl_scalars,
            flags: ep.flags,
            ignore: ep.ignore,
            sort: ep.sort,
            patterns: ep.patterns,
            trim: ep.trim,
        })?;
        endpoints.push(PartialEndpoint {
            line: lines.map(|(s, _)| s),
            id: ep.id,
            method,
            template,
            class: ep.class,
            enabled: ep.enabled,
            settings,
        });
    }
    Ok(ParsedFile {
        defaults,
        endpoints,
    })
}

/// An endpoint being assembled from layers.
struct Draft {
    id: String,
    method: Method,
    template: Template,
    class: EndpointClass,
    enabled: bool,
    settings: PartialSettings,
    source: String,
    line: Option<usize>,
}

/// Parses, validates and layers `files` (in order) into endpoints and a router.
pub(crate) fn build(files: &[(&str, &str)]) -> Result<(Vec<Endpoint>, Router), RuleError> {
    let mut drafts: Vec<Draft> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (file, text) in files {
        let parsed = parse_file(file, text)?;
        for pe in parsed.endpoints {
            if let Some(&i) = index.get(&pe.id) {
                let d = &mut drafts[i];
                if let Some(m) = pe.method {
                    d.method = m;
                }
                if let Some(t) = pe.template {
                    d.template = t;
                }
                if let Some(c) = pe.class {
                    d.class = c;
                }
                if let Some(e) = pe.enabled {
                    d.enabled = e;
                }
                d.settings.overlay(pe.settings);
                d.source = (*file).to_owned();
                d.line = pe.line;
                continue;
            }
            let missing = |key: &str| {
                RuleError::new(
                    file,
                    format!("new endpoint needs key \"{key}\" (no earlier file defines this id)"),
                )
                .endpoint(pe.id.clone())
                .line(pe.line)
            };
            let method = pe.method.ok_or_else(|| missing("method"))?;
            let template = pe.template.ok_or_else(|| missing("path"))?;
            let class = pe.class.ok_or_else(|| missing("class"))?;
            let mut settings = parsed.defaults.clone();
            settings.overlay(pe.settings);
            index.insert(pe.id.clone(), drafts.len());
            drafts.push(Draft {
                id: pe.id,
                method,
                template,
                class,
                enabled: pe.enabled.unwrap_or(true),
                settings,
                source: (*file).to_owned(),
                line: pe.line,
            });
        }
    }

    let mut router = Router::new();
    let mut endpoints = Vec::with_capacity(drafts.len());
    for (i, d) in drafts.into_iter().enumerate() {
        if d.enabled
            && let Err(other) = router.insert(d.method, &d.template, i)
        {
            let other: &Endpoint = &endpoints[other];
            let mut err = RuleError::bad_key(
                &d.source,
                "path",
                format!(
                    "{} {} is already served by endpoint \"{}\" ({})",
                    d.method.as_str(),
                    d.template.path,
                    other.id,
                    other.source
                ),
            )
            .endpoint(d.id.clone());
            err.line = d.line;
            return Err(err);
        }
        let settings = d.settings.resolve().map_err(|e| {
            let mut err = RuleError::new(&d.source, e).endpoint(d.id.clone());
            err.line = d.line;
            err
        })?;
        endpoints.push(Endpoint {
            param_names: d.template.param_names(),
            id: d.id,
            method: d.method,
            path: d.template.path,
            class: d.class,
            enabled: d.enabled,
            source: d.source,
            settings,
        });
    }
    Ok((endpoints, router))
}
