//! The `/nodes/{node}/network` API operations as pure functions.
//!
//! Each operation mirrors the handler of the same name in PVE's
//! `PVE/API2/Network.pm`: the same parameter schema, the same checks in the
//! same order and the same messages. Instead of touching files, an operation
//! takes the current file contents ([`NetworkFiles`]) and returns an
//! [`Outcome`]: the response data plus the file change ([`FileEffect`]) a real
//! node would make. Writing is the caller's job ([`NetworkFiles::commit`]);
//! with [`MutateOptions::dry_run`] the outcome is identical but marked as a dry
//! run, and `commit` ignores it.
//!
//! | PVE                          | here       |
//! |------------------------------|------------|
//! | `GET    /network`            | [`list`]   |
//! | `POST   /network`            | [`create`] |
//! | `PUT    /network`            | [`apply`]  |
//! | `DELETE /network`            | [`revert`] |
//! | `GET    /network/{iface}`    | [`get`]    |
//! | `PUT    /network/{iface}`    | [`update`] |
//! | `DELETE /network/{iface}`    | [`delete`] |

use std::collections::BTreeMap;

use crate::diff::{FileTime, interfaces_changes};
use crate::links::HostState;
use crate::model::{Config, Iface, Value, perl_num, perl_split_ws, split_list};
use crate::parse::parse_interfaces;
use crate::schema::{Fmt, Prop, verify};
use crate::write::{WriteOptions, write_config_owned};

/// Request parameters as they arrive in a form or JSON body (all strings).
pub type Params = BTreeMap<String, String>;

/// A failed API call, shaped like PVE's exceptions.
///
/// Parameter errors have status 400, the message `Parameter verification
/// failed.` and one entry per parameter in `errors`; the HTTP layer sends the
/// message as reason phrase and the errors in the body. Other failures carry
/// PVE's message (e.g. a writer check) and usually status 500.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Reason phrase / error message (without trailing newline).
    pub message: String,
    /// Per-parameter messages (empty unless a parameter was rejected).
    pub errors: BTreeMap<String, String>,
    /// Whether the body's `message` ends with a newline: a Perl `die "…\n"`
    /// and parameter errors do, pveproxy's own errors (501) do not.
    pub newline: bool,
}

impl ApiError {
    /// The message of every parameter error.
    pub const PARAM_MESSAGE: &'static str = "Parameter verification failed.";

    /// A `400 Parameter verification failed.` error.
    pub fn params(errors: BTreeMap<String, String>) -> Self {
        Self {
            status: 400,
            message: Self::PARAM_MESSAGE.to_string(),
            errors,
            newline: true,
        }
    }

    /// A parameter error for a single parameter (PVE's `raise_param_exc`).
    pub fn param(key: &str, msg: impl Into<String>) -> Self {
        Self::params(BTreeMap::from([(key.to_string(), msg.into())]))
    }

    /// Any other failure (a `die` in the handler): status 500.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::with_status(500, msg)
    }

    /// A failure with the given status (a `die` of a `PVE::Exception` with
    /// a code).
    pub fn with_status(status: u16, msg: impl Into<String>) -> Self {
        let msg = msg.into();
        Self {
            status,
            message: msg.trim_end_matches('\n').to_string(),
            errors: BTreeMap::new(),
            newline: true,
        }
    }

    /// pveproxy's `501 Method '… …' not implemented` for a path or method
    /// without a handler (`rel_path` below `/api2/{format}`).
    pub fn not_implemented(method: &str, rel_path: &str) -> Self {
        Self {
            status: 501,
            message: format!("Method '{method} {rel_path}' not implemented"),
            errors: BTreeMap::new(),
            newline: false,
        }
    }

    /// Whether this is a parameter verification error.
    pub fn is_param_error(&self) -> bool {
        self.status == 400 && !self.errors.is_empty()
    }
}

/// An operation of the node network API, by method and path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `GET /nodes/{node}/network`.
    List,
    /// `POST /nodes/{node}/network`.
    Create,
    /// `PUT /nodes/{node}/network`: reload (apply the pending changes).
    Apply,
    /// `DELETE /nodes/{node}/network`: drop the pending changes.
    Revert,
    /// `GET /nodes/{node}/network/{iface}`.
    Get,
    /// `PUT /nodes/{node}/network/{iface}`.
    Update,
    /// `DELETE /nodes/{node}/network/{iface}`.
    Delete,
}

impl Operation {
    /// The operation for a method on the collection (`iface` absent) or on
    /// one interface; `None` where PVE has no handler (501).
    pub fn route(method: &str, on_iface: bool) -> Option<Self> {
        Some(match (method, on_iface) {
            ("GET", false) => Operation::List,
            ("POST", false) => Operation::Create,
            ("PUT", false) => Operation::Apply,
            ("DELETE", false) => Operation::Revert,
            ("GET", true) => Operation::Get,
            ("PUT", true) => Operation::Update,
            ("DELETE", true) => Operation::Delete,
            _ => return None,
        })
    }

    /// Whether the operation changes anything (everything but the reads).
    pub fn mutates(self) -> bool {
        !matches!(self, Operation::List | Operation::Get)
    }

    /// Whether the operation edits the configuration files under the
    /// network lock (create, update, delete; revert only removes the
    /// pending file and PVE takes no lock for it).
    pub fn locks(self) -> bool {
        matches!(
            self,
            Operation::Create | Operation::Update | Operation::Delete
        )
    }

    /// The privilege PVE checks on `/nodes/{node}`; `None` for the list,
    /// which any authenticated user may call (`user => 'all'`).
    pub fn privilege(self) -> Option<&'static str> {
        match self {
            Operation::List => None,
            Operation::Get => Some("Sys.Audit"),
            _ => Some("Sys.Modify"),
        }
    }

    /// PVE's method name (`index`, `create_network`, …), for logs.
    pub fn name(self) -> &'static str {
        match self {
            Operation::List => "index",
            Operation::Create => "create_network",
            Operation::Apply => "reload_network_config",
            Operation::Revert => "revert_network_changes",
            Operation::Get => "network_config",
            Operation::Update => "update_network",
            Operation::Delete => "delete_network",
        }
    }
}

/// Where a [`Host`]'s kernel view comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Links {
    /// What the kernel reported (`ip -details -json link show`).
    Known(HostState),
    /// No kernel to ask (the simulator, tests): derived from the applied
    /// interfaces file on every read, see [`HostState::derived_from_file`].
    FromApplied {
        /// Physical NICs that exist although the file does not mention them.
        extra_nics: Vec<String>,
    },
}

/// The node an operation runs on: its name, what its kernel reports and what
/// is installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// Node name (used in UPIDs).
    pub node: String,
    /// The kernel's links (`exists`, `active`, altnames).
    pub links: Links,
    /// Whether ifupdown2 is installed (`/usr/share/ifupdown2` exists): the
    /// writer then uses ifupdown2's syntax, and only then can `apply` reload.
    pub ifupdown2: bool,
    /// Whether Open vSwitch is installed (`/usr/bin/ovs-vsctl` is
    /// executable); creating `OVS*` interfaces needs it.
    pub openvswitch: bool,
}

impl Host {
    /// A node with ifupdown2 and without Open vSwitch (PVE's default).
    pub fn new(node: impl Into<String>, links: HostState) -> Self {
        Self {
            node: node.into(),
            links: Links::Known(links),
            ifupdown2: true,
            openvswitch: false,
        }
    }

    /// A simulated node `pve` whose kernel follows the applied file, with
    /// ifupdown2 and Open vSwitch installed.
    pub fn simulated() -> Self {
        Self {
            node: "pve".to_string(),
            links: Links::FromApplied {
                extra_nics: Vec::new(),
            },
            ifupdown2: true,
            openvswitch: true,
        }
    }

    /// The kernel view for the given applied file.
    pub fn link_state(&self, applied: &str) -> std::borrow::Cow<'_, HostState> {
        match &self.links {
            Links::Known(state) => std::borrow::Cow::Borrowed(state),
            Links::FromApplied { extra_nics } => {
                std::borrow::Cow::Owned(HostState::derived_from_file(applied, extra_nics))
            }
        }
    }

    /// How this node writes interfaces files.
    pub fn write_options(&self) -> WriteOptions {
        WriteOptions {
            ifupdown2: self.ifupdown2,
        }
    }
}

/// A file's content and modification time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileState {
    /// The file content.
    pub text: String,
    /// Its modification time.
    pub mtime: FileTime,
}

/// `/etc/network/interfaces` and, when there are pending changes,
/// `/etc/network/interfaces.new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkFiles {
    /// The applied file.
    pub interfaces: FileState,
    /// The pending copy all writes go to.
    pub pending: Option<FileState>,
    /// The parse of exactly these files with the host's links, when the
    /// caller keeps one (a daemon caching across requests, as PVE's daemons
    /// keep theirs); see [`NetworkFiles::with_parsed`].
    pub parsed: Option<std::sync::Arc<Config>>,
}

impl NetworkFiles {
    /// Files without pending changes.
    pub fn new(text: impl Into<String>, mtime: FileTime) -> Self {
        Self {
            interfaces: FileState {
                text: text.into(),
                mtime,
            },
            pending: None,
            parsed: None,
        }
    }

    /// These files with their parse for `host` done now and kept, so the
    /// operations on them do not parse again.
    pub fn with_parsed(mut self, host: &Host) -> Self {
        self.parsed = None;
        let config = self.read(host);
        self.parsed = Some(std::sync::Arc::new(config));
        self
    }

    /// The text PVE reads: the pending copy if there is one.
    pub fn effective_text(&self) -> &str {
        self.pending
            .as_ref()
            .map_or(&self.interfaces.text, |p| &p.text)
    }

    /// The configuration the API sees.
    pub fn read(&self, host: &Host) -> Config {
        if let Some(parsed) = &self.parsed {
            return (**parsed).clone();
        }
        let links = host.link_state(&self.interfaces.text);
        parse_interfaces(self.effective_text(), &links)
    }

    /// The pending changes as a unified diff (`None` without a pending copy or
    /// when it does not differ).
    pub fn changes(&self) -> Option<String> {
        let pending = self.pending.as_ref()?;
        interfaces_changes(
            &self.interfaces.text,
            &pending.text,
            self.interfaces.mtime,
            pending.mtime,
        )
    }

    /// Perform a file change (`now` becomes the mtime of written files).
    pub fn apply_effect(&mut self, effect: &FileEffect, now: FileTime) {
        self.parsed = None;
        match effect {
            FileEffect::WritePending(text) => {
                self.pending = Some(FileState {
                    text: text.clone(),
                    mtime: now,
                });
            }
            FileEffect::RemovePending => self.pending = None,
            FileEffect::ApplyPending => {
                // rename(2) keeps the pending file's mtime
                if let Some(p) = self.pending.take() {
                    self.interfaces = p;
                }
            }
        }
    }

    /// Perform the outcome's file change unless it is a dry run. Returns
    /// whether anything was done.
    pub fn commit(&mut self, outcome: &Outcome, now: FileTime) -> bool {
        match (&outcome.effect, outcome.dry_run) {
            (Some(effect), false) => {
                self.apply_effect(effect, now);
                true
            }
            _ => false,
        }
    }
}

/// A file change a real node would make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileEffect {
    /// Write this text to `/etc/network/interfaces.new`.
    WritePending(String),
    /// Remove `/etc/network/interfaces.new` (if it exists).
    RemovePending,
    /// Rename `/etc/network/interfaces.new` over `/etc/network/interfaces`
    /// (if it exists).
    ApplyPending,
}

/// The `data` of a response, before rendering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseData {
    /// `null`.
    Null,
    /// The interface list: name and hash, sorted by name (the Perl rendering
    /// shuffles it like a Perl hash walk).
    List(Vec<(String, Iface)>),
    /// One interface hash (without `iface`).
    Object(Iface),
    /// A task id.
    Upid(String),
}

/// The result of an API operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The response data.
    pub data: ResponseData,
    /// The `changes` attribute of the list response.
    pub changes: Option<String>,
    /// The file change to make, if any.
    pub effect: Option<FileEffect>,
    /// Whether this was computed as a dry run (nothing should be written).
    pub dry_run: bool,
}

impl Outcome {
    fn read(data: ResponseData, changes: Option<String>) -> Self {
        Self {
            data,
            changes,
            effect: None,
            dry_run: false,
        }
    }

    fn mutation(data: ResponseData, effect: FileEffect, opts: MutateOptions) -> Self {
        Self {
            data,
            changes: None,
            effect: Some(effect),
            dry_run: opts.dry_run,
        }
    }
}

/// Options of mutating operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MutateOptions {
    /// Validate and compute everything, but mark the outcome as not to be
    /// written.
    pub dry_run: bool,
}

/// The worker task a reload would fork (for the UPID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    /// Worker process id.
    pub pid: u32,
    /// Process start time (clock ticks since boot).
    pub pstart: u64,
    /// Task start time (Unix seconds).
    pub starttime: i64,
    /// The authenticated user, e.g. `root@pam`.
    pub user: String,
}

impl TaskInfo {
    /// `UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{type}:{id}:{user}:`
    pub fn upid(&self, node: &str, worker_type: &str, id: &str) -> String {
        format!(
            "UPID:{node}:{:08X}:{:08X}:{:08X}:{worker_type}:{id}:{}:",
            self.pid, self.pstart, self.starttime, self.user
        )
    }
}

// ---------------------------------------------------------------------------
// schema

/// Interface types PVE knows (`$network_type_enum`).
pub const NETWORK_TYPES: [&str; 11] = [
    "bridge",
    "bond",
    "eth",
    "alias",
    "vlan",
    "fabric",
    "OVSBridge",
    "OVSBond",
    "OVSPort",
    "OVSIntPort",
    "vnet",
];

const TYPE_ENUM: [&str; 12] = [
    "bridge",
    "bond",
    "eth",
    "alias",
    "vlan",
    "fabric",
    "OVSBridge",
    "OVSBond",
    "OVSPort",
    "OVSIntPort",
    "vnet",
    "unknown",
];

/// The values of the list's `type` filter.
pub const LIST_TYPE_FILTERS: [&str; 14] = [
    "bridge",
    "bond",
    "eth",
    "alias",
    "vlan",
    "fabric",
    "OVSBridge",
    "OVSBond",
    "OVSPort",
    "OVSIntPort",
    "vnet",
    "any_bridge",
    "any_local_bridge",
    "include_sdn",
];

const BOND_MODE_ENUM: [&str; 10] = [
    "balance-rr",
    "active-backup",
    "balance-xor",
    "broadcast",
    "802.3ad",
    "balance-tlb",
    "balance-alb",
    "balance-slb",
    "lacp-balance-slb",
    "lacp-balance-tcp",
];

const NODE: Prop = Prop::string("node").format(Fmt::Node);
const IFACE: Prop = Prop::string("iface")
    .format(Fmt::Iface)
    .length(2, 20)
    .required();

/// `json_config_properties` of PVE's network API.
const CONFIG_PROPS: [Prop; 30] = [
    Prop::string("type").one_of(&TYPE_ENUM).required(),
    Prop::string("comments"),
    Prop::string("comments6"),
    Prop::boolean("autostart"),
    Prop::boolean("bridge_vlan_aware"),
    Prop::string("bridge_vids").format(Fmt::VlanIdOrRangeList),
    Prop::string("bridge_ports").format(Fmt::IfaceList),
    Prop::string("ovs_ports").format(Fmt::IfaceList),
    Prop::integer("ovs_tag", 1, 4094),
    Prop::string("ovs_options").max_len(1024),
    Prop::string("ovs_bridge").format(Fmt::Iface),
    Prop::string("slaves").format(Fmt::IfaceList),
    Prop::string("ovs_bonds").format(Fmt::IfaceList),
    Prop::string("bond_mode").one_of(&BOND_MODE_ENUM),
    Prop::string("bond-primary").format(Fmt::Iface),
    Prop::string("bond_xmit_hash_policy").one_of(&["layer2", "layer2+3", "layer3+4"]),
    Prop::string("vlan-raw-device").format(Fmt::Iface),
    Prop::integer("vlan-id", 1, 4094),
    Prop::string("gateway").format(Fmt::Ipv4),
    Prop::string("netmask")
        .format(Fmt::Ipv4Mask)
        .requires("address"),
    Prop::string("address")
        .format(Fmt::Ipv4)
        .requires("netmask"),
    Prop::string("cidr").format(Fmt::CidrV4),
    Prop::integer("mtu", 1280, 65520),
    Prop::string("gateway6").format(Fmt::Ipv6),
    Prop::integer("netmask6", 0, 128).requires("address6"),
    Prop::string("address6")
        .format(Fmt::Ipv6)
        .requires("netmask6"),
    Prop::string("cidr6").format(Fmt::CidrV6),
    NODE,
    IFACE,
    Prop::string("delete").format(Fmt::ConfigIdList),
];

fn create_props() -> Vec<Prop> {
    CONFIG_PROPS
        .iter()
        .copied()
        .filter(|p| p.name != "delete")
        .collect()
}

/// The parameter schema of an operation (path parameters included).
pub fn schema_of(op: Operation) -> Vec<Prop> {
    match op {
        Operation::List => vec![NODE, Prop::string("type").one_of(&LIST_TYPE_FILTERS)],
        Operation::Get | Operation::Delete => vec![NODE, IFACE],
        Operation::Create => create_props(),
        Operation::Update => CONFIG_PROPS.to_vec(),
        Operation::Revert => vec![NODE],
        Operation::Apply => vec![NODE, Prop::boolean("regenerate-frr")],
    }
}

/// The parameters of a request as the operations take them: PVE's legacy
/// normalisation joins repeated values of `-list` strings with `,`;
/// undefined values count as absent.
///
/// # Errors
///
/// Values of another shape (repeated, JSON arrays or objects, undefined
/// keys the schema does not know) are type or schema errors, reported
/// together with every other parameter error of the request, as PVE's
/// validator reports them.
pub fn normalize_params(op: Operation, raw: &crate::params::RawParams) -> Result<Params, ApiError> {
    use crate::params::ParamValue;
    let schema = schema_of(op);
    let mut params = Params::new();
    let mut errors = BTreeMap::new();
    for (key, value) in raw.iter() {
        let prop = schema.iter().find(|p| p.name == key.as_str());
        match (value, prop) {
            (ParamValue::Str(s), _) => {
                params.insert(key.clone(), s.clone());
            }
            (ParamValue::List(items), Some(p)) if p.joins_lists() => {
                params.insert(key.clone(), items.join(","));
            }
            (ParamValue::List(_) | ParamValue::Object, Some(p)) => {
                let got = if matches!(value, ParamValue::Object) {
                    "HASH"
                } else {
                    "ARRAY"
                };
                errors.insert(
                    key.clone(),
                    format!("type check ('{}') failed - got {got}", p.type_name()),
                );
            }
            (ParamValue::Undef, Some(_)) => {}
            (_, None) => {
                errors.insert(
                    key.clone(),
                    "property is not defined in schema and the schema does not allow additional properties"
                        .to_string(),
                );
            }
        }
    }
    if errors.is_empty() {
        return Ok(params);
    }
    let rest: Params = params
        .iter()
        .filter(|(k, _)| !errors.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in verify(&rest, &schema) {
        errors.entry(k).or_insert(v);
    }
    Err(ApiError::params(errors))
}

fn verified(params: &Params, props: &[Prop]) -> Result<(), ApiError> {
    let errors = verify(params, props);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::params(errors))
    }
}

/// Path parameters override body/query parameters of the same name.
fn with_iface(params: &Params, iface: &str) -> Params {
    let mut all = params.clone();
    all.insert("iface".to_string(), iface.to_string());
    all
}

/// The handler's `$param` after `extract_param` of the given names.
fn handler_params(params: &Params, extracted: &[&str]) -> Iface {
    params
        .iter()
        .filter(|(k, _)| !extracted.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
        .collect()
}

fn write_config(config: Config, host: &Host) -> Result<String, ApiError> {
    write_config_owned(config, &host.write_options()).map_err(|e| ApiError::internal(e.0))
}

// ---------------------------------------------------------------------------
// checks shared by create and update

fn check_duplicate(
    ifaces: &BTreeMap<String, Iface>,
    newiface: &str,
    key: &str,
    name: &str,
) -> Result<(), ApiError> {
    for (iface, d) in ifaces {
        if iface != newiface && d.truthy(key) {
            return Err(ApiError::param(
                key,
                format!("{name} already exists on interface '{iface}'."),
            ));
        }
    }
    Ok(())
}

const PORT_KEYS: [&str; 4] = ["bridge_ports", "ovs_ports", "slaves", "ovs_bonds"];

/// The ports an interface uses and the first port property that has any.
fn portlist(d: &Iface) -> (Vec<String>, Option<&'static str>) {
    let mut ports = String::new();
    let mut first = None;
    for k in PORT_KEYS {
        if d.truthy(k) {
            ports.push(' ');
            ports.push_str(&d.text(k));
            first.get_or_insert(k);
        }
    }
    (split_list(&ports), first)
}

fn check_duplicate_ports(
    ifaces: &BTreeMap<String, Iface>,
    newiface: &str,
    newparam: &Iface,
) -> Result<(), ApiError> {
    let (new_ports, param_name) = portlist(newparam);
    if new_ports.is_empty() {
        return Ok(());
    }
    let param_name = param_name.unwrap_or("bridge_ports");
    for (iface, d) in ifaces {
        if iface == newiface {
            continue;
        }
        for p in portlist(d).0 {
            if new_ports.contains(&p) {
                return Err(ApiError::param(
                    param_name,
                    format!("{p} is already used on interface '{iface}'."),
                ));
            }
        }
    }
    Ok(())
}

/// `cidr`/`cidr6` parameters become address and netmask.
fn map_cidr_to_address_netmask(param: &mut Iface) -> Result<(), ApiError> {
    for (cidr, address, netmask) in [
        ("cidr", "address", "netmask"),
        ("cidr6", "address6", "netmask6"),
    ] {
        if !param.truthy(cidr) {
            continue;
        }
        if param.truthy(address) {
            return Err(ApiError::param(
                address,
                format!("{address} conflicts with {cidr}"),
            ));
        }
        if param.truthy(netmask) {
            return Err(ApiError::param(
                netmask,
                format!("{netmask} conflicts with {cidr}"),
            ));
        }
        let value = param.text(cidr);
        match value.rsplit_once('/') {
            Some((a, m)) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) => {
                param.set_str(address, a);
                param.set_str(netmask, m);
            }
            _ => {
                param.set(address, Value::Null);
                param.set(netmask, Value::Null);
            }
        }
        param.remove(cidr);
    }
    Ok(())
}

/// Net::IP's IPv6 address types (longest matching prefix wins).
const IPV6_TYPES: [(u128, u32, &str); 29] = [
    (0, 128, "UNSPECIFIED"),
    (1, 128, "LOOPBACK"),
    (0xffff_0000_0000, 96, "IPV4MAP"),
    (0, 8, "RESERVED"),
    (0x0100 << 112, 8, "RESERVED"),
    (0x0100 << 112, 64, "DISCARD"),
    (0x0200 << 112, 7, "RESERVED"),
    (0x0400 << 112, 6, "RESERVED"),
    (0x0800 << 112, 5, "RESERVED"),
    (0x1000 << 112, 4, "RESERVED"),
    (0x2000 << 112, 3, "GLOBAL-UNICAST"),
    (0x2001 << 112, 32, "TEREDO"),
    ((0x2001 << 112) | (0x0002 << 96), 48, "BMWG"),
    ((0x2001 << 112) | (0x0db8 << 96), 32, "DOCUMENTATION"),
    ((0x2001 << 112) | (0x0010 << 96), 28, "ORCHID"),
    (0x2002 << 112, 16, "6TO4"),
    (0x4000 << 112, 3, "RESERVED"),
    (0x6000 << 112, 3, "RESERVED"),
    (0x8000 << 112, 3, "RESERVED"),
    (0xa000 << 112, 3, "RESERVED"),
    (0xc000 << 112, 3, "RESERVED"),
    (0xe000 << 112, 4, "RESERVED"),
    (0xf000 << 112, 5, "RESERVED"),
    (0xf800 << 112, 6, "RESERVED"),
    (0xfc00 << 112, 7, "UNIQUE-LOCAL-UNICAST"),
    (0xfe00 << 112, 9, "RESERVED"),
    (0xfe80 << 112, 10, "LINK-LOCAL-UNICAST"),
    (0xfec0 << 112, 10, "RESERVED"),
    (0xff00 << 112, 8, "MULTICAST"),
];

fn prefix_mask(bits: u32) -> u128 {
    if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits.min(128))
    }
}

fn ipv6_type(ip: u128) -> Option<&'static str> {
    IPV6_TYPES
        .iter()
        .filter(|(prefix, len, _)| ip & prefix_mask(*len) == *prefix)
        .max_by_key(|(_, len, _)| *len)
        .map(|(_, _, t)| *t)
}

fn check_ipv6_settings(address: &str, netmask: i64) -> Result<(), ApiError> {
    if !(0..=128).contains(&netmask) {
        return Err(ApiError::param(
            "netmask",
            format!("{netmask} is not a valid subnet length for ipv6"),
        ));
    }
    let Ok(ip) = address.parse::<std::net::Ipv6Addr>() else {
        return Err(ApiError::param(
            "address",
            format!("{address} is not a valid host IPv6 address."),
        ));
    };
    let bin = u128::from(ip);
    let kind = if bin == prefix_mask(netmask as u32) {
        Some("ANYCAST")
    } else {
        ipv6_type(bin)
    };
    if let Some(kind) = kind
        && !matches!(
            kind,
            "GLOBAL-UNICAST" | "UNIQUE-LOCAL-UNICAST" | "LINK-LOCAL-UNICAST"
        )
    {
        return Err(ApiError::param(
            "address",
            format!("{address} with type '{kind}', cannot be used as host IPv6 address."),
        ));
    }
    Ok(())
}

fn perl_int(v: &str) -> i64 {
    perl_num(v).trunc() as i64
}

fn has_family(families: &[Option<String>], f: &str) -> bool {
    families.iter().any(|x| x.as_deref() == Some(f))
}

fn check_bridge_vids(param: &Iface) -> Result<(), ApiError> {
    if param.truthy("bridge_vids") && split_list(&param.text("bridge_vids")).is_empty() {
        return Err(ApiError::param("bridge_vids", "VLAN list items are empty"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// operations

/// `GET /nodes/{node}/network`: all interfaces but `lo`, optionally filtered
/// by `type`, plus `changes` when there are pending changes.
pub fn list(files: &NetworkFiles, host: &Host, params: &Params) -> Result<Outcome, ApiError> {
    verified(
        params,
        &[NODE, Prop::string("type").one_of(&LIST_TYPE_FILTERS)],
    )?;
    let mut config = files.read(host);
    let changes = files.changes();
    config.ifaces.remove("lo"); // do not list the loopback device

    if let Some(filter) = params.get("type").filter(|t| !t.is_empty())
        && filter != "include_sdn"
    {
        config.ifaces.retain(|_, d| {
            let kind = d.kind().into_owned();
            let is_bridge = kind == "bridge" || kind == "OVSBridge";
            let bridge_match =
                is_bridge && (filter == "any_bridge" || filter == "any_local_bridge");
            *filter == kind || bridge_match
        });
    }
    // the simulated node has no SDN vnets or fabrics to add
    Ok(Outcome::read(
        ResponseData::List(config.ifaces.into_iter().collect()),
        changes,
    ))
}

/// `GET /nodes/{node}/network/{iface}`: one interface's hash.
pub fn get(
    files: &NetworkFiles,
    host: &Host,
    iface: &str,
    params: &Params,
) -> Result<Outcome, ApiError> {
    verified(&with_iface(params, iface), &[NODE, IFACE])?;
    let mut config = files.read(host);
    match config.ifaces.remove(iface) {
        Some(d) => Ok(Outcome::read(ResponseData::Object(d), None)),
        None => Err(ApiError::param("iface", "interface does not exist")),
    }
}

/// `POST /nodes/{node}/network`: create an interface (written to the pending
/// file).
pub fn create(
    files: &NetworkFiles,
    host: &Host,
    params: &Params,
    opts: MutateOptions,
) -> Result<Outcome, ApiError> {
    verified(params, &create_props())?;
    let iface = params.get("iface").cloned().unwrap_or_default();
    let mut param = handler_params(params, &["node", "iface"]);

    let mut config = files.read(host);
    let ifaces = &mut config.ifaces;

    if ifaces.contains_key(&iface) {
        return Err(ApiError::param("iface", "interface already exists"));
    }
    if param.truthy("gateway") {
        check_duplicate(ifaces, &iface, "gateway", "Default gateway")?;
    }
    if param.truthy("gateway6") {
        check_duplicate(ifaces, &iface, "gateway6", "Default ipv6 gateway")?;
    }
    check_duplicate_ports(ifaces, &iface, &param)?;
    map_cidr_to_address_netmask(&mut param)?;
    if param.truthy("address6") {
        check_ipv6_settings(&param.text("address6"), perl_int(&param.text("netmask6")))?;
    }

    let mut families = Vec::new();
    if param.truthy("address") {
        families.push(Some("inet".to_string()));
    }
    if param.truthy("address6") {
        families.push(Some("inet6".to_string()));
    }
    if families.is_empty() {
        families.push(Some("inet".to_string()));
    }
    param.set("families", Value::List(families));
    let method = if param.truthy("address") {
        "static"
    } else {
        "manual"
    };
    let method6 = if param.truthy("address6") {
        "static"
    } else {
        "manual"
    };
    param.set_str("method", method);
    param.set_str("method6", method6);

    let kind = param.text("type");
    if kind.starts_with("OVS") && !host.openvswitch {
        return Err(ApiError::internal(
            "Open VSwitch is not installed (need package 'openvswitch-switch')",
        ));
    }
    if kind == "OVSIntPort" || kind == "OVSBond" {
        if !param.truthy("ovs_bridge") {
            return Err(ApiError::param("ovs_bridge", "parameter is required"));
        }
        let brname = param.text("ovs_bridge");
        let Some(br) = ifaces.get_mut(&brname) else {
            return Err(ApiError::param(
                "ovs_bridge",
                format!("bridge '{brname}' does not exist"),
            ));
        };
        if !br.is("type", "OVSBridge") {
            return Err(ApiError::param(
                "ovs_bridge",
                format!("interface '{brname}' is no OVS bridge"),
            ));
        }
        let mut ports = perl_split_ws(&if br.truthy("ovs_ports") {
            br.text("ovs_ports")
        } else {
            String::new()
        });
        if !ports.contains(&iface) {
            ports.push(iface.clone());
            br.set_str("ovs_ports", ports.join(" "));
        }
    }

    check_bridge_vids(&param)?;
    // the list must be space separated for the interfaces file
    if param.truthy("bridge_vids") {
        let vids = split_list(&param.text("bridge_vids")).join(" ");
        param.set_str("bridge_vids", vids);
    }

    ifaces.insert(iface, param);
    let text = write_config(config, host)?;
    Ok(Outcome::mutation(
        ResponseData::Null,
        FileEffect::WritePending(text),
        opts,
    ))
}

/// `PUT /nodes/{node}/network/{iface}`: update an interface. As in PVE the
/// families and methods are recomputed from the `address`/`address6` given in
/// *this* request, and `delete` removes properties first.
pub fn update(
    files: &NetworkFiles,
    host: &Host,
    iface: &str,
    params: &Params,
    opts: MutateOptions,
) -> Result<Outcome, ApiError> {
    verified(&with_iface(params, iface), &CONFIG_PROPS)?;
    let delete = params.get("delete").cloned();
    let mut param = handler_params(params, &["node", "iface", "delete"]);

    let mut config = files.read(host);
    let ifaces = &mut config.ifaces;
    let Some(d) = ifaces.get_mut(iface) else {
        return Err(ApiError::param("iface", "interface does not exist"));
    };

    let mut families: Vec<Option<String>> = Vec::new();
    for k in split_list(delete.as_deref().unwrap_or("")) {
        d.remove(&k);
        if k == "address" {
            families.retain(|f| f.as_deref() != Some("inet"));
        }
        if k == "address6" {
            families.retain(|f| f.as_deref() != Some("inet6"));
        }
        if k == "cidr" {
            d.remove("netmask");
            d.remove("address");
        } else if k == "cidr6" {
            d.remove("netmask6");
            d.remove("address6");
        }
    }

    map_cidr_to_address_netmask(&mut param)?;
    if param.truthy("gateway") {
        check_duplicate(ifaces, iface, "gateway", "Default gateway")?;
    }
    if param.truthy("gateway6") {
        check_duplicate(ifaces, iface, "gateway6", "Default ipv6 gateway")?;
    }
    check_duplicate_ports(ifaces, iface, &param)?;

    if param.truthy("address") {
        if !has_family(&families, "inet") {
            families.push(Some("inet".into()));
        }
    } else {
        families.retain(|f| f.as_deref() != Some("inet"));
    }
    if param.truthy("address6") {
        check_ipv6_settings(&param.text("address6"), perl_int(&param.text("netmask6")))?;
        if !has_family(&families, "inet6") {
            families.push(Some("inet6".into()));
        }
    } else {
        families.retain(|f| f.as_deref() != Some("inet6"));
    }
    if families.is_empty() {
        families.push(Some("inet".into()));
    }
    param.set("families", Value::List(families));
    let method = if param.truthy("address") {
        "static"
    } else {
        "manual"
    };
    let method6 = if param.truthy("address6") {
        "static"
    } else {
        "manual"
    };
    param.set_str("method", method);
    param.set_str("method6", method6);

    let d = ifaces.get_mut(iface).expect("checked above");
    for (k, v) in param.iter() {
        d.set(k.clone(), v.clone());
    }
    // PVE checks (and space-separates) bridge_vids only after copying the
    // parameters, so an updated list is written as given.
    check_bridge_vids(&param)?;

    let text = write_config(config, host)?;
    Ok(Outcome::mutation(
        ResponseData::Null,
        FileEffect::WritePending(text),
        opts,
    ))
}

/// `DELETE /nodes/{node}/network/{iface}`: remove an interface (OVS internal
/// ports and bonds are also removed from their bridge's port list).
pub fn delete(
    files: &NetworkFiles,
    host: &Host,
    iface: &str,
    params: &Params,
    opts: MutateOptions,
) -> Result<Outcome, ApiError> {
    verified(&with_iface(params, iface), &[NODE, IFACE])?;
    let mut config = files.read(host);
    let ifaces = &mut config.ifaces;
    let Some(d) = ifaces.get(iface) else {
        return Err(ApiError::param("iface", "interface does not exist"));
    };
    let kind = d.kind().into_owned();
    if (kind == "OVSIntPort" || kind == "OVSBond") && d.truthy("ovs_bridge") {
        let brname = d.text("ovs_bridge");
        if let Some(br) = ifaces.get_mut(&brname)
            && br.truthy("ovs_ports")
        {
            let ports: Vec<String> = perl_split_ws(&br.text("ovs_ports"))
                .into_iter()
                .filter(|p| p != iface)
                .collect();
            br.set_str("ovs_ports", ports.join(" "));
        }
    }
    ifaces.remove(iface);
    let text = write_config(config, host)?;
    Ok(Outcome::mutation(
        ResponseData::Null,
        FileEffect::WritePending(text),
        opts,
    ))
}

/// `DELETE /nodes/{node}/network`: drop the pending changes.
pub fn revert(
    _files: &NetworkFiles,
    _host: &Host,
    params: &Params,
    opts: MutateOptions,
) -> Result<Outcome, ApiError> {
    verified(params, &[NODE])?;
    Ok(Outcome::mutation(
        ResponseData::Null,
        FileEffect::RemovePending,
        opts,
    ))
}

/// What the reload worker of `PUT /nodes/{node}/network` is asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyRequest {
    /// `regenerate-frr`: `Some(true)` regenerates the FRR configuration,
    /// `Some(false)` skips it, `None` leaves it to the SDN configuration.
    pub regenerate_frr: Option<bool>,
}

/// The ifupdown2 version PVE accepts: at least 1.2.8 ...
const IFUPDOWN2_MIN: u64 = 100_000 + 2 * 1000 + 8 * 10;

/// PVE's `assert_ifupdown2_installed`, given whether `/usr/share/ifupdown2`
/// exists and (asked only then) the first line `ifreload -V` prints.
///
/// # Errors
///
/// `you need ifupdown2 to reload network configuration` without the
/// directory; the error of running `ifreload -V`; `incompatible 'ifupdown2' package version '…'! Did you install
/// from Proxmox repositories?` for a version before 1.2.8 or one that is not a
/// Proxmox build (`pve`, `pmx` or `proxmox` in the Debian revision).
pub fn check_ifupdown2(
    installed: bool,
    version_line: impl FnOnce() -> Result<Option<String>, ApiError>,
) -> Result<(), ApiError> {
    if !installed {
        return Err(ApiError::internal(
            "you need ifupdown2 to reload network configuration",
        ));
    }
    let incompatible = |v: &str| {
        ApiError::internal(format!(
            "incompatible 'ifupdown2' package version '{v}'! Did you install from Proxmox repositories?"
        ))
    };
    let line = version_line()?.unwrap_or_default();
    // m/^\s*ifupdown2:(\S+)\s*$/
    let t = line.trim_matches(crate::model::is_perl_space);
    let Some(v) = t
        .strip_prefix("ifupdown2:")
        .filter(|v| !v.is_empty() && !v.contains(crate::model::is_perl_space))
    else {
        return Err(incompatible(""));
    };
    // split(/\.|-/): major, minor, extra, Debian revision
    let parts: Vec<&str> = v.split(['.', '-']).collect();
    let num = |i: usize| parts.get(i).map_or(0.0, |p| perl_num(p));
    let numeric = num(0) * 100_000.0 + num(1) * 1000.0 + num(2) * 10.0;
    let is_pve = parts
        .get(3)
        .is_some_and(|rev| rev.contains("pve") || rev.contains("pmx") || rev.contains("proxmox"));
    if numeric < IFUPDOWN2_MIN as f64 || !is_pve {
        return Err(incompatible(v));
    }
    Ok(())
}

/// `PUT /nodes/{node}/network`, up to the worker: verify the parameters and
/// that ifupdown2 can reload (`ifreload_version` is called only when the
/// package is installed, as PVE runs `ifreload -V` only then).
///
/// # Errors
///
/// Parameter errors (`regenerate-frr` must be a boolean), then the
/// [`check_ifupdown2`] errors.
pub fn prepare_apply(
    host: &Host,
    params: &Params,
    ifreload_version: impl FnOnce() -> Result<Option<String>, ApiError>,
) -> Result<ApplyRequest, ApiError> {
    verified(params, &[NODE, Prop::boolean("regenerate-frr")])?;
    let regenerate_frr = params.get("regenerate-frr").map(|v| v == "1");
    check_ifupdown2(host.ifupdown2, ifreload_version)?;
    Ok(ApplyRequest { regenerate_frr })
}

/// `PUT /nodes/{node}/network` in one step, for hosts whose worker is a
/// pure file change (the simulator): [`prepare_apply`], then the answer with
/// the worker's UPID and the rename of `interfaces.new` as the file effect.
///
/// # Errors
///
/// Those of [`prepare_apply`].
pub fn apply(
    _files: &NetworkFiles,
    host: &Host,
    params: &Params,
    ifreload_version: impl FnOnce() -> Result<Option<String>, ApiError>,
    task: &TaskInfo,
    opts: MutateOptions,
) -> Result<Outcome, ApiError> {
    prepare_apply(host, params, ifreload_version)?;
    let upid = task.upid(&host.node, "srvreload", "networking");
    Ok(Outcome::mutation(
        ResponseData::Upid(upid),
        FileEffect::ApplyPending,
        opts,
    ))
}
