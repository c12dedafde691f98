//! Reviews (棚卸し): a campaign over one system or every system of one section, with a
//! deadline. The owning manager (or their deputy) confirms or removes each grant; a grant not
//! confirmed by the deadline ends. A role with a review interval (secret-class roles usually
//! have a short one) gets a campaign opened by itself once a grant of it is due.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::grants::{self, Grant, GrantFilter};
use super::{catalog, org, AccessError};
use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::config::AccessConfig;
use crate::directory::types::{format_date, parse_date};
use crate::directory::{self, today_in_japan};
use crate::invalid::InvalidField;
use crate::notify::{self, Notice};
use crate::store::{Store, Tx};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReview {
    /// One system…
    #[serde(default)]
    pub client_id: Option<String>,
    /// …or every system this section owns.
    #[serde(default)]
    pub org_unit_id: Option<String>,
    /// The last day to decide (YYYY-MM-DD); default `[access] review_days` from today.
    #[serde(default)]
    pub deadline: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub grant: Grant,
    /// None (undecided), `confirmed`, `removed` or `lapsed`.
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    pub decided_at: Option<UnixTime>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Review {
    pub id: String,
    pub client_id: Option<String>,
    pub org_unit_id: Option<String>,
    /// The system's or the section's name.
    pub scope_name: String,
    /// The unit whose manager decides.
    pub deciding_org_unit_id: Option<String>,
    pub opened_by: String,
    pub opened_at: UnixTime,
    pub deadline: String,
    pub closed_at: Option<UnixTime>,
    pub items: Vec<Item>,
}

/// Opens a campaign. `by_manager`: a manager opening one over their own systems (checked);
/// None: an administrator or the job.
pub async fn open(
    tx: &mut Tx,
    actor: &Actor,
    config: &AccessConfig,
    now: UnixTime,
    by_manager: Option<&str>,
    new: NewReview,
) -> Result<Review, AccessError> {
    let today = today_in_japan(now);
    let deadline = match new.deadline.as_deref() {
        Some(d) => parse_date("deadline", d)?,
        None => today + time::Duration::days(config.review_days),
    };
    if deadline < today {
        return Err(InvalidField { field: "deadline", reason: "must not be in the past".into() }.into());
    }
    if (deadline - today).whole_days() > 366 {
        return Err(InvalidField { field: "deadline", reason: "must be within a year".into() }.into());
    }
    let (owner, client_id, org_unit_id, scope_name) = match (&new.client_id, &new.org_unit_id) {
        (Some(client), None) => {
            let system = catalog::system(&mut **tx, client).await?.ok_or(AccessError::NotFound("system"))?;
            let owner = system
                .owner_org_unit_id
                .ok_or_else(|| AccessError::Conflict("the system has no owning section to review it".into()))?;
            (owner, Some(client.clone()), None, system.name)
        }
        (None, Some(unit)) => {
            let found = directory::get_org_unit(&mut **tx, unit).await?.ok_or(AccessError::NotFound("org unit"))?;
            (found.id.clone(), None, Some(found.id), found.name)
        }
        _ => {
            return Err(
                InvalidField { field: "client_id", reason: "give either client_id or org_unit_id".into() }.into()
            )
        }
    };
    let deciding = org::deciding_unit(tx, &owner, "").await?;
    if let Some(manager) = by_manager {
        let may = match &deciding {
            Some(unit) => org::capacity(tx, manager, unit, today).await?.is_some(),
            None => false,
        };
        if !may {
            return Err(AccessError::Forbidden("only the owning section's manager reviews its systems"));
        }
    }
    let open_already = sqlx::query(
        "SELECT 1 AS yes FROM access_reviews WHERE closed_at IS NULL AND (client_id = $1 OR org_unit_id = $2)",
    )
    .bind(client_id.as_deref().unwrap_or(""))
    .bind(org_unit_id.as_deref().unwrap_or(""))
    .fetch_optional(&mut **tx)
    .await?;
    if open_already.is_some() {
        return Err(AccessError::Conflict("a review of this scope is already open".into()));
    }
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO access_reviews (id, client_id, org_unit_id, opened_by, opened_at, deadline)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(client_id.as_deref())
    .bind(org_unit_id.as_deref())
    .bind(actor.as_text())
    .bind(now)
    .bind(format_date(deadline))
    .execute(&mut **tx)
    .await?;
    let filter =
        GrantFilter { client_id: client_id.clone(), owner_org_unit_id: org_unit_id.clone(), ..Default::default() };
    let in_scope = grants::list(&mut **tx, &filter, 100_000).await?;
    for grant in &in_scope {
        sqlx::query("INSERT INTO access_review_items (review_id, grant_id) VALUES ($1, $2)")
            .bind(&id)
            .bind(&grant.id)
            .execute(&mut **tx)
            .await?;
    }
    Event::success(
        actor,
        "access.review_opened",
        match &client_id {
            Some(c) => format!("client:{c}"),
            None => format!("org_unit:{owner}"),
        },
        serde_json::json!({"review_id": id, "deadline": format_date(deadline), "grants": in_scope.len()}),
    )
    .record(tx, now)
    .await?;
    if let Some(unit) = &deciding {
        let deadline_text = format_date(deadline);
        for person in org::deciders(tx, unit, today).await? {
            notify::notify(tx, now, &person, &Notice::ReviewOpened { scope: &scope_name, deadline: &deadline_text })
                .await?;
        }
    }
    get(tx, &id).await?.ok_or(AccessError::NotFound("review"))
}

/// Confirms or removes one grant of an open review, as its owning manager or their deputy.
pub async fn decide(
    tx: &mut Tx,
    now: UnixTime,
    decider_id: &str,
    review_id: &str,
    grant_id: &str,
    confirm: bool,
    reason: &str,
) -> Result<Review, AccessError> {
    let review = get(tx, review_id).await?.ok_or(AccessError::NotFound("review"))?;
    if review.closed_at.is_some() {
        return Err(AccessError::Conflict("the review is closed".into()));
    }
    let item =
        review.items.iter().find(|i| i.grant.id == grant_id).ok_or(AccessError::NotFound("grant in this review"))?;
    if item.decision.is_some() {
        return Err(AccessError::Conflict("the grant has already been decided in this review".into()));
    }
    if item.grant.person_id == decider_id {
        return Err(AccessError::Forbidden("nobody reviews their own grant"));
    }
    let may = match &review.deciding_org_unit_id {
        Some(unit) => org::capacity(tx, decider_id, unit, today_in_japan(now)).await?,
        None => None,
    };
    let Some(capacity) = may else {
        return Err(AccessError::Forbidden("only the owning section's manager reviews its systems"));
    };
    let reason =
        if confirm && reason.trim().is_empty() { String::new() } else { super::requests::check_reason(reason)? };
    let decision = if confirm { "confirmed" } else { "removed" };
    sqlx::query(
        "UPDATE access_review_items SET decision = $1, decided_by = $2, reason = $3, decided_at = $4
         WHERE review_id = $5 AND grant_id = $6 AND decision IS NULL",
    )
    .bind(decision)
    .bind(decider_id)
    .bind((!reason.is_empty()).then_some(reason.as_str()))
    .bind(now)
    .bind(review_id)
    .bind(grant_id)
    .execute(&mut **tx)
    .await?;
    let actor = Actor::Person(decider_id.to_owned());
    Event::success(
        &actor,
        if confirm { "access.review_confirm" } else { "access.review_remove" },
        format!("person:{}", item.grant.person_id),
        serde_json::json!({"review_id": review_id, "grant_id": grant_id, "acting_as": capacity.as_str(), "reason": reason}),
    )
    .record(tx, now)
    .await?;
    if confirm {
        sqlx::query("UPDATE access_grants SET last_confirmed_at = $1 WHERE id = $2")
            .bind(now)
            .bind(grant_id)
            .execute(&mut **tx)
            .await?;
    } else {
        grants::end(tx, &actor, now, grant_id, "review_removed").await?;
    }
    get(tx, review_id).await?.ok_or(AccessError::NotFound("review"))
}

/// Closes the reviews past their deadline: every grant nobody confirmed ends. Then opens a
/// review for each system holding a grant due by its role's review interval. Returns how many
/// grants ended.
pub async fn run_due(store: &Store, config: &AccessConfig, now: UnixTime) -> Result<u64, AccessError> {
    let today = format_date(today_in_japan(now));
    let due: Vec<String> = super::texts(
        &sqlx::query("SELECT id FROM access_reviews WHERE closed_at IS NULL AND deadline < $1")
            .bind(&today)
            .fetch_all(store.pool())
            .await?,
        "id",
    )?;
    let mut ended = 0;
    for id in due {
        let mut tx = store.begin().await?;
        let undecided: Vec<String> = super::texts(
            &sqlx::query("SELECT grant_id FROM access_review_items WHERE review_id = $1 AND decision IS NULL")
                .bind(&id)
                .fetch_all(&mut *tx)
                .await?,
            "grant_id",
        )?;
        for grant_id in &undecided {
            sqlx::query(
                "UPDATE access_review_items SET decision = 'lapsed', decided_at = $1 WHERE review_id = $2 AND grant_id = $3",
            )
            .bind(now)
            .bind(&id)
            .bind(grant_id)
            .execute(&mut *tx)
            .await?;
            ended += u64::from(grants::end(&mut tx, &Actor::System, now, grant_id, "review_lapsed").await?);
        }
        sqlx::query("UPDATE access_reviews SET closed_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        Event::success(
            &Actor::System,
            "access.review_closed",
            format!("review:{id}"),
            serde_json::json!({"lapsed": undecided.len()}),
        )
        .record(&mut tx, now)
        .await?;
        tx.commit().await?;
    }
    let overdue: Vec<String> = super::texts(&sqlx::query(
        "SELECT DISTINCT g.client_id FROM access_grants g JOIN system_roles r ON r.id = g.role_id
         WHERE g.ended_at IS NULL AND r.review_interval_days IS NOT NULL
           AND g.last_confirmed_at + r.review_interval_days * 86400 <= $1
           AND NOT EXISTS (SELECT 1 FROM access_reviews v JOIN clients c ON c.client_id = g.client_id
                           WHERE v.closed_at IS NULL AND (v.client_id = g.client_id OR v.org_unit_id = c.owner_org_unit_id))
         ORDER BY g.client_id",
    )
    .bind(now)
    .fetch_all(store.pool())
    .await?, "client_id")?;
    for client_id in overdue {
        let mut tx = store.begin().await?;
        let opened = open(
            &mut tx,
            &Actor::System,
            config,
            now,
            None,
            NewReview { client_id: Some(client_id.clone()), ..Default::default() },
        )
        .await;
        match opened {
            Ok(_) => tx.commit().await?,
            // A system without an owning section cannot be reviewed; it says so in the log.
            Err(AccessError::Conflict(why)) => tracing::warn!(client_id, why, "a grant is due for review"),
            Err(e) => return Err(e),
        }
    }
    Ok(ended)
}

pub async fn get(tx: &mut Tx, id: &str) -> Result<Option<Review>, sqlx::Error> {
    let Some(row) = sqlx::query(
        "SELECT v.id, v.client_id, v.org_unit_id, v.opened_by, v.opened_at, v.deadline, v.closed_at,
                COALESCE(c.name, u.name) AS scope_name, COALESCE(c.owner_org_unit_id, v.org_unit_id) AS owner
         FROM access_reviews v LEFT JOIN clients c ON c.client_id = v.client_id
         LEFT JOIN org_units u ON u.id = v.org_unit_id WHERE v.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    let owner: Option<String> = row.try_get("owner")?;
    let deciding = match &owner {
        Some(owner) => org::deciding_unit(tx, owner, "").await?,
        None => None,
    };
    let items = sqlx::query(
        "SELECT grant_id, decision, decided_by, reason, decided_at FROM access_review_items WHERE review_id = $1",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    let mut list = Vec::new();
    for item in items {
        let grant_id: String = item.try_get("grant_id")?;
        let Some(grant) = grants::get(tx, &grant_id).await? else { continue };
        list.push(Item {
            grant,
            decision: item.try_get("decision")?,
            decided_by: item.try_get("decided_by")?,
            reason: item.try_get("reason")?,
            decided_at: item.try_get("decided_at")?,
        });
    }
    list.sort_by(|a, b| {
        (&a.grant.system_name, &a.grant.role, &a.grant.employee_number).cmp(&(
            &b.grant.system_name,
            &b.grant.role,
            &b.grant.employee_number,
        ))
    });
    Ok(Some(Review {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        org_unit_id: row.try_get("org_unit_id")?,
        scope_name: row.try_get("scope_name")?,
        deciding_org_unit_id: deciding,
        opened_by: row.try_get("opened_by")?,
        opened_at: row.try_get("opened_at")?,
        deadline: row.try_get("deadline")?,
        closed_at: row.try_get("closed_at")?,
        items: list,
    }))
}

/// Reviews, newest first (open ones only when `open_only`).
pub async fn list(tx: &mut Tx, open_only: bool) -> Result<Vec<Review>, sqlx::Error> {
    let ids: Vec<String> = super::texts(
        &sqlx::query(
            "SELECT id FROM access_reviews WHERE ($1 = 0 OR closed_at IS NULL) ORDER BY opened_at DESC, id LIMIT 200",
        )
        .bind(i64::from(open_only))
        .fetch_all(&mut **tx)
        .await?,
        "id",
    )?;
    let mut reviews = Vec::new();
    for id in ids {
        if let Some(review) = get(tx, &id).await? {
            reviews.push(review);
        }
    }
    Ok(reviews)
}

/// The open reviews `person_id` decides today (as manager or deputy of the deciding unit).
pub async fn open_for(tx: &mut Tx, person_id: &str, now: UnixTime) -> Result<Vec<Review>, sqlx::Error> {
    let units: Vec<String> =
        org::units_decided_by(tx, person_id, today_in_japan(now)).await?.into_iter().map(|(u, _)| u).collect();
    Ok(list(tx, true)
        .await?
        .into_iter()
        .filter(|r| r.deciding_org_unit_id.as_ref().is_some_and(|u| units.contains(u)))
        .collect())
}
