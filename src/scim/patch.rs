//! PATCH (RFC 7644 §3.5.2) applied to a resource's JSON: `add`, `remove` and `replace`, with or
//! without a path, paths into extensions by URN, and value filters on multi-valued attributes
//! (`emails[type eq "work"].value`). The operation names are matched case-insensitively, as
//! several HR connectors send `Add`, `Replace`, `Remove`. The caller then handles the result as
//! the body of a PUT, so a PATCH can do nothing a PUT cannot.

use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{self, AttrPath, CompValue, CompareOp, Filter, PatchPath};
use super::{member, same_name, ENTERPRISE_USER, GROUP, PATCH_OP, SEKIMORI_USER, USER};

/// How many operations one request may carry.
const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Replace,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub op: Op,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// What a resource type allows a PATCH to touch.
pub struct Rules {
    /// The core schema's URN: a path may be prefixed with it.
    pub core: &'static str,
    /// Extension URNs: members of the resource named by URN.
    pub extensions: &'static [&'static str],
    /// Attributes the service sets, never the client (`mutability: readOnly`).
    pub read_only: &'static [&'static str],
}

pub const USER_RULES: Rules = Rules {
    core: USER,
    extensions: &[ENTERPRISE_USER, SEKIMORI_USER],
    read_only: &["id", "meta", "schemas", "displayName", "groups"],
};

pub const GROUP_RULES: Rules = Rules { core: GROUP, extensions: &[], read_only: &["id", "meta", "schemas", "members"] };

/// Reads a PatchOp body.
pub fn parse(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let schemas_ok = member(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v.as_str().is_some_and(|v| same_name(v, PATCH_OP))));
    if !schemas_ok {
        return Err(ScimError::bad("invalidSyntax", format!("a PATCH body's schemas must name {PATCH_OP}")));
    }
    let operations = member(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::bad("invalidSyntax", "Operations must be an array"))?;
    if operations.is_empty() || operations.len() > MAX_OPERATIONS {
        return Err(ScimError::bad("invalidSyntax", format!("send 1 to {MAX_OPERATIONS} operations")));
    }
    operations
        .iter()
        .map(|operation| {
            let op = match member(operation, "op").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
                Some("add") => Op::Add,
                Some("remove") => Op::Remove,
                Some("replace") => Op::Replace,
                _ => return Err(ScimError::bad("invalidSyntax", "op must be add, remove or replace")),
            };
            let path = match member(operation, "path") {
                None => None,
                Some(Value::String(path)) if path.trim().is_empty() => None,
                Some(Value::String(path)) => Some(
                    filter::parse_patch_path(path.trim()).map_err(|e| ScimError::bad("invalidPath", e.to_string()))?,
                ),
                Some(_) => return Err(ScimError::bad("invalidPath", "path must be a string")),
            };
            let value = member(operation, "value").cloned();
            match (op, &path, &value) {
                (Op::Remove, None, _) => Err(ScimError::bad("noTarget", "remove needs a path")),
                (Op::Add | Op::Replace, _, None) => Err(ScimError::bad("invalidValue", "add and replace need a value")),
                (Op::Add | Op::Replace, None, Some(v)) if !v.is_object() => {
                    Err(ScimError::bad("invalidValue", "without a path, the value must be an object of attributes"))
                }
                _ => Ok(Operation { op, path, value }),
            }
        })
        .collect()
}

/// Applies `operations` in order to `resource`; all or nothing.
pub fn apply(mut resource: Value, operations: &[Operation], rules: &Rules) -> Result<Value, ScimError> {
    for operation in operations {
        match &operation.path {
            None => {
                // The value's members are each an add or replace of their own; a member may be
                // named by URN (`urn:…:enterprise:2.0:User:employeeNumber`).
                let Some(Value::Object(members)) = &operation.value else { continue };
                for (name, value) in members {
                    let path =
                        filter::parse_patch_path(name).map_err(|e| ScimError::bad("invalidPath", e.to_string()))?;
                    let target = Target::resolve(&path, rules)?;
                    set(&mut resource, &target, &path, operation.op, value.clone())?;
                }
            }
            Some(path) => {
                let target = Target::resolve(path, rules)?;
                match operation.op {
                    Op::Remove => remove(&mut resource, &target, path)?,
                    op => set(&mut resource, &target, path, op, operation.value.clone().unwrap_or(Value::Null))?,
                }
            }
        }
    }
    Ok(resource)
}

/// Where a path points: which object (the resource or an extension) and which attribute of it.
struct Target {
    /// None: the resource itself; Some(urn): the extension object.
    extension: Option<&'static str>,
    /// The attribute; None when the path names a whole extension.
    attribute: Option<String>,
    sub: Option<String>,
}

impl Target {
    fn resolve(path: &PatchPath, rules: &Rules) -> Result<Target, ScimError> {
        let attr = &path.attr;
        let (extension, attribute, sub) = match &attr.uri {
            None => {
                // A whole extension named by its URN parses as a URN with no attribute, or as
                // the URN's last segment: try the extension names first.
                (None, Some(attr.name.clone()), attr.sub.clone())
            }
            Some(uri) if same_name(uri, rules.core) => (None, Some(attr.name.clone()), attr.sub.clone()),
            Some(uri) => {
                if let Some(ext) = rules.extensions.iter().find(|e| same_name(e, uri)) {
                    (Some(*ext), Some(attr.name.clone()), attr.sub.clone())
                } else {
                    // `urn:…:User` alone (the whole extension) parses as uri `urn:…:2.0`, name `User`.
                    let whole = format!("{uri}:{}", attr.name);
                    match rules.extensions.iter().find(|e| same_name(e, &whole)) {
                        Some(ext) if attr.sub.is_none() => (Some(*ext), None, None),
                        _ => return Err(ScimError::bad("invalidPath", format!("unknown schema in path: {uri}"))),
                    }
                }
            }
        };
        if extension.is_none() {
            if let Some(name) = &attribute {
                if rules.read_only.iter().any(|r| same_name(r, name)) {
                    return Err(ScimError::bad("mutability", format!("{name} is read-only")));
                }
            }
        }
        Ok(Target { extension, attribute, sub: path.sub_after_filter.clone().or(sub) })
    }
}

/// The object a target lives in, created when missing.
fn container<'a>(resource: &'a mut Value, target: &Target) -> Result<&'a mut Map<String, Value>, ScimError> {
    let root = resource.as_object_mut().ok_or_else(|| ScimError::internal("a resource is not an object"))?;
    match target.extension {
        None => Ok(root),
        Some(urn) => {
            let key = root.keys().find(|k| same_name(k, urn)).cloned().unwrap_or_else(|| urn.to_owned());
            let entry = root.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            entry.as_object_mut().ok_or_else(|| ScimError::internal("an extension is not an object"))
        }
    }
}

fn key_of(object: &Map<String, Value>, name: &str) -> String {
    object.keys().find(|k| same_name(k, name)).cloned().unwrap_or_else(|| name.to_owned())
}

fn set(resource: &mut Value, target: &Target, path: &PatchPath, op: Op, value: Value) -> Result<(), ScimError> {
    let object = container(resource, target)?;
    let Some(attribute) = &target.attribute else {
        // A whole extension: its members, each added or replaced.
        let Value::Object(members) = value else {
            return Err(ScimError::bad("invalidValue", "an extension's value must be an object"));
        };
        if op == Op::Replace {
            object.clear();
        }
        for (name, v) in members {
            let key = key_of(object, &name);
            object.insert(key, v);
        }
        return Ok(());
    };
    let key = key_of(object, attribute);
    if let Some(filter) = &path.filter {
        // attr[filter] or attr[filter].sub: the matching elements of a multi-valued attribute.
        let items = object.entry(key).or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(items) = items else {
            return Err(ScimError::bad("invalidPath", format!("{attribute} is not multi-valued")));
        };
        let mut matched = false;
        for item in items.iter_mut() {
            if matches(item, filter)? {
                matched = true;
                match &target.sub {
                    Some(sub) => put_member(item, sub, value.clone())?,
                    None => merge_or_replace(item, value.clone(), op),
                }
            }
        }
        if !matched {
            if op == Op::Replace && target.sub.is_none() {
                return Err(ScimError::bad("noTarget", format!("no value of {attribute} matches the filter")));
            }
            // Add (or replace a sub-attribute of) an element that does not exist yet: made from
            // the filter's equalities, as HR connectors expect for `emails[type eq "work"].value`.
            let mut item = Value::Object(equalities(filter));
            match &target.sub {
                Some(sub) => put_member(&mut item, sub, value)?,
                None => merge_or_replace(&mut item, value, Op::Add),
            }
            items.push(item);
        }
        return Ok(());
    }
    match &target.sub {
        Some(sub) => {
            let parent = object.entry(key).or_insert_with(|| Value::Object(Map::new()));
            match parent {
                Value::Object(_) => put_member(parent, sub, value),
                Value::Array(items) => {
                    // A sub-attribute of every element of a multi-valued attribute.
                    for item in items.iter_mut() {
                        put_member(item, sub, value.clone())?;
                    }
                    Ok(())
                }
                _ => Err(ScimError::bad("invalidPath", format!("{attribute} has no sub-attributes"))),
            }
        }
        None => {
            let current = object.get_mut(&key);
            match (op, current, value) {
                // Add to a multi-valued attribute appends the values not already there.
                (Op::Add, Some(Value::Array(items)), Value::Array(new)) => {
                    for v in new {
                        if !items.contains(&v) {
                            items.push(v);
                        }
                    }
                }
                (Op::Add, Some(Value::Array(items)), v @ Value::Object(_)) => {
                    if !items.contains(&v) {
                        items.push(v);
                    }
                }
                // Add to a complex attribute merges its sub-attributes.
                (Op::Add, Some(current @ Value::Object(_)), v @ Value::Object(_)) => {
                    merge_or_replace(current, v, Op::Add)
                }
                (_, _, v) => {
                    object.insert(key, v);
                }
            }
            Ok(())
        }
    }
}

fn merge_or_replace(item: &mut Value, value: Value, op: Op) {
    match (item.as_object_mut(), value) {
        (Some(fields), Value::Object(new)) if op == Op::Add => {
            for (k, v) in new {
                let key = key_of(fields, &k);
                fields.insert(key, v);
            }
        }
        (_, value) => *item = value,
    }
}

fn put_member(item: &mut Value, name: &str, value: Value) -> Result<(), ScimError> {
    let fields =
        item.as_object_mut().ok_or_else(|| ScimError::bad("invalidPath", "the target has no sub-attributes"))?;
    let key = key_of(fields, name);
    fields.insert(key, value);
    Ok(())
}

fn remove(resource: &mut Value, target: &Target, path: &PatchPath) -> Result<(), ScimError> {
    let object = container(resource, target)?;
    let Some(attribute) = &target.attribute else {
        object.clear();
        return Ok(());
    };
    let key = key_of(object, attribute);
    match (&path.filter, &target.sub) {
        (None, None) => {
            object.remove(&key);
        }
        (None, Some(sub)) => match object.get_mut(&key) {
            Some(Value::Object(fields)) => {
                let k = key_of(fields, sub);
                fields.remove(&k);
            }
            Some(Value::Array(items)) => {
                for item in items.iter_mut().filter_map(Value::as_object_mut) {
                    let k = key_of(item, sub);
                    item.remove(&k);
                }
            }
            _ => {}
        },
        (Some(filter), sub) => {
            let Some(Value::Array(items)) = object.get_mut(&key) else {
                return Err(ScimError::bad("noTarget", format!("{attribute} has no values")));
            };
            let mut kept = Vec::new();
            let mut matched = false;
            for mut item in std::mem::take(items) {
                if matches(&item, filter)? {
                    matched = true;
                    if let (Some(sub), Some(fields)) = (sub, item.as_object_mut()) {
                        let k = key_of(fields, sub);
                        fields.remove(&k);
                        kept.push(item);
                    }
                } else {
                    kept.push(item);
                }
            }
            if !matched {
                return Err(ScimError::bad("noTarget", format!("no value of {attribute} matches the filter")));
            }
            if kept.is_empty() {
                object.remove(&key);
            } else {
                object.insert(key, Value::Array(kept));
            }
        }
    }
    Ok(())
}

/// The `attr eq "value"` members of a filter, as the fields of a new element.
fn equalities(filter: &Filter) -> Map<String, Value> {
    let mut fields = Map::new();
    collect_equalities(filter, &mut fields);
    fields
}

fn collect_equalities(filter: &Filter, fields: &mut Map<String, Value>) {
    match filter {
        Filter::Compare { path, op: CompareOp::Eq, value } => {
            let v = match value {
                CompValue::Str(s) => Value::from(s.clone()),
                CompValue::Bool(b) => Value::from(*b),
                CompValue::Num(n) => serde_json::Number::from_f64(*n).map(Value::Number).unwrap_or(Value::Null),
                CompValue::Null => return,
            };
            fields.insert(path.sub.clone().unwrap_or_else(|| path.name.clone()), v);
        }
        Filter::And(a, b) => {
            collect_equalities(a, fields);
            collect_equalities(b, fields);
        }
        _ => {}
    }
}

/// Whether an element of a multi-valued attribute matches a value filter.
fn matches(item: &Value, filter: &Filter) -> Result<bool, ScimError> {
    Ok(match filter {
        Filter::And(a, b) => matches(item, a)? && matches(item, b)?,
        Filter::Or(a, b) => matches(item, a)? || matches(item, b)?,
        Filter::Not(a) => !matches(item, a)?,
        Filter::Present(path) => value_at(item, path).is_some_and(|v| !is_empty(v)),
        Filter::Compare { path, op, value } => compare(value_at(item, path), *op, value),
        Filter::ValuePath { .. } => {
            return Err(ScimError::bad("invalidFilter", "a value filter cannot hold another value filter"))
        }
    })
}

fn value_at<'a>(item: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    // Inside `emails[…]` a path names a sub-attribute: `type`, or `emails.type`.
    let name = path.sub.as_deref().unwrap_or(&path.name);
    match item {
        Value::Object(_) => member(item, name),
        // A multi-valued attribute of simple values: `value` is the element itself.
        other if same_name(name, "value") => Some(other),
        _ => None,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn compare(actual: Option<&Value>, op: CompareOp, wanted: &CompValue) -> bool {
    use std::cmp::Ordering;
    let ordering = match (actual, wanted) {
        (None | Some(Value::Null), CompValue::Null) => Some(Ordering::Equal),
        (None | Some(Value::Null), _) => None,
        (Some(Value::String(a)), CompValue::Str(b)) => {
            let (a, b) = (a.to_lowercase(), b.to_lowercase());
            match op {
                CompareOp::Co => return a.contains(&b),
                CompareOp::Sw => return a.starts_with(&b),
                CompareOp::Ew => return a.ends_with(&b),
                _ => Some(a.cmp(&b)),
            }
        }
        (Some(Value::Bool(a)), CompValue::Bool(b)) => Some(a.cmp(b)),
        (Some(Value::Number(a)), CompValue::Num(b)) => a.as_f64().and_then(|a| a.partial_cmp(b)),
        _ => None,
    };
    match (op, ordering) {
        (CompareOp::Eq, Some(o)) => o == Ordering::Equal,
        (CompareOp::Ne, Some(o)) => o != Ordering::Equal,
        (CompareOp::Ne, None) => true,
        (CompareOp::Gt, Some(o)) => o == Ordering::Greater,
        (CompareOp::Ge, Some(o)) => o != Ordering::Less,
        (CompareOp::Lt, Some(o)) => o == Ordering::Less,
        (CompareOp::Le, Some(o)) => o != Ordering::Greater,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(body: Value) -> Vec<Operation> {
        parse(&body).unwrap()
    }

    fn patch(resource: Value, operations: Value) -> Result<Value, ScimError> {
        apply(resource, &ops(json!({"schemas": [PATCH_OP], "Operations": operations})), &USER_RULES)
    }

    #[test]
    fn operation_names_are_case_insensitive_and_active_false_as_a_string_passes_through() {
        let user = json!({"userName": "a", "active": true});
        let out = patch(user, json!([{"op": "Replace", "path": "active", "value": "False"}])).unwrap();
        assert_eq!(out["active"], "False");
    }

    #[test]
    fn no_path_members_may_be_named_by_urn() {
        let user = json!({"userName": "a", ENTERPRISE_USER: {"employeeNumber": "1"}});
        let out = patch(
            user,
            json!([{"op": "replace", "value": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "2", "userName": "b"}}]),
        )
        .unwrap();
        assert_eq!(out[ENTERPRISE_USER]["employeeNumber"], "2");
        assert_eq!(out["userName"], "b");
    }

    #[test]
    fn value_filters_select_elements_and_create_missing_ones() {
        let user = json!({"emails": [{"value": "a@x.jp", "type": "work"}]});
        let out = patch(
            user.clone(),
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@x.jp"}]),
        )
        .unwrap();
        assert_eq!(out["emails"], json!([{"value": "b@x.jp", "type": "work"}]));
        let out = patch(json!({}), json!([{"op": "add", "path": "emails[type eq \"work\"].value", "value": "c@x.jp"}]))
            .unwrap();
        assert_eq!(out["emails"], json!([{"type": "work", "value": "c@x.jp"}]));
        let out = patch(user, json!([{"op": "remove", "path": "emails[type eq \"work\"]"}])).unwrap();
        assert!(out.get("emails").is_none());
    }

    #[test]
    fn read_only_attributes_and_missing_paths_are_refused() {
        let err = patch(json!({}), json!([{"op": "replace", "path": "groups", "value": []}])).unwrap_err();
        assert_eq!(err.scim_type, Some("mutability"));
        assert!(parse(&json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove"}]})).is_err());
        assert!(parse(&json!({"schemas": [PATCH_OP], "Operations": [{"op": "delete", "path": "x"}]})).is_err());
        assert!(parse(&json!({"Operations": [{"op": "add", "path": "x", "value": 1}]})).is_err());
    }

    #[test]
    fn a_whole_extension_is_replaced_or_removed() {
        let user = json!({SEKIMORI_USER: {"orgUnitCode": "A", "kind": "regular"}});
        let out = patch(
            user.clone(),
            json!([{"op": "replace", "path": SEKIMORI_USER, "value": {"orgUnitCode": "B", "kind": "part_time"}}]),
        )
        .unwrap();
        assert_eq!(out[SEKIMORI_USER], json!({"orgUnitCode": "B", "kind": "part_time"}));
        let out = patch(user, json!([{"op": "replace", "path": format!("{SEKIMORI_USER}:orgUnitCode"), "value": "C"}]))
            .unwrap();
        assert_eq!(out[SEKIMORI_USER]["orgUnitCode"], "C");
    }
}
