//! Signing keys: RS256 (always offered; OIDC Discovery requires it) and ES256 (cheap to sign,
//! the default for access tokens). Private keys are stored encrypted with the master key (R12).

use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use ring::signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::audit::{Actor, Event};
use crate::clock::{Clock, UnixTime};
use crate::crypto::{self, MasterKey};
use crate::store::Store;
use crate::systems::SigningAlg;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("stored key {0} cannot be used: {1}")]
    Stored(String, String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("signing failed")]
    Sign,
    #[error("the claims cannot be encoded: {0}")]
    Claims(#[from] serde_json::Error),
}

struct SigningKey {
    kid: String,
    alg: SigningAlg,
    created_at: UnixTime,
    /// From when it signs; before that it is only published.
    signs_from: UnixTime,
    signer: Signer,
    decoding: DecodingKey,
    jwk: serde_json::Value,
}

/// A private key, parsed and checked once when it is loaded, not on every signature.
enum Signer {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

impl Signer {
    /// From the PKCS#8 PEM a key is stored as.
    fn from_pem(alg: SigningAlg, pem: &[u8]) -> Result<Self, String> {
        let pem = std::str::from_utf8(pem).map_err(|e| e.to_string())?;
        let (label, der) = p256::pkcs8::SecretDocument::from_pem(pem).map_err(|e| e.to_string())?;
        if label != "PRIVATE KEY" {
            return Err(format!("a PKCS#8 PRIVATE KEY was expected, not {label}"));
        }
        match alg {
            SigningAlg::RS256 => RsaKeyPair::from_pkcs8(der.as_bytes()).map(Signer::Rs256),
            SigningAlg::ES256 => EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                der.as_bytes(),
                &ring::rand::SystemRandom::new(),
            )
            .map(Signer::Es256),
        }
        .map_err(|e| e.to_string())
    }

    /// `claims` under `header` in the JWS compact serialization (RFC 7515 §7.1), as
    /// jsonwebtoken::encode writes it.
    fn jws<T: Serialize>(&self, header: &Header, claims: &T) -> Result<String, KeyError> {
        let mut token = b64(&serde_json::to_vec(header)?);
        token.push('.');
        token.push_str(&b64(&serde_json::to_vec(claims)?));
        let signature = self.sign(token.as_bytes())?;
        token.push('.');
        token.push_str(&b64(&signature));
        Ok(token)
    }

    /// The JWS signature of `message` (RFC 7518 §3.3 for RS256, §3.4 for ES256: R and S, 32
    /// bytes each).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        match self {
            Signer::Rs256(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature).map_err(|_| KeyError::Sign)?;
                Ok(signature)
            }
            Signer::Es256(key) => Ok(key.sign(&rng, message).map_err(|_| KeyError::Sign)?.as_ref().to_vec()),
        }
    }
}

/// The keys in use. Loaded at start and reloaded from the database after a rotation (and
/// every minute, so that every node learns of a rotation made elsewhere).
pub struct KeySet {
    master: MasterKey,
    clock: Clock,
    /// How long a replaced key stays published: the longest lifetime of anything it signed,
    /// plus what a consuming system may cache the JWKS for.
    retention: i64,
    /// Newest first.
    keys: RwLock<Arc<Vec<SigningKey>>>,
    /// Held through a reload, from reading to replacing `keys`.
    reloading: tokio::sync::Mutex<()>,
    /// Tokens whose signature has been checked, so that a token presented again (a consuming
    /// system introspects the same token on each call it serves) is not checked again.
    verified: VerifiedTokens,
}

/// The SHA-256 digests of the exact tokens whose signature one of the current keys verified.
/// A digest says nothing about the claims: expiry, issuer, `typ` and required claims are
/// checked every time, and the token's key must still be a current one.
#[derive(Debug, Default)]
struct VerifiedTokens(std::sync::Mutex<std::collections::HashSet<[u8; 32]>>);

impl VerifiedTokens {
    /// The most digests kept (about 3 MB); past it the set starts afresh.
    const MOST: usize = 65_536;

    fn contains(&self, digest: &[u8; 32]) -> bool {
        self.0.lock().is_ok_and(|set| set.contains(digest))
    }

    fn insert(&self, digest: [u8; 32]) {
        if let Ok(mut set) = self.0.lock() {
            if set.len() >= Self::MOST {
                set.clear();
            }
            set.insert(digest);
        }
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.current();
        f.debug_list().entries(keys.iter().map(|k| (&k.kid, k.alg, k.signs_from))).finish()
    }
}

#[derive(Serialize)]
pub struct Jwks {
    pub keys: Vec<serde_json::Value>,
}

/// What a token's `typ` header must say, so that one kind of token cannot pass for another.
#[derive(Debug, Clone, Copy)]
pub enum Typ {
    Exactly(&'static str),
    /// An ID token: `JWT` or no `typ` at all.
    JwtOrAbsent,
}

/// A key as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: SigningAlg,
    pub created_at: UnixTime,
    pub signs_from: UnixTime,
    /// `signing`, `published` (new, not signing yet, or replaced and kept for verification)
    pub state: &'static str,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn generate(alg: SigningAlg) -> Result<(String, serde_json::Value), KeyError> {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let kid = crypto::random_token(12);
    match alg {
        SigningAlg::RS256 => {
            use rsa::traits::PublicKeyParts;
            let key =
                rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| KeyError::Generate(e.to_string()))?;
            let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeyError::Generate(e.to_string()))?;
            let jwk = serde_json::json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
            });
            Ok((pem.to_string(), jwk))
        }
        SigningAlg::ES256 => {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let key = p256::SecretKey::random(&mut rand::rngs::OsRng);
            let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeyError::Generate(e.to_string()))?;
            let point = key.public_key().to_encoded_point(false);
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                return Err(KeyError::Generate("P-256 point without coordinates".into()));
            };
            let jwk = serde_json::json!({
                "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                "x": b64(x), "y": b64(y),
            });
            Ok((pem.to_string(), jwk))
        }
    }
}

fn load_key(
    kid: String,
    alg: SigningAlg,
    signs_from: UnixTime,
    pem: &[u8],
    jwk: serde_json::Value,
) -> Result<SigningKey, KeyError> {
    let bad = |e: String| KeyError::Stored(kid.clone(), e);
    let field = |name: &str| jwk.get(name).and_then(|v| v.as_str()).map(str::to_owned).unwrap_or_default();
    let signer = Signer::from_pem(alg, pem).map_err(bad)?;
    let decoding = match alg {
        SigningAlg::RS256 => DecodingKey::from_rsa_components(&field("n"), &field("e")),
        SigningAlg::ES256 => DecodingKey::from_ec_components(&field("x"), &field("y")),
    }
    .map_err(|e| bad(e.to_string()))?;
    Ok(SigningKey { kid, alg, created_at: signs_from, signs_from, signer, decoding, jwk })
}

/// Generates a key of `alg` and stores it, encrypted, signing from `signs_from` — or, when a
/// key of `alg` already begins signing at that second or later, from the second after that
/// one. Keys are ordered by the second they begin signing; two in the same second could not
/// be told apart, and a rotation must always be followed by the new key (a key replaced in a
/// hurry, in the second its predecessor began, would otherwise go on signing by the chance of
/// its kid).
async fn create_key(
    store: &Store,
    master: &MasterKey,
    actor: &Actor,
    now: UnixTime,
    alg: SigningAlg,
    signs_from: UnixTime,
) -> Result<String, KeyError> {
    let (pem, jwk) =
        tokio::task::spawn_blocking(move || generate(alg)).await.map_err(|e| KeyError::Generate(e.to_string()))??;
    let kid = jwk.get("kid").and_then(|k| k.as_str()).unwrap_or_default().to_owned();
    let mut tx = store.begin().await?;
    let latest: Option<i64> =
        sqlx::query("SELECT MAX(COALESCE(signs_from, created_at)) AS latest FROM signing_keys WHERE alg = $1")
            .bind(alg.as_str())
            .fetch_one(&mut *tx)
            .await?
            .try_get("latest")?;
    let signs_from = latest.map_or(signs_from, |latest| signs_from.max(latest + 1));
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, private_key_enc, public_jwk, created_at, signs_from)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&kid)
    .bind(alg.as_str())
    .bind(master.encrypt(pem.as_bytes()))
    .bind(jwk.to_string())
    .bind(now)
    .bind(signs_from)
    .execute(&mut *tx)
    .await?;
    Event::success(
        actor,
        "signing_key.create",
        format!("signing_key:{kid}"),
        serde_json::json!({"alg": alg.as_str(), "signs_from": signs_from}),
    )
    .record(&mut tx, now)
    .await?;
    // Every node reloads its keys when this commits, rather than within the minute (R22).
    crate::store::changes::announce(&mut tx, crate::store::changes::Change::Keys).await?;
    tx.commit().await?;
    Ok(kid)
}

/// Whether the database holds any signing key (each sealed with the master key).
pub async fn any_stored(store: &Store) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT 1 AS one FROM signing_keys LIMIT 1").fetch_optional(store.pool()).await?;
    Ok(row.is_some())
}

impl KeySet {
    /// Loads the published keys; generates (and stores, encrypted) one per algorithm that has
    /// none yet.
    pub async fn load_or_create(
        store: &Store,
        master: &MasterKey,
        clock: Clock,
        retention: i64,
    ) -> Result<Self, KeyError> {
        let now = clock.now();
        for alg in [SigningAlg::RS256, SigningAlg::ES256] {
            let existing = sqlx::query("SELECT kid FROM signing_keys WHERE alg = $1 AND retired_at IS NULL")
                .bind(alg.as_str())
                .fetch_optional(store.pool())
                .await?;
            if existing.is_none() {
                create_key(store, master, &Actor::System, now, alg, now).await?;
            }
        }
        let set = Self {
            master: master.clone(),
            clock,
            retention,
            keys: RwLock::new(Arc::new(Vec::new())),
            reloading: tokio::sync::Mutex::new(()),
            verified: VerifiedTokens::default(),
        };
        set.reload(store).await?;
        Ok(set)
    }

    fn current(&self) -> Arc<Vec<SigningKey>> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the keys again: after a rotation here or on another node.
    pub async fn reload(&self, store: &Store) -> Result<(), KeyError> {
        // One reload at a time, each reading after the last one wrote: a reload that read
        // before a rotation committed (woken by another node's notice, say) must not replace
        // what a later one read.
        let _one_at_a_time = self.reloading.lock().await;
        let now = self.clock.now();
        let rows = sqlx::query(
            "SELECT kid, alg, private_key_enc, public_jwk, created_at, signs_from FROM signing_keys
             WHERE retired_at IS NULL",
        )
        .fetch_all(store.pool())
        .await?;
        let mut keys = Vec::new();
        for row in rows {
            let kid: String = row.try_get("kid")?;
            let alg: String = row.try_get("alg")?;
            let sealed: String = row.try_get("private_key_enc")?;
            let jwk: String = row.try_get("public_jwk")?;
            let created_at: i64 = row.try_get("created_at")?;
            let signs_from: Option<i64> = row.try_get("signs_from")?;
            let alg = SigningAlg::parse(&alg).map_err(|e| KeyError::Stored(kid.clone(), e.to_string()))?;
            let pem = self.master.decrypt(&sealed).map_err(|e| KeyError::Stored(kid.clone(), e.to_string()))?;
            let jwk = serde_json::from_str(&jwk).map_err(|e| KeyError::Stored(kid.clone(), e.to_string()))?;
            let mut key = load_key(kid, alg, signs_from.unwrap_or(created_at), &pem, jwk)?;
            key.created_at = created_at;
            keys.push(key);
        }
        keys.sort_by(|a, b| b.signs_from.cmp(&a.signs_from).then_with(|| a.kid.cmp(&b.kid)));
        // A key is dropped once a newer key of its algorithm has been signing for longer than
        // anything the older one signed can live.
        let retention = self.retention;
        let mut published: Vec<SigningKey> = Vec::new();
        for key in keys {
            let replaced_long_ago = published
                .iter()
                .filter(|newer| newer.alg == key.alg && newer.signs_from <= now)
                .any(|newer| newer.signs_from + retention <= now);
            if !replaced_long_ago {
                published.push(key);
            }
        }
        match self.keys.write() {
            Ok(mut guard) => *guard = Arc::new(published),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(published),
        }
        Ok(())
    }

    /// Adds a new key for each of `algs`, signing `publish_ahead` seconds from now; the keys
    /// they replace stay published until what they signed has expired.
    pub async fn rotate(
        &self,
        store: &Store,
        actor: &Actor,
        algs: &[SigningAlg],
        publish_ahead: i64,
    ) -> Result<Vec<String>, KeyError> {
        let now = self.clock.now();
        let mut kids = Vec::new();
        for alg in algs {
            kids.push(create_key(store, &self.master, actor, now, *alg, now + publish_ahead.max(0)).await?);
        }
        self.reload(store).await?;
        Ok(kids)
    }

    pub fn jwks(&self) -> Jwks {
        Jwks { keys: self.current().iter().map(|k| k.jwk.clone()).collect() }
    }

    /// The published keys with their state, newest first.
    pub fn list(&self) -> Vec<KeyInfo> {
        let now = self.clock.now();
        let keys = self.current();
        let signing: Vec<&str> = [SigningAlg::RS256, SigningAlg::ES256]
            .iter()
            .filter_map(|alg| keys.iter().find(|k| k.alg == *alg && k.signs_from <= now).map(|k| k.kid.as_str()))
            .collect();
        keys.iter()
            .map(|k| KeyInfo {
                kid: k.kid.clone(),
                alg: k.alg,
                created_at: k.created_at,
                signs_from: k.signs_from,
                state: if signing.contains(&k.kid.as_str()) { "signing" } else { "published" },
            })
            .collect()
    }

    /// Signs `claims` with the newest key of `alg` that has begun signing.
    pub fn sign<T: Serialize>(&self, alg: SigningAlg, typ: &str, claims: &T) -> Result<String, KeyError> {
        let now = self.clock.now();
        let keys = self.current();
        let key = keys
            .iter()
            .find(|k| k.alg == alg && k.signs_from <= now)
            .ok_or_else(|| KeyError::Generate(format!("no {} key", alg.as_str())))?;
        let mut header = Header::new(jwt_alg(alg));
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.to_owned());
        key.signer.jws(&header, claims)
    }

    /// Verifies a token this server signed: its key (by `kid`, with the key's own algorithm),
    /// issuer, `typ` and required claims; expiry only when `check_exp` (against the system
    /// clock, so callers also compare `exp` with Sekimori's clock). None for anything else.
    pub fn verify<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        typ: Typ,
        required: &[&str],
        check_exp: bool,
    ) -> Option<T> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let typ_ok = match typ {
            Typ::Exactly(expected) => header.typ.as_deref() == Some(expected),
            Typ::JwtOrAbsent => header.typ.as_deref().is_none_or(|t| t.eq_ignore_ascii_case("JWT")),
        };
        if !typ_ok {
            return None;
        }
        let (alg, key) = self.decoding_key(header.kid.as_deref()?)?;
        if header.alg != alg {
            return None;
        }
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_issuer(&[issuer]);
        validation.validate_aud = false;
        validation.validate_exp = check_exp;
        validation.leeway = 0;
        validation.set_required_spec_claims(required);
        // The same bytes verified before by a key still current: the signature holds.
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let seen = self.verified.contains(&digest);
        if seen {
            validation.insecure_disable_signature_validation();
        }
        let claims = jsonwebtoken::decode::<T>(token, &key, &validation).ok()?.claims;
        if !seen {
            self.verified.insert(digest);
        }
        Some(claims)
    }

    /// The public key for `kid`, to verify a token this server signed.
    pub fn decoding_key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        self.current().iter().find(|k| k.kid == kid).map(|k| (jwt_alg(k.alg), k.decoding.clone()))
    }
}

fn jwt_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::RS256 => Algorithm::RS256,
        SigningAlg::ES256 => Algorithm::ES256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a key signs, held parsed since it was loaded, verifies with the JWK it publishes
    /// (through jsonwebtoken, as consuming systems' libraries verify), with the header that
    /// names it; the same claims signed twice give two valid tokens; a signature does not
    /// carry over to other claims.
    #[test]
    fn a_token_signed_by_a_loaded_key_verifies_with_its_published_jwk() {
        for alg in [SigningAlg::ES256, SigningAlg::RS256] {
            let (pem, jwk) = generate(alg).unwrap();
            let kid = jwk.get("kid").and_then(|k| k.as_str()).unwrap().to_owned();
            let key = load_key(kid.clone(), alg, 0, pem.as_bytes(), jwk).unwrap();
            let claims = serde_json::json!({"iss": "https://idp.example.lg.jp", "sub": "s", "exp": 4_000_000_000_u64});
            let mut header = Header::new(jwt_alg(alg));
            header.kid = Some(kid.clone());
            header.typ = Some("at+jwt".into());
            let mut validation = jsonwebtoken::Validation::new(jwt_alg(alg));
            validation.set_issuer(&["https://idp.example.lg.jp"]);
            validation.validate_aud = false;
            let mut tokens = Vec::new();
            for _ in 0..2 {
                let token = key.signer.jws(&header, &claims).unwrap();
                let decoded = jsonwebtoken::decode::<serde_json::Value>(&token, &key.decoding, &validation).unwrap();
                assert_eq!(decoded.claims, claims, "{alg:?}");
                assert_eq!(decoded.header.alg, jwt_alg(alg), "{alg:?}");
                assert_eq!(decoded.header.kid.as_deref(), Some(kid.as_str()), "{alg:?}");
                assert_eq!(decoded.header.typ.as_deref(), Some("at+jwt"), "{alg:?}");
                tokens.push(token);
            }
            // ES256 signs with a fresh nonce each time (one used twice would give the key away);
            // RS256 (PKCS#1 v1.5) is deterministic.
            assert_eq!(tokens[0] == tokens[1], alg == SigningAlg::RS256, "{alg:?}");
            // A signature moved onto other claims does not pass.
            let other = key
                .signer
                .jws(
                    &header,
                    &serde_json::json!({"iss": "https://idp.example.lg.jp", "sub": "t", "exp": 4_000_000_000_u64}),
                )
                .unwrap();
            let (other_signed, _) = other.rsplit_once('.').unwrap();
            let (_, signature) = tokens[0].rsplit_once('.').unwrap();
            let forged = format!("{other_signed}.{signature}");
            assert!(jsonwebtoken::decode::<serde_json::Value>(&forged, &key.decoding, &validation).is_err());
        }
    }

    /// A stored key that is not a PKCS#8 private key of its algorithm is refused with the
    /// reason, not used.
    #[test]
    fn a_stored_key_of_another_kind_is_refused() {
        let (ec_pem, ec_jwk) = generate(SigningAlg::ES256).unwrap();
        let Err(KeyError::Stored(kid, _)) = load_key("k".into(), SigningAlg::RS256, 0, ec_pem.as_bytes(), ec_jwk)
        else {
            panic!("an EC key loaded as RS256");
        };
        assert_eq!(kid, "k");
        for junk in ["", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a key"] {
            assert!(Signer::from_pem(SigningAlg::ES256, junk.as_bytes()).is_err(), "{junk}");
        }
    }
}
