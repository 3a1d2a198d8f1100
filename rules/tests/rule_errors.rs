//! Bad rule files must fail with errors naming file, endpoint, key and line.

use pve_migration_rules::{Error, RuleError, RuleSet};

fn load_err(text: &str) -> RuleError {
    match RuleSet::load(&[("rules/site.toml", text)]) {
        Ok(_) => panic!("rule file unexpectedly accepted:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn unknown_key_names_file_endpoint_key_and_line() {
    let err = load_err(
        r#"
[[endpoint]]
id = "node.network.list"
sortby = "iface"
"#,
    );
    assert_eq!(err.file, "rules/site.toml");
    assert_eq!(err.endpoint.as_deref(), Some("node.network.list"));
    assert_eq!(err.key.as_deref(), Some("sortby"));
    assert_eq!(err.line, Some(4));
    let text = err.to_string();
    assert!(
        text.starts_with(r#"rules/site.toml: endpoint "node.network.list": unknown key "sortby""#),
        "{text}"
    );
    assert!(text.contains("(line 4)"), "{text}");
}

#[test]
fn unknown_key_in_second_endpoint_and_nested_table() {
    let err = load_err(
        r#"[[endpoint]]
id = "a.one"
method = "GET"
path = "/a"
class = "read"

[[endpoint]]
id = "a.two"
method = "GET"
path = "/b"
class = "read"
sort = [{ pointer = "/data", bye = "iface" }]
"#,
    );
    assert_eq!(err.endpoint.as_deref(), Some("a.two"));
    assert_eq!(err.key.as_deref(), Some("bye"));
    assert_eq!(err.line, Some(12));
}

#[test]
fn bad_class() {
    let err = load_err(
        r#"
[[endpoint]]
id = "x.y"
method = "GET"
path = "/x"
class = "writ"
"#,
    );
    assert_eq!(err.endpoint.as_deref(), Some("x.y"));
    assert_eq!(err.key.as_deref(), Some("class"));
    assert_eq!(err.line, Some(6));
    let text = err.to_string();
    assert!(text.contains("writ"), "{text}");
    assert!(text.contains("key \"class\""), "{text}");
}

#[test]
fn bad_pointer() {
    let err = load_err(
        r#"
[[endpoint]]
id = "node.network.list"
ignore = ["/data/0", "data/*/x"]
"#,
    );
    assert_eq!(err.endpoint.as_deref(), Some("node.network.list"));
    assert_eq!(err.key.as_deref(), Some("ignore"));
    assert_eq!(err.line, Some(4));
    assert!(
        err.to_string().contains("bad pointer \"data/*/x\""),
        "{err}"
    );

    let err = load_err(
        r#"
[[endpoint]]
id = "node.network.list"

sort = [{ pointer = "/data/~2" }]
"#,
    );
    assert_eq!(err.key.as_deref(), Some("sort"));
    assert_eq!(err.line, Some(5));
    assert!(err.to_string().contains("'~'"), "{err}");
}

#[test]
fn bad_regex() {
    let err = load_err(
        r#"
[[endpoint]]
id = "node.network.reload"
patterns = [{ pointer = "/data", kind = "regex", regex = "^UPID:(" }]
"#,
    );
    assert_eq!(err.endpoint.as_deref(), Some("node.network.reload"));
    assert_eq!(err.key.as_deref(), Some("patterns"));
    assert_eq!(err.line, Some(4));
    assert!(err.to_string().contains("bad regex"), "{err}");

    let err = load_err(
        r#"
[[endpoint]]
id = "node.network.reload"
patterns = [{ pointer = "/data", kind = "regex" }]
"#,
    );
    assert!(err.to_string().contains("needs a \"regex\" key"), "{err}");

    let err = load_err(
        r#"
[[endpoint]]
id = "node.network.reload"
patterns = [{ pointer = "/data", kind = "upid", regex = "x" }]
"#,
    );
    assert!(err.to_string().contains("only allowed with kind"), "{err}");

    let err = load_err(
        r#"
[[endpoint]]
id = "node.network.reload"
patterns = [{ pointer = "/data", kind = "upidd" }]
"#,
    );
    assert_eq!(err.key.as_deref(), Some("kind"));
    assert!(err.to_string().contains("upidd"), "{err}");
}

#[test]
fn duplicate_endpoint_id_in_one_file() {
    let err = load_err(
        r#"
[[endpoint]]
id = "site.thing"
method = "GET"
path = "/site/thing"
class = "read"

[[endpoint]]
id = "site.thing"
method = "PUT"
path = "/site/thing"
class = "write"
"#,
    );
    assert_eq!(err.endpoint.as_deref(), Some("site.thing"));
    assert_eq!(err.key.as_deref(), Some("id"));
    assert_eq!(err.line, Some(8));
    assert!(err.to_string().contains("duplicate endpoint id"), "{err}");
}

#[test]
fn same_id_across_files_is_an_override_not_an_error() {
    let a = r#"
[[endpoint]]
id = "site.thing"
method = "GET"
path = "/site/thing"
class = "read"
"#;
    let b = r#"
[[endpoint]]
id = "site.thing"
class = "write"
"#;
    let rules = RuleSet::load(&[("a.toml", a), ("b.toml", b)]).unwrap();
    let ep = rules.endpoint("site.thing").unwrap();
    assert_eq!(ep.class().as_str(), "write");
    assert_eq!(ep.source(), "b.toml");
}

#[test]
fn bad_method_and_path() {
    let err = load_err(
        r#"
[[endpoint]]
id = "x.y"
method = "PATCH"
path = "/x"
class = "read"
"#,
    );
    assert_eq!(err.key.as_deref(), Some("method"));
    assert_eq!(err.line, Some(4));

    let err = load_err(
        r#"
[[endpoint]]
id = "x.y"
method = "GET"
path = "/x/{Bad}"
class = "read"
"#,
    );
    assert_eq!(err.key.as_deref(), Some("path"));
    assert_eq!(err.line, Some(5));
}

#[test]
fn new_endpoint_needs_method_path_class() {
    let err = load_err(
        r#"
[[endpoint]]
id = "x.y"
method = "GET"
path = "/x"
"#,
    );
    assert_eq!(err.endpoint.as_deref(), Some("x.y"));
    assert!(err.to_string().contains("needs key \"class\""), "{err}");
}

#[test]
fn route_conflict() {
    let err = load_err(
        r#"
[[endpoint]]
id = "site.other-list"
method = "GET"
path = "/nodes/{n}/network"
class = "read"
"#,
    );
    assert_eq!(err.endpoint.as_deref(), Some("site.other-list"));
    assert_eq!(err.key.as_deref(), Some("path"));
    assert!(err.to_string().contains("node.network.list"), "{err}");
}

#[test]
fn bad_endpoint_id() {
    let err = load_err(
        r#"
[[endpoint]]
id = "Has Spaces"
"#,
    );
    assert_eq!(err.key.as_deref(), Some("id"));
}

#[test]
fn syntax_error_has_line() {
    let err = load_err("[[endpoint]]\nid = \"x.y\"\nsort = [\n");
    assert_eq!(err.line, Some(3));
    assert_eq!(err.endpoint.as_deref(), Some("x.y"));
    assert!(err.to_string().starts_with("rules/site.toml: "), "{err}");
}

#[test]
fn defaults_and_top_level_keys() {
    let err = load_err("[defaults]\nheaderz = []\n");
    assert_eq!(err.key.as_deref(), Some("headerz"));
    assert_eq!(err.line, Some(2));
    assert!(err.to_string().contains("[defaults]"), "{err}");

    let err = load_err("[defaults]\nignore = [\"nope\"]\n");
    assert_eq!(err.key.as_deref(), Some("ignore"));
    assert_eq!(err.line, Some(2));
    assert!(err.to_string().contains("[defaults]"), "{err}");

    let err = load_err("endpoints = []\n");
    assert_eq!(err.key.as_deref(), Some("endpoints"));
    assert_eq!(err.line, Some(1));
}

#[test]
fn wrong_value_type() {
    let err = load_err("[[endpoint]]\nid = \"node.network.list\"\nperl_scalars = \"yes\"\n");
    assert_eq!(err.endpoint.as_deref(), Some("node.network.list"));
    assert_eq!(err.key.as_deref(), Some("perl_scalars"));
    assert_eq!(err.line, Some(3));
}

#[test]
fn io_errors_name_the_path() {
    let err = RuleSet::from_paths(&["/nonexistent/site.toml"]).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/site.toml"), "{err}");
}

mod fuzz {
    use proptest::prelude::*;
    use pve_migration_rules::RuleSet;

    const PIECES: &[&str] = &[
        "[[endpoint]]\n",
        "[defaults]\n",
        "id = \"x.y\"\n",
        "id = \"node.network.list\"\n",
        "method = \"GET\"\n",
        "path = \"/x/{a}\"\n",
        "class = \"read\"\n",
        "class = 1\n",
        "sort = [{ pointer = \"/data\", by = \"iface\" }]\n",
        "ignore = [\"/a/*\"]\n",
        "patterns = [{ pointer = \"/d\", kind = \"regex\", regex = \"(\" }]\n",
        "é",
        "=",
        "\"",
        "[",
        "]",
        "{",
        "}",
        "\n",
        " ",
        "#c\n",
        "bogus = 1\n",
        "trim = [\"~\"]\n",
        "\u{1F600}",
    ];

    proptest! {
        #[test]
        fn loading_never_panics(parts in prop::collection::vec(prop::sample::select(PIECES), 0..24)) {
            let text: String = parts.concat();
            if let Err(e) = RuleSet::load(&[("fuzz.toml", &text)]) {
                prop_assert!(e.to_string().starts_with("fuzz.toml: "));
            }
        }
    }
}
