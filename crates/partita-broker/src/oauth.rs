//! SASL OAUTHBEARER (RFC 7628, KIP-255) with JWTs checked as Kafka's
//! `OAuthBearerValidatorCallbackHandler` checks them (KIP-768): the signature against the keys
//! of a JWKS (`sasl.oauthbearer.jwks.endpoint.url`, a `file://` URL, read again when the file
//! changes), the expiry (with `sasl.oauthbearer.clock.skew.seconds`), and if configured the
//! issuer (`sasl.oauthbearer.expected.issuer`) and audience
//! (`sasl.oauthbearer.expected.audience`). The principal is `User:` and the subject claim
//! (`sasl.oauthbearer.sub.claim.name`, `sub` by default). Tokens signed with a shared secret
//! (HS*) or not at all are refused: a broker never holds the secret an issuer signs with.
//! The JWT itself is decoded and verified by the jsonwebtoken crate on aws-lc.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// The settings and the keys a listener checks tokens with.
pub struct OAuthValidator {
    jwks_path: PathBuf,
    audience: Vec<String>,
    issuer: Option<String>,
    subject_claim: String,
    skew_seconds: u64,
    /// The keys, and the file's modification time when read.
    keys: Mutex<(JwkSet, Option<SystemTime>)>,
}

impl std::fmt::Debug for OAuthValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthValidator")
            .field("jwks", &self.jwks_path)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// A token that passed: its principal, and when it expires (ms since the epoch).
#[derive(Debug)]
pub struct Validated {
    pub principal: String,
    pub expires_ms: Option<i64>,
}

impl OAuthValidator {
    /// The validator of a listener's settings (`property` reads `sasl.oauthbearer.*`, the
    /// listener's own first); the JWKS is read now, so that a broken one stops the start.
    pub fn new(property: impl Fn(&str) -> Option<String>) -> Result<OAuthValidator, String> {
        let url = property("sasl.oauthbearer.jwks.endpoint.url").ok_or(
            "OAUTHBEARER needs sasl.oauthbearer.jwks.endpoint.url (a file:// URL of the JWKS): \
             unsigned tokens are not accepted",
        )?;
        let jwks_path = match url.strip_prefix("file://") {
            Some(path) => PathBuf::from(path),
            None => {
                return Err(format!(
                    "sasl.oauthbearer.jwks.endpoint.url {url}: only file:// URLs are served; \
                     keep the issuer's JWKS in a file"
                ))
            }
        };
        let skew_seconds = match property("sasl.oauthbearer.clock.skew.seconds") {
            Some(text) => text.trim().parse().map_err(|_| {
                format!("sasl.oauthbearer.clock.skew.seconds {text:?} is not a number")
            })?,
            None => 30,
        };
        let audience = property("sasl.oauthbearer.expected.audience")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let keys = read_jwks(&jwks_path)?;
        Ok(OAuthValidator {
            jwks_path,
            audience,
            issuer: property("sasl.oauthbearer.expected.issuer").filter(|i| !i.is_empty()),
            subject_claim: property("sasl.oauthbearer.sub.claim.name")
                .unwrap_or_else(|| "sub".to_string()),
            skew_seconds,
            keys: Mutex::new(keys),
        })
    }

    /// The keys, read again if the file changed (a broken new file leaves the old keys).
    fn keys(&self) -> JwkSet {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let modified = std::fs::metadata(&self.jwks_path)
            .and_then(|m| m.modified())
            .ok();
        if modified.is_some() && modified != keys.1 {
            match read_jwks(&self.jwks_path) {
                Ok(fresh) => *keys = fresh,
                Err(error) => {
                    tracing::warn!(%error, "the JWKS changed but cannot be used; the keys in use stay")
                }
            }
        }
        keys.0.clone()
    }

    /// Checks a token; the reason it fails, for the client and the log (never the token).
    pub fn validate(&self, token: &str) -> Result<Validated, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(format!(
                "tokens signed with {:?} are not accepted",
                header.alg
            ));
        }
        let keys = self.keys();
        let jwk = match &header.kid {
            Some(kid) => keys.find(kid),
            None if keys.keys.len() == 1 => keys.keys.first(),
            None => None,
        }
        .ok_or("no key of the JWKS signed this token")?;
        let key =
            DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key in the JWKS: {e}"))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.skew_seconds;
        validation.set_required_spec_claims(&["exp"]);
        match self.audience.is_empty() {
            true => validation.validate_aud = false,
            false => validation.set_audience(&self.audience),
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| format!("invalid token: {e}"))?
            .claims;
        let subject = claims
            .get(&self.subject_claim)
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("the token has no {} claim", self.subject_claim))?;
        Ok(Validated {
            principal: format!("User:{subject}"),
            expires_ms: claims
                .get("exp")
                .and_then(|e| e.as_f64())
                .map(|seconds| (seconds * 1000.0) as i64),
        })
    }
}

fn read_jwks(path: &std::path::Path) -> Result<(JwkSet, Option<SystemTime>), String> {
    let shown = path.display();
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read(path).map_err(|e| format!("the JWKS {shown}: {e}"))?;
    let keys: JwkSet = serde_json::from_slice(&text)
        .map_err(|e| format!("the JWKS {shown} is not a JWK set: {e}"))?;
    if keys.keys.is_empty() {
        return Err(format!("the JWKS {shown} has no key"));
    }
    Ok((keys, modified))
}

/// The token of a client's OAUTHBEARER message (RFC 7628):
/// `n,[a=<authzid>],\x01auth=Bearer <token>\x01[key=value\x01]*\x01`.
pub fn bearer_token(message: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(message).map_err(|_| "malformed OAUTHBEARER message")?;
    let rest = text
        .strip_prefix("n,")
        .and_then(|rest| rest.split_once(','))
        .map(|(_, rest)| rest)
        .ok_or("malformed OAUTHBEARER message: no GS2 header")?;
    let pairs = rest
        .strip_prefix('\u{1}')
        .and_then(|rest| rest.strip_suffix("\u{1}\u{1}"))
        .ok_or("malformed OAUTHBEARER message")?;
    pairs
        .split('\u{1}')
        .find_map(|pair| pair.strip_prefix("auth="))
        .and_then(|auth| {
            let (scheme, token) = auth.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or_else(|| "the OAUTHBEARER message has no bearer token".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_is_found_in_the_client_message() {
        assert_eq!(
            bearer_token(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(
            bearer_token(b"n,a=alice,\x01host=x\x01auth=bearer t.o.k\x01port=1\x01\x01").unwrap(),
            "t.o.k"
        );
        for bad in [
            &b""[..],
            b"n,,auth=Bearer x\x01\x01",
            b"n,,\x01auth=Basic x\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01auth=Bearer x\x01",
            b"\xff",
        ] {
            assert!(bearer_token(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_jwks_that_cannot_be_read_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        let settings = |url: String| {
            move |name: &str| (name == "sasl.oauthbearer.jwks.endpoint.url").then(|| url.clone())
        };
        let error = OAuthValidator::new(|_| None).unwrap_err();
        assert!(
            error.contains("sasl.oauthbearer.jwks.endpoint.url"),
            "{error}"
        );
        let error =
            OAuthValidator::new(settings(format!("file://{}", path.display()))).unwrap_err();
        assert!(error.contains("jwks.json"), "{error}");
        std::fs::write(&path, r#"{"keys": []}"#).unwrap();
        let error =
            OAuthValidator::new(settings(format!("file://{}", path.display()))).unwrap_err();
        assert!(error.contains("no key"), "{error}");
        let error = OAuthValidator::new(settings("https://idp.example/jwks".into())).unwrap_err();
        assert!(error.contains("file://"), "{error}");
    }
}
