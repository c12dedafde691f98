//! Administrative roles (江戸川区 基準 第18条; R7): administrators are people who hold, for a
//! limited time, a role of Sekimori's own console system, granted and ended like any other role
//! (need-based access: `crate::access`). Each role carries a fixed set of rights of the admin
//! API; nobody holds a right for ever, and nobody holds them all:
//!
//! - the security manager (統括) grants the other roles and handles incidents, but neither
//!   changes people and systems nor reads the access records;
//! - the auditor reads the access records and reports and may hold no other administrative
//!   role (第30条: the records are read by designated staff, not by those they record).
//!
//! The roles are secret-class: a token carries them only for a card login, so the console
//! demands a card. The console system is provisioned at start and cannot be changed through
//! the general systems API (`systems::CONSOLE_CLIENT_ID`).

use serde::Serialize;
use sqlx::Row;
use time::Date;

use crate::access::catalog::{self, RoleSpec};
use crate::access::grants::{self, Grant, NewGrant};
use crate::access::{AccessError, Classification};
use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::directory::{self, today_in_japan, InvalidField, PersonStatus};
use crate::store::{Store, Tx};
use crate::systems::{self, ClientType, NewClient, CONSOLE_CLIENT_ID};

use super::rights::Right;

/// A year: an administrative right is granted again each fiscal year, or ends.
const MAX_GRANT_DAYS: i64 = 365;

/// One administrative role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    SecurityManager,
    SystemAdmin,
    DirectoryClerk,
    HotlineOperator,
    Auditor,
    HrFeedOwner,
}

impl AdminRole {
    pub const ALL: [AdminRole; 6] = [
        AdminRole::SecurityManager,
        AdminRole::SystemAdmin,
        AdminRole::DirectoryClerk,
        AdminRole::HotlineOperator,
        AdminRole::Auditor,
        AdminRole::HrFeedOwner,
    ];

    /// The role's name: what the `roles` claim of the console carries.
    pub fn name(self) -> &'static str {
        match self {
            AdminRole::SecurityManager => "security_manager",
            AdminRole::SystemAdmin => "system_admin",
            AdminRole::DirectoryClerk => "directory_clerk",
            AdminRole::HotlineOperator => "hotline_operator",
            AdminRole::Auditor => "auditor",
            AdminRole::HrFeedOwner => "hr_feed_owner",
        }
    }

    pub fn parse(name: &str) -> Option<AdminRole> {
        AdminRole::ALL.into_iter().find(|r| r.name() == name)
    }

    pub fn label(self) -> &'static str {
        match self {
            AdminRole::SecurityManager => "統括情報セキュリティ責任者",
            AdminRole::SystemAdmin => "システム管理者",
            AdminRole::DirectoryClerk => "職員情報担当",
            AdminRole::HotlineOperator => "紛失受付担当",
            AdminRole::Auditor => "監査担当",
            AdminRole::HrFeedOwner => "人事連携担当",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            AdminRole::SecurityManager => "Security manager",
            AdminRole::SystemAdmin => "System administrator",
            AdminRole::DirectoryClerk => "Directory clerk",
            AdminRole::HotlineOperator => "Hotline operator",
            AdminRole::Auditor => "Auditor",
            AdminRole::HrFeedOwner => "HR feed owner",
        }
    }

    /// The rights of the admin API the role carries: the minimum its work needs.
    pub fn rights(self) -> &'static [Right] {
        use Right::*;
        match self {
            AdminRole::SecurityManager => {
                &[AdminRolesGrant, EmergencyStop, TokensWrite, DirectoryRead, ClientsRead, KeysRead, AccessAdmin, MetricsRead]
            }
            AdminRole::SystemAdmin => &[ClientsRead, ClientsWrite, KeysRead, KeysWrite, AccessAdmin, MetricsRead, TokensWrite],
            AdminRole::DirectoryClerk => {
                &[DirectoryRead, DirectoryWrite, PasswordsReset, AuthenticatorsEnroll, TokensWrite]
            }
            AdminRole::HotlineOperator => &[Hotline],
            AdminRole::Auditor => &[AuditRead, ReportsRead],
            AdminRole::HrFeedOwner => &[HrFeed, HrAdmin, DirectoryRead, TokensWrite],
        }
    }

    /// The longest one grant of the role runs; it is then granted again, or not.
    pub fn max_days(self) -> i64 {
        MAX_GRANT_DAYS
    }

    /// Roles it may not be held with (separation of duties).
    fn incompatible_with(self) -> Vec<AdminRole> {
        match self {
            AdminRole::Auditor => AdminRole::ALL.into_iter().filter(|r| *r != AdminRole::Auditor).collect(),
            _ => Vec::new(),
        }
    }
}

/// The rights held through `roles`.
pub fn rights_of(roles: &[AdminRole]) -> Vec<Right> {
    let mut rights: Vec<Right> = roles.iter().flat_map(|r| r.rights().iter().copied()).collect();
    rights.sort_by_key(|r| r.scope());
    rights.dedup();
    rights
}

/// The rights the bootstrap token carries for its one day: the security manager's, and what
/// setting up the first people, their cards and systems needs. Not the access records, not an
/// HR feed.
pub fn bootstrap_rights() -> Vec<Right> {
    let mut roles = rights_of(&[AdminRole::SecurityManager]);
    roles.extend([Right::DirectoryWrite, Right::AuthenticatorsEnroll, Right::ClientsWrite, Right::PasswordsReset]);
    roles.sort_by_key(|r| r.scope());
    roles.dedup();
    roles
}

/// The administrative roles `person_id` holds today (live grants of the console system).
pub async fn held_by<'e, E>(executor: E, person_id: &str, today: Date) -> Result<Vec<AdminRole>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let held = crate::access::roles::live_on(executor, person_id, CONSOLE_CLIENT_ID, today).await?;
    Ok(held.iter().filter_map(|h| AdminRole::parse(&h.name)).collect())
}

/// The people who hold `role` today.
pub async fn holders<'e, E>(executor: E, role: AdminRole, today: Date) -> Result<Vec<String>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    crate::access::roles::holders(executor, CONSOLE_CLIENT_ID, role.name(), today).await
}

/// The console's redirect URI: where the authorization endpoint sends the code back.
pub fn console_redirect_uri(app_console_url: &str) -> String {
    format!("{}/console/callback", app_console_url.trim_end_matches('/'))
}

/// Makes sure the console system and its roles exist as this version defines them, and that
/// the console's redirect URI is the configured one. Idempotent; run at every start.
pub async fn provision(store: &Store, console_url: &str, defaults: &crate::config::TokenConfig, now: UnixTime) -> Result<(), AccessError> {
    let redirect = console_redirect_uri(console_url);
    let mut tx = store.begin().await?;
    let actor = Actor::System;
    let existing = sqlx::query("SELECT redirect_uris FROM clients WHERE client_id = $1")
        .bind(CONSOLE_CLIENT_ID)
        .fetch_optional(&mut *tx)
        .await?;
    match existing {
        None => {
            let new = NewClient {
                client_id: Some(CONSOLE_CLIENT_ID.into()),
                name: "Sekimori 管理コンソール".into(),
                client_type: ClientType::Public,
                token_endpoint_auth_method: None,
                redirect_uris: vec![redirect.clone()],
                post_logout_redirect_uris: Vec::new(),
                scopes: Some(vec!["openid".into()]),
                id_token_signed_response_alg: Some("ES256".into()),
                require_pkce: Some(true),
                access_token_ttl: Some(60),
                owner_org_unit_id: None,
                grant_types: Some(vec![systems::GrantType::AuthorizationCode]),
                service_scopes: Vec::new(),
                refresh_token_ttl: None,
                backchannel_logout_uri: None,
            };
            systems::register(&mut tx, &actor, now, defaults, new).await.map_err(|e| match e {
                systems::ClientError::Database(d) => AccessError::Database(d),
                other => AccessError::Conflict(other.to_string()),
            })?;
            sqlx::query("UPDATE clients SET requires_role = 1 WHERE client_id = $1")
                .bind(CONSOLE_CLIENT_ID)
                .execute(&mut *tx)
                .await?;
        }
        Some(row) => {
            let stored: String = row.try_get("redirect_uris")?;
            let wanted = serde_json::json!([redirect]).to_string();
            if stored != wanted {
                sqlx::query("UPDATE clients SET redirect_uris = $1, requires_role = 1 WHERE client_id = $2")
                    .bind(&wanted)
                    .bind(CONSOLE_CLIENT_ID)
                    .execute(&mut *tx)
                    .await?;
                Event::success(
                    &actor,
                    "console.redirect_uri",
                    format!("client:{CONSOLE_CLIENT_ID}"),
                    serde_json::json!({"redirect_uri": redirect}),
                )
                .record(&mut tx, now)
                .await?;
            }
        }
    }
    // A role that excludes others is declared after them (an exclusion names a declared role).
    let mut order = AdminRole::ALL.to_vec();
    order.sort_by_key(|r| !r.incompatible_with().is_empty());
    for role in order {
        let mut want: Vec<String> = role.incompatible_with().iter().map(|r| r.name().to_owned()).collect();
        want.sort();
        let declared = catalog::role_by_name(&mut *tx, CONSOLE_CLIENT_ID, role.name()).await?;
        let up_to_date = declared.as_ref().is_some_and(|d| {
            let mut have = d.incompatible_with.clone();
            have.sort();
            d.classification == Classification::Secret
                && d.max_duration_days == Some(role.max_days())
                && d.label == role.label()
                && !d.retired
                && have == want
        });
        if up_to_date {
            continue;
        }
        let spec = RoleSpec {
            label: role.label().into(),
            label_en: Some(role.label_en().into()),
            classification: Classification::Secret,
            max_duration_days: Some(role.max_days()),
            // Reviewed by being granted again: every grant ends within `max_days`.
            review_interval_days: None,
            incompatible_with: want,
        };
        catalog::declare_role(&mut tx, &actor, now, CONSOLE_CLIENT_ID, role.name(), spec).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A grant of an administrative role as asked for.
pub struct NewAdminGrant<'a> {
    pub person_id: &'a str,
    pub role: &'a str,
    /// Required: no administrative right is open-ended.
    pub end_date: &'a str,
    pub reason: &'a str,
}

/// Grants an administrative role: by the security manager `granter` (None: the bootstrap token), to a person
/// in service with an account, never to oneself, until an end date no later than the role's
/// longest grant.
pub async fn grant(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    granter: Option<&str>,
    new: NewAdminGrant<'_>,
) -> Result<Grant, AccessError> {
    let today = today_in_japan(now);
    let role = AdminRole::parse(new.role)
        .ok_or_else(|| InvalidField { field: "role", reason: "not an administrative role".into() })?;
    let reason = crate::access::requests::check_reason(new.reason)?;
    // The granter in person or through their token.
    if granter == Some(new.person_id) {
        return Err(AccessError::Forbidden("nobody grants a role to themselves"));
    }
    let person = directory::get_person(&mut **tx, new.person_id).await?.ok_or(AccessError::NotFound("person"))?;
    if person.status != PersonStatus::Active || !person.may_log_in(today) {
        return Err(AccessError::Conflict("the person is not in service".into()));
    }
    if directory::login_id_of(&mut **tx, new.person_id).await?.is_none() {
        return Err(AccessError::Conflict("the person has no account".into()));
    }
    let end = grants::parse_end_date(Some(new.end_date), today)?
        .ok_or_else(|| InvalidField { field: "end_date", reason: "required: administrative rights end".into() })?;
    let longest = today + time::Duration::days(role.max_days());
    if end > longest {
        return Err(InvalidField {
            field: "end_date",
            reason: format!("at most {} days from today ({})", role.max_days(), directory::types::format_date(longest)),
        }
        .into());
    }
    let declared = catalog::role_by_name(&mut **tx, CONSOLE_CLIENT_ID, role.name())
        .await?
        .ok_or(AccessError::NotFound("role"))?;
    let id = grants::create(
        tx,
        now,
        NewGrant {
            person_id: new.person_id,
            role: &declared,
            origin: "direct",
            request_id: None,
            granted_by: actor,
            cross_section: false,
            holder_unit_id: person.org_unit_id.as_deref(),
            end_date: Some(end),
        },
    )
    .await?;
    Event::success(
        actor,
        "admin_role.grant",
        format!("person:{}", new.person_id),
        serde_json::json!({"grant_id": id, "role": role.name(), "end_date": directory::types::format_date(end), "reason": reason}),
    )
    .record(tx, now)
    .await?;
    grants::get(tx, &id).await?.ok_or(AccessError::NotFound("grant"))
}

/// The live grants of administrative roles, for the console and the API.
pub async fn live_grants(tx: &mut Tx) -> Result<Vec<Grant>, sqlx::Error> {
    let filter = grants::GrantFilter { client_id: Some(CONSOLE_CLIENT_ID.into()), ..Default::default() };
    grants::list(&mut **tx, &filter, 500).await
}
