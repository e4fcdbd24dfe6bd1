//! SASL OAUTHBEARER (RFC 7628, KIP-255) with JWTs checked as Kafka's
//! `OAuthBearerValidatorCallbackHandler` checks them (KIP-768): the signature against the keys
//! of a JWKS (`sasl.oauthbearer.jwks.endpoint.url`), the expiry (with
//! `sasl.oauthbearer.clock.skew.seconds`), and if configured the issuer
//! (`sasl.oauthbearer.expected.issuer`) and audience (`sasl.oauthbearer.expected.audience`).
//! The principal is `User:` and the subject claim (`sasl.oauthbearer.sub.claim.name`, `sub` by
//! default). Tokens signed with a shared secret (HS*) or not at all are refused: a broker
//! never holds the secret an issuer signs with. The JWT itself is decoded and verified by the
//! jsonwebtoken crate on aws-lc.
//!
//! The JWKS is a `file://` URL, read again when the file changes, or an `https://` one, the
//! identity provider's endpoint: fetched at start (a broker that cannot fetch it does not
//! start), again every `sasl.oauthbearer.jwks.endpoint.refresh.ms`, and at once when a token
//! names a key it does not have (the provider rotated its keys), no more often than
//! `sasl.oauthbearer.jwks.endpoint.retry.backoff.ms` after a failure, doubling up to
//! `...retry.backoff.max.ms`. The endpoint's certificate is checked against the PEM file of
//! the `ssl.truststore.location` option of the listener's OAUTHBEARER JAAS setting, as Kafka
//! reads it, or else the system's authorities.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// The settings and the keys a listener checks tokens with.
pub struct OAuthValidator {
    jwks: Jwks,
    audience: Vec<String>,
    issuer: Option<String>,
    subject_claim: String,
    skew_seconds: u64,
}

impl std::fmt::Debug for OAuthValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.jwks {
            Jwks::File { path, .. } => path.display().to_string(),
            Jwks::Endpoint(endpoint) => endpoint.url.clone(),
        };
        f.debug_struct("OAuthValidator")
            .field("jwks", &source)
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

/// Where the keys come from.
enum Jwks {
    /// A file, with its keys and its modification time when read.
    File {
        path: PathBuf,
        keys: Mutex<(JwkSet, Option<SystemTime>)>,
    },
    /// An identity provider's endpoint.
    Endpoint(Arc<Endpoint>),
}

/// The shortest time between two fetches for tokens naming a key the set does not have.
const UNKNOWN_KEY_FETCH_INTERVAL: Duration = Duration::from_secs(1);

/// A JWKS endpoint and the keys last fetched from it.
struct Endpoint {
    url: String,
    client: reqwest::Client,
    refresh: Duration,
    backoff: Duration,
    backoff_max: Duration,
    state: Mutex<EndpointState>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

struct EndpointState {
    keys: JwkSet,
    /// When the keys were last fetched, and last asked for.
    fetched: Instant,
    asked: Instant,
    /// When the last fetch failed, and how many in a row have.
    failed: Option<(Instant, u32)>,
}

impl OAuthValidator {
    /// The validator of a listener's settings (`property` reads `sasl.oauthbearer.*`, the
    /// listener's own first; `jaas` holds the options of its OAUTHBEARER JAAS setting); the
    /// JWKS is read now, so that a broken or unreachable one stops the start.
    pub fn new(
        property: impl Fn(&str) -> Option<String>,
        jaas: &BTreeMap<String, String>,
    ) -> Result<OAuthValidator, String> {
        let url = property("sasl.oauthbearer.jwks.endpoint.url").ok_or(
            "OAUTHBEARER needs sasl.oauthbearer.jwks.endpoint.url (the identity provider's \
             JWKS, https:// or file://): unsigned tokens are not accepted",
        )?;
        let number = |name: &str, default: u64| match property(name) {
            Some(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("{name} {text:?} is not a number")),
            None => Ok(default),
        };
        let jwks = match url.strip_prefix("file://") {
            Some(path) => {
                let path = PathBuf::from(path);
                let keys = read_jwks(&path)?;
                Jwks::File {
                    path,
                    keys: Mutex::new(keys),
                }
            }
            None if url.starts_with("https://") || url.starts_with("http://") => {
                let endpoint = Endpoint {
                    client: http_client(jaas)?,
                    refresh: Duration::from_millis(number(
                        "sasl.oauthbearer.jwks.endpoint.refresh.ms",
                        3_600_000,
                    )?),
                    backoff: Duration::from_millis(number(
                        "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms",
                        100,
                    )?),
                    backoff_max: Duration::from_millis(number(
                        "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
                        10_000,
                    )?),
                    state: Mutex::new(EndpointState {
                        keys: first_fetch(&url, jaas)?,
                        fetched: Instant::now(),
                        asked: Instant::now(),
                        failed: None,
                    }),
                    fetching: tokio::sync::Mutex::new(()),
                    url,
                };
                Jwks::Endpoint(Arc::new(endpoint))
            }
            None => {
                return Err(format!(
                    "sasl.oauthbearer.jwks.endpoint.url {url}: expected an https:// or file:// URL"
                ))
            }
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
        Ok(OAuthValidator {
            jwks,
            audience,
            issuer: property("sasl.oauthbearer.expected.issuer").filter(|i| !i.is_empty()),
            subject_claim: property("sasl.oauthbearer.sub.claim.name")
                .unwrap_or_else(|| "sub".to_string()),
            skew_seconds: number("sasl.oauthbearer.clock.skew.seconds", 30)?,
        })
    }

    /// The keys: a file read again if it changed (a broken new file leaves the old keys); an
    /// endpoint's last keys, fetched again in the background once they are due.
    fn keys(&self) -> JwkSet {
        match &self.jwks {
            Jwks::File { path, keys } => {
                let mut keys = keys.lock().unwrap_or_else(|p| p.into_inner());
                let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                if modified.is_some() && modified != keys.1 {
                    match read_jwks(path) {
                        Ok(fresh) => *keys = fresh,
                        Err(error) => {
                            tracing::warn!(%error, "the JWKS changed but cannot be used; the keys in use stay")
                        }
                    }
                }
                keys.0.clone()
            }
            Jwks::Endpoint(endpoint) => {
                if endpoint.due() {
                    let endpoint = Arc::clone(endpoint);
                    tokio::spawn(async move { endpoint.fetch().await });
                }
                endpoint.keys()
            }
        }
    }

    /// Checks a token; the reason it fails, for the client and the log (never the token).
    pub async fn validate(&self, token: &str) -> Result<Validated, String> {
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
        let mut keys = self.keys();
        if let (Some(kid), Jwks::Endpoint(endpoint)) = (&header.kid, &self.jwks) {
            if keys.find(kid).is_none() && endpoint.may_fetch_for_unknown_key() {
                // Perhaps a key the provider has added since: fetch the keys now.
                endpoint.fetch().await;
                keys = endpoint.keys();
            }
        }
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

impl Endpoint {
    fn keys(&self) -> JwkSet {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys
            .clone()
    }

    /// Whether a token naming a key not in the set may have the keys fetched: at most once a
    /// second, so that tokens naming made-up keys cannot have the broker flood the provider.
    fn may_fetch_for_unknown_key(&self) -> bool {
        let asked = self.state.lock().unwrap_or_else(|p| p.into_inner()).asked;
        asked.elapsed() >= UNKNOWN_KEY_FETCH_INTERVAL && self.may_fetch()
    }

    /// Whether a fetch may start now: not within the back-off of a failed one.
    fn may_fetch(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.failed {
            None => true,
            Some((at, failures)) => {
                let wait = self
                    .backoff
                    .saturating_mul(1 << failures.saturating_sub(1).min(16))
                    .min(self.backoff_max);
                at.elapsed() >= wait
            }
        }
    }

    /// Whether the keys are due to be fetched again.
    fn due(&self) -> bool {
        let fetched = self.state.lock().unwrap_or_else(|p| p.into_inner()).fetched;
        fetched.elapsed() >= self.refresh && self.may_fetch()
    }

    /// Fetches the keys; a failure keeps the keys in use, with a warning.
    async fn fetch(&self) {
        let Ok(_fetching) = self.fetching.try_lock() else {
            // Another fetch is under way: wait for it rather than start a second.
            let _ = self.fetching.lock().await;
            return;
        };
        self.state.lock().unwrap_or_else(|p| p.into_inner()).asked = Instant::now();
        let fetched = fetch_jwks(&self.client, &self.url).await;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match fetched {
            Ok(keys) => {
                state.keys = keys;
                state.fetched = Instant::now();
                state.failed = None;
            }
            Err(error) => {
                let failures = state.failed.map_or(1, |(_, n)| n + 1);
                state.failed = Some((Instant::now(), failures));
                tracing::warn!(%error, failures, "could not fetch the JWKS; the keys in use stay");
            }
        }
    }
}

/// The HTTP client of a JWKS endpoint: the authorities of the JAAS option
/// `ssl.truststore.location` (PEM), or the system's.
fn http_client(jaas: &BTreeMap<String, String>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0);
    if let Some(kind) = jaas
        .get("ssl.truststore.type")
        .filter(|t| !t.eq_ignore_ascii_case("PEM"))
    {
        return Err(format!(
            "the OAUTHBEARER JAAS option ssl.truststore.type={kind} is not supported; give the \
             JWKS endpoint's authorities as PEM"
        ));
    }
    if let Some(path) = jaas.get("ssl.truststore.location") {
        let pem = std::fs::read(path).map_err(|e| {
            format!("the OAUTHBEARER JAAS option ssl.truststore.location {path}: {e}")
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ssl.truststore.location {path}: {e}"))?;
        if certificates.is_empty() {
            return Err(format!(
                "ssl.truststore.location {path}: no certificate in it"
            ));
        }
        builder = builder.tls_certs_only(certificates);
    }
    builder
        .build()
        .map_err(|e| format!("the JWKS endpoint's HTTP client: {e}"))
}

/// The first fetch, before the broker serves: on a thread of its own, so that it can wait
/// whether or not the caller runs inside an async runtime.
fn first_fetch(url: &str, jaas: &BTreeMap<String, String>) -> Result<JwkSet, String> {
    let (url, client) = (url.to_string(), http_client(jaas)?);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(fetch_jwks(&client, &url))
    })
    .join()
    .map_err(|_| "the JWKS fetch failed".to_string())?
}

async fn fetch_jwks(client: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    let failed = |e: &dyn std::fmt::Display| format!("the JWKS {url}: {e}");
    let response = client.get(url).send().await.map_err(|e| {
        // The error's source chain says why (refused, a certificate not trusted, ...).
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            reason = format!("{reason}: {cause}");
            source = cause.source();
        }
        failed(&reason)
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(failed(&format!("answered {status}")));
    }
    let body = response.bytes().await.map_err(|e| failed(&e))?;
    let keys: JwkSet =
        serde_json::from_slice(&body).map_err(|e| failed(&format!("not a JWK set: {e}")))?;
    if keys.keys.is_empty() {
        return Err(failed(&"no key in it"));
    }
    Ok(keys)
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
        let jaas = BTreeMap::new();
        let error = OAuthValidator::new(|_| None, &jaas).unwrap_err();
        assert!(
            error.contains("sasl.oauthbearer.jwks.endpoint.url"),
            "{error}"
        );
        let error =
            OAuthValidator::new(settings(format!("file://{}", path.display())), &jaas).unwrap_err();
        assert!(error.contains("jwks.json"), "{error}");
        std::fs::write(&path, r#"{"keys": []}"#).unwrap();
        let error =
            OAuthValidator::new(settings(format!("file://{}", path.display())), &jaas).unwrap_err();
        assert!(error.contains("no key"), "{error}");
        let error =
            OAuthValidator::new(settings("ftp://idp.example/jwks".into()), &jaas).unwrap_err();
        assert!(error.contains("https://"), "{error}");
        // Nothing listens on port 9 here: the broker does not start without its keys.
        let error =
            OAuthValidator::new(settings("https://127.0.0.1:9/jwks".into()), &jaas).unwrap_err();
        assert!(error.contains("127.0.0.1:9"), "{error}");
    }
}
