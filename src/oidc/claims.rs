//! The one place that decides what a token says about a person. Later capabilities (roles per
//! system, acr from authenticators) add claims here and nowhere else.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::clock::UnixTime;
use crate::directory::{self, OrgUnit, Person};
use crate::systems::Client;

/// How and when the person authenticated, carried from session to code to token.
#[derive(Debug, Clone)]
pub struct AuthContext {
    pub session_id: String,
    pub auth_time: UnixTime,
    pub acr: String,
    pub amr: Vec<String>,
}

/// Authentication context classes, weakest first: a password login, and a login with a card
/// or security key (`authenticators::ACR_HWK`), with or without the password before it.
pub const ACR_PASSWORD: &str = "urn:sekimori:acr:password";
pub const ACR_VALUES_SUPPORTED: [&str; 2] = [ACR_PASSWORD, crate::authenticators::ACR_HWK];

/// How strong an acr is (its place in [`ACR_VALUES_SUPPORTED`]); None for values Sekimori
/// does not know.
pub fn acr_rank(acr: &str) -> Option<usize> {
    ACR_VALUES_SUPPORTED.iter().position(|a| *a == acr)
}

/// The `claims` request parameter (OIDC Core §5.5), kept as asked for and read where needed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClaimsRequest {
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub id_token: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub userinfo: Map<String, Value>,
}

/// Where requested claims are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimsTarget {
    IdToken,
    Userinfo,
}

impl ClaimsRequest {
    /// Parses and checks the parameter: a JSON object whose `id_token` and `userinfo` members
    /// are objects mapping claim names to null or to an object with `essential` (boolean),
    /// `value` or `values` (array). Other members are ignored (§5.5).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let value: Value = serde_json::from_str(text).map_err(|_| "claims is not valid JSON")?;
        let Value::Object(top) = value else { return Err("claims must be a JSON object") };
        let mut request = ClaimsRequest::default();
        for (member, slot) in [("id_token", &mut request.id_token), ("userinfo", &mut request.userinfo)] {
            match top.get(member) {
                None | Some(Value::Null) => {}
                Some(Value::Object(claims)) => {
                    for (name, spec) in claims {
                        let well_formed = match spec {
                            Value::Null => true,
                            Value::Object(o) => {
                                o.get("essential").is_none_or(Value::is_boolean)
                                    && o.get("values").is_none_or(Value::is_array)
                            }
                            _ => false,
                        };
                        if !well_formed || name.len() > 256 {
                            return Err("each requested claim must be null or an object");
                        }
                    }
                    *slot = claims.clone();
                }
                Some(_) => return Err("claims members must be JSON objects"),
            }
        }
        Ok(request)
    }

    pub fn from_stored(text: Option<&str>) -> Self {
        text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default()
    }

    pub fn to_stored(&self) -> Option<String> {
        (!self.id_token.is_empty() || !self.userinfo.is_empty()).then(|| Value::from(self).to_string())
    }

    pub fn names(&self, target: ClaimsTarget) -> Vec<&str> {
        let map = match target {
            ClaimsTarget::IdToken => &self.id_token,
            ClaimsTarget::Userinfo => &self.userinfo,
        };
        map.keys().map(String::as_str).collect()
    }

    /// The `acr` the ID token must carry: (acceptable values, essential?).
    pub fn acr(&self) -> Option<(Vec<String>, bool)> {
        let spec = self.id_token.get("acr")?.as_object()?;
        let essential = spec.get("essential").and_then(Value::as_bool).unwrap_or(false);
        let values: Vec<String> = match (spec.get("value"), spec.get("values")) {
            (Some(Value::String(v)), _) => vec![v.clone()],
            (_, Some(Value::Array(vs))) => vs.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        Some((values, essential))
    }

    /// A `sub` the request insists on (§5.5.1: a mismatch must fail the request).
    pub fn required_sub(&self) -> Option<&str> {
        [&self.id_token, &self.userinfo].iter().find_map(|m| m.get("sub")?.get("value")?.as_str())
    }
}

impl From<&ClaimsRequest> for Value {
    fn from(request: &ClaimsRequest) -> Value {
        serde_json::to_value(request).unwrap_or(Value::Null)
    }
}

/// The `staff` scope: what a municipal system needs beyond the profile — the login ID and the
/// section the person belongs to (所属), as a code and a name.
pub const STAFF_SCOPE: &str = "staff";
const STAFF_CLAIMS: [&str; 2] = ["login_id", "section"];

/// What the `staff` scope says beyond the person record, read only when it is asked for.
#[derive(Debug, Default)]
pub struct StaffFacts {
    pub login_id: Option<String>,
    pub section: Option<OrgUnit>,
}

impl StaffFacts {
    /// Reads the login ID and section when the scopes or the claims request ask for them.
    pub async fn read(
        executor: &sqlx::AnyPool,
        person: &Person,
        scopes: &[&str],
        requested: &[&str],
    ) -> Result<StaffFacts, crate::Error> {
        if !scopes.contains(&STAFF_SCOPE) && !requested.iter().any(|name| STAFF_CLAIMS.contains(name)) {
            return Ok(StaffFacts::default());
        }
        let login_id = directory::account_of_person(executor, &person.id).await?.map(|a| a.login_id);
        let section = match &person.org_unit_id {
            Some(id) => directory::get_org_unit(executor, id).await?,
            None => None,
        };
        Ok(StaffFacts { login_id, section })
    }
}

/// Every claim Sekimori can say about a person, with the scope (OIDC Core §5.4) that covers it.
fn person_claims(person: &Person, staff: &StaffFacts) -> Vec<(&'static str, &'static str, Value)> {
    let mut claims = vec![
        ("profile", "name", json!(person.full_name())),
        ("profile", "family_name", json!(person.family_name)),
        ("profile", "given_name", json!(person.given_name)),
        // OIDC Core §5.2: the reading in katakana as a language-tagged claim.
        ("profile", "name#ja-Kana-JP", json!(format!("{} {}", person.family_name_kana, person.given_name_kana))),
        ("profile", "family_name#ja-Kana-JP", json!(person.family_name_kana)),
        ("profile", "given_name#ja-Kana-JP", json!(person.given_name_kana)),
        ("profile", "preferred_username", json!(person.employee_number)),
        ("profile", "employee_number", json!(person.employee_number)),
    ];
    if let Some(email) = &person.email {
        claims.push(("email", "email", json!(email)));
        // Addresses come from HR, not from the person; Sekimori does not verify them itself.
        claims.push(("email", "email_verified", json!(false)));
    }
    if let Some(login_id) = &staff.login_id {
        claims.push((STAFF_SCOPE, "login_id", json!(login_id)));
    }
    if let Some(section) = &staff.section {
        let mut value = Map::new();
        value.insert("code".into(), json!(section.code));
        value.insert("name".into(), json!(section.name));
        if let Some(english) = &section.name_en {
            value.insert("name#en".into(), json!(english));
        }
        claims.push((STAFF_SCOPE, "section", Value::Object(value)));
    }
    claims
}

/// Claims released about a person: those of the granted scopes, plus those asked for one by
/// one in the claims parameter when the client may have their scope at all.
pub fn scope_claims(
    person: &Person,
    staff: &StaffFacts,
    scopes: &[&str],
    requested: &[&str],
    client_scopes: &[String],
) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(person.id));
    for (scope, name, value) in person_claims(person, staff) {
        let by_scope = scopes.contains(&scope);
        let one_by_one = requested.contains(&name) && client_scopes.iter().any(|s| s == scope);
        if by_scope || one_by_one {
            claims.insert(name.into(), value);
        }
    }
    claims
}

/// OIDC Core §3.3.2.11: left half of the SHA-256 of the access token, base64url.
pub fn at_hash(access_token: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(access_token.as_bytes());
    let (left, _) = digest.split_at(16);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(left)
}

pub struct IdTokenInput<'a> {
    pub issuer: &'a str,
    pub client: &'a Client,
    pub person: &'a Person,
    pub staff: &'a StaffFacts,
    pub auth: &'a AuthContext,
    pub scopes: &'a [&'a str],
    pub nonce: Option<&'a str>,
    pub access_token: &'a str,
    pub claims_request: &'a ClaimsRequest,
    pub roles: &'a [String],
    pub now: UnixTime,
    pub ttl: i64,
}

pub fn id_token(input: IdTokenInput<'_>) -> Value {
    let requested = input.claims_request.names(ClaimsTarget::IdToken);
    let mut claims = scope_claims(input.person, input.staff, input.scopes, &requested, &input.client.scopes);
    claims.insert("roles".into(), json!(input.roles));
    claims.insert("iss".into(), json!(input.issuer));
    claims.insert("aud".into(), json!(input.client.client_id));
    claims.insert("azp".into(), json!(input.client.client_id));
    claims.insert("iat".into(), json!(input.now));
    claims.insert("exp".into(), json!(input.now + input.ttl));
    claims.insert("auth_time".into(), json!(input.auth.auth_time));
    claims.insert("sid".into(), json!(input.auth.session_id));
    claims.insert("acr".into(), json!(input.auth.acr));
    claims.insert("amr".into(), json!(input.auth.amr));
    claims.insert("at_hash".into(), json!(at_hash(input.access_token)));
    if let Some(nonce) = input.nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    Value::Object(claims)
}

/// RFC 9068 access token claims for a person's token; `jti` is the key of its row in
/// `access_tokens`.
pub struct AccessTokenInput<'a> {
    pub issuer: &'a str,
    pub client: &'a Client,
    pub person_id: &'a str,
    pub auth: &'a AuthContext,
    pub scope: &'a str,
    pub roles: &'a [String],
    pub jti: &'a str,
    pub now: UnixTime,
}

pub fn access_token(input: AccessTokenInput<'_>) -> Value {
    json!({
        "iss": input.issuer,
        "sub": input.person_id,
        "aud": input.client.client_id,
        "client_id": input.client.client_id,
        "iat": input.now,
        "exp": input.now + input.client.access_token_ttl,
        "jti": input.jti,
        "scope": input.scope,
        "sid": input.auth.session_id,
        "auth_time": input.auth.auth_time,
        "acr": input.auth.acr,
        "amr": input.auth.amr,
        "roles": input.roles,
    })
}

/// RFC 9068 §2.2: a client_credentials token speaks for the client itself, so `sub` is its
/// client_id and there is no session. Its `jti` carries the client's token generation
/// (`oidc::access_tokens::service_jti`): it has no row.
pub fn service_access_token(issuer: &str, client: &Client, scope: &str, jti: &str, now: UnixTime) -> Value {
    json!({
        "iss": issuer,
        "sub": client.client_id,
        "aud": client.client_id,
        "client_id": client.client_id,
        "iat": now,
        "exp": now + client.access_token_ttl,
        "jti": jti,
        "scope": scope,
    })
}

/// A new token id. Not a secret (the token carries it in the clear): unique, and time-ordered
/// so that the access tokens' primary-key index grows at its end (`store::time_ordered_id`).
pub fn new_jti() -> String {
    crate::store::time_ordered_id()
}
