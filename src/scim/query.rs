//! Listing and searching (RFC 7644 §3.4.2, §3.4.3): filter, sort, page, and the attributes a
//! response carries. A filter becomes SQL (`filter::to_sql`) over the attributes Sekimori
//! keeps; a filter on an attribute it does not keep matches nothing (an empty list, not an
//! error — what HR connectors expect when they look for a user before creating them).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{self, AttrPath, Column, ColumnKind, Filter, SqlParam};
use super::users::{self, UserRecord, USER_COLUMNS, USER_FROM};
use super::{member, same_name, ENTERPRISE_USER, SEARCH_REQUEST, SEKIMORI_USER, USER};
use crate::App;

/// The most resources one page holds.
pub const MAX_COUNT: u64 = 1000;
const DEFAULT_COUNT: u64 = 100;

/// The query string, as pairs.
pub struct QueryParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        Ok(QueryParams(form_urlencoded::parse(query.as_bytes()).into_owned().collect()))
    }
}

impl QueryParams {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn projection(&self) -> Result<Projection, ScimError> {
        Projection::new(self.get("attributes"), self.get("excludedAttributes"))
    }

    pub fn list(&self) -> Result<ListParams, ScimError> {
        let number = |name: &str| -> Result<Option<u64>, ScimError> {
            match self.get(name) {
                None => Ok(None),
                // RFC 7644 §3.4.2.4: values below 1 are read as 1 (startIndex) or 0 (count).
                Some(v) => match v.trim().parse::<i64>() {
                    Ok(n) => Ok(Some(n.max(0) as u64)),
                    Err(_) => Err(ScimError::invalid_value(format!("{name} must be an integer"))),
                },
            }
        };
        ListParams::new(
            self.get("filter"),
            self.get("sortBy"),
            self.get("sortOrder"),
            number("startIndex")?,
            number("count")?,
            self.projection()?,
        )
    }
}

#[derive(Debug)]
pub struct ListParams {
    pub filter: Option<Filter>,
    pub sort_by: Option<AttrPath>,
    pub descending: bool,
    pub start_index: u64,
    pub count: u64,
    pub projection: Projection,
}

impl ListParams {
    fn new(
        filter: Option<&str>,
        sort_by: Option<&str>,
        sort_order: Option<&str>,
        start_index: Option<u64>,
        count: Option<u64>,
        projection: Projection,
    ) -> Result<Self, ScimError> {
        let filter = filter.filter(|f| !f.trim().is_empty()).map(filter::parse).transpose()?;
        let sort_by = sort_by
            .filter(|s| !s.trim().is_empty())
            .map(|s| filter::parse_patch_path(s.trim()).map(|p| p.attr))
            .transpose()
            .map_err(|e| ScimError::invalid_value(format!("sortBy: {e}")))?;
        let descending = match sort_order.map(str::to_ascii_lowercase).as_deref() {
            None | Some("ascending") => false,
            Some("descending") => true,
            Some(_) => return Err(ScimError::invalid_value("sortOrder must be ascending or descending")),
        };
        Ok(ListParams {
            filter,
            sort_by,
            descending,
            start_index: start_index.unwrap_or(1).max(1),
            count: count.unwrap_or(DEFAULT_COUNT).min(MAX_COUNT),
            projection,
        })
    }

    /// A SearchRequest body (POST …/.search).
    pub fn from_search_request(body: &Value) -> Result<Self, ScimError> {
        let named = member(body, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().any(|v| v.as_str().is_some_and(|v| same_name(v, SEARCH_REQUEST))));
        if !named {
            return Err(ScimError::bad("invalidSyntax", format!("a search's schemas must name {SEARCH_REQUEST}")));
        }
        let text = |name: &str| -> Result<Option<String>, ScimError> {
            match member(body, name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::invalid_value(format!("{name} must be a string"))),
            }
        };
        let list = |name: &str| -> Result<Option<String>, ScimError> {
            match member(body, name) {
                None => Ok(None),
                Some(Value::Array(items)) => {
                    let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                    names
                        .map(|n| Some(n.join(",")))
                        .ok_or_else(|| ScimError::invalid_value(format!("{name} must be strings")))
                }
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::invalid_value(format!("{name} must be an array of strings"))),
            }
        };
        let number = |name: &str| -> Result<Option<u64>, ScimError> {
            match member(body, name) {
                None => Ok(None),
                Some(v) => v
                    .as_i64()
                    .map(|n| Some(n.max(0) as u64))
                    .ok_or_else(|| ScimError::invalid_value(format!("{name} must be an integer"))),
            }
        };
        let attributes = list("attributes")?;
        let excluded = list("excludedAttributes")?;
        ListParams::new(
            text("filter")?.as_deref(),
            text("sortBy")?.as_deref(),
            text("sortOrder")?.as_deref(),
            number("startIndex")?,
            number("count")?,
            Projection::new(attributes.as_deref(), excluded.as_deref())?,
        )
    }
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.9): which attributes a response carries.
/// `id` and `schemas` are always returned; `meta` unless excluded.
#[derive(Debug, Default)]
pub struct Projection {
    only: Option<Vec<AttrPath>>,
    excluded: Vec<AttrPath>,
}

impl Projection {
    fn new(attributes: Option<&str>, excluded: Option<&str>) -> Result<Self, ScimError> {
        let parse = |list: &str| -> Result<Vec<AttrPath>, ScimError> {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    filter::parse_patch_path(s).map(|p| p.attr).map_err(|e| ScimError::invalid_value(e.to_string()))
                })
                .collect()
        };
        let only = attributes.map(parse).transpose()?.filter(|v| !v.is_empty());
        let excluded = excluded.map(parse).transpose()?.unwrap_or_default();
        if only.is_some() && !excluded.is_empty() {
            return Err(ScimError::invalid_value("attributes and excludedAttributes are mutually exclusive"));
        }
        Ok(Projection { only, excluded })
    }

    /// Whether a response carries the core attribute `name` (so it is worth reading).
    pub fn wants(&self, name: &str) -> bool {
        let named = |p: &AttrPath| p.uri.is_none() && same_name(&p.name, name);
        match &self.only {
            Some(only) => only.iter().any(named),
            None => !self.excluded.iter().any(|p| named(p) && p.sub.is_none()),
        }
    }

    /// The resource with only the attributes asked for.
    pub fn apply(&self, resource: Value, core: &str) -> Value {
        let Value::Object(fields) = resource else { return resource };
        let mut out = Map::new();
        for (key, value) in fields {
            if ["id", "schemas"].contains(&key.as_str()) {
                out.insert(key, value);
                continue;
            }
            let is_extension = key.starts_with("urn:");
            let kept = match (&self.only, is_extension, value) {
                (Some(only), false, value) => {
                    let asked: Vec<&AttrPath> = only.iter().filter(|p| names(p, core, &key, None)).collect();
                    keep_asked(&asked, &key, value)
                }
                (Some(only), true, Value::Object(ext)) => {
                    let mut kept = Map::new();
                    let whole = only.iter().any(|p| is_whole_extension(p, &key));
                    for (name, v) in ext {
                        let asked: Vec<&AttrPath> = only.iter().filter(|p| names(p, core, &name, Some(&key))).collect();
                        if whole {
                            kept.insert(name, v);
                        } else if let Some(v) = keep_asked(&asked, &name, v) {
                            kept.insert(name, v);
                        }
                    }
                    (!kept.is_empty()).then_some(Value::Object(kept))
                }
                (None, false, value) => {
                    let dropped: Vec<&AttrPath> = self.excluded.iter().filter(|p| names(p, core, &key, None)).collect();
                    drop_excluded(&dropped, value)
                }
                (None, true, Value::Object(ext)) => {
                    if self.excluded.iter().any(|p| is_whole_extension(p, &key)) {
                        None
                    } else {
                        let mut kept = Map::new();
                        for (name, v) in ext {
                            let dropped: Vec<&AttrPath> =
                                self.excluded.iter().filter(|p| names(p, core, &name, Some(&key))).collect();
                            if let Some(v) = drop_excluded(&dropped, v) {
                                kept.insert(name, v);
                            }
                        }
                        Some(Value::Object(kept))
                    }
                }
                (_, true, other) => Some(other),
            };
            if let Some(value) = kept {
                out.insert(key, value);
            }
        }
        Value::Object(out)
    }
}

/// Whether `path` names the attribute `name` (of the extension `extension`, or of the core).
fn names(path: &AttrPath, core: &str, name: &str, extension: Option<&str>) -> bool {
    let schema_ok = match (&path.uri, extension) {
        (None, _) => true,
        (Some(uri), None) => same_name(uri, core),
        (Some(uri), Some(ext)) => same_name(uri, ext),
    };
    schema_ok && same_name(&path.name, name)
}

fn is_whole_extension(path: &AttrPath, extension: &str) -> bool {
    path.sub.is_none() && path.uri.as_deref().is_some_and(|uri| same_name(&format!("{uri}:{}", path.name), extension))
}

fn keep_asked(asked: &[&AttrPath], key: &str, value: Value) -> Option<Value> {
    if key == "meta" && asked.is_empty() {
        return None;
    }
    if asked.is_empty() {
        return None;
    }
    if asked.iter().any(|p| p.sub.is_none()) {
        return Some(value);
    }
    let subs: Vec<&str> = asked.iter().filter_map(|p| p.sub.as_deref()).collect();
    Some(select_subs(value, &subs, true))
}

fn drop_excluded(dropped: &[&AttrPath], value: Value) -> Option<Value> {
    if dropped.iter().any(|p| p.sub.is_none()) {
        return None;
    }
    let subs: Vec<&str> = dropped.iter().filter_map(|p| p.sub.as_deref()).collect();
    if subs.is_empty() {
        return Some(value);
    }
    Some(select_subs(value, &subs, false))
}

/// Keeps (or drops) the named sub-attributes of a complex value or of each element of a
/// multi-valued one.
fn select_subs(value: Value, subs: &[&str], keep: bool) -> Value {
    let pick = |fields: Map<String, Value>| -> Value {
        Value::Object(fields.into_iter().filter(|(k, _)| subs.iter().any(|s| same_name(s, k)) == keep).collect())
    };
    match value {
        Value::Object(fields) => pick(fields),
        Value::Array(items) => Value::Array(
            items.into_iter().map(|item| if let Value::Object(fields) = item { pick(fields) } else { item }).collect(),
        ),
        other => other,
    }
}

fn text(sql: &str, case_exact: bool) -> Option<Column> {
    Some(Column { sql: sql.to_owned(), kind: ColumnKind::Text { case_exact } })
}

/// Login IDs are kept in lower case, so a `userName` comparison is made case-exact on a
/// lower-cased value: the same answer as a case-insensitive one, and the unique index on
/// `accounts.login_id` answers the `userName eq "…"` an HR connector sends for every person.
fn lower_user_names(filter: Filter) -> Filter {
    use filter::CompValue;
    let lower = |f: Filter| lower_user_names(f);
    match filter {
        Filter::Compare { path, op, value: CompValue::Str(v) } if is_user_name(&path) => {
            Filter::Compare { path, op, value: CompValue::Str(v.to_ascii_lowercase()) }
        }
        Filter::And(a, b) => Filter::And(Box::new(lower(*a)), Box::new(lower(*b))),
        Filter::Or(a, b) => Filter::Or(Box::new(lower(*a)), Box::new(lower(*b))),
        Filter::Not(a) => Filter::Not(Box::new(lower(*a))),
        other => other,
    }
}

fn is_user_name(path: &AttrPath) -> bool {
    path.is("userName", None) && path.uri.as_deref().is_none_or(|uri| same_name(uri, USER))
}

/// The column a User attribute is kept in.
fn user_column(path: &AttrPath) -> Option<Column> {
    let core = match &path.uri {
        None => true,
        Some(uri) => same_name(uri, USER),
    };
    let name = path.name.to_ascii_lowercase();
    let sub = path.sub.as_deref().map(str::to_ascii_lowercase);
    if core {
        return match (name.as_str(), sub.as_deref()) {
            ("id", None) => text("p.id", true),
            // Case-exact on a lower-cased value: see `lower_user_names`.
            ("username", None) => text("a.login_id", true),
            ("externalid", None) => text("p.external_id", true),
            ("emails", None | Some("value")) => text("p.email", false),
            ("name", Some("familyname")) => text("p.family_name", false),
            ("name", Some("givenname")) => text("p.given_name", false),
            ("displayname", None) => text("(p.family_name || ' ' || p.given_name)", false),
            ("active", None) => Some(Column { sql: "(p.status <> 'retired')".into(), kind: ColumnKind::Boolean }),
            ("meta", Some("lastmodified")) => Some(Column { sql: "p.updated_at".into(), kind: ColumnKind::UnixTime }),
            ("meta", Some("created")) => Some(Column { sql: "p.created_at".into(), kind: ColumnKind::UnixTime }),
            ("groups", None | Some("value")) => text("o.id", true),
            ("groups", Some("display")) => text("o.name", false),
            _ => None,
        };
    }
    let uri = path.uri.as_deref().unwrap_or_default();
    if same_name(uri, ENTERPRISE_USER) && name == "employeenumber" && sub.is_none() {
        return text("p.employee_number", true);
    }
    if same_name(uri, SEKIMORI_USER) && sub.is_none() {
        return match name.as_str() {
            "orgunitcode" => text("o.code", true),
            "kind" => text("p.kind", true),
            _ => None,
        };
    }
    None
}

/// One page of people.
pub struct Page<T> {
    pub records: Vec<T>,
    pub total: u64,
}

fn bind_all<'q>(mut q: crate::store::AnyQuery<'q>, params: &'q [SqlParam]) -> crate::store::AnyQuery<'q> {
    for param in params {
        q = match param {
            SqlParam::Text(s) => q.bind(s.as_str()),
            SqlParam::Int(i) => q.bind(*i),
            SqlParam::Real(f) => q.bind(*f),
            SqlParam::Bool(b) => q.bind(*b),
        };
    }
    q
}

/// The WHERE clause (after the base condition) and ORDER BY of a listing.
fn clauses(
    params: &ListParams,
    resolve: &dyn Fn(&AttrPath) -> Option<Column>,
    default_order: &str,
) -> Result<(String, Vec<SqlParam>, String), ScimError> {
    let (condition, binds) = match &params.filter {
        Some(filter) => {
            let filter = lower_user_names(filter.clone());
            let (sql, binds) = filter::to_sql(&filter, resolve, 1)?;
            (format!(" AND ({sql})"), binds)
        }
        None => (String::new(), Vec::new()),
    };
    let direction = if params.descending { "DESC" } else { "ASC" };
    let order = match params.sort_by.as_ref().and_then(resolve) {
        Some(column) => format!("{} {direction}, {default_order}", column.sql),
        // Sorting by an attribute Sekimori does not keep: the default order.
        None => default_order.to_owned(),
    };
    Ok((condition, binds, order))
}

/// One page of the rows `from` (a FROM … WHERE base condition) selects, filtered, sorted and
/// counted as `params` say.
async fn page<T>(
    app: &App,
    params: &ListParams,
    resolve: fn(&AttrPath) -> Option<Column>,
    columns: &str,
    from: &str,
    default_order: &str,
    read: fn(&sqlx::any::AnyRow) -> Result<T, sqlx::Error>,
) -> Result<Page<T>, ScimError> {
    let (condition, binds, order) = clauses(params, &resolve, default_order)?;
    let base = format!("{from}{condition}");
    let total: i64 = {
        let sql = format!("SELECT COUNT(*) AS n {base}");
        let row = bind_all(sqlx::query(&sql), &binds).fetch_one(app.store.pool()).await?;
        sqlx::Row::try_get(&row, "n")?
    };
    let mut records = Vec::new();
    if params.count > 0 {
        let sql = format!(
            "SELECT {columns} {base} ORDER BY {order} LIMIT {} OFFSET {}",
            params.count,
            params.start_index - 1
        );
        for row in &bind_all(sqlx::query(&sql), &binds).fetch_all(app.store.pool()).await? {
            records.push(read(row)?);
        }
    }
    Ok(Page { records, total: total.max(0) as u64 })
}

pub async fn users(app: &App, params: &ListParams) -> Result<Page<UserRecord>, ScimError> {
    let from = format!("{USER_FROM} WHERE p.scim_deleted_at IS NULL");
    let page =
        page(app, params, user_column, USER_COLUMNS, &from, "p.created_at, p.id", users::record_from_row).await?;
    let records = users::with_posts(app.store.pool(), page.records).await?;
    Ok(Page { records, total: page.total })
}

/// The column a Group attribute is kept in.
pub fn group_column(path: &AttrPath) -> Option<Column> {
    let core = match &path.uri {
        None => true,
        Some(uri) => same_name(uri, super::GROUP),
    };
    if !core {
        return None;
    }
    match (path.name.to_ascii_lowercase().as_str(), path.sub.as_deref().map(str::to_ascii_lowercase).as_deref()) {
        ("id", None) => text("g.id", true),
        ("displayname", None) => text("g.name", false),
        ("externalid", None) => text("g.external_id", true),
        ("meta", Some("lastmodified")) => {
            Some(Column { sql: "COALESCE(g.updated_at, g.created_at)".into(), kind: ColumnKind::UnixTime })
        }
        ("meta", Some("created")) => Some(Column { sql: "g.created_at".into(), kind: ColumnKind::UnixTime }),
        _ => None,
    }
}

pub async fn groups(app: &App, params: &ListParams) -> Result<Page<super::groups::GroupRecord>, ScimError> {
    let from = "FROM org_units g WHERE g.closed_at IS NULL";
    page(
        app,
        params,
        group_column,
        super::groups::GROUP_COLUMNS,
        from,
        "g.created_at, g.id",
        super::groups::record_from_row,
    )
    .await
}
