//! The SDN API's answers before and after rendering.
//!
//! The operations build an [`Out`] tree that does not depend on the flavour;
//! [`Out::render`] writes it the way each backend would:
//!
//! * **Perl**: booleans are numbers (`1`/`0`, as `SectionConfig` stores
//!   them), strings that hold numbers stay strings (`"mask":"24"`), object
//!   keys come out in a seeded shuffle (Perl hash order) and lists built from
//!   hashes (the IPAM list) too; lists PVE sorts stay sorted.
//! * **Rust**: `true`/`false`, numeric strings as numbers (`"mask":24`),
//!   keys sorted, lists in id order.

use std::collections::BTreeMap;

use crate::render::{Flavour, Json, PerlRng};

/// A JSON value as the SDN operations produce it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// `null`.
    Null,
    /// A boolean (Perl: `1`/`0`).
    Bool(bool),
    /// A number.
    Int(i64),
    /// A string.
    Str(String),
    /// A number Perl keeps as a string (`"24"`); the Rust flavour types it.
    NumStr(String),
    /// A list in a defined order.
    Arr(Vec<Out>),
    /// A list built from a Perl hash: shuffled in the Perl flavour.
    HashArr(Vec<Out>),
    /// An object.
    Obj(BTreeMap<String, Out>),
}

impl Out {
    /// A string.
    pub fn str(s: impl Into<String>) -> Self {
        Out::Str(s.into())
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Out> {
        match self {
            Out::Obj(o) => o.get(key),
            _ => None,
        }
    }

    fn to_json(&self, rng: &mut Option<PerlRng>) -> Json {
        match self {
            Out::Null => Json::Null,
            Out::Bool(b) => match rng {
                Some(_) => Json::Int(i64::from(*b)),
                None => Json::Bool(*b),
            },
            Out::Int(i) => Json::Int(*i),
            Out::Str(s) => Json::Str(s.clone()),
            Out::NumStr(s) => match (rng.is_some(), s.parse::<i64>()) {
                (false, Ok(n)) => Json::Int(n),
                _ => Json::Str(s.clone()),
            },
            Out::Arr(items) => Json::Arr(items.iter().map(|i| i.to_json(rng)).collect()),
            Out::HashArr(items) => {
                let mut out: Vec<Json> = items.iter().map(|i| i.to_json(rng)).collect();
                if let Some(r) = rng {
                    r.shuffle(&mut out);
                }
                Json::Arr(out)
            }
            Out::Obj(o) => {
                let mut entries: Vec<(String, Json)> =
                    o.iter().map(|(k, v)| (k.clone(), v.to_json(rng))).collect();
                if let Some(r) = rng {
                    r.shuffle(&mut entries);
                }
                Json::Obj(entries)
            }
        }
    }

    /// The response body `{"data":…}` in the given flavour.
    pub fn render(&self, flavour: &Flavour) -> String {
        let mut rng = match flavour {
            Flavour::Perl { seed } => Some(PerlRng::new(*seed)),
            Flavour::Rust { .. } => None,
        };
        let data = self.to_json(&mut rng);
        Json::Obj(vec![("data".to_string(), data)]).to_text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Out {
        Out::Arr(vec![Out::Obj(
            [
                ("zone", Out::str("lab")),
                ("type", Out::str("vlan")),
                ("bridge", Out::str("vmbr0")),
                ("mask", Out::NumStr("24".into())),
                ("vlanaware", Out::Bool(true)),
                ("tag", Out::Int(10)),
                ("digest", Out::Null),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )])
    }

    #[test]
    fn flavours() {
        let rust = sample().render(&Flavour::rust());
        assert_eq!(
            rust,
            r#"{"data":[{"bridge":"vmbr0","digest":null,"mask":24,"tag":10,"type":"vlan","vlanaware":true,"zone":"lab"}]}"#
        );
        let perl: serde_json::Value =
            serde_json::from_str(&sample().render(&Flavour::perl(3))).unwrap();
        assert_eq!(perl["data"][0]["vlanaware"], 1);
        assert_eq!(perl["data"][0]["mask"], "24");
        let orders: std::collections::BTreeSet<String> =
            (0..8).map(|s| sample().render(&Flavour::perl(s))).collect();
        assert!(orders.len() > 1, "Perl key order is shuffled");
        assert_eq!(
            sample().render(&Flavour::perl(5)),
            sample().render(&Flavour::perl(5))
        );
    }
}
