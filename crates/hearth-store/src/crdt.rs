//! The document CRDT: last-writer-wins per top-level field, with tombstones.
//!
//! Owns: the replicated state of one document, turning operations into state
//! deltas, merging two states, and materialising the visible value. Must
//! never: do I/O or read a clock; merge must stay commutative, associative and
//! idempotent (see docs/design.md, "The CRDT", and tests/crdt_props.rs).

use crate::hlc::Stamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// What kind of write a change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The document was replaced.
    Put,
    /// Top-level fields were merged in (`null` removes a field).
    Patch,
    /// The document was deleted (tombstone).
    Delete,
}

impl ChangeKind {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            ChangeKind::Put => 1,
            ChangeKind::Patch => 2,
            ChangeKind::Delete => 3,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Option<ChangeKind> {
        match v {
            1 => Some(ChangeKind::Put),
            2 => Some(ChangeKind::Patch),
            3 => Some(ChangeKind::Delete),
            _ => None,
        }
    }

    /// The lowercase name (`put`, `patch`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Put => "put",
            ChangeKind::Patch => "patch",
            ChangeKind::Delete => "delete",
        }
    }
}

/// The latest put or delete of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Clear {
    pub(crate) stamp: Stamp,
    pub(crate) deleted: bool,
}

/// A field's stamp and whether it is removed. Listed only when the field's
/// stamp differs from the clear stamp, or the field is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FieldMeta {
    pub(crate) stamp: Stamp,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) removed: bool,
}

/// The replicated state of one document.
///
/// Invariant: every key of `values` has stamp `fields[k].stamp` if listed
/// (and then `removed` is false), otherwise `clear.stamp` (and `clear` is
/// `Some`). No field (listed or implicit) has a stamp below `clear.stamp`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct DocState {
    pub(crate) clear: Option<Clear>,
    pub(crate) fields: BTreeMap<String, FieldMeta>,
    pub(crate) values: Map<String, Value>,
}

/// The part of a [`DocState`] stored beside the materialised JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub(crate) struct StoredMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) clear: Option<Clear>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) fields: BTreeMap<String, FieldMeta>,
}

impl DocState {
    /// The state a single operation at `stamp` produces on its own.
    pub(crate) fn from_op(
        kind: ChangeKind,
        stamp: Stamp,
        data: Option<Map<String, Value>>,
    ) -> DocState {
        let data = data.unwrap_or_default();
        match kind {
            ChangeKind::Put => DocState {
                clear: Some(Clear {
                    stamp,
                    deleted: false,
                }),
                fields: BTreeMap::new(),
                values: data,
            },
            ChangeKind::Delete => DocState {
                clear: Some(Clear {
                    stamp,
                    deleted: true,
                }),
                fields: BTreeMap::new(),
                values: Map::new(),
            },
            ChangeKind::Patch => {
                let mut fields = BTreeMap::new();
                let mut values = Map::new();
                for (k, v) in data {
                    let removed = v.is_null();
                    fields.insert(k.clone(), FieldMeta { stamp, removed });
                    if !removed {
                        values.insert(k, v);
                    }
                }
                DocState {
                    clear: None,
                    fields,
                    values,
                }
            }
        }
    }

    /// Rebuilds a state from its stored parts.
    pub(crate) fn from_stored(meta: StoredMeta, values: Map<String, Value>) -> DocState {
        DocState {
            clear: meta.clear,
            fields: meta.fields,
            values,
        }
    }

    /// The part stored beside the JSON.
    pub(crate) fn stored_meta(&self) -> StoredMeta {
        StoredMeta {
            clear: self.clear,
            fields: self.fields.clone(),
        }
    }

    /// The stamp and value of one field, if the state knows the field.
    fn field(&self, key: &str) -> Option<(Stamp, Option<&Value>)> {
        if let Some(meta) = self.fields.get(key) {
            let value = if meta.removed {
                None
            } else {
                self.values.get(key)
            };
            return Some((meta.stamp, value));
        }
        match (self.values.get(key), self.clear) {
            (Some(v), Some(c)) => Some((c.stamp, Some(v))),
            _ => None,
        }
    }

    /// Merges `other` into a new state. Commutative, associative, idempotent.
    pub(crate) fn merge(&self, other: &DocState) -> DocState {
        let clear = match (self.clear, other.clear) {
            (Some(a), Some(b)) => Some(if b.stamp > a.stamp { b } else { a }),
            (a, b) => a.or(b),
        };
        let keys: BTreeSet<&String> = self
            .fields
            .keys()
            .chain(self.values.keys())
            .chain(other.fields.keys())
            .chain(other.values.keys())
            .collect();
        let mut out = DocState {
            clear,
            fields: BTreeMap::new(),
            values: Map::new(),
        };
        for key in keys {
            let winner = match (self.field(key), other.field(key)) {
                (Some(a), Some(b)) => {
                    if b.0 > a.0 {
                        b
                    } else {
                        a
                    }
                }
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => continue,
            };
            out.insert_field(key, winner.0, winner.1.cloned());
        }
        out
    }

    /// Adds one field, pruning it when the clear supersedes it.
    fn insert_field(&mut self, key: &str, stamp: Stamp, value: Option<Value>) {
        let clear_stamp = self.clear.map(|c| c.stamp);
        if clear_stamp.is_some_and(|cs| stamp < cs) {
            return;
        }
        let implicit = value.is_some() && clear_stamp == Some(stamp);
        if !implicit {
            self.fields.insert(
                key.to_string(),
                FieldMeta {
                    stamp,
                    removed: value.is_none(),
                },
            );
        }
        if let Some(v) = value {
            self.values.insert(key.to_string(), v);
        }
    }

    /// Whether the document is visible (not a tombstone).
    pub(crate) fn exists(&self) -> bool {
        match self.clear {
            None => true,
            Some(c) if !c.deleted => true,
            Some(c) => self.fields.values().any(|f| f.stamp > c.stamp),
        }
    }

    /// The largest stamp in the state: the stamp of its latest change.
    pub(crate) fn max_stamp(&self) -> Option<Stamp> {
        let f = self.fields.values().map(|f| f.stamp).max();
        match (self.clear.map(|c| c.stamp), f) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn st(h: u64) -> Stamp {
        Stamp { hlc: h, replica: 1 }
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test literal is an object"),
        }
    }

    #[test]
    fn a_later_put_replaces_every_field() {
        let a = DocState::from_op(ChangeKind::Put, st(1), Some(obj(json!({"a":1,"b":2}))));
        let b = DocState::from_op(ChangeKind::Put, st(2), Some(obj(json!({"c":3}))));
        let m = a.merge(&b);
        assert_eq!(Value::Object(m.values.clone()), json!({"c":3}));
        assert!(m.exists());
    }

    #[test]
    fn a_patch_merges_fields_and_null_removes_one() {
        let a = DocState::from_op(ChangeKind::Put, st(1), Some(obj(json!({"a":1,"b":2}))));
        let p = DocState::from_op(ChangeKind::Patch, st(2), Some(obj(json!({"b":null,"c":3}))));
        let m = a.merge(&p);
        assert_eq!(Value::Object(m.values.clone()), json!({"a":1,"c":3}));
    }

    #[test]
    fn a_patch_older_than_a_put_is_lost_in_either_order() {
        let p = DocState::from_op(ChangeKind::Patch, st(1), Some(obj(json!({"x":1}))));
        let put = DocState::from_op(ChangeKind::Put, st(2), Some(obj(json!({"y":2}))));
        assert_eq!(p.merge(&put), put.merge(&p));
        assert_eq!(Value::Object(p.merge(&put).values), json!({"y":2}));
    }

    #[test]
    fn a_delete_makes_a_tombstone_and_a_later_patch_revives() {
        let put = DocState::from_op(ChangeKind::Put, st(1), Some(obj(json!({"a":1}))));
        let del = DocState::from_op(ChangeKind::Delete, st(2), None);
        let m = put.merge(&del);
        assert!(!m.exists());
        let p = DocState::from_op(ChangeKind::Patch, st(3), Some(obj(json!({"b":2}))));
        let m2 = m.merge(&p);
        assert!(m2.exists());
        assert_eq!(Value::Object(m2.values), json!({"b":2}));
    }

    #[test]
    fn merge_with_itself_changes_nothing() {
        let a = DocState::from_op(ChangeKind::Put, st(1), Some(obj(json!({"a":1}))));
        let p = DocState::from_op(ChangeKind::Patch, st(2), Some(obj(json!({"b":2}))));
        let m = a.merge(&p);
        assert_eq!(m.merge(&m), m);
    }
}
