//! Item encoding and decoding: attribute values, the [`Decoder`] that reads records back and
//! reports anything missing or mistyped as [`IndexError::Corrupt`], and the items written for a
//! live revision and a commit.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::DynamoIndex;
use super::keys::{PK, SK, VERSION, commit_sk, log_pk};
use crate::registry::index::{
    CommitRecord, IndexError, KeyState, LiveRevision, Result, RevisionRecord, StackRecord, SystemRecord,
    WrappedKey, format_timestamp, parse_timestamp,
};

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s(sk))])
}

pub(super) fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Typed access to an item's attributes; anything missing or mistyped is
/// [`IndexError::Corrupt`] naming the item and the attribute.
pub(super) struct Decoder<'a> {
    item: &'a Item,
}

impl<'a> Decoder<'a> {
    pub(super) fn new(item: &'a Item) -> Self {
        Decoder { item }
    }

    fn what(&self) -> String {
        let part = |a: &str| self.item.get(a).and_then(|v| v.as_s().ok()).map_or("?", |v| v.as_str());
        format!("{}/{}", part(PK), part(SK))
    }

    fn corrupt(&self, attr: &str, problem: &str) -> IndexError {
        IndexError::Corrupt { what: self.what(), message: format!("attribute {attr} {problem}") }
    }

    fn opt_str(&self, attr: &str) -> Result<Option<&'a str>> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.as_str())),
            Some(_) => Err(self.corrupt(attr, "is not a string")),
        }
    }

    pub(super) fn str(&self, attr: &str) -> Result<&'a str> {
        self.opt_str(attr)?.ok_or_else(|| self.corrupt(attr, "is missing"))
    }

    pub(super) fn u64(&self, attr: &str) -> Result<u64> {
        match self.item.get(attr) {
            Some(AttributeValue::N(v)) => {
                v.parse().map_err(|_| self.corrupt(attr, "is not an unsigned integer"))
            }
            Some(_) => Err(self.corrupt(attr, "is not a number")),
            None => Err(self.corrupt(attr, "is missing")),
        }
    }

    pub(super) fn time(&self, attr: &str) -> Result<SystemTime> {
        parse_timestamp(self.str(attr)?).ok_or_else(|| self.corrupt(attr, "is not an RFC 3339 UTC timestamp"))
    }

    fn bytes(&self, attr: &str) -> Result<Vec<u8>> {
        match self.item.get(attr) {
            None => Ok(Vec::new()),
            Some(AttributeValue::B(b)) => Ok(b.as_ref().to_vec()),
            Some(_) => Err(self.corrupt(attr, "is not binary")),
        }
    }

    fn map(&self, attr: &str) -> Result<Option<&'a Item>> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::M(m)) => Ok(Some(m)),
            Some(_) => Err(self.corrupt(attr, "is not a map")),
        }
    }

    fn string_map(&self, attr: &str) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (k, v) in self.map(attr)?.into_iter().flatten() {
            let v = v.as_s().map_err(|_| self.corrupt(attr, &format!("has a non-string value for {k:?}")))?;
            out.insert(k.clone(), v.clone());
        }
        Ok(out)
    }

    fn string_list(&self, attr: &str) -> Result<Vec<String>> {
        match self.item.get(attr) {
            None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
            Some(AttributeValue::L(list)) => list
                .iter()
                .map(|v| v.as_s().cloned().map_err(|_| self.corrupt(attr, "has a non-string element")))
                .collect(),
            Some(_) => Err(self.corrupt(attr, "is not a list")),
        }
    }

    fn number_map(&self, attr: &str) -> Result<BTreeMap<String, i64>> {
        let mut out = BTreeMap::new();
        for (k, v) in self.map(attr)?.into_iter().flatten() {
            let v = v
                .as_n()
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| self.corrupt(attr, &format!("has a non-integer value for {k:?}")))?;
            out.insert(k.clone(), v);
        }
        Ok(out)
    }

    pub(super) fn system(&self) -> Result<SystemRecord> {
        let live = match self.map("live")? {
            None => None,
            Some(live) => {
                let d = Decoder::new(live);
                let field = |a: &str| {
                    d.str(a).map(str::to_string).map_err(|_| self.corrupt("live", &format!("lacks {a}")))
                };
                Some(LiveRevision {
                    revision: field("revision")?,
                    key: field("key")?,
                    etag: field("etag")?,
                    sha256: field("sha256")?,
                    inputs: d.number_map("inputs").map_err(|_| self.corrupt("live", "has bad inputs"))?,
                    stacks: d.string_list("stacks").map_err(|_| self.corrupt("live", "has bad stacks"))?,
                    published: match d.opt_str("publishedAt") {
                        Ok(None) => None,
                        _ => Some(
                            d.time("publishedAt")
                                .map_err(|_| self.corrupt("live", "has a bad publishedAt"))?,
                        ),
                    },
                })
            }
        };
        Ok(SystemRecord {
            id: self.str("systemId")?.to_string(),
            system_type: self.str("systemType")?.to_string(),
            labels: self.string_map("labels")?,
            live,
            version: self.u64(VERSION)?,
        })
    }

    pub(super) fn stack(&self) -> Result<StackRecord> {
        let selector = serde_json::from_str(self.str("selector")?)
            .map_err(|e| self.corrupt("selector", &format!("is not JSON: {e}")))?;
        Ok(StackRecord {
            id: self.str("stackId")?.to_string(),
            stack_type: self.str("stackType")?.to_string(),
            selector,
            version: self.u64(VERSION)?,
        })
    }

    pub(super) fn revision(&self) -> Result<RevisionRecord> {
        Ok(RevisionRecord {
            revision: self.str("revision")?.to_string(),
            key: self.str("key")?.to_string(),
            etag: self.str("etag")?.to_string(),
            size: self.u64("size")?,
            sha256: self.str("sha256")?.to_string(),
            created: self.time("createdAt")?,
        })
    }

    pub(super) fn commit(&self) -> Result<CommitRecord> {
        Ok(CommitRecord {
            sequence: self.u64("seq")?,
            actor: self.str("actor")?.to_string(),
            action: self.str("action")?.to_string(),
            system: self.opt_str("systemId")?.map(str::to_string),
            revision: self.opt_str("revision")?.map(str::to_string),
            time: self.time("time")?,
            payload: self.bytes("payload")?,
            payload_key_id: self.opt_str("payloadKeyId")?.map(str::to_string),
        })
    }

    pub(super) fn data_key(&self) -> Result<WrappedKey> {
        let state = self.str("state")?;
        Ok(WrappedKey {
            key_id: self.str("keyId")?.to_string(),
            ciphertext: self.bytes("ciphertext")?,
            created: self.time("createdAt")?,
            state: KeyState::parse(state).ok_or_else(|| self.corrupt("state", &format!("is {state:?}")))?,
        })
    }
}

pub(super) fn live_value(live: &LiveRevision) -> Result<AttributeValue> {
    let inputs = live.inputs.iter().map(|(k, v)| (k.clone(), n(v))).collect();
    let mut value = HashMap::from([
        ("revision".to_string(), s(&live.revision)),
        ("key".to_string(), s(&live.key)),
        ("etag".to_string(), s(&live.etag)),
        ("sha256".to_string(), s(&live.sha256)),
        ("inputs".to_string(), AttributeValue::M(inputs)),
    ]);
    if !live.stacks.is_empty() {
        value.insert("stacks".to_string(), AttributeValue::L(live.stacks.iter().map(s).collect()));
    }
    if let Some(at) = live.published {
        value.insert("publishedAt".to_string(), s(format_timestamp(at)?));
    }
    Ok(AttributeValue::M(value))
}

impl DynamoIndex {
    pub(super) fn commit_item(tenant: &str, sequence: u64, record: &CommitRecord) -> Result<Item> {
        let mut item = key(log_pk(tenant), commit_sk(sequence));
        item.insert("itemType".into(), s("commit"));
        item.insert("tenant".into(), s(tenant));
        item.insert("seq".into(), n(sequence));
        item.insert("actor".into(), s(&record.actor));
        item.insert("action".into(), s(&record.action));
        item.insert("time".into(), s(format_timestamp(record.time)?));
        if let Some(system) = &record.system {
            item.insert("systemId".into(), s(system));
        }
        if let Some(revision) = &record.revision {
            item.insert("revision".into(), s(revision));
        }
        if !record.payload.is_empty() {
            item.insert("payload".into(), AttributeValue::B(Blob::new(record.payload.clone())));
        }
        if let Some(key_id) = &record.payload_key_id {
            item.insert("payloadKeyId".into(), s(key_id));
        }
        Ok(item)
    }
}
