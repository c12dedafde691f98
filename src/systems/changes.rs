//! R21: Changing a consuming system's settings (its redirect URIs move, its owner section is
//! reorganised, it starts calling other systems). The whole result is checked by the same
//! rules as a registration, written with its audit event in the caller's transaction, and
//! applies from the next request on: tokens already issued keep what they were issued with.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::directory::{self, InvalidField};
use crate::store::Tx;

use super::{check_owner, get_locked, grant_list, rules, uri_list};
use super::{AuthMethod, Client, ClientError, GrantType, SigningAlg};

/// A change, as a JSON merge patch (RFC 7396): a member left out stays as it is; `null`
/// clears a member that may be empty (the owner, the back-channel logout URI) and is refused
/// for one that may not. Not here, on purpose: `client_id`; `client_type` (a public client has
/// no secret and a confidential one must have one: register a new system instead); the secret
/// (see [`super::rotate_secret`]); the status (see [`super::disable`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientChanges {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub owner_org_unit_id: Option<Option<String>>,
    /// Between `client_secret_basic` and `client_secret_post` for a confidential client; a
    /// public client keeps `none`.
    #[serde(default, deserialize_with = "present")]
    pub token_endpoint_auth_method: Option<AuthMethod>,
    #[serde(default, deserialize_with = "present")]
    pub redirect_uris: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub id_token_signed_response_alg: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub require_pkce: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub access_token_ttl: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    pub grant_types: Option<Vec<GrantType>>,
    #[serde(default, deserialize_with = "present")]
    pub service_scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub refresh_token_ttl: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    pub backchannel_logout_uri: Option<Option<String>>,
}

/// A member that, when sent, must hold a value (`null` is refused, not taken as "unchanged").
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A member that, when sent, holds a value or `null` (cleared).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

impl ClientChanges {
    /// `client` with these changes, checked as a whole.
    fn apply_to(self, mut client: Client) -> Result<Client, InvalidField> {
        if let Some(name) = self.name {
            client.name = directory::types::parse_name("name", &name)?;
        }
        if let Some(owner) = self.owner_org_unit_id {
            client.owner_org_unit_id = owner;
        }
        if let Some(method) = self.token_endpoint_auth_method {
            client.token_endpoint_auth_method = method;
        }
        if let Some(uris) = self.redirect_uris {
            client.redirect_uris = uris;
        }
        if let Some(uris) = self.post_logout_redirect_uris {
            client.post_logout_redirect_uris = uris;
        }
        if let Some(scopes) = self.scopes {
            client.scopes = scopes;
        }
        if let Some(alg) = self.id_token_signed_response_alg {
            client.id_token_signed_response_alg = SigningAlg::parse(&alg)?;
        }
        if let Some(require_pkce) = self.require_pkce {
            client.require_pkce = require_pkce;
        }
        if let Some(ttl) = self.access_token_ttl {
            client.access_token_ttl = ttl;
        }
        if let Some(grants) = self.grant_types {
            client.grant_types = grants;
        }
        if let Some(scopes) = self.service_scopes {
            client.service_scopes = rules::distinct(scopes);
        }
        if let Some(ttl) = self.refresh_token_ttl {
            client.refresh_token_ttl = ttl;
        }
        if let Some(uri) = self.backchannel_logout_uri {
            client.backchannel_logout_uri = uri;
        }
        rules::check(&client)?;
        Ok(client)
    }
}

/// Changes the settings of `client_id`. Nothing is written (nor recorded) when the changes
/// leave the client as it was; a refused change writes nothing either.
pub async fn update(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    client_id: &str,
    changes: ClientChanges,
) -> Result<Client, ClientError> {
    let before = get_locked(tx, client_id).await?;
    let after = changes.apply_to(before.clone())?;
    if after.owner_org_unit_id != before.owner_org_unit_id {
        check_owner(tx, after.owner_org_unit_id.as_deref()).await?;
    }
    if after == before {
        return Ok(before);
    }
    sqlx::query(
        "UPDATE clients SET name = $1, owner_org_unit_id = $2, token_endpoint_auth_method = $3, redirect_uris = $4,
             post_logout_redirect_uris = $5, scopes = $6, id_token_signed_response_alg = $7, require_pkce = $8,
             access_token_ttl = $9, grant_types = $10, service_scopes = $11, refresh_token_ttl = $12,
             backchannel_logout_uri = $13
         WHERE client_id = $14",
    )
    .bind(&after.name)
    .bind(after.owner_org_unit_id.as_deref())
    .bind(after.token_endpoint_auth_method.as_str())
    .bind(uri_list(&after.redirect_uris))
    .bind(uri_list(&after.post_logout_redirect_uris))
    .bind(after.scopes.join(" "))
    .bind(after.id_token_signed_response_alg.as_str())
    .bind(i64::from(after.require_pkce))
    .bind(after.access_token_ttl)
    .bind(grant_list(&after.grant_types))
    .bind(after.service_scopes.join(" "))
    .bind(after.refresh_token_ttl)
    .bind(after.backchannel_logout_uri.as_deref())
    .bind(&after.client_id)
    .execute(&mut **tx)
    .await?;
    let changed = differences(&before, &after);
    Event::success(actor, "client.update", format!("client:{client_id}"), serde_json::json!({ "changed": changed }))
        .record(tx, now)
        .await?;
    Ok(after)
}

/// `{member: {"from": .., "to": ..}}` for every member of the client's public form that
/// differs (secrets are not part of that form, so never recorded).
fn differences(before: &Client, after: &Client) -> Map<String, Value> {
    let (Ok(Value::Object(before)), Ok(Value::Object(after))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return Map::new();
    };
    after
        .into_iter()
        .filter_map(|(member, to)| {
            let from = before.get(&member).cloned().unwrap_or(Value::Null);
            (from != to).then(|| (member, serde_json::json!({"from": from, "to": to})))
        })
        .collect()
}
