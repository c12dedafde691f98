//! Signing keys: RS256 (always offered; OIDC Discovery requires it) and ES256 (cheap to sign,
//! the default for access tokens). Private keys are stored encrypted with the master key (R12).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Serialize;
use sqlx::Row;

use crate::access::clients::SigningAlg;
use crate::audit::{self, Actor, Event, Outcome};
use crate::clock::UnixTime;
use crate::crypto::{self, MasterKey};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("stored key {0} cannot be used: {1}")]
    Stored(String, String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

struct SigningKey {
    kid: String,
    alg: SigningAlg,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: serde_json::Value,
}

/// The keys in use, loaded once at start.
pub struct KeySet {
    /// Newest first.
    keys: Vec<SigningKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|k| (&k.kid, k.alg))).finish()
    }
}

#[derive(Serialize)]
pub struct Jwks {
    pub keys: Vec<serde_json::Value>,
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

fn load_key(kid: String, alg: SigningAlg, pem: &[u8], jwk: serde_json::Value) -> Result<SigningKey, KeyError> {
    let bad = |e: String| KeyError::Stored(kid.clone(), e);
    let field = |name: &str| jwk.get(name).and_then(|v| v.as_str()).map(str::to_owned).unwrap_or_default();
    let (encoding, decoding) = match alg {
        SigningAlg::RS256 => (
            EncodingKey::from_rsa_pem(pem).map_err(|e| bad(e.to_string()))?,
            DecodingKey::from_rsa_components(&field("n"), &field("e")).map_err(|e| bad(e.to_string()))?,
        ),
        SigningAlg::ES256 => (
            EncodingKey::from_ec_pem(pem).map_err(|e| bad(e.to_string()))?,
            DecodingKey::from_ec_components(&field("x"), &field("y")).map_err(|e| bad(e.to_string()))?,
        ),
    };
    Ok(SigningKey { kid, alg, encoding, decoding, jwk })
}

impl KeySet {
    /// Loads every unretired key; generates (and stores, encrypted) one per algorithm that
    /// has none yet.
    pub async fn load_or_create(store: &Store, master: &MasterKey, now: UnixTime) -> Result<Self, KeyError> {
        for alg in [SigningAlg::RS256, SigningAlg::ES256] {
            let existing = sqlx::query("SELECT kid FROM signing_keys WHERE alg = $1 AND retired_at IS NULL")
                .bind(alg.as_str())
                .fetch_optional(store.pool())
                .await?;
            if existing.is_none() {
                let (pem, jwk) = tokio::task::spawn_blocking(move || generate(alg))
                    .await
                    .map_err(|e| KeyError::Generate(e.to_string()))??;
                let kid = jwk.get("kid").and_then(|k| k.as_str()).unwrap_or_default().to_owned();
                let mut tx = store.begin().await?;
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_key_enc, public_jwk, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&kid)
                .bind(alg.as_str())
                .bind(master.encrypt(pem.as_bytes()))
                .bind(jwk.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                audit::record(
                    &mut tx,
                    now,
                    Event {
                        actor: &Actor::System,
                        action: "signing_key.create",
                        target: format!("signing_key:{kid}"),
                        outcome: Outcome::Success,
                        detail: serde_json::json!({"alg": alg.as_str()}),
                        source_ip: None,
                    },
                )
                .await?;
                tx.commit().await?;
            }
        }
        let rows = sqlx::query(
            "SELECT kid, alg, private_key_enc, public_jwk FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid",
        )
        .fetch_all(store.pool())
        .await?;
        let mut keys = Vec::new();
        for row in rows {
            let kid: String = row.try_get("kid")?;
            let alg: String = row.try_get("alg")?;
            let sealed: String = row.try_get("private_key_enc")?;
            let jwk: String = row.try_get("public_jwk")?;
            let alg = SigningAlg::parse(&alg).map_err(|e| KeyError::Stored(kid.clone(), e.to_string()))?;
            let pem = master.decrypt(&sealed).map_err(|e| KeyError::Stored(kid.clone(), e.to_string()))?;
            let jwk = serde_json::from_str(&jwk).map_err(|e| KeyError::Stored(kid.clone(), e.to_string()))?;
            keys.push(load_key(kid, alg, &pem, jwk)?);
        }
        Ok(Self { keys })
    }

    pub fn jwks(&self) -> Jwks {
        Jwks { keys: self.keys.iter().map(|k| k.jwk.clone()).collect() }
    }

    /// Signs `claims` with the newest key of `alg`.
    pub fn sign<T: Serialize>(&self, alg: SigningAlg, typ: &str, claims: &T) -> Result<String, KeyError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.alg == alg)
            .ok_or_else(|| KeyError::Generate(format!("no {} key", alg.as_str())))?;
        let mut header = Header::new(jwt_alg(alg));
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.to_owned());
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }

    /// The public key for `kid`, to verify a token this server signed.
    pub fn decoding_key(&self, kid: &str) -> Option<(Algorithm, &DecodingKey)> {
        self.keys.iter().find(|k| k.kid == kid).map(|k| (jwt_alg(k.alg), &k.decoding))
    }
}

fn jwt_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::RS256 => Algorithm::RS256,
        SigningAlg::ES256 => Algorithm::ES256,
    }
}
