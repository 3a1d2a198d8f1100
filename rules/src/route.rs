//! Request routing: which migrated endpoint (if any) serves a request.
//!
//! Templates are compiled at load time into one segment trie per HTTP
//! method. A lookup splits the request path on `/` without allocating,
//! walks the trie (literal children first, then the parameter child, with
//! backtracking) and returns borrowed parameter values in inline storage, so
//! it costs O(path segments) and never allocates, hit or miss.
//!
//! Path handling follows pveproxy: the path must start with `/api2/json/` or
//! `/api2/extjs/`, empty segments are skipped (so `/network/` and
//! `//network` match `/network`), a query string or fragment is ignored,
//! and segments are compared raw (percent-encoding is neither decoded nor
//! required to be identical to any other spelling).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::endpoint::{Endpoint, Method};

/// Most parameters a path template may have.
pub const MAX_PARAMS: usize = 8;
/// Most segments (after `/api2/{format}`) a routed path may have.
pub const MAX_SEGMENTS: usize = 32;

/// Response format selected by the second path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiFormat {
    /// `/api2/json/`: errors are HTTP status + reason phrase.
    Json,
    /// `/api2/extjs/`: errors are HTTP 200 with `success: 0` in the body.
    Extjs,
}

impl ApiFormat {
    /// `"json"` or `"extjs"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Extjs => "extjs",
        }
    }

    /// Parses the format path segment.
    pub fn parse(segment: &str) -> Option<Self> {
        match segment {
            "json" => Some(Self::Json),
            "extjs" => Some(Self::Extjs),
            _ => None,
        }
    }
}

impl fmt::Display for ApiFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Path parameters captured by a route match (inline, no allocation).
#[derive(Clone, Copy)]
pub struct Params<'a> {
    items: [(&'a str, &'a str); MAX_PARAMS],
    len: usize,
}

impl<'a> Params<'a> {
    /// The raw (not percent-decoded) value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.as_slice()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// `(name, value)` pairs in path order.
    pub fn as_slice(&self) -> &[(&'a str, &'a str)] {
        &self.items[..self.len]
    }

    /// Number of captured parameters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the template has no parameters.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.as_slice().iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// A successful route lookup.
#[derive(Debug, Clone, Copy)]
pub struct RouteMatch<'a> {
    endpoint: &'a Endpoint,
    format: ApiFormat,
    params: Params<'a>,
}

impl<'a> RouteMatch<'a> {
    /// The endpoint serving the request.
    pub fn endpoint(&self) -> &'a Endpoint {
        self.endpoint
    }

    /// `json` or `extjs`.
    pub fn format(&self) -> ApiFormat {
        self.format
    }

    /// All captured parameters.
    pub fn params(&self) -> &Params<'a> {
        &self.params
    }

    /// The raw value of parameter `name` (e.g. `"iface"`).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.get(name)
    }
}

/// A parsed path template.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    /// Canonical spelling, without the `/api2/{format}` prefix.
    pub(crate) path: String,
    segments: Vec<TemplateSegment>,
}

#[derive(Debug, Clone)]
enum TemplateSegment {
    Literal(String),
    Param(String),
}

impl Template {
    /// Parses `/nodes/{node}/network/{iface}` (an optional leading
    /// `/api2/{format}` is accepted and dropped).
    pub(crate) fn parse(path: &str) -> Result<Self, String> {
        let Some(mut rest) = path.strip_prefix('/') else {
            return Err(format!("bad path template \"{path}\": must start with '/'"));
        };
        if let Some(r) = rest.strip_prefix("api2/{format}")
            && (r.is_empty() || r.starts_with('/'))
        {
            rest = r.strip_prefix('/').unwrap_or(r);
        }
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        if !rest.is_empty() {
            for seg in rest.split('/') {
                if seg.is_empty() {
                    return Err(format!("bad path template \"{path}\": empty segment"));
                }
                if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
                        && name.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
                        });
                    if !valid || name == "format" {
                        return Err(format!(
                            "bad path template \"{path}\": bad parameter name \"{name}\""
                        ));
                    }
                    if names.contains(&name) {
                        return Err(format!(
                            "bad path template \"{path}\": parameter \"{name}\" used twice"
                        ));
                    }
                    names.push(name);
                    segments.push(TemplateSegment::Param(name.to_owned()));
                } else if seg.contains(['{', '}', '?', '#']) {
                    return Err(format!(
                        "bad path template \"{path}\": bad segment \"{seg}\""
                    ));
                } else {
                    segments.push(TemplateSegment::Literal(seg.to_owned()));
                }
            }
        }
        if names.len() > MAX_PARAMS {
            return Err(format!(
                "bad path template \"{path}\": more than {MAX_PARAMS} parameters"
            ));
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(format!(
                "bad path template \"{path}\": more than {MAX_SEGMENTS} segments"
            ));
        }
        Ok(Self {
            path: format!("/{rest}"),
            segments,
        })
    }

    pub(crate) fn param_names(&self) -> Vec<String> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                TemplateSegment::Param(n) => Some(n.clone()),
                TemplateSegment::Literal(_) => None,
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct Node {
    literals: Vec<(Box<str>, usize)>,
    param: Option<usize>,
    endpoint: Option<usize>,
}

/// One trie per method; node 0 of each arena is the root.
#[derive(Debug)]
pub(crate) struct Router {
    trees: [Vec<Node>; 4],
}

impl Router {
    pub(crate) fn new() -> Self {
        Self {
            trees: std::array::from_fn(|_| vec![Node::default()]),
        }
    }

    /// Adds a route; on conflict returns the index of the endpoint already
    /// serving the same method and path shape.
    pub(crate) fn insert(
        &mut self,
        method: Method,
        template: &Template,
        endpoint: usize,
    ) -> Result<(), usize> {
        let tree = &mut self.trees[method.index()];
        let mut node = 0;
        for seg in &template.segments {
            let next = match seg {
                TemplateSegment::Literal(lit) => tree[node]
                    .literals
                    .iter()
                    .find(|(l, _)| **l == **lit)
                    .map(|(_, c)| *c),
                TemplateSegment::Param(_) => tree[node].param,
            };
            node = match next {
                Some(child) => child,
                None => {
                    let child = tree.len();
                    tree.push(Node::default());
                    match seg {
                        TemplateSegment::Literal(lit) => {
                            tree[node].literals.push((lit.as_str().into(), child));
                        }
                        TemplateSegment::Param(_) => tree[node].param = Some(child),
                    }
                    child
                }
            };
        }
        match tree[node].endpoint {
            Some(existing) => Err(existing),
            None => {
                tree[node].endpoint = Some(endpoint);
                Ok(())
            }
        }
    }

    /// Resolves a request path to `(endpoint index, format, param values)`.
    pub(crate) fn lookup<'p>(
        &self,
        method: &str,
        path: &'p str,
    ) -> Option<(usize, ApiFormat, [&'p str; MAX_PARAMS])> {
        let method = Method::parse(method)?;
        let path = match path.find(['?', '#']) {
            Some(end) => &path[..end],
            None => path,
        };
        let mut parts = path.split('/').filter(|s| !s.is_empty());
        if parts.next()? != "api2" {
            return None;
        }
        let format = ApiFormat::parse(parts.next()?)?;
        let mut segs = [""; MAX_SEGMENTS];
        let mut n = 0;
        for part in parts {
            if n == MAX_SEGMENTS {
                return None;
            }
            segs[n] = part;
            n += 1;
        }
        let mut values = [""; MAX_PARAMS];
        let tree = &self.trees[method.index()];
        let endpoint = walk(tree, 0, &segs[..n], &mut values, 0)?;
        Some((endpoint, format, values))
    }
}

fn walk<'p>(
    tree: &[Node],
    node: usize,
    segs: &[&'p str],
    values: &mut [&'p str; MAX_PARAMS],
    depth: usize,
) -> Option<usize> {
    let current = &tree[node];
    let Some((first, rest)) = segs.split_first() else {
        return current.endpoint;
    };
    if let Some((_, child)) = current.literals.iter().find(|(l, _)| **l == **first)
        && let Some(hit) = walk(tree, *child, rest, values, depth)
    {
        return Some(hit);
    }
    if let Some(child) = current.param
        && depth < MAX_PARAMS
    {
        values[depth] = first;
        return walk(tree, child, rest, values, depth + 1);
    }
    None
}

/// Builds the public match from a router hit.
pub(crate) fn make_match<'a>(
    endpoint: &'a Endpoint,
    format: ApiFormat,
    values: [&'a str; MAX_PARAMS],
) -> RouteMatch<'a> {
    let mut items = [("", ""); MAX_PARAMS];
    let mut len = 0;
    for (name, value) in endpoint.param_names.iter().zip(values) {
        items[len] = (name.as_str(), value);
        len += 1;
    }
    RouteMatch {
        endpoint,
        format,
        params: Params { items, len },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parsing() {
        let t = Template::parse("/api2/{format}/nodes/{node}/network/{iface}").unwrap();
        assert_eq!(t.path, "/nodes/{node}/network/{iface}");
        assert_eq!(t.param_names(), vec!["node", "iface"]);
        assert!(Template::parse("nodes").is_err());
        assert!(Template::parse("/nodes//x").is_err());
        assert!(Template::parse("/nodes/{Node}").is_err());
        assert!(Template::parse("/nodes/{a}/{a}").is_err());
        assert!(Template::parse("/nodes/a{b}").is_err());
        assert!(Template::parse("/").is_ok());
    }

    #[test]
    fn backtracking_prefers_literals() {
        let mut r = Router::new();
        let a = Template::parse("/x/lit/end").unwrap();
        let b = Template::parse("/x/{p}/other").unwrap();
        r.insert(Method::Get, &a, 0).unwrap();
        r.insert(Method::Get, &b, 1).unwrap();
        assert_eq!(r.lookup("GET", "/api2/json/x/lit/end").unwrap().0, 0);
        let (ep, _, vals) = r.lookup("GET", "/api2/json/x/lit/other").unwrap();
        assert_eq!((ep, vals[0]), (1, "lit"));
        assert!(r.lookup("GET", "/api2/json/x/lit").is_none());
        assert!(r.lookup("POST", "/api2/json/x/lit/end").is_none());
        assert_eq!(
            r.insert(Method::Get, &Template::parse("/x/{q}/other").unwrap(), 2),
            Err(1)
        );
    }
}
