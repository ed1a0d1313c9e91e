//! etcd's JWT tokens (`--auth-token jwt,pub-key=...,priv-key=...,
//! sign-method=...,ttl=...`): a token is a signed claim set
//! `{"username", "revision", "exp"}`, so any member holding the same keys
//! accepts it without having seen it issued, and it cannot be extended or
//! revoked: it lives until `exp` (the `ttl` option, etcd's default 5 m).
//!
//! Invariants: signing needs the private key (a member given only the
//! public key verifies, and answers Authenticate with etcd's verify-only
//! error); a token is accepted only when signed with this member's method
//! and key and not expired (no leeway, as etcd's jwt-go); the revision in
//! the claims is the auth revision when the token was issued, so a token
//! older than the auth store gives `AuthOldRevision`, as etcd's do.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use api::EtcdError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AuthInfo;

/// etcd's `DefaultTTL` for JWT tokens.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// Why `--auth-token jwt,...` cannot be used; the texts are etcd's where
/// etcd has one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtConfigError {
    #[error("auth: invalid auth signature method")]
    InvalidMethod,
    #[error("auth: sign-method {0} is not supported by MetaStore")]
    UnsupportedMethod(String),
    #[error("auth: missing key data")]
    MissingKey,
    #[error("auth: pub-key is required for sign-method {0}")]
    MissingPublicKey(String),
    #[error("auth: {which} for sign-method {method}: {reason}")]
    BadKey { which: &'static str, method: String, reason: String },
}

/// The keys and settings of JWT tokens.
#[derive(Clone)]
pub struct JwtKeys {
    algorithm: Algorithm,
    sign: Option<EncodingKey>,
    verify: DecodingKey,
    /// What a token must satisfy: built once, not per request.
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("JwtKeys")
            .field("algorithm", &self.algorithm)
            .field("can_sign", &self.sign.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

impl JwtKeys {
    /// From etcd's options: the sign method's name (`RS256`, `PS384`,
    /// `ES256`, `HS512`, `EdDSA`, ...), the key files' contents (PEM; for
    /// the HMAC methods the private key file holds the secret) and the TTL.
    pub fn new(
        method: &str,
        public_key: Option<&[u8]>,
        private_key: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<Self, JwtConfigError> {
        let algorithm = algorithm(method)?;
        let bad = |which, e: jsonwebtoken::errors::Error| JwtConfigError::BadKey {
            which,
            method: method.to_string(),
            reason: e.to_string(),
        };
        let (sign, verify) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = private_key.filter(|k| !k.is_empty()).ok_or(JwtConfigError::MissingKey)?;
                (Some(EncodingKey::from_secret(secret)), DecodingKey::from_secret(secret))
            }
            _ => {
                let private_key = private_key.filter(|k| !k.is_empty());
                // Neither key: etcd's "missing key data". A private key
                // alone: etcd 3.5 derives the public key, we ask for it.
                let public = match public_key.filter(|k| !k.is_empty()) {
                    Some(k) => k,
                    None if private_key.is_none() => return Err(JwtConfigError::MissingKey),
                    None => return Err(JwtConfigError::MissingPublicKey(method.to_string())),
                };
                let verify = match algorithm {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(public),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(public),
                    _ => DecodingKey::from_rsa_pem(public),
                }
                .map_err(|e| bad("pub-key", e))?;
                let sign = match private_key {
                    None => None,
                    Some(private) => Some(
                        match algorithm {
                            Algorithm::ES256 | Algorithm::ES384 => ec_private_key(private),
                            Algorithm::EdDSA => EncodingKey::from_ed_pem(private),
                            _ => EncodingKey::from_rsa_pem(private),
                        }
                        .map_err(|e| bad("priv-key", e))?,
                    ),
                };
                (sign, verify)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        let ttl = if ttl.is_zero() { DEFAULT_TTL } else { ttl };
        let keys = JwtKeys { algorithm, sign, verify, validation, ttl };
        keys.check_pair()?;
        Ok(keys)
    }

    /// A private key that does not match the public one would issue
    /// tokens that no member accepts: refused at startup instead.
    fn check_pair(&self) -> Result<(), JwtConfigError> {
        if self.sign.is_none() {
            return Ok(());
        }
        let token = self.assign("check", 0).map_err(|e| self.pair_error(e.to_string()))?;
        match self.info(&token) {
            Some(_) => Ok(()),
            None => Err(self.pair_error("the private key does not match the public key".into())),
        }
    }

    fn pair_error(&self, reason: String) -> JwtConfigError {
        JwtConfigError::BadKey { which: "priv-key", method: format!("{:?}", self.algorithm), reason }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `user` as of auth revision `revision` (etcd's `assign`).
    pub fn assign(&self, user: &str, revision: u64) -> Result<String, EtcdError> {
        let key = self.sign.as_ref().ok_or(EtcdError::VerifyOnly)?;
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + self.ttl;
        let claims = Claims { username: user.to_string(), revision, exp: exp.as_secs() };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| EtcdError::TokenSigning(e.to_string()))
    }

    /// Who a token names, if it is valid here (etcd's `info`).
    pub fn info(&self, token: &str) -> Option<AuthInfo> {
        match jsonwebtoken::decode::<Claims>(token, &self.verify, &self.validation) {
            Ok(data) => Some(AuthInfo { user: data.claims.username, revision: data.claims.revision }),
            Err(e) => {
                tracing::debug!(error = %e, "a JWT token was refused");
                None
            }
        }
    }
}

/// An EC private key from PEM: PKCS#8 (`PRIVATE KEY`) or, as etcd also
/// reads it, OpenSSL's SEC1 `EC PRIVATE KEY`, rewrapped as PKCS#8 for the
/// signing library. A key that does not parse fails when the pair is
/// checked at startup.
fn ec_private_key(pem: &[u8]) -> Result<EncodingKey, jsonwebtoken::errors::Error> {
    use rustls_pki_types::{pem::PemObject, PrivateSec1KeyDer};
    match PrivateSec1KeyDer::from_pem_slice(pem).ok().and_then(|k| sec1_to_pkcs8(k.secret_sec1_der())) {
        Some(pkcs8) => Ok(EncodingKey::from_ec_der(&pkcs8)),
        None => EncodingKey::from_ec_pem(pem),
    }
}

/// SEC1's ECPrivateKey (RFC 5915) as a PKCS#8 PrivateKeyInfo (RFC 5208):
/// the curve moves from the key's parameters into the algorithm.
fn sec1_to_pkcs8(sec1: &[u8]) -> Option<Vec<u8>> {
    use crate::der::{element, encode, INTEGER, OCTET_STRING, OID, SEQUENCE};
    /// id-ecPublicKey, 1.2.840.10045.2.1.
    const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let (tag, body, _) = element(sec1)?;
    let (version_tag, version, rest) = element(body)?;
    if tag != SEQUENCE || version_tag != INTEGER || version != [1] {
        return None;
    }
    let (key_tag, _, mut rest) = element(rest)?;
    if key_tag != OCTET_STRING {
        return None;
    }
    let mut curve = None;
    while !rest.is_empty() {
        let (tag, content, next) = element(rest)?;
        if tag == 0xa0 {
            let (oid_tag, oid, _) = element(content)?;
            curve = (oid_tag == OID).then_some(oid);
        }
        rest = next;
    }
    let algorithm = encode(SEQUENCE, &[encode(OID, EC_PUBLIC_KEY), encode(OID, curve?)].concat());
    Some(encode(SEQUENCE, &[encode(INTEGER, &[0]), algorithm, encode(OCTET_STRING, sec1)].concat()))
}

fn algorithm(method: &str) -> Result<Algorithm, JwtConfigError> {
    Ok(match method {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "EdDSA" => Algorithm::EdDSA,
        // etcd accepts it; the JWT library here has no P-521 curve.
        "ES512" => return Err(JwtConfigError::UnsupportedMethod(method.to_string())),
        _ => return Err(JwtConfigError::InvalidMethod),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    /// Test-only key pairs, made with openssl (see testdata/README.md).
    fn pem(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/jwt").join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn tokens_round_trip_with_every_key_kind() {
        let cases = [
            ("RS256", "rsa.pub.pem", "rsa.pem"),
            ("PS512", "rsa.pub.pem", "rsa.pem"),
            ("ES256", "ec256.pub.pem", "ec256.pem"),
            // The same key as OpenSSL's SEC1 "EC PRIVATE KEY", as etcd reads.
            ("ES256", "ec256.pub.pem", "ec256-sec1.pem"),
            ("EdDSA", "ed25519.pub.pem", "ed25519.pem"),
        ];
        for (method, public, private) in cases {
            let keys = JwtKeys::new(method, Some(&pem(public)), Some(&pem(private)), TTL).expect(method);
            let token = keys.assign("alice", 7).expect(method);
            assert_eq!(keys.info(&token), Some(AuthInfo { user: "alice".into(), revision: 7 }), "{method}");
            // A member with the public key only accepts it, and cannot sign.
            let verifier = JwtKeys::new(method, Some(&pem(public)), None, TTL).expect(method);
            assert_eq!(verifier.info(&token).map(|i| i.user), Some("alice".into()), "{method}");
            assert_eq!(verifier.assign("alice", 7), Err(EtcdError::VerifyOnly));
        }
        let hs = JwtKeys::new("HS256", None, Some(b"a shared secret"), TTL).unwrap();
        let token = hs.assign("bob", 3).unwrap();
        assert_eq!(hs.info(&token).map(|i| i.revision), Some(3));
    }

    #[test]
    fn sec1_keys_are_rewrapped_and_bad_ones_refused() {
        use rustls_pki_types::{pem::PemObject, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
        let sec1 = PrivateSec1KeyDer::from_pem_slice(&pem("ec256-sec1.pem")).expect("SEC1 PEM");
        let sec1 = sec1.secret_sec1_der();
        let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(&pem("ec256.pem")).expect("PKCS#8 PEM");
        let pkcs8 = pkcs8.secret_pkcs8_der();
        // The same version and algorithm (key type and curve) as openssl's
        // PKCS#8 of the same key; the rest is the SEC1 key itself.
        let head = |der: &[u8]| {
            let (_, body, _) = crate::der::element(der).expect("sequence");
            let (_, _, rest) = crate::der::element(body).expect("version");
            let (_, algorithm, _) = crate::der::element(rest).expect("algorithm");
            algorithm.to_vec()
        };
        let ours = sec1_to_pkcs8(sec1).expect("rewrapped");
        assert_eq!(head(&ours), head(pkcs8));
        assert_eq!(sec1_to_pkcs8(b"garbage"), None);
        assert_eq!(sec1_to_pkcs8(&sec1[..sec1.len() / 2]), None);
        let wrong = b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert!(JwtKeys::new("ES256", Some(&pem("ec256.pub.pem")), Some(wrong), TTL).is_err());
        let other = JwtKeys::new("ES256", Some(&pem("ec256.pub.pem")), Some(&pem("ec256-other.pem")), TTL);
        assert!(other.is_err(), "a private key of another pair is refused");
    }

    #[test]
    fn forged_expired_and_foreign_tokens_are_refused() {
        let keys = JwtKeys::new("HS256", None, Some(b"secret one"), TTL).unwrap();
        let other = JwtKeys::new("HS256", None, Some(b"secret two"), TTL).unwrap();
        let hs512 = JwtKeys::new("HS512", None, Some(b"secret one"), TTL).unwrap();
        let token = keys.assign("alice", 1).unwrap();
        assert!(other.info(&token).is_none(), "signed with another key");
        assert!(hs512.info(&token).is_none(), "signed with another method");
        let mut tampered = token.clone();
        tampered.insert(tampered.find('.').unwrap() + 2, 'x');
        assert!(keys.info(&tampered).is_none());
        for junk in ["", "abc", "a.b.c", "simpletoken.12"] {
            assert!(keys.info(junk).is_none(), "{junk}");
        }
        let expired = Claims { username: "alice".into(), revision: 1, exp: 1 };
        let old =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &expired, &EncodingKey::from_secret(b"secret one"))
                .unwrap();
        assert!(keys.info(&old).is_none(), "expired");
    }

    #[test]
    fn bad_options_are_refused_with_etcds_errors() {
        let e = |m: &str, p: Option<&[u8]>, k: Option<&[u8]>| JwtKeys::new(m, p, k, TTL).unwrap_err();
        assert_eq!(e("", None, None), JwtConfigError::InvalidMethod);
        assert_eq!(e("RS1024", None, None), JwtConfigError::InvalidMethod);
        assert_eq!(e("ES512", None, None), JwtConfigError::UnsupportedMethod("ES512".into()));
        assert_eq!(e("HS256", None, None), JwtConfigError::MissingKey);
        assert_eq!(e("RS256", None, None), JwtConfigError::MissingKey);
        assert_eq!(e("RS256", None, Some(&pem("rsa.pem"))), JwtConfigError::MissingPublicKey("RS256".into()));
        assert!(matches!(e("RS256", Some(b"not a pem"), None), JwtConfigError::BadKey { which: "pub-key", .. }));
        let mismatched = e("ES256", Some(&pem("ec256.pub.pem")), Some(&pem("ec256-other.pem")));
        assert!(matches!(mismatched, JwtConfigError::BadKey { which: "priv-key", .. }), "{mismatched:?}");
        assert_eq!(JwtKeys::new("HS256", None, Some(b"s"), Duration::ZERO).unwrap().ttl(), DEFAULT_TTL);
    }
}
