//! The `/cluster/sdn` API operations as pure functions.
//!
//! Each operation mirrors the handler of the same name in PVE's
//! `PVE/API2/Network/SDN*.pm` (pve-network for PVE 8): the parameter schema,
//! the checks in the same order, the same messages, and the same wrapping of
//! errors raised while the SDN lock is held:
//!
//! * a plain `die` inside the lock becomes
//!   `500 {what}: error during cfs-locked 'file-sdn__running-config' operation: {msg}`;
//! * a parameter exception inside the lock is stringified by
//!   `lock_sdn_config` and becomes
//!   `500 {what}: 400 Parameter verification failed.` with `{param}: {msg}`
//!   lines in the message;
//! * errors before the lock keep their status (`400` for the schema, `500`
//!   for `check_config` and "does not exist").
//!
//! An operation takes the SDN files' contents ([`SdnFiles`]) and returns an
//! [`SdnOutcome`]: the answer's `data` ([`Out`]) and the files a real node
//! would write. With [`MutateOptions::dry_run`] the outcome is the same but
//! marked, and the caller writes nothing.
//!
//! | PVE | here |
//! |---|---|
//! | `GET /cluster/sdn` | [`index`] |
//! | `PUT /cluster/sdn` | [`apply`] |
//! | `GET/POST /cluster/sdn/zones` | [`zones_list`], [`zone_create`] |
//! | `GET/PUT/DELETE /cluster/sdn/zones/{zone}` | [`zone_get`], [`zone_update`], [`zone_delete`] |
//! | `GET/POST /cluster/sdn/vnets` | [`vnets_list`], [`vnet_create`] |
//! | `GET/PUT/DELETE /cluster/sdn/vnets/{vnet}` | [`vnet_get`], [`vnet_update`], [`vnet_delete`] |
//! | `GET/POST /cluster/sdn/vnets/{vnet}/subnets` | [`subnets_list`], [`subnet_create`] |
//! | `GET/PUT/DELETE …/subnets/{subnet}` | [`subnet_get`], [`subnet_update`], [`subnet_delete`] |
//! | `GET /cluster/sdn/{controllers,ipams,dns}[/{id}]` | [`objects_list`], [`object_get`] |
//!
//! Not simulated: IPAM and DNS side effects (gateway registration in the PVE
//! IPAM, PowerDNS records), permissions (every caller may do everything),
//! `lock-token`, and writes to controllers, IPAMs and DNS servers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::render::Out;
use super::schema::{
    CONTROLLER_TYPES, DELETE, DIGEST, DNS_TYPES, IPAM_TYPES, Kind, PENDING, RUNNING, SUBNET_ID,
    SUBNET_OPTIONS, SUBNET_PROPS, Section, VNET_ID, VNET_OPTIONS, VNET_PROPS, ZONE_ID, ZONE_PROPS,
    ZONE_TYPES, kind_of, zone_plugin,
};
use super::section::{RunningConfig, SdnObject, SdnValue, SectionConfig, object_type, sha1_hex};
use crate::network::api::{ApiError, Host, MutateOptions, TaskInfo};
use crate::network::schema::{Fmt, Prop, verify};

/// Request parameters in arrival order (array parameters may repeat).
pub type SdnParams = Vec<(String, String)>;

/// One file of the SDN directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SdnFile {
    /// A section config file.
    Section(Section),
    /// `.running-config`.
    Running,
}

impl SdnFile {
    /// Every file.
    pub const ALL: [SdnFile; 7] = [
        SdnFile::Section(Section::Zones),
        SdnFile::Section(Section::Vnets),
        SdnFile::Section(Section::Subnets),
        SdnFile::Section(Section::Controllers),
        SdnFile::Section(Section::Ipams),
        SdnFile::Section(Section::Dns),
        SdnFile::Running,
    ];

    /// The file name in the SDN directory.
    pub fn file_name(self) -> &'static str {
        match self {
            SdnFile::Section(s) => s.file_name(),
            SdnFile::Running => ".running-config",
        }
    }
}

/// The contents of the SDN directory (a missing file is empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SdnFiles(pub BTreeMap<SdnFile, String>);

impl SdnFiles {
    /// A file's text (`""` when missing).
    pub fn get(&self, f: SdnFile) -> &str {
        self.0.get(&f).map_or("", String::as_str)
    }

    /// Replaces a file's text.
    pub fn set(&mut self, f: SdnFile, text: impl Into<String>) {
        self.0.insert(f, text.into());
    }

    /// Performs an outcome's writes unless it is a dry run; returns whether
    /// anything was written.
    pub fn commit(&mut self, outcome: &SdnOutcome) -> bool {
        if outcome.dry_run || outcome.writes.is_empty() {
            return false;
        }
        for (f, text) in &outcome.writes {
            self.set(*f, text.clone());
        }
        true
    }
}

/// The result of an SDN operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdnOutcome {
    /// The response `data`.
    pub data: Out,
    /// Files a real node would write (new full contents).
    pub writes: Vec<(SdnFile, String)>,
    /// Computed as a dry run: write nothing.
    pub dry_run: bool,
}

impl SdnOutcome {
    fn read(data: Out) -> Self {
        Self {
            data,
            writes: Vec::new(),
            dry_run: false,
        }
    }

    fn write(writes: Vec<(SdnFile, String)>, data: Out, opts: MutateOptions) -> Self {
        Self {
            data,
            writes,
            dry_run: opts.dry_run,
        }
    }
}

// ---------------------------------------------------------------------------
// state and parameters

/// Everything read from the SDN directory.
#[derive(Debug)]
struct State {
    zones: SectionConfig,
    vnets: SectionConfig,
    subnets: SectionConfig,
    controllers: SectionConfig,
    ipams: SectionConfig,
    dns: SectionConfig,
    running: RunningConfig,
}

impl State {
    fn load(files: &SdnFiles) -> Self {
        let s = |sec| SectionConfig::parse(sec, files.get(SdnFile::Section(sec)));
        let mut ipams = s(Section::Ipams);
        // PVE always adds the built-in IPAM (`Ipams::config`).
        if !ipams.ids.contains_key("pve") {
            let mut pve = SdnObject::new();
            pve.insert("type".into(), SdnValue::Str("pve".into()));
            ipams.ids.insert("pve".into(), pve);
        }
        Self {
            zones: s(Section::Zones),
            vnets: s(Section::Vnets),
            subnets: s(Section::Subnets),
            controllers: s(Section::Controllers),
            ipams,
            dns: s(Section::Dns),
            running: RunningConfig::parse(files.get(SdnFile::Running)),
        }
    }

    fn config(&self, section: Section) -> &SectionConfig {
        match section {
            Section::Zones => &self.zones,
            Section::Vnets => &self.vnets,
            Section::Subnets => &self.subnets,
            Section::Controllers => &self.controllers,
            Section::Ipams => &self.ipams,
            Section::Dns => &self.dns,
        }
    }

    /// The subnets of a vnet (`Vnets::get_subnets`).
    fn subnets_of(&self, vnet: &str) -> Vec<String> {
        self.subnets
            .ids
            .iter()
            .filter(|(_, s)| {
                s.get("vnet")
                    .is_some_and(|v| v.truthy() && v.text() == vnet)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn write(&self, section: Section) -> (SdnFile, String) {
        (
            SdnFile::Section(section),
            self.config(section).write(section),
        )
    }
}

/// Parameters split into scalars and arrays; path parameters win.
#[derive(Debug, Default)]
struct Args {
    scalars: BTreeMap<String, String>,
    arrays: BTreeMap<String, Vec<String>>,
}

impl Args {
    fn new(params: &SdnParams, path: &[(&str, &str)]) -> Self {
        let mut a = Args::default();
        for (k, v) in params {
            if k == "dhcp-range" {
                a.arrays.entry(k.clone()).or_default().push(v.clone());
            } else {
                a.scalars.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in path {
            a.scalars.insert((*k).to_string(), (*v).to_string());
        }
        a
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.scalars.get(k).map(String::as_str)
    }

    fn flag(&self, k: &str) -> bool {
        self.get(k) == Some("1")
    }

    /// Verifies against the method's schema (`arrays`: the array properties
    /// the method accepts).
    fn verify(&self, props: &[Prop], arrays: &[&str]) -> Result<(), ApiError> {
        let mut errors = verify(&self.scalars, props);
        for (k, values) in &self.arrays {
            if !arrays.contains(&k.as_str()) {
                errors.insert(
                    k.clone(),
                    "property is not defined in schema and the schema does not allow additional properties"
                        .into(),
                );
                continue;
            }
            for (i, v) in values.iter().enumerate() {
                if let Err(e) = parse_dhcp_range(v) {
                    errors.insert(format!("{k}[{i}]"), format!("invalid format - {e}"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::params(errors))
        }
    }

    /// The handler's `$param` without the given (extracted) keys.
    fn rest(&self, extracted: &[&str]) -> Vec<(String, ParamValue)> {
        let mut out: Vec<(String, ParamValue)> = self
            .scalars
            .iter()
            .filter(|(k, _)| !extracted.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), ParamValue::One(v.clone())))
            .collect();
        out.extend(
            self.arrays
                .iter()
                .filter(|(k, _)| !extracted.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), ParamValue::Many(v.clone()))),
        );
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[derive(Debug, Clone)]
enum ParamValue {
    One(String),
    Many(Vec<String>),
}

/// `pve-sdn-dhcp-range`: `start-address=IP,end-address=IP` (a property string).
fn parse_dhcp_range(v: &str) -> Result<BTreeMap<String, String>, String> {
    let mut res = BTreeMap::new();
    for part in v.split(',') {
        if part.trim().is_empty() {
            continue;
        }
        match part.split_once('=') {
            Some((k, val)) if !k.is_empty() && !val.is_empty() => {
                if res.contains_key(k) {
                    return Err(format!(
                        "duplicate key in comma-separated list property: {k}\n"
                    ));
                }
                if k != "start-address" && k != "end-address" {
                    return Err(format!(
                        "invalid key in comma-separated list property: {k}\n"
                    ));
                }
                res.insert(k.to_string(), val.to_string());
            }
            None => {
                return Err("value without key, but schema does not define a default key\n".into());
            }
            Some(_) => return Err("missing key in comma-separated list property\n".into()),
        }
    }
    let missing: Vec<&str> = ["end-address", "start-address"]
        .into_iter()
        .filter(|k| !res.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        let mut msg = "format error\n".to_string();
        for k in missing {
            msg.push_str(&format!(
                "{k}: property is missing and it is not optional\n"
            ));
        }
        return Err(msg);
    }
    Ok(res)
}

// ---------------------------------------------------------------------------
// errors

/// The lock id of `cfs_lock_file('sdn/.running-config')`.
const LOCK_ID: &str = "file-sdn__running-config";

/// What `lock_sdn_config($code, $what)` makes of an error raised inside.
fn locked<T>(what: &str, r: Result<T, ApiError>) -> Result<T, ApiError> {
    r.map_err(|e| {
        let inner = if e.is_param_error() {
            let mut m = format!("400 {}\n", ApiError::PARAM_MESSAGE);
            for (k, v) in &e.errors {
                m.push_str(&format!("{k}: {v}\n"));
            }
            m
        } else {
            format!(
                "error during cfs-locked '{LOCK_ID}' operation: {}\n",
                e.message
            )
        };
        ApiError::internal(format!("{what}: {inner}"))
    })
}

fn die(msg: impl Into<String>) -> ApiError {
    ApiError::internal(msg)
}

/// A `die` without a trailing newline: Perl appends the location.
fn die_at(msg: &str, file: &str, line: u32) -> ApiError {
    ApiError::internal(format!("{msg} at /usr/share/perl5/PVE/{file} line {line}."))
}

// ---------------------------------------------------------------------------
// check_config and friends

/// `SectionConfig::check_config`: every key must be an option of the type;
/// with `create` every required option must be there. Values are typed.
fn check_config(
    section: Section,
    kind: &str,
    options: &[(&str, bool)],
    params: &[(String, ParamValue)],
    create: bool,
) -> Result<SdnObject, ApiError> {
    let mut obj = SdnObject::new();
    obj.insert("type".into(), SdnValue::Str(kind.to_string()));
    for (k, v) in params {
        if !options.iter().any(|(o, _)| o == k) {
            return Err(die(format!("unexpected property '{k}'")));
        }
        let value = match v {
            ParamValue::Many(items) => SdnValue::List(items.clone()),
            ParamValue::One(s) => match kind_of(section, k) {
                Kind::List => SdnValue::List(vec![s.clone()]),
                kind => SdnValue::decode(kind, s).unwrap_or(SdnValue::Str(s.clone())),
            },
        };
        obj.insert(k.clone(), value);
    }
    if create {
        let mut required: Vec<&str> = options
            .iter()
            .filter(|(_, r)| *r)
            .map(|(k, _)| *k)
            .collect();
        required.sort_unstable();
        for k in required {
            if !params.iter().any(|(p, _)| p == k) {
                return Err(die(format!("missing value for required option '{k}'")));
            }
        }
    }
    Ok(obj)
}

/// `SectionConfig::delete_from_config`.
fn delete_from_config(
    data: &mut SdnObject,
    options: &[(&str, bool)],
    new: &SdnObject,
    delete: &str,
) -> Result<(), ApiError> {
    for k in crate::network::model::split_list(delete) {
        let Some((_, required)) = options.iter().find(|(o, _)| *o == k) else {
            return Err(die(format!("no such option '{k}'")));
        };
        if *required {
            return Err(die(format!("unable to delete required option '{k}'")));
        }
        if new.contains_key(&k) {
            return Err(die(format!(
                "cannot set and delete property '{k}' at the same time!"
            )));
        }
        data.remove(&k);
    }
    Ok(())
}

/// `PVE::Tools::assert_if_modified`.
fn assert_if_modified(current: &str, given: Option<&str>) -> Result<(), ApiError> {
    match given {
        Some(d) if !d.is_empty() && !current.is_empty() && d != current => Err(die(
            "detected modified configuration - file changed by other user? Try again.",
        )),
        _ => Ok(()),
    }
}

fn text_of(obj: &SdnObject, key: &str) -> Option<String> {
    obj.get(key).map(SdnValue::text)
}

fn truthy(obj: &SdnObject, key: &str) -> bool {
    obj.get(key).is_some_and(SdnValue::truthy)
}

fn int_of(obj: &SdnObject, key: &str) -> Option<i64> {
    match obj.get(key)? {
        SdnValue::Int(i) => Some(*i),
        SdnValue::Bool(b) => Some(i64::from(*b)),
        SdnValue::Str(s) => Some(crate::network::model::perl_num(s) as i64),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// views: config, running, pending

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    Config,
    Running,
    Pending,
}

impl View {
    fn of(a: &Args) -> Self {
        if a.flag("pending") {
            View::Pending
        } else if a.flag("running") {
            View::Running
        } else {
            View::Config
        }
    }
}

type OutMap = BTreeMap<String, Out>;

fn value_out(v: &SdnValue) -> Out {
    match v {
        SdnValue::Str(s) => Out::Str(s.clone()),
        SdnValue::Int(i) => Out::Int(*i),
        SdnValue::Bool(b) => Out::Bool(*b),
        SdnValue::Nodes(n) => Out::Str(n.join(",")),
        SdnValue::List(l) => Out::Arr(l.iter().map(|s| Out::Str(s.clone())).collect()),
    }
}

fn object_out(obj: &SdnObject) -> OutMap {
    obj.iter().map(|(k, v)| (k.clone(), value_out(v))).collect()
}

/// Perl's `$a ne $b` on two values (arrays are references: never equal).
fn perl_ne(a: &SdnValue, b: &SdnValue) -> bool {
    match (a.perl_string(), b.perl_string()) {
        (Some(x), Some(y)) => x != y,
        _ => true,
    }
}

/// `PVE::Network::SDN::pending_config`, quirks included: a key whose value
/// is false in both configurations shows up in `pending` as `null`, and
/// array values (`dhcp-range`) always count as changed.
fn pending_config(
    running: &BTreeMap<String, SdnObject>,
    config: &BTreeMap<String, SdnObject>,
) -> BTreeMap<String, OutMap> {
    let mut top: BTreeMap<String, OutMap> = BTreeMap::new();
    let mut pending: BTreeMap<String, OutMap> = BTreeMap::new();
    let mut state: BTreeMap<String, &'static str> = BTreeMap::new();

    for (id, r) in running {
        let c = config.get(id).filter(|c| !c.is_empty());
        for (key, rv) in r {
            top.entry(id.clone())
                .or_default()
                .insert(key.clone(), value_out(rv));
            match c {
                None => {
                    state.insert(id.clone(), "deleted");
                }
                Some(c) => match c.get(key) {
                    None => {
                        pending
                            .entry(id.clone())
                            .or_default()
                            .insert(key.clone(), Out::str("deleted"));
                        state.insert(id.clone(), "changed");
                    }
                    Some(cv) => {
                        if perl_ne(rv, cv) {
                            state.insert(id.clone(), "changed");
                        }
                    }
                },
            }
        }
        if state.contains_key(id) {
            pending.entry(id.clone()).or_default();
        }
    }

    for (id, c) in config {
        let r = running.get(id).filter(|r| !r.is_empty());
        for (key, raw) in c {
            let cv = raw.truthy().then_some(raw);
            let rv = r.and_then(|r| r.get(key)).filter(|v| v.truthy());
            let cv_out = cv.map_or(Out::Null, value_out);
            if key == "type" || key == "vnet" {
                top.entry(id.clone())
                    .or_default()
                    .insert(key.clone(), cv_out);
            } else {
                let differs = match (cv, rv) {
                    (_, None) => true,
                    (None, Some(_)) => true,
                    (Some(a), Some(b)) => perl_ne(a, b),
                };
                if differs {
                    pending
                        .entry(id.clone())
                        .or_default()
                        .insert(key.clone(), cv_out);
                }
            }
            if r.is_none() {
                state.insert(id.clone(), "new");
            } else if rv.is_none() && cv.is_some() {
                state.insert(id.clone(), "changed");
            }
        }
        if state.contains_key(id) {
            pending.entry(id.clone()).or_default();
        }
    }

    let ids: BTreeSet<String> = top
        .keys()
        .chain(pending.keys())
        .chain(state.keys())
        .cloned()
        .collect();
    ids.into_iter()
        .map(|id| {
            let mut m = top.remove(&id).unwrap_or_default();
            if let Some(p) = pending.remove(&id) {
                m.insert("pending".into(), Out::Obj(p));
            }
            if let Some(s) = state.get(&id) {
                m.insert("state".into(), Out::str(*s));
            }
            (id, m)
        })
        .collect()
}

/// The objects of a section in the requested view, and the digest (`None`
/// for running and pending views, whose hashes have none: PVE sends `null`).
fn view_objects(
    st: &State,
    section: Section,
    view: View,
) -> (BTreeMap<String, OutMap>, Option<String>) {
    match view {
        View::Config => {
            let cfg = st.config(section);
            (
                cfg.ids
                    .iter()
                    .map(|(id, o)| (id.clone(), object_out(o)))
                    .collect(),
                Some(cfg.digest.clone()),
            )
        }
        View::Running => (
            st.running
                .section(section)
                .iter()
                .map(|(id, o)| (id.clone(), object_out(o)))
                .collect(),
            None,
        ),
        View::Pending => (
            pending_config(&st.running.section(section), &st.config(section).ids),
            None,
        ),
    }
}

/// `$api_sdn_*_config`: the object plus its id key and the file digest.
fn entry(mut m: OutMap, id_key: &str, id: &str, digest: Option<&str>) -> Out {
    m.insert(id_key.into(), Out::str(id));
    m.insert("digest".into(), digest.map_or(Out::Null, Out::str));
    Out::Obj(m)
}

/// `$api_sdn_subnets_config`: `sdn_subnets_config` adds `id`, `cidr`,
/// `zone`, `network` and `mask` from the id; `dhcp-range` is parsed.
fn subnet_entry(mut m: OutMap, id: &str, digest: Option<&str>) -> Out {
    let mut parts = id.split('-');
    let zone = parts.next().unwrap_or("");
    let network = parts.next().unwrap_or("");
    let mask = parts.next().unwrap_or("");
    m.insert("id".into(), Out::str(id));
    m.insert("cidr".into(), Out::str(format!("{network}/{mask}")));
    m.insert("zone".into(), Out::str(zone));
    m.insert("network".into(), Out::str(network));
    m.insert("mask".into(), Out::NumStr(mask.to_string()));
    let ranges = match m.get("dhcp-range") {
        Some(Out::Arr(items)) => items
            .iter()
            .filter_map(|i| match i {
                Out::Str(s) => parse_dhcp_range(s).ok(),
                _ => None,
            })
            .map(|r| Out::Obj(r.into_iter().map(|(k, v)| (k, Out::Str(v))).collect()))
            .collect(),
        _ => Vec::new(),
    };
    m.insert("dhcp-range".into(), Out::Arr(ranges));
    entry(m, "subnet", id, digest)
}

fn type_matches(m: &OutMap, filter: Option<&str>) -> bool {
    match filter.filter(|t| !t.is_empty()) {
        None => true,
        Some(t) => matches!(m.get("type"), Some(Out::Str(s)) if s == t),
    }
}

// ---------------------------------------------------------------------------
// index and apply

/// `GET /cluster/sdn`.
pub fn index(params: &SdnParams) -> Result<SdnOutcome, ApiError> {
    Args::new(params, &[]).verify(&[], &[])?;
    let ids = ["vnets", "zones", "controllers", "ipams", "dns"];
    Ok(SdnOutcome::read(Out::Arr(
        ids.iter()
            .map(|id| Out::Obj([("id".to_string(), Out::str(*id))].into_iter().collect()))
            .collect(),
    )))
}

/// `PUT /cluster/sdn`: commit the configuration to `.running-config`
/// (version + 1) and start the `reloadnetworkall` worker.
pub fn apply(
    files: &SdnFiles,
    host: &Host,
    params: &SdnParams,
    task: &TaskInfo,
    opts: MutateOptions,
) -> Result<SdnOutcome, ApiError> {
    Args::new(params, &[]).verify(&[], &[])?;
    let st = State::load(files);
    let mut running = RunningConfig {
        version: Some(st.running.version.map_or(1, |v| v + 1)),
        ..Default::default()
    };
    for section in [
        Section::Zones,
        Section::Vnets,
        Section::Subnets,
        Section::Controllers,
    ] {
        running
            .sections
            .insert(section, st.config(section).ids.clone());
    }
    let upid = task.upid(&host.node, "reloadnetworkall", "");
    Ok(SdnOutcome::write(
        vec![(SdnFile::Running, running.write())],
        Out::Str(upid),
        opts,
    ))
}

// ---------------------------------------------------------------------------
// zones

fn zone_type_prop() -> Prop {
    Prop::string("type").one_of(&ZONE_TYPES)
}

/// `GET /cluster/sdn/zones`.
pub fn zones_list(files: &SdnFiles, params: &SdnParams) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[]);
    a.verify(&[zone_type_prop(), RUNNING, PENDING], &[])?;
    let st = State::load(files);
    let (objs, digest) = view_objects(&st, Section::Zones, View::of(&a));
    let list = objs
        .into_iter()
        .filter(|(_, m)| type_matches(m, a.get("type")))
        .map(|(id, m)| entry(m, "zone", &id, digest.as_deref()))
        .collect();
    Ok(SdnOutcome::read(Out::Arr(list)))
}

/// `GET /cluster/sdn/zones/{zone}`.
pub fn zone_get(files: &SdnFiles, zone: &str, params: &SdnParams) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[("zone", zone)]);
    a.verify(&[ZONE_ID, RUNNING, PENDING], &[])?;
    let st = State::load(files);
    let (mut objs, digest) = view_objects(&st, Section::Zones, View::of(&a));
    let m = objs
        .remove(zone)
        .ok_or_else(|| die(format!("sdn '{zone}' does not exist")))?;
    Ok(SdnOutcome::read(entry(m, "zone", zone, digest.as_deref())))
}

/// The DNS and IPAM references of a zone (create and update).
fn check_zone_refs(st: &State, opts: &SdnObject) -> Result<(), ApiError> {
    let dns = text_of(opts, "dns").filter(|s| !s.is_empty());
    if let Some(d) = &dns
        && !st.dns.ids.contains_key(d)
    {
        return Err(ApiError::param("dns", format!("{d} don't exist")));
    }
    if let Some(r) = text_of(opts, "reversedns").filter(|s| !s.is_empty())
        && !st.dns.ids.contains_key(&r)
    {
        return Err(ApiError::param("reversedns", format!("{r} don't exist")));
    }
    if truthy(opts, "dnszone") && dns.is_none() {
        return Err(ApiError::param("dnszone", "missing dns server"));
    }
    if let Some(i) = text_of(opts, "ipam").filter(|s| !s.is_empty())
        && !st.ipams.ids.contains_key(&i)
    {
        return Err(ApiError::param("ipam", format!("{i} not existing")));
    }
    Ok(())
}

const EVPN_PLUGIN: &str = "Network/SDN/Zones/EvpnPlugin.pm";

/// The zone plugin's `on_update_hook` (only EVPN has one in PVE 8).
fn zone_on_update_hook(st: &mut State, id: &str) -> Result<(), ApiError> {
    let Some(zone) = st.zones.ids.get(id) else {
        return Ok(());
    };
    if object_type(zone) != "evpn" {
        return Ok(());
    }
    let controller = text_of(zone, "controller").unwrap_or_default();
    match st.controllers.ids.get(&controller) {
        None => {
            return Err(die_at(
                &format!("controller {controller} don't exist"),
                EVPN_PLUGIN,
                283,
            ));
        }
        Some(c) if object_type(c) != "evpn" => {
            return Err(die_at(
                &format!("{controller} is not a evpn controller type"),
                EVPN_PLUGIN,
                285,
            ));
        }
        Some(_) => {}
    }
    let vrf = text_of(zone, "vrf-vxlan").unwrap_or_default();
    for (other, z) in &st.zones.ids {
        if other != id && z.get("vrf-vxlan").is_some_and(|v| v.text() == vrf) {
            return Err(die_at(
                &format!("vrf-vxlan {vrf} is already declared in {other}"),
                EVPN_PLUGIN,
                293,
            ));
        }
    }
    if !zone.contains_key("mac") {
        // PVE draws a random address with the datacenter's prefix; the
        // simulator derives one from the zone id so answers stay reproducible.
        let h = sha1_hex(id);
        let mac = format!("BC:24:11:{}:{}:{}", &h[0..2], &h[2..4], &h[4..6]).to_uppercase();
        if let Some(z) = st.zones.ids.get_mut(id) {
            z.insert("mac".into(), SdnValue::Str(mac));
        }
    }
    Ok(())
}

/// `POST /cluster/sdn/zones`.
pub fn zone_create(
    files: &SdnFiles,
    params: &SdnParams,
    opts: MutateOptions,
) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[]);
    let mut props = vec![zone_type_prop().required(), ZONE_ID];
    props.extend(ZONE_PROPS);
    a.verify(&props, &[])?;
    let kind = a.get("type").unwrap_or_default().to_string();
    let id = a.get("zone").unwrap_or_default().to_string();
    let plugin = zone_plugin(&kind).ok_or_else(|| die(format!("unknown section type '{kind}'")))?;
    let obj = check_config(
        Section::Zones,
        &kind,
        plugin.options,
        &a.rest(&["type", "zone"]),
        true,
    )?;
    let mut st = State::load(files);
    locked(
        "create sdn zone object failed",
        (|| {
            if st.zones.ids.contains_key(&id) {
                return Err(die(format!("sdn zone object ID '{id}' already defined")));
            }
            check_zone_refs(&st, &obj)?;
            st.zones.insert(&id, obj);
            zone_on_update_hook(&mut st, &id)
        })(),
    )?;
    Ok(SdnOutcome::write(
        vec![st.write(Section::Zones)],
        Out::Null,
        opts,
    ))
}

/// `PUT /cluster/sdn/zones/{zone}`.
pub fn zone_update(
    files: &SdnFiles,
    zone: &str,
    params: &SdnParams,
    opts: MutateOptions,
) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[("zone", zone)]);
    let mut props = vec![ZONE_ID, DIGEST, DELETE];
    props.extend(ZONE_PROPS);
    a.verify(&props, &[])?;
    let mut st = State::load(files);
    locked(
        "update sdn zone object failed",
        (|| {
            assert_if_modified(&st.zones.digest, a.get("digest"))?;
            let Some(current) = st.zones.ids.get(zone).cloned() else {
                return Err(die(format!("sdn '{zone}' does not exist")));
            };
            let kind = object_type(&current);
            let plugin =
                zone_plugin(&kind).ok_or_else(|| die(format!("unknown section type '{kind}'")))?;
            let new = check_config(
                Section::Zones,
                &kind,
                plugin.options,
                &a.rest(&["zone", "digest", "delete"]),
                false,
            )?;
            let old_ipam = text_of(&current, "ipam").filter(|s| !s.is_empty());
            let mut data = current;
            if let Some(delete) = a.get("delete").filter(|d| !d.is_empty()) {
                delete_from_config(&mut data, plugin.options, &new, delete)?;
            }
            for (k, v) in &new {
                data.insert(k.clone(), v.clone());
            }
            let new_ipam = text_of(&data, "ipam").filter(|s| !s.is_empty());
            if new_ipam != old_ipam {
                for s in st.subnets.ids.keys() {
                    if s.split('-').next() == Some(zone) {
                        return Err(ApiError::param(
                            "ipam",
                            "can't change ipam if a subnet is already defined in this zone",
                        ));
                    }
                }
            }
            check_zone_refs(&st, &new)?;
            st.zones.insert(zone, data);
            zone_on_update_hook(&mut st, zone)
        })(),
    )?;
    Ok(SdnOutcome::write(
        vec![st.write(Section::Zones)],
        Out::Null,
        opts,
    ))
}

/// `DELETE /cluster/sdn/zones/{zone}`.
pub fn zone_delete(
    files: &SdnFiles,
    zone: &str,
    params: &SdnParams,
    opts: MutateOptions,
) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[("zone", zone)]);
    a.verify(&[ZONE_ID], &[])?;
    let mut st = State::load(files);
    locked(
        "delete sdn zone object failed",
        (|| {
            if !st.zones.ids.contains_key(zone) {
                return Err(die(format!("sdn '{zone}' does not exist")));
            }
            // the plugin's on_delete_hook
            for (vnet, v) in &st.vnets.ids {
                if object_type(v) == "vnet" && text_of(v, "zone").as_deref() == Some(zone) {
                    return Err(die_at(
                        &format!("zone {zone} is used by vnet {vnet}"),
                        "Network/SDN/Zones/Plugin.pm",
                        138,
                    ));
                }
            }
            st.zones.remove(zone);
            Ok(())
        })(),
    )?;
    Ok(SdnOutcome::write(
        vec![st.write(Section::Zones)],
        Out::Null,
        opts,
    ))
}

// ---------------------------------------------------------------------------
// vnets

const VNETS_API: &str = "API2/Network/SDN/Vnets.pm";

/// `check_vnet_access`: the vnet must exist in the current configuration.
fn check_vnet(st: &State, vnet: &str) -> Result<(), ApiError> {
    if st.vnets.ids.contains_key(vnet) {
        Ok(())
    } else {
        Err(die(format!("sdn vnet '{vnet}' does not exist")))
    }
}

/// `GET /cluster/sdn/vnets`.
pub fn vnets_list(files: &SdnFiles, params: &SdnParams) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[]);
    a.verify(&[RUNNING, PENDING], &[])?;
    let st = State::load(files);
    let (objs, digest) = view_objects(&st, Section::Vnets, View::of(&a));
    let list = objs
        .into_iter()
        .map(|(id, m)| entry(m, "vnet", &id, digest.as_deref()))
        .collect();
    Ok(SdnOutcome::read(Out::Arr(list)))
}

/// `GET /cluster/sdn/vnets/{vnet}`.
pub fn vnet_get(files: &SdnFiles, vnet: &str, params: &SdnParams) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[("vnet", vnet)]);
    a.verify(&[VNET_ID, RUNNING, PENDING], &[])?;
    let st = State::load(files);
    check_vnet(&st, vnet)?;
    let (mut objs, digest) = view_objects(&st, Section::Vnets, View::of(&a));
    let m = objs
        .remove(vnet)
        .ok_or_else(|| die(format!("sdn vnet '{vnet}' does not exist")))?;
    Ok(SdnOutcome::read(entry(m, "vnet", vnet, digest.as_deref())))
}

/// The zone plugin's `vnet_update_hook`, then the vnet plugin's
/// `on_update_hook`. `lookup_line` is where the API croaks when the zone
/// does not exist.
fn vnet_hooks(st: &State, id: &str, lookup_line: u32) -> Result<(), ApiError> {
    let vnet = &st.vnets.ids[id];
    let zone_id = text_of(vnet, "zone").unwrap_or_default();
    let Some(zone) = st.zones.ids.get(&zone_id) else {
        return Err(die_at(
            "cannot lookup undefined type!",
            VNETS_API,
            lookup_line,
        ));
    };
    let zone_type = object_type(zone);
    let tag = int_of(vnet, "tag");
    let same_zone = |other: &SdnObject| text_of(other, "zone").as_deref() == Some(zone_id.as_str());
    let others = || st.vnets.ids.iter().filter(|(o, _)| o.as_str() != id);
    let vxlan_unique = |tag: i64| -> Result<(), ApiError> {
        for (o, other) in others() {
            let other_zone = text_of(other, "zone").unwrap_or_default();
            let other_type = st.zones.ids.get(&other_zone).map(object_type);
            if !matches!(other_type.as_deref(), Some("vxlan" | "evpn")) {
                continue;
            }
            if truthy(other, "tag") && int_of(other, "tag") == Some(tag) {
                return Err(ApiError::param(
                    "tag",
                    format!("vxlan tag {tag} already exist in vnet {o} in zone {other_zone} "),
                ));
            }
        }
        Ok(())
    };
    match zone_type.as_str() {
        "simple" if vnet.contains_key("tag") => {
            return Err(ApiError::param(
                "tag",
                "vlan tag is not allowed on simple zone",
            ));
        }
        "vlan" => {
            let Some(tag) = tag else {
                return Err(ApiError::param("tag", "missing vlan tag"));
            };
            if tag > 4096 {
                return Err(ApiError::param("tag", "vlan tag max value is 4096"));
            }
            for (o, other) in others() {
                if same_zone(other) && truthy(other, "tag") && int_of(other, "tag") == Some(tag) {
                    return Err(ApiError::param(
                        "tag",
                        format!("tag {tag} already exist in vnet {o}"),
                    ));
                }
            }
        }
        "qinq" => {
            let tag = tag.filter(|t| *t != 0);
            if tag.is_some_and(|t| t > 4096) {
                return Err(ApiError::param("tag", "VLAN tag maximal value is 4096"));
            }
            for (o, other) in others() {
                if !same_zone(other) {
                    continue;
                }
                match tag {
                    Some(t) => {
                        if truthy(other, "tag") && int_of(other, "tag") == Some(t) {
                            return Err(ApiError::param(
                                "tag",
                                format!("tag {t} already exist in zone {zone_id} vnet {o}"),
                            ));
                        }
                    }
                    None => {
                        if !truthy(other, "tag") {
                            return Err(ApiError::param(
                                "tag",
                                format!("tag-less vnet already exists in zone {zone_id} vnet {o}"),
                            ));
                        }
                    }
                }
            }
        }
        "vxlan" | "evpn" => {
            let Some(tag) = tag else {
                return Err(ApiError::param("tag", "missing vxlan tag"));
            };
            if tag > 16_777_216 {
                return Err(ApiError::param("tag", "vxlan tag max value is 16777216"));
            }
            if zone_type == "evpn" && truthy(vnet, "vlanaware") {
                return Err(ApiError::param(
                    "vlan-aware",
                    "vlan-aware option can't be enabled with evpn",
                ));
            }
            vxlan_unique(tag)?;
        }
        _ => {}
    }
    if truthy(vnet, "vlanaware") && !st.subnets_of(id).is_empty() {
        return Err(ApiError::param(
            "vlanaware",
            "vlanaware vnet is not compatible with subnets",
        ));
    }
    Ok(())
}

fn vnet_create_props() -> Vec<Prop> {
    let mut props = vec![VNET_ID, Prop::string("type").one_of(&["vnet"])];
    props.extend(VNET_PROPS);
    // `zone` is required by the only vnet plugin, so the schema requires it
    props[2] = Prop::string("zone").required();
    props
}

/// `POST /cluster/sdn/vnets`.
pub fn vnet_create(
    files: &SdnFiles,
    params: &SdnParams,
    opts: MutateOptions,
) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[]);
    a.verify(&vnet_create_props(), &[])?;
    let id = a.get("vnet").unwrap_or_default().to_string();
    let mut st = State::load(files);
    locked(
        "create sdn vnet object failed",
        (|| {
            let obj = check_config(
                Section::Vnets,
                "vnet",
                &VNET_OPTIONS,
                &a.rest(&["type", "vnet"]),
                true,
            )?;
            if st.vnets.ids.contains_key(&id) {
                return Err(die(format!("sdn vnet object ID '{id}' already defined")));
            }
            st.vnets.insert(&id, obj);
            vnet_hooks(&st, &id, 247)
        })(),
    )?;
    Ok(SdnOutcome::write(
        vec![st.write(Section::Vnets)],
        Out::Null,
        opts,
    ))
}

/// `PUT /cluster/sdn/vnets/{vnet}`.
pub fn vnet_update(
    files: &SdnFiles,
    vnet: &str,
    params: &SdnParams,
    opts: MutateOptions,
) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[("vnet", vnet)]);
    let mut props = vec![VNET_ID, DIGEST, DELETE];
    props.extend(VNET_PROPS);
    a.verify(&props, &[])?;
    let mut st = State::load(files);
    check_vnet(&st, vnet)?;
    locked(
        "update sdn vnet object failed",
        (|| {
            assert_if_modified(&st.vnets.digest, a.get("digest"))?;
            let new = check_config(
                Section::Vnets,
                "vnet",
                &VNET_OPTIONS,
                &a.rest(&["vnet", "digest", "delete"]),
                false,
            )?;
            let mut data = st.vnets.ids[vnet].clone();
            let old_zone = text_of(&data, "zone").unwrap_or_default();
            if let Some(delete) = a.get("delete").filter(|d| !d.is_empty()) {
                delete_from_config(&mut data, &VNET_OPTIONS, &new, delete)?;
            }
            for (k, v) in &new {
                data.insert(k.clone(), v.clone());
            }
            let new_zone = text_of(&data, "zone").filter(|z| !z.is_empty());
            let Some(new_zone) = new_zone else {
                return Err(ApiError::param("zone", "cannot delete zone"));
            };
            if !st.subnets_of(vnet).is_empty() && old_zone != new_zone {
                return Err(ApiError::param(
                    "zone",
                    "can't change zone if subnets exist",
                ));
            }
            st.vnets.insert(vnet, data);
            vnet_hooks(&st, vnet, 297)
        })(),
    )?;
    Ok(SdnOutcome::write(
        vec![st.write(Section::Vnets)],
        Out::Null,
        opts,
    ))
}

/// `DELETE /cluster/sdn/vnets/{vnet}`.
pub fn vnet_delete(
    files: &SdnFiles,
    vnet: &str,
    params: &SdnParams,
    opts: MutateOptions,
) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[("vnet", vnet)]);
    a.verify(&[VNET_ID], &[])?;
    let mut st = State::load(files);
    check_vnet(&st, vnet)?;
    locked(
        "delete sdn vnet object failed",
        (|| {
            if !st.subnets_of(vnet).is_empty() {
                return Err(ApiError::param(
                    "vnet",
                    "Can't delete vnet if subnets exists",
                ));
            }
            st.vnets.remove(vnet);
            Ok(())
        })(),
    )?;
    Ok(SdnOutcome::write(
        vec![st.write(Section::Vnets)],
        Out::Null,
        opts,
    ))
}

// ---------------------------------------------------------------------------
// subnets

/// `GET /cluster/sdn/vnets/{vnet}/subnets`.
pub fn subnets_list(
    files: &SdnFiles,
    vnet: &str,
    params: &SdnParams,
) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[("vnet", vnet)]);
    a.verify(&[VNET_ID, RUNNING, PENDING], &[])?;
    let st = State::load(files);
    check_vnet(&st, vnet)?;
    let (objs, digest) = view_objects(&st, Section::Subnets, View::of(&a));
    let list = objs
        .into_iter()
        .filter(|(_, m)| matches!(m.get("vnet"), Some(Out::Str(v)) if v == vnet))
        .map(|(id, m)| subnet_entry(m, &id, digest.as_deref()))
        .collect();
    Ok(SdnOutcome::read(Out::Arr(list)))
}

/// `GET /cluster/sdn/vnets/{vnet}/subnets/{subnet}`.
pub fn subnet_get(
    files: &SdnFiles,
    vnet: &str,
    subnet: &str,
    params: &SdnParams,
) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[("vnet", vnet), ("subnet", subnet)]);
    a.verify(&[VNET_ID, SUBNET_ID, RUNNING, PENDING], &[])?;
    let st = State::load(files);
    check_vnet(&st, vnet)?;
    let (mut objs, digest) = view_objects(&st, Section::Subnets, View::of(&a));
    let m = objs
        .remove(subnet)
        .ok_or_else(|| die(format!("sdn subnet '{subnet}' does not exist")))?;
    let e = subnet_entry(m, subnet, digest.as_deref());
    if !matches!(e.get("vnet"), Some(Out::Str(v)) if v == vnet) {
        return Err(ApiError::param("vnet", "wrong vnet"));
    }
    Ok(SdnOutcome::read(e))
}

/// An IP address as a number with its family.
fn ip_bits(s: &str) -> Option<(u128, bool)> {
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some((u128::from(u32::from(a)), false)),
        IpAddr::V6(a) => Some((u128::from(a), true)),
    }
}

/// `Net::Subnet::subnet_matcher($cidr)->($ip)`.
fn in_subnet(ip: &str, network: &str, mask: &str) -> bool {
    let (Some((ip, v6)), Some((net, net_v6)), Ok(bits)) =
        (ip_bits(ip), ip_bits(network), mask.parse::<u32>())
    else {
        return false;
    };
    let width = if v6 { 128 } else { 32 };
    if v6 != net_v6 || bits > width {
        return false;
    }
    let shift = width - bits;
    let m = if bits == 0 {
        0
    } else {
        (u128::MAX << shift) & (u128::MAX >> (128 - width))
    };
    ip & m == net & m
}

/// `SubnetPlugin::on_update_hook` without the IPAM part.
fn subnet_on_update_hook(st: &State, id: &str) -> Result<(), ApiError> {
    let subnet = &st.subnets.ids[id];
    let mut parts = id.split('-');
    let _zone = parts.next();
    let network = parts.next().unwrap_or("");
    let mask = parts.next().unwrap_or("");
    let cidr = format!("{network}/{mask}");
    if let Some(vnet_id) = text_of(subnet, "vnet").filter(|v| !v.is_empty()) {
        let Some(vnet) = st.vnets.ids.get(&vnet_id) else {
            return Err(ApiError::param("vnet", format!("{vnet_id} don't exist")));
        };
        if truthy(vnet, "vlanaware") {
            return Err(ApiError::param(
                "vnet",
                "you can't add a subnet on a vlanaware vnet",
            ));
        }
    }
    if let Some(gw) = text_of(subnet, "gateway").filter(|g| !g.is_empty()) {
        let point_to_point = gw.parse::<std::net::Ipv4Addr>().is_ok() && mask == "32";
        if !in_subnet(&gw, network, mask) && !point_to_point {
            return Err(ApiError::param(
                "gateway",
                format!("{gw} is not in subnet {cidr}"),
            ));
        }
    }
    let ranges = match subnet.get("dhcp-range") {
        Some(SdnValue::List(l)) => l.iter().filter_map(|r| parse_dhcp_range(r).ok()).collect(),
        _ => Vec::new(),
    };
    let mut validated: Vec<(u128, u128, bool)> = Vec::new();
    for r in ranges {
        let start = &r["start-address"];
        let end = &r["end-address"];
        let err = |m: String| ApiError::param("dhcp-range", m);
        let Some((s, s6)) = ip_bits(start) else {
            return Err(err(format!("start-address is not a valid IP {start}")));
        };
        let Some((e, e6)) = ip_bits(end) else {
            return Err(err(format!("end-address is not a valid IP {end}")));
        };
        if s6 == e6 && s > e {
            return Err(err(format!(
                "start-address {start} must be smaller than end-address {end}"
            )));
        }
        if !in_subnet(start, network, mask) {
            return Err(err(format!(
                "start-address {start} is not in subnet {cidr}"
            )));
        }
        if !in_subnet(end, network, mask) {
            return Err(err(format!("end-address {end} is not in subnet {cidr}")));
        }
        if validated
            .iter()
            .any(|(vs, ve, v6)| *v6 == s6 && s <= *ve && *vs <= e)
        {
            return Err(err("dhcp ranges must not overlap".into()));
        }
        validated.push((s, e, s6));
    }
    Ok(())
}

fn subnet_props(update: bool) -> Vec<Prop> {
    let mut props = vec![SUBNET_ID];
    if update {
        props.extend([DIGEST, DELETE]);
    } else {
        props.push(Prop::string("type").one_of(&["subnet"]));
    }
    props.extend(SUBNET_PROPS);
    if !update {
        props.retain(|p| p.name != "vnet");
        props.push(Prop::string("vnet").required());
    }
    props
}

/// `POST /cluster/sdn/vnets/{vnet}/subnets` (`subnet` is the CIDR; the id
/// becomes `{zone}-{network}-{mask}`).
pub fn subnet_create(
    files: &SdnFiles,
    vnet: &str,
    params: &SdnParams,
    opts: MutateOptions,
) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[("vnet", vnet)]);
    a.verify(&subnet_props(false), &["dhcp-range"])?;
    let cidr = a.get("subnet").unwrap_or_default().to_string();
    let mut st = State::load(files);
    check_vnet(&st, vnet)?;
    locked(
        "create sdn subnet object failed",
        (|| {
            let zone = st
                .vnets
                .ids
                .get(vnet)
                .and_then(|v| text_of(v, "zone"))
                .unwrap_or_default();
            let id = format!("{zone}-{}", cidr.replacen('/', "-", 1));
            let obj = check_config(
                Section::Subnets,
                "subnet",
                &SUBNET_OPTIONS,
                &a.rest(&["type", "subnet"]),
                true,
            )?;
            if st.subnets.ids.contains_key(&id) {
                return Err(die(format!("sdn subnet object ID '{id}' already defined")));
            }
            st.subnets.insert(&id, obj);
            subnet_on_update_hook(&st, &id)
        })(),
    )?;
    Ok(SdnOutcome::write(
        vec![st.write(Section::Subnets)],
        Out::Null,
        opts,
    ))
}

/// `PUT /cluster/sdn/vnets/{vnet}/subnets/{subnet}` (as in PVE, the path's
/// vnet is written into the subnet).
pub fn subnet_update(
    files: &SdnFiles,
    vnet: &str,
    subnet: &str,
    params: &SdnParams,
    opts: MutateOptions,
) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[("vnet", vnet), ("subnet", subnet)]);
    a.verify(&subnet_props(true), &["dhcp-range"])?;
    let mut st = State::load(files);
    check_vnet(&st, vnet)?;
    locked(
        "update sdn subnet object failed",
        (|| {
            let Some(current) = st.subnets.ids.get(subnet).cloned() else {
                return Err(die(format!("sdn subnet '{subnet}' does not exist")));
            };
            assert_if_modified(&st.subnets.digest, a.get("digest"))?;
            let new = check_config(
                Section::Subnets,
                "subnet",
                &SUBNET_OPTIONS,
                &a.rest(&["subnet", "digest", "delete"]),
                false,
            )?;
            let mut data = current;
            if let Some(delete) = a.get("delete").filter(|d| !d.is_empty()) {
                delete_from_config(&mut data, &SUBNET_OPTIONS, &new, delete)?;
            }
            for (k, v) in &new {
                data.insert(k.clone(), v.clone());
            }
            st.subnets.insert(subnet, data);
            subnet_on_update_hook(&st, subnet)
        })(),
    )?;
    Ok(SdnOutcome::write(
        vec![st.write(Section::Subnets)],
        Out::Null,
        opts,
    ))
}

/// `DELETE /cluster/sdn/vnets/{vnet}/subnets/{subnet}` (deleting an id that
/// does not exist succeeds, as in PVE with a zone without IPAM).
pub fn subnet_delete(
    files: &SdnFiles,
    vnet: &str,
    subnet: &str,
    params: &SdnParams,
    opts: MutateOptions,
) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[("vnet", vnet), ("subnet", subnet)]);
    a.verify(&[VNET_ID, SUBNET_ID], &[])?;
    let mut st = State::load(files);
    check_vnet(&st, vnet)?;
    st.subnets.remove(subnet);
    Ok(SdnOutcome::write(
        vec![st.write(Section::Subnets)],
        Out::Null,
        opts,
    ))
}

// ---------------------------------------------------------------------------
// controllers, IPAMs, DNS (read-only)

/// The id key, id format and types of a read-only section.
fn object_meta(section: Section) -> (&'static str, Fmt, &'static [&'static str]) {
    match section {
        Section::Controllers => ("controller", Fmt::SdnId("controller"), &CONTROLLER_TYPES),
        Section::Ipams => ("ipam", Fmt::SdnId("ipam"), &IPAM_TYPES),
        _ => ("dns", Fmt::SdnId("dns"), &DNS_TYPES),
    }
}

/// `GET /cluster/sdn/{controllers,ipams,dns}` (controllers also take
/// `running`/`pending`). The IPAM list is built from a hash in PVE, so its
/// order is Perl hash order.
pub fn objects_list(
    files: &SdnFiles,
    section: Section,
    params: &SdnParams,
) -> Result<SdnOutcome, ApiError> {
    let a = Args::new(params, &[]);
    let (id_key, _, types) = object_meta(section);
    let mut props = vec![Prop::string("type").one_of(types)];
    if section == Section::Controllers {
        props.extend([RUNNING, PENDING]);
    }
    a.verify(&props, &[])?;
    let st = State::load(files);
    let view = if section == Section::Controllers {
        View::of(&a)
    } else {
        View::Config
    };
    let (objs, digest) = view_objects(&st, section, view);
    let list: Vec<Out> = objs
        .into_iter()
        .filter(|(_, m)| type_matches(m, a.get("type")))
        .map(|(id, m)| entry(m, id_key, &id, digest.as_deref()))
        .collect();
    Ok(SdnOutcome::read(if section == Section::Ipams {
        Out::HashArr(list)
    } else {
        Out::Arr(list)
    }))
}

/// `GET /cluster/sdn/{controllers,ipams,dns}/{id}`.
pub fn object_get(
    files: &SdnFiles,
    section: Section,
    id: &str,
    params: &SdnParams,
) -> Result<SdnOutcome, ApiError> {
    let (id_key, fmt, _) = object_meta(section);
    let a = Args::new(params, &[(id_key, id)]);
    let mut props = vec![Prop::string(id_key).format(fmt).required()];
    if section == Section::Controllers {
        props.extend([RUNNING, PENDING]);
    }
    a.verify(&props, &[])?;
    let st = State::load(files);
    let view = if section == Section::Controllers {
        View::of(&a)
    } else {
        View::Config
    };
    let (mut objs, digest) = view_objects(&st, section, view);
    let m = objs
        .remove(id)
        .ok_or_else(|| die(format!("sdn '{id}' does not exist")))?;
    Ok(SdnOutcome::read(entry(m, id_key, id, digest.as_deref())))
}

#[cfg(test)]
mod tests;
