//! Discovery (RFC 7644 §4): ServiceProviderConfig, ResourceTypes and Schemas. The schemas are
//! JSON files beside this module, published as they are, except that the org unit codes a
//! person may be given are listed as the `canonicalValues` of `orgUnitCode`: they are the
//! directory's open units, read at each request.

use axum::extract::{Path, State};
use serde_json::{json, Value};

use super::error::ScimError;
use super::{list_response, Scim, ScimResponse, ENTERPRISE_USER, GROUP, SEKIMORI_USER, USER};
use crate::App;

const USER_SCHEMA: &str = include_str!("schemas/User.json");
const ENTERPRISE_SCHEMA: &str = include_str!("schemas/EnterpriseUser.json");
const SEKIMORI_SCHEMA: &str = include_str!("schemas/SekimoriUser.json");
const GROUP_SCHEMA: &str = include_str!("schemas/Group.json");

pub async fn service_provider_config(scim: Scim) -> ScimResponse {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/sekimori/sekimori#hr-feed-scim-20",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": super::query::MAX_COUNT},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "HR feed token",
            "description": "An API token of Sekimori's admin API carrying only the hr:feed right, sent as a Bearer token.",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": scim.url("/ServiceProviderConfig"),
        },
    });
    ScimResponse::ok(body)
}

fn resource_types(scim: &Scim) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "People: employees and other staff of the municipality",
            "schema": USER,
            "schemaExtensions": [
                {"schema": ENTERPRISE_USER, "required": true},
                {"schema": SEKIMORI_USER, "required": true},
            ],
            "meta": {"resourceType": "ResourceType", "location": scim.url("/ResourceTypes/User")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Org units (部・課・係)",
            "schema": GROUP,
            "meta": {"resourceType": "ResourceType", "location": scim.url("/ResourceTypes/Group")},
        }),
    ]
}

pub async fn list_resource_types(scim: Scim) -> ScimResponse {
    let all = resource_types(&scim);
    let total = all.len();
    ScimResponse::ok(list_response(all, total as u64, 1))
}

pub async fn get_resource_type(scim: Scim, Path(id): Path<String>) -> Result<ScimResponse, ScimError> {
    resource_types(&scim)
        .into_iter()
        .find(|rt| rt["id"] == id.as_str())
        .map(ScimResponse::ok)
        .ok_or_else(|| ScimError::not_found("resource type"))
}

async fn schemas(app: &App, scim: &Scim) -> Result<Vec<Value>, ScimError> {
    let codes: Vec<Value> = super::groups::open_unit_codes(app).await?.into_iter().map(Value::from).collect();
    let mut all = Vec::new();
    for text in [USER_SCHEMA, ENTERPRISE_SCHEMA, SEKIMORI_SCHEMA, GROUP_SCHEMA] {
        let mut schema: Value = serde_json::from_str(text).map_err(ScimError::internal)?;
        list_unit_codes(&mut schema, &codes);
        let id = schema.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        if let Some(fields) = schema.as_object_mut() {
            fields.insert(
                "meta".into(),
                json!({"resourceType": "Schema", "location": scim.url(&format!("/Schemas/{id}"))}),
            );
        }
        all.push(schema);
    }
    Ok(all)
}

/// Sets the `canonicalValues` of every `orgUnitCode` attribute (at any depth) to `codes`.
fn list_unit_codes(value: &mut Value, codes: &[Value]) {
    match value {
        Value::Object(fields) => {
            if fields.get("name").and_then(Value::as_str) == Some("orgUnitCode") {
                fields.insert("canonicalValues".into(), Value::Array(codes.to_vec()));
            }
            for child in fields.values_mut() {
                list_unit_codes(child, codes);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| list_unit_codes(item, codes)),
        _ => {}
    }
}

pub async fn list_schemas(State(app): State<App>, scim: Scim) -> Result<ScimResponse, ScimError> {
    let all = schemas(&app, &scim).await?;
    let total = all.len();
    Ok(ScimResponse::ok(list_response(all, total as u64, 1)))
}

pub async fn get_schema(State(app): State<App>, scim: Scim, Path(id): Path<String>) -> Result<ScimResponse, ScimError> {
    schemas(&app, &scim)
        .await?
        .into_iter()
        .find(|schema| schema["id"] == id.as_str())
        .map(ScimResponse::ok)
        .ok_or_else(|| ScimError::not_found("schema"))
}
