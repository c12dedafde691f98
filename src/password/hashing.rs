//! Password hashing (R12): argon2id with configurable cost and an optional pepper, run off the
//! async runtime with bounded concurrency, so a flood of logins queues — or, past a bound, is
//! refused — instead of exhausting memory or starving other endpoints. Verifying an unknown login
//! ID runs against a dummy hash so the response time does not reveal whether the account exists.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use tokio::sync::Semaphore;

use crate::config::PasswordConfig;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("the password pepper must be base64 of at least 16 bytes")]
    Pepper,
    #[error("password hashing failed")]
    Hash,
    #[error("password worker stopped")]
    Worker,
    /// Too many logins are already waiting: the caller answers 503 and the client retries.
    #[error("too many password checks in progress")]
    Busy,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct Hasher {
    params: Params,
    pepper: Arc<Vec<u8>>,
    permits: Arc<Semaphore>,
    /// Jobs for the hashing threads. A few long-lived threads, rather than the runtime's
    /// blocking pool, keep argon2's large buffers in a few allocator arenas: memory stays
    /// bounded by the number of threads, not by how many threads a flood once woke.
    jobs: Arc<std::sync::Mutex<std::sync::mpsc::Sender<Job>>>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    dummy_hash: Arc<String>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").field("params", &self.params).finish_non_exhaustive()
    }
}

/// Releases a queue place when dropped, however the wait ends.
struct QueuePlace(Arc<AtomicUsize>);

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Hasher {
    pub fn new(config: &PasswordConfig) -> Result<Self, PasswordError> {
        let params = Params::new(config.argon2_memory_kib, config.argon2_iterations, config.argon2_parallelism, None)
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        let pepper = match &config.pepper {
            Some(text) => {
                let bytes =
                    base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| PasswordError::Pepper)?;
                if bytes.len() < 16 {
                    return Err(PasswordError::Pepper);
                }
                bytes
            }
            None => Vec::new(),
        };
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy = argon(&pepper, params.clone())?
            .hash_password(b"sekimori-dummy-password", &salt)
            .map_err(|_| PasswordError::Hash)?
            .to_string();
        let (sender, receiver) = std::sync::mpsc::channel::<Job>();
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for i in 0..config.max_concurrent_hashes {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("sekimori-argon2-{i}"))
                .spawn(move || loop {
                    // The lock is held only while taking a job, not while running it.
                    let job = match receiver.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return, // every Hasher is gone
                    }
                })
                .map_err(|_| PasswordError::Worker)?;
        }
        Ok(Self {
            params,
            pepper: Arc::new(pepper),
            permits: Arc::new(Semaphore::new(config.max_concurrent_hashes)),
            jobs: Arc::new(std::sync::Mutex::new(sender)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: config.max_queued_hashes,
            dummy_hash: Arc::new(dummy),
        })
    }

    /// Runs `work` on the blocking pool once a hashing slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(Argon2<'_>) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting + self.permits.available_permits() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(PasswordError::Busy);
        }
        let place = QueuePlace(self.waiting.clone());
        let _permit = self.permits.acquire().await.map_err(|_| PasswordError::Worker)?;
        let pepper = self.pepper.clone();
        let params = self.params.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(argon(&pepper, params).map(work));
        });
        self.jobs.lock().map_err(|_| PasswordError::Worker)?.send(job).map_err(|_| PasswordError::Worker)?;
        let result = result.await.map_err(|_| PasswordError::Worker)?;
        drop(place);
        result
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move |argon| {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon.hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|_| PasswordError::Hash)
        })
        .await?
    }

    /// Verifies `password` against `stored`; when `stored` is None (unknown account, or no
    /// password set) a dummy hash is verified instead and the answer is always false.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, PasswordError> {
        let (hash, real) = match stored {
            Some(hash) => (hash, true),
            None => (self.dummy_hash.as_ref().clone(), false),
        };
        let ok = self
            .run(move |argon| {
                let Ok(parsed) = PasswordHash::new(&hash) else {
                    return false;
                };
                argon.verify_password(password.as_bytes(), &parsed).is_ok()
            })
            .await?;
        Ok(ok && real)
    }

    /// True when `stored` was made with other parameters than the configured ones, so the
    /// next successful login should store a fresh hash.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return true;
        };
        let same_params = Params::try_from(&parsed).is_ok_and(|p| {
            p.m_cost() == self.params.m_cost()
                && p.t_cost() == self.params.t_cost()
                && p.p_cost() == self.params.p_cost()
        });
        parsed.algorithm != argon2::ARGON2ID_IDENT || !same_params
    }
}

fn argon(pepper: &[u8], params: Params) -> Result<Argon2<'_>, PasswordError> {
    if pepper.is_empty() {
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    } else {
        Argon2::new_with_secret(pepper, Algorithm::Argon2id, Version::V0x13, params)
            .map_err(|e| PasswordError::Params(e.to_string()))
    }
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
            ..PasswordConfig::default()
        }
    }

    #[tokio::test]
    async fn hash_verifies_and_unknown_account_never_does() {
        let hasher = Hasher::new(&cheap()).unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify("correct horse".into(), Some(hash.clone())).await.unwrap());
        assert!(!hasher.verify("wrong".into(), Some(hash.clone())).await.unwrap());
        assert!(!hasher.verify("sekimori-dummy-password".into(), None).await.unwrap());
        assert!(!hasher.needs_rehash(&hash));
        let stronger = Hasher::new(&PasswordConfig { argon2_iterations: 2, ..cheap() }).unwrap();
        assert!(stronger.needs_rehash(&hash));
        assert!(stronger.verify("correct horse".into(), Some(hash)).await.unwrap(), "old hashes still verify");
    }

    #[tokio::test]
    async fn pepper_is_required_to_verify() {
        let pepper = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let peppered = Hasher::new(&PasswordConfig { pepper: Some(pepper), ..cheap() }).unwrap();
        let hash = peppered.hash("correct horse".into()).await.unwrap();
        assert!(peppered.verify("correct horse".into(), Some(hash.clone())).await.unwrap());
        let plain = Hasher::new(&cheap()).unwrap();
        assert!(!plain.verify("correct horse".into(), Some(hash)).await.unwrap());
        assert!(Hasher::new(&PasswordConfig { pepper: Some("c2hvcnQ=".into()), ..cheap() }).is_err());
    }

    #[tokio::test]
    async fn a_flood_beyond_the_queue_is_refused_not_queued_forever() {
        let hasher =
            Hasher::new(&PasswordConfig { max_concurrent_hashes: 1, max_queued_hashes: 2, ..cheap() }).unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let h = hasher.clone();
                tokio::spawn(async move { h.hash("x".repeat(12)).await })
            })
            .collect();
        let mut busy = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Err(PasswordError::Busy)) {
                busy += 1;
            }
        }
        assert!(busy > 0, "some of the flood is refused");
        assert!(hasher.hash("y".repeat(12)).await.is_ok(), "and afterwards hashing works again");
    }
}
