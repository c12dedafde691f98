//! Typed administrative rights. A handler states the right it needs in its signature
//! (`Authorized<rights::DirectoryWrite>`), so a forgotten check does not compile, and the right
//! is checked from the request's head before its body is read: a caller without the right
//! hears 403 and learns nothing about what a well-formed request would look like.
//!
//! A person holds rights through administrative roles (`super::roles`), granted like any role
//! and time-limited (R7); an API token carries the rights named by its scopes that its owner
//! still holds. Either way the caller is a [`Principal`] whose rights are read at each request.

use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::App;

use super::auth::Principal;
use super::problem::Problem;

macro_rules! rights {
    ($($(#[$doc:meta])* $variant:ident => $scope:literal),+ $(,)?) => {
        /// Every right of the admin API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Right {
            $($(#[$doc])* $variant,)+
        }

        impl Right {
            pub const ALL: &'static [Right] = &[$(Right::$variant,)+];

            /// The scope of an API token that carries this right.
            pub fn scope(self) -> &'static str {
                match self {
                    $(Right::$variant => $scope,)+
                }
            }

            pub fn from_scope(scope: &str) -> Option<Right> {
                match scope {
                    $($scope => Some(Right::$variant),)+
                    _ => None,
                }
            }
        }

        $(
            $(#[$doc])*
            pub struct $variant;
            impl RequiredRight for $variant {
                const RIGHT: Right = Right::$variant;
            }
        )+
    };
}

/// A marker type naming one right, for [`Authorized`].
pub trait RequiredRight {
    const RIGHT: Right;
}

rights! {
    /// Read org units and people.
    DirectoryRead => "directory:read",
    /// Create org units, people and accounts; name managers.
    DirectoryWrite => "directory:write",
    /// Read consuming systems.
    ClientsRead => "clients:read",
    /// Register, change, disable and enable consuming systems; rotate their secrets.
    ClientsWrite => "clients:write",
    /// Read and verify the access records (R8).
    AuditRead => "audit:read",
    /// Create API tokens (with rights the creator holds, for no longer than it lives).
    TokensWrite => "tokens:write",
    /// Help desk: reset links, suspected compromise, unlock (R11).
    PasswordsReset => "passwords:reset",
    /// List signing keys.
    KeysRead => "keys:read",
    /// Rotate signing keys.
    KeysWrite => "keys:write",
    /// The lost-card hotline: find a person's cards and stop one (R14).
    Hotline => "hotline",
    /// Issue card enrollment codes and temporary password-only exceptions (R13).
    AuthenticatorsEnroll => "authenticators:enroll",
    /// An HR feed: the SCIM service at /scim/v2 (R2). A token with it carries nothing else.
    HrFeed => "hr:feed",
    /// HR changes: see and decide held batches, see and retry failed changes.
    HrAdmin => "hr:admin",
    /// Need-based access: declare systems' roles and whether they need one, see requests and
    /// grants, revoke a grant, name managers' deputies, open reviews.
    AccessAdmin => "access:admin",
    /// Read the monitoring figures at /metrics (counts and backlogs, nothing about anyone).
    MetricsRead => "metrics:read",
    /// Grant and end administrative roles (the security manager's delegation, R7).
    AdminRolesGrant => "admin-roles:grant",
    /// Read the auditors' reports: the analysis of logins (R16) and the compliance report (R19).
    ReportsRead => "reports:read",
    /// Emergency stop (R17): stop one person or one consuming system at once, see the stops,
    /// lift one.
    EmergencyStop => "emergency:stop",
}

/// A caller who holds the right `R`.
pub struct Authorized<R> {
    pub caller: Principal,
    _right: PhantomData<fn() -> R>,
}

impl<R> Deref for Authorized<R> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.caller
    }
}

impl<R: RequiredRight> FromRequestParts<App> for Authorized<R> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let caller = Principal::from_request_parts(parts, app).await?;
        caller.require(R::RIGHT)?;
        Ok(Authorized { caller, _right: PhantomData })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_right_has_one_scope_and_back() {
        for right in Right::ALL {
            assert_eq!(Right::from_scope(right.scope()), Some(*right));
        }
        assert_eq!(Right::from_scope("directory:delete"), None);
    }
}
