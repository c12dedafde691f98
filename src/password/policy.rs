//! The rules around a password beyond its strength: no two accounts share one (R9), the last
//! few may not come back, passwords expire (R10), and changing one ends the person's other
//! sessions. [`change`] is the one way a password is set.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::Row;

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::config::PasswordConfig;
use crate::directory::{self, Person, PersonKind};
use crate::revocation::{self, Target};
use crate::store::is_unique_violation;
use crate::App;

use super::strength::{self, PersonalContext, Refusal, StrengthPolicy};

/// A keyed fingerprint of a password (HMAC-SHA256 under a key that is not in the database).
/// It lets the database refuse a password another account holds without weakening storage
/// for anyone who has only the database; see the README's security notes for the trade-off.
pub fn fingerprint(key: &[u8; 32], password: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(b"sekimori-password-fingerprint-v1:");
    mac.update(password.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Days a password of a person of `kind` stays valid; 0 means forever.
pub fn max_age_days(config: &PasswordConfig, kind: PersonKind) -> i64 {
    config.max_age_days_by_kind.get(kind.as_str()).copied().unwrap_or(config.max_age_days)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Valid,
    /// Valid, but expires within the warning period.
    ExpiresSoon {
        days_left: i64,
    },
    /// Expired, or a change was demanded: the login may not complete before a change.
    MustChange,
}

/// When a password set at `changed_at` expires for a person of `kind`; None when the policy
/// sets no maximum age for them.
pub fn expires_at(config: &PasswordConfig, kind: PersonKind, changed_at: UnixTime) -> Option<UnixTime> {
    let days = max_age_days(config, kind);
    (days > 0).then(|| changed_at + days * 86_400)
}

pub fn expiry(
    config: &PasswordConfig,
    kind: PersonKind,
    changed_at: Option<UnixTime>,
    must_change: bool,
    now: UnixTime,
) -> Expiry {
    if must_change {
        return Expiry::MustChange;
    }
    let Some(changed_at) = changed_at else {
        return Expiry::MustChange;
    };
    let Some(expires_at) = expires_at(config, kind, changed_at) else {
        return Expiry::Valid;
    };
    if now >= expires_at {
        Expiry::MustChange
    } else if now >= expires_at - config.warn_days * 86_400 {
        Expiry::ExpiresSoon { days_left: (expires_at - now + 86_399) / 86_400 }
    } else {
        Expiry::Valid
    }
}

/// Why a new password was refused.
#[derive(Debug)]
pub enum ChangeRefused {
    /// Too short, too weak, or built from the person's own information.
    Weak(Vec<Refusal>),
    /// One of the last N passwords.
    Reused,
    /// Another account uses it now (R9). Said in words that do not confirm whose.
    Shared,
    /// The two entries differ.
    Mismatch,
    /// The one-time ticket it was set with was used (by a racing submission) or has expired.
    TicketSpent,
}

impl ChangeRefused {
    /// (Japanese, English) explanations for the page.
    pub fn messages(&self, history: usize) -> Vec<(String, String)> {
        match self {
            ChangeRefused::Weak(refusals) => refusals
                .iter()
                .map(|r| (r.ja.clone(), r.en.clone()))
                .chain(super::strength::advice(refusals))
                .collect(),
            ChangeRefused::Reused => vec![(
                format!("直近{history}回に使ったパスワードは使えません。新しいパスワードを考えてください。"),
                format!("You cannot reuse any of your last {history} passwords. Please choose a new one."),
            )],
            ChangeRefused::Shared => vec![(
                "このパスワードは使えません。ほかの人と同じパスワードは使えないため、自分だけの長いパスフレーズにしてください。".into(),
                "This password cannot be used: passwords may not be shared, so choose a long passphrase of your own.".into(),
            )],
            ChangeRefused::Mismatch => vec![(
                "確認用に入力したパスワードが一致しません。".into(),
                "The two passwords you entered do not match.".into(),
            )],
            ChangeRefused::TicketSpent => vec![(
                "このリンクはすでに使われたか、有効期限が切れています。".into(),
                "This link has already been used or has expired.".into(),
            )],
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ChangeRefused::Weak(_) => "weak",
            ChangeRefused::Reused => "reused",
            ChangeRefused::Shared => "shared",
            ChangeRefused::Mismatch => "mismatch",
            ChangeRefused::TicketSpent => "ticket_spent",
        }
    }
}

/// Why a password is being set; recorded in the audit log.
#[derive(Debug, Clone, Copy)]
pub enum ChangeReason {
    /// The person changed it themselves.
    SelfService,
    /// The old one had expired or a change was demanded.
    Expired,
    /// Through a one-time reset link from an administrator or the help desk.
    Reset,
    /// The first password, set when the account was created.
    Initial,
}

impl ChangeReason {
    fn as_str(self) -> &'static str {
        match self {
            ChangeReason::SelfService => "self_service",
            ChangeReason::Expired => "expired",
            ChangeReason::Reset => "reset",
            ChangeReason::Initial => "initial",
        }
    }
}

/// The checks that need no database: strength with personal context, and the confirmation.
pub async fn check_new_password(
    app: &App,
    person: &Person,
    login_id: &str,
    new_password: &str,
    confirmation: &str,
) -> Result<Result<(), ChangeRefused>, crate::Error> {
    if new_password != confirmation {
        return Ok(Err(ChangeRefused::Mismatch));
    }
    let org_unit = match &person.org_unit_id {
        Some(id) => directory::get_org_unit(app.store.pool(), id).await?,
        None => None,
    };
    let birth_date = person.birth_date.as_deref().and_then(|d| directory::types::parse_date("birth_date", d).ok());
    let context = PersonalContext {
        login_id,
        employee_number: &person.employee_number,
        family_name: &person.family_name,
        given_name: &person.given_name,
        family_name_kana: &person.family_name_kana,
        given_name_kana: &person.given_name_kana,
        birth_date,
        org_unit_name: org_unit.as_ref().map(|u| u.name.as_str()),
        org_unit_code: org_unit.as_ref().map(|u| u.code.as_str()),
        org_unit_name_en: org_unit.as_ref().and_then(|u| u.name_en.as_deref()),
    };
    let policy =
        StrengthPolicy { min_length: app.config.password.min_length, min_score: app.config.password.min_score };
    Ok(strength::check(&policy, new_password, &context).map_err(ChangeRefused::Weak))
}

/// A password change as asked for.
pub struct PasswordChange<'a> {
    pub account_id: &'a str,
    pub new_password: &'a str,
    pub confirmation: &'a str,
    pub reason: ChangeReason,
    /// The session the person is using, which stays; None ends all of them.
    pub keep_session: Option<&'a str>,
    /// The one-time ticket the change is made with (reset link, expired password): used up in
    /// the change's own transaction, so that two submissions of one ticket cannot both count.
    pub ticket: Option<&'a str>,
}

/// Sets the new password after every rule, at `now`; ends the person's other sessions (all of
/// them when `keep_session` is None) through the revocation module.
pub async fn change(
    app: &App,
    actor: &Actor,
    change: PasswordChange<'_>,
    now: UnixTime,
) -> Result<Result<(), ChangeRefused>, crate::Error> {
    let PasswordChange { account_id, new_password, confirmation, reason, keep_session, ticket } = change;
    let account = directory::get_login_account(app.store.pool(), account_id)
        .await?
        .ok_or(directory::DirectoryError::NotFound("account"))?;
    if let Err(refused) =
        check_new_password(app, &account.person, &account.login_id, new_password, confirmation).await?
    {
        return refuse(app, actor, account_id, refused, now).await;
    }
    let config = &app.config.password;
    let print = fingerprint(&app.fingerprint_key, new_password);
    let reused =
        sqlx::query("SELECT fingerprint FROM password_history WHERE account_id = $1 ORDER BY created_at DESC LIMIT $2")
            .bind(account_id)
            .bind(config.history as i64)
            .fetch_all(app.store.pool())
            .await?
            .iter()
            .any(|row| {
                row.try_get::<String, _>("fingerprint")
                    .is_ok_and(|f| crate::crypto::ct_eq(f.as_bytes(), print.as_bytes()))
            });
    if reused {
        return refuse(app, actor, account_id, ChangeRefused::Reused, now).await;
    }
    let hash = app.hasher.hash(new_password.to_owned()).await?;
    let mut tx = app.store.begin().await?;
    if let Some(ticket) = ticket {
        if !super::tickets::use_up(&mut tx, ticket, now).await? {
            tx.rollback().await?;
            return refuse(app, actor, account_id, ChangeRefused::TicketSpent, now).await;
        }
    }
    let updated = directory::accounts::set_password(&mut tx, account_id, &hash, &print, now).await;
    match updated {
        Ok(_) => {}
        // The unique index is the rule: another account holds this password now.
        Err(e) if is_unique_violation(&e) => {
            tx.rollback().await?;
            return refuse(app, actor, account_id, ChangeRefused::Shared, now).await;
        }
        Err(e) => return Err(e.into()),
    }
    sqlx::query("INSERT INTO password_history (account_id, fingerprint, created_at) VALUES ($1, $2, $3)")
        .bind(account_id)
        .bind(&print)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let target = match keep_session {
        Some(session_id) => Target::PersonExceptSession { person_id: &account.person.id, session_id },
        None => Target::Person(&account.person.id),
    };
    revocation::revoke(&mut tx, actor, now, target, "password changed").await?;
    Event::success(
        actor,
        "password.change",
        format!("account:{account_id}"),
        serde_json::json!({"reason": reason.as_str()}),
    )
    .record(&mut tx, now)
    .await?;
    tx.commit().await?;
    Ok(Ok(()))
}

async fn refuse(
    app: &App,
    actor: &Actor,
    account_id: &str,
    refused: ChangeRefused,
    now: UnixTime,
) -> Result<Result<(), ChangeRefused>, crate::Error> {
    // Refusals are audited: repeated "shared" refusals are how someone would probe for other
    // people's passwords.
    let mut tx = app.store.begin().await?;
    Event::failure(
        actor,
        "password.change",
        format!("account:{account_id}"),
        serde_json::json!({"refused": refused.code()}),
    )
    .record(&mut tx, now)
    .await?;
    tx.commit().await?;
    Ok(Err(refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_age_kind_and_demand() {
        let mut config = PasswordConfig { max_age_days: 90, warn_days: 14, ..PasswordConfig::default() };
        config.max_age_days_by_kind.insert("contractor".into(), 30);
        let day = 86_400;
        let changed = 1_000_000;
        assert_eq!(expiry(&config, PersonKind::Regular, Some(changed), false, changed + 10 * day), Expiry::Valid);
        assert_eq!(
            expiry(&config, PersonKind::Regular, Some(changed), false, changed + 80 * day),
            Expiry::ExpiresSoon { days_left: 10 }
        );
        assert_eq!(expiry(&config, PersonKind::Regular, Some(changed), false, changed + 90 * day), Expiry::MustChange);
        assert_eq!(
            expiry(&config, PersonKind::Contractor, Some(changed), false, changed + 31 * day),
            Expiry::MustChange
        );
        assert_eq!(expiry(&config, PersonKind::Regular, Some(changed), true, changed), Expiry::MustChange);
        config.max_age_days = 0;
        assert_eq!(expiry(&config, PersonKind::Regular, Some(changed), false, changed + 9999 * day), Expiry::Valid);
    }

    #[test]
    fn fingerprints_are_keyed() {
        let a = fingerprint(&[1; 32], "correct horse");
        assert_eq!(a, fingerprint(&[1; 32], "correct horse"));
        assert_ne!(a, fingerprint(&[2; 32], "correct horse"));
        assert_ne!(a, fingerprint(&[1; 32], "correct horsf"));
    }
}
