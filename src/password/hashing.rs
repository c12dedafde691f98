//! Password hashing (R12): argon2id with configurable cost and an optional pepper, run off the
//! async runtime with bounded concurrency, so a flood of logins queues — or, past a bound, is
//! refused — instead of exhausting memory or starving other endpoints. Verifying an unknown login
//! ID runs against a dummy hash so the response time does not reveal whether the account exists.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
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
        work: impl FnOnce(Argon2<'_>, &Params) -> T + Send + 'static,
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
            let _ = done.send(argon(&pepper, params.clone()).map(|a| work(a, &params)));
        });
        self.jobs.lock().map_err(|_| PasswordError::Worker)?.send(job).map_err(|_| PasswordError::Worker)?;
        let result = result.await.map_err(|_| PasswordError::Worker)?;
        drop(place);
        result
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move |argon, params| hash_phc(&argon, params, password.as_bytes())).await?
    }

    /// Verifies `password` against `stored`; when `stored` is None (unknown account, or no
    /// password set) a dummy hash is verified instead and the answer is always false.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, PasswordError> {
        let (hash, real) = match stored {
            Some(hash) => (hash, true),
            None => (self.dummy_hash.as_ref().clone(), false),
        };
        let pepper = self.pepper.clone();
        let ok = self.run(move |_, _| verify_phc(&pepper, &hash, password.as_bytes())).await?;
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

thread_local! {
    /// This hashing thread's argon2 memory, kept between hashes: allocating and freeing 19 MiB
    /// per login makes the allocator hold on to far more than the hashes ever use at once.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// argon2 of `password` and `salt` into `out`, in this thread's reusable memory.
fn compute(
    argon: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), PasswordError> {
    BLOCKS.with(|cell| {
        let mut blocks = cell.try_borrow_mut().map_err(|_| PasswordError::Hash)?;
        let needed = params.block_count();
        if blocks.len() < needed {
            blocks.resize(needed, argon2::Block::default());
        }
        let memory = blocks.get_mut(..needed).ok_or(PasswordError::Hash)?;
        argon.hash_password_into_with_memory(password, salt, out, memory).map_err(|_| PasswordError::Hash)
    })
}

/// A new argon2id PHC string for `password`, with a fresh salt.
fn hash_phc(argon: &Argon2<'_>, params: &Params, password: &[u8]) -> Result<String, PasswordError> {
    use argon2::password_hash::{Output, ParamsString};
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_buf).map_err(|_| PasswordError::Hash)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(argon, params, password, salt_bytes, &mut out)?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|_| PasswordError::Hash)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|_| PasswordError::Hash)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the argon2id PHC string `stored` (whatever its parameters).
fn verify_phc(pepper: &[u8], stored: &str, password: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    if parsed.algorithm != argon2::ARGON2ID_IDENT || parsed.version.is_some_and(|v| v != u32::from(Version::V0x13)) {
        return false;
    }
    let (Ok(params), Some(salt), Some(expected)) = (Params::try_from(&parsed), parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else { return false };
    let Ok(argon) = argon(pepper, params.clone()) else { return false };
    let mut out = vec![0u8; expected.len()];
    if compute(&argon, &params, password, salt_bytes, &mut out).is_err() {
        return false;
    }
    // Output's equality is constant-time.
    argon2::password_hash::Output::new(&out).is_ok_and(|computed| computed == expected)
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
    async fn reusable_memory_hashes_agree_with_the_reference_implementation() {
        use argon2::PasswordVerifier;
        let hasher = Hasher::new(&cheap()).unwrap();
        let ours = hasher.hash("kasumi no naka".into()).await.unwrap();
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(1024, 1, 1, None).unwrap());
        assert!(reference.verify_password(b"kasumi no naka", &PasswordHash::new(&ours).unwrap()).is_ok());
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = reference.hash_password(b"kasumi no naka", &salt).unwrap().to_string();
        assert!(hasher.verify("kasumi no naka".into(), Some(theirs.clone())).await.unwrap());
        assert!(!hasher.verify("kasumi no naki".into(), Some(theirs)).await.unwrap());
        // A bigger cost than the buffer had so far grows it.
        let big = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(4096, 1, 1, None).unwrap());
        let bigger = big.hash_password(b"kasumi no naka", &salt).unwrap().to_string();
        assert!(hasher.verify("kasumi no naka".into(), Some(bigger)).await.unwrap());
        assert!(!hasher
            .verify("x".into(), Some("$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into()))
            .await
            .unwrap());
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
