//! Password hashing (R12): argon2id with configurable cost, run off the async runtime with
//! bounded concurrency so a flood of logins queues instead of exhausting memory or starving
//! other endpoints. Verification of an unknown login ID runs against a dummy hash so the
//! response time does not reveal whether the account exists.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::PasswordConfig;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("password hashing failed")]
    Hash,
    #[error("password worker stopped")]
    Worker,
}

#[derive(Clone)]
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<String>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("params", &self.params)
            .finish()
    }
}

impl Hasher {
    pub fn new(config: &PasswordConfig) -> Result<Self, PasswordError> {
        let params = Params::new(
            config.argon2_memory_kib,
            config.argon2_iterations,
            config.argon2_parallelism,
            None,
        )
        .map_err(|e| PasswordError::Params(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy = argon
            .hash_password(b"sekimori-dummy-password", &salt)
            .map_err(|_| PasswordError::Hash)?
            .to_string();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(config.max_concurrent_hashes)),
            dummy_hash: Arc::new(dummy),
        })
    }

    fn argon(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Worker)?;
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            Self::argon(params)
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|_| PasswordError::Hash)
        })
        .await
        .map_err(|_| PasswordError::Worker)?
    }

    /// Verifies `password` against `stored`; when `stored` is None (unknown account, or no
    /// password set) a dummy hash is verified instead and the answer is always false.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Worker)?;
        let (hash, real) = match stored {
            Some(hash) => (hash, true),
            None => (self.dummy_hash.as_ref().clone(), false),
        };
        let params = self.params.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return false;
            };
            Self::argon(params)
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .await
        .map_err(|_| PasswordError::Worker)?;
        Ok(ok && real)
    }
}

/// The minimum every password meets until the full policy (strength with personal context,
/// history, expiry) applies: a length floor and a ceiling.
pub fn check_minimum(password: &str) -> Result<(), crate::directory::InvalidField> {
    let length = password.chars().count();
    if length < 12 {
        return Err(crate::directory::InvalidField {
            field: "password",
            reason: "must be at least 12 characters".into(),
        });
    }
    if password.len() > 1024 {
        return Err(crate::directory::InvalidField {
            field: "password",
            reason: "must be at most 1024 bytes".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordConfig {
        PasswordConfig {
            argon2_memory_kib: 1024,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            max_concurrent_hashes: 2,
        }
    }

    #[tokio::test]
    async fn hash_verifies_and_unknown_account_never_does() {
        let hasher = Hasher::new(&cheap()).unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher
            .verify("correct horse".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!hasher.verify("wrong".into(), Some(hash)).await.unwrap());
        assert!(!hasher
            .verify("sekimori-dummy-password".into(), None)
            .await
            .unwrap());
    }
}
