//! Small cryptographic helpers shared by every capability: random tokens, hashing of
//! bearer secrets before storage, constant-time comparison, and the master-key cipher.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A random URL-safe token of `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The 32 characters of [`random_code`].
pub const CODE_ALPHABET: &str = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// `length` random characters from an alphabet without look-alikes (no 0/O, 1/I), for codes
/// that people read out and type in. Each character carries 5 bits (256 is a multiple of 32,
/// so every character is equally likely).
pub fn random_code(length: usize) -> String {
    let alphabet = CODE_ALPHABET.as_bytes();
    let mut buf = vec![0u8; length];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    buf.iter().filter_map(|b| alphabet.get(usize::from(b % 32)).copied().map(char::from)).collect()
}

/// SHA-256 of a high-entropy secret (code, token, client secret), hex encoded. Such secrets
/// are stored only in this form: a database leak reveals nothing usable.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn sha256_b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(data))
}

/// Constant-time equality for secrets.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The key that encrypts private signing keys at rest (AES-256-GCM).
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    raw: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("master key must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("cannot read or create master key file {0}: {1}")]
    File(String, std::io::Error),
    #[error("a stored secret could not be decrypted (wrong master key?)")]
    Decrypt,
    #[error(
        "the master key file {0} can be read by others than its owner (mode {1:o}): restrict it \
         with `chmod 600 {0}` (and check who could have read it)"
    )]
    NotPrivate(String, u32),
    #[error(
        "the master key file {0} does not exist, but the database already holds signing keys encrypted \
         with a master key: restore that file from its backup (or give the key as master_key / \
         SEKIMORI_MASTER_KEY). No new key was created, so nothing was lost."
    )]
    Missing(String),
}

impl MasterKey {
    pub fn from_base64(text: &str) -> Result<Self, MasterKeyError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| MasterKeyError::BadKey)?;
        if bytes.len() != 32 {
            return Err(MasterKeyError::BadKey);
        }
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&bytes);
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| MasterKeyError::BadKey)?;
        Ok(Self { cipher, raw })
    }

    /// Reads the key file, creating it (mode 0600) with a fresh key when it does not exist —
    /// but only when `may_create`: a database that already holds secrets sealed with a master
    /// key must never be given a new one (what it holds would be lost), so the caller says
    /// whether the database is new.
    pub fn load_or_create(path: &str, may_create: bool) -> Result<Self, MasterKeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                check_private(path)?;
                Self::from_base64(&text)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !may_create => {
                Err(MasterKeyError::Missing(path.into()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                let text = STANDARD.encode(key);
                write_private_file(path, &text).map_err(|e| MasterKeyError::File(path.into(), e))?;
                tracing::warn!(path, "created a new master key file; back it up and keep it secret");
                Self::from_base64(&text)
            }
            Err(e) => Err(MasterKeyError::File(path.into(), e)),
        }
    }

    /// A key for another purpose, derived so that it reveals nothing about this one.
    pub fn derive_key(&self, purpose: &[u8]) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut out = [0u8; 32];
        if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.raw) {
            mac.update(purpose);
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        out
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a valid key and a 12-byte nonce cannot fail.
        let ciphertext = self.cipher.encrypt(&Nonce::from(nonce), plaintext).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        STANDARD.encode(out)
    }

    pub fn decrypt(&self, sealed: &str) -> Result<Vec<u8>, MasterKeyError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| MasterKeyError::Decrypt)?;
        if bytes.len() < 12 {
            return Err(MasterKeyError::Decrypt);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| MasterKeyError::Decrypt)?;
        self.cipher.decrypt(&Nonce::from(nonce), ciphertext).map_err(|_| MasterKeyError::Decrypt)
    }
}

/// Refuses a key file that its group or others may read or write (unix mode & 0o077).
fn check_private(path: &str) -> Result<(), MasterKeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(|e| MasterKeyError::File(path.into(), e))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(MasterKeyError::NotPrivate(path.into(), mode & 0o777));
        }
    }
    Ok(())
}

fn write_private_file(path: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_master_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("sekimori-master-{}.key", uuid::Uuid::new_v4().simple()));
        let path_text = path.to_str().unwrap().to_owned();
        let created = MasterKey::load_or_create(&path_text, true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "created private");
        let again = MasterKey::load_or_create(&path_text, false).unwrap();
        assert_eq!(created.raw, again.raw);
        for loose in [0o640, 0o604, 0o660, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
            let message = MasterKey::load_or_create(&path_text, false).unwrap_err().to_string();
            assert!(message.contains(&path_text) && message.contains("chmod 600"), "{loose:o}: {message}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        MasterKey::load_or_create(&path_text, false).unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn sealed_secret_round_trips_and_detects_tampering() {
        let key = MasterKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let sealed = key.encrypt(b"private key");
        assert_eq!(key.decrypt(&sealed).unwrap(), b"private key");
        let mut bytes = STANDARD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(key.decrypt(&STANDARD.encode(bytes)).is_err());
        let other = MasterKey::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(other.decrypt(&sealed).is_err());
    }

    #[test]
    fn short_master_key_is_refused() {
        assert!(MasterKey::from_base64(&STANDARD.encode([1u8; 16])).is_err());
        assert!(MasterKey::from_base64("not base64!").is_err());
    }
}
