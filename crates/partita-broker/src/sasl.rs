//! SASL on SASL_PLAINTEXT and SASL_SSL listeners, as Kafka does it: a client sends
//! ApiVersions if it likes, then SaslHandshake naming a mechanism, then SaslAuthenticate
//! requests until it is authenticated; nothing else is answered before that, and a failure
//! is answered with SASL_AUTHENTICATION_FAILED and the connection closed.
//!
//! Mechanisms: PLAIN, with the users of the listener's JAAS setting as Kafka reads it
//! (`listener.name.<listener>.plain.sasl.jaas.config=... required user_alice="secret";`),
//! and SCRAM-SHA-256 and SCRAM-SHA-512 with the credentials of crate::credentials (managed
//! through AlterUserScramCredentials, or `partita storage format --add-scram` before the
//! first start). Passwords and proofs are compared in constant time by aws-lc, and never
//! logged.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::credentials::Credentials;
use crate::dispatch::{encode, Reply};
use crate::oauth::OAuthValidator;
use crate::scram::{ScramMechanism, ScramServer, ScramStep};

/// Kafka's error codes met here.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// What a listener's SASL accepts.
#[derive(Clone, Default)]
pub struct SaslConfig {
    /// `sasl.enabled.mechanisms`, upper case.
    pub mechanisms: Vec<String>,
    /// PLAIN's users and their passwords (`user_<name>="<password>"`).
    plain_users: BTreeMap<String, String>,
    /// OAUTHBEARER's token checks.
    oauth: Option<std::sync::Arc<OAuthValidator>>,
}

/// The mechanisms and user names; never a password.
impl std::fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanisms", &self.mechanisms)
            .field("plain_users", &self.plain_users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SaslConfig {
    /// The SASL settings of a listener, from its enabled mechanisms, the JAAS setting of
    /// each (`None` when a mechanism has none it needs) and its other properties
    /// (`sasl.oauthbearer.*`).
    pub fn new(
        listener: &str,
        mechanisms: &str,
        jaas: impl Fn(&str) -> Option<String>,
        property: impl Fn(&str) -> Option<String>,
    ) -> Result<SaslConfig, String> {
        let mechanisms: Vec<String> = mechanisms
            .split(',')
            .map(|m| m.trim().to_ascii_uppercase())
            .filter(|m| !m.is_empty())
            .collect();
        let mut config = SaslConfig {
            mechanisms: mechanisms.clone(),
            ..SaslConfig::default()
        };
        let prefix = format!("listener.name.{}", listener.to_ascii_lowercase());
        for mechanism in &mechanisms {
            match mechanism.as_str() {
                "PLAIN" => {
                    let name = format!("{prefix}.plain.sasl.jaas.config");
                    let text = jaas("plain").ok_or_else(|| {
                        format!("listener {listener} enables SASL PLAIN but {name} is not set")
                    })?;
                    config.plain_users = jaas_options(&text)
                        .map_err(|e| format!("{name}: {e}"))?
                        .into_iter()
                        .filter_map(|(k, v)| Some((k.strip_prefix("user_")?.to_string(), v)))
                        .collect();
                    if config.plain_users.is_empty() {
                        return Err(format!(
                            "{name} names no user: add user_<name>=\"<password>\" options"
                        ));
                    }
                }
                "OAUTHBEARER" => {
                    let options = match jaas("oauthbearer") {
                        Some(text) => jaas_options(&text)
                            .map_err(|e| format!("{prefix}.oauthbearer.sasl.jaas.config: {e}"))?,
                        None => BTreeMap::new(),
                    };
                    let validator = OAuthValidator::new(&property, &options)
                        .map_err(|e| format!("listener {listener}: {e}"))?;
                    config.oauth = Some(std::sync::Arc::new(validator));
                }
                other if ScramMechanism::from_name(other).is_some() => {}
                other => {
                    return Err(format!(
                        "listener {listener}: SASL mechanism {other} is not served; \
                         sasl.enabled.mechanisms may name PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 \
                         and OAUTHBEARER"
                    ))
                }
            }
        }
        if mechanisms.is_empty() {
            return Err(format!(
                "listener {listener} uses SASL but sasl.enabled.mechanisms is empty"
            ));
        }
        Ok(config)
    }
}

/// The options of a JAAS setting: `<LoginModule> <flag> key="value" ...;`.
fn jaas_options(text: &str) -> Result<BTreeMap<String, String>, String> {
    let text = text.trim().trim_end_matches(';');
    let mut rest = text
        .split_once(char::is_whitespace)
        .map(|(_, rest)| rest.trim_start())
        .ok_or("expected '<LoginModule> required key=\"value\" ...;'")?;
    rest = rest
        .split_once(char::is_whitespace)
        .map_or("", |(_, rest)| rest.trim_start());
    let mut options = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or("expected key=\"value\" options after the login module and its flag")?;
        let after = after.trim_start();
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted
                    .find('"')
                    .ok_or_else(|| format!("unterminated quote after {}=", key.trim()))?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_at(after.find(char::is_whitespace).unwrap_or(after.len())),
        };
        options.insert(key.trim().to_string(), value.to_string());
        rest = after.trim_start();
    }
    Ok(options)
}

/// One connection's SASL exchange.
pub(crate) struct SaslSession {
    config: std::sync::Arc<SaslConfig>,
    mechanism: Option<String>,
    /// The SCRAM exchange under way, once a SCRAM mechanism is chosen.
    scram: Option<ScramServer>,
    /// After a SaslHandshake v0, the client sends its tokens as bare size-prefixed frames
    /// rather than SaslAuthenticate requests.
    raw_tokens: bool,
    principal: Option<String>,
    /// `connections.max.reauth.ms`: how long an authentication lasts (KIP-368); 0 for ever.
    lifetime_ms: u64,
    /// When the current authentication runs out, if it does.
    authenticated_until: Option<std::time::Instant>,
    /// While a client re-authenticates: the principal and mechanism it had, which must not
    /// change.
    previous: Option<(String, String)>,
}

/// What to do with a request while a connection is not yet authenticated.
pub(crate) enum SaslStep {
    /// Answer it as usual (ApiVersions).
    Dispatch,
    /// Send this answer; close the connection afterwards if `close` (a failed attempt).
    Reply { reply: Reply, close: bool },
    /// Close the connection at once, for this reason.
    Close(String),
}

impl SaslSession {
    /// A connection's exchange; with `lifetime_ms` (`connections.max.reauth.ms`) above 0,
    /// an authentication lasts that long and the client re-authenticates (KIP-368).
    pub(crate) fn new(config: std::sync::Arc<SaslConfig>, lifetime_ms: u64) -> SaslSession {
        SaslSession {
            config,
            mechanism: None,
            scram: None,
            raw_tokens: false,
            principal: None,
            lifetime_ms,
            authenticated_until: None,
            previous: None,
        }
    }

    /// Whether the client has authenticated and is not re-authenticating.
    pub(crate) fn authenticated(&self) -> bool {
        self.principal.is_some() && self.previous.is_none()
    }

    /// Whether the authentication has run out (`connections.max.reauth.ms` after it).
    pub(crate) fn expired(&self) -> bool {
        self.authenticated_until
            .is_some_and(|until| std::time::Instant::now() >= until)
    }

    /// Starts a re-authentication if `frame` is a SaslHandshake (v1 or later) of an
    /// authenticated client and re-authentication is on; whether it did.
    pub(crate) fn begins_reauthentication(&mut self, frame: &Bytes) -> bool {
        let api_key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        if !(self.authenticated()
            && self.lifetime_ms > 0
            && api_key == ApiKey::SaslHandshake as i16
            && version >= 1)
        {
            return false;
        }
        if let (Some(principal), Some(mechanism)) = (self.principal.take(), self.mechanism.take()) {
            self.previous = Some((principal, mechanism));
        }
        self.scram = None;
        true
    }

    /// Takes a new authentication: its lifetime starts; a re-authentication must keep the
    /// principal. The failure's reason otherwise.
    /// `expires_ms` is when the credential itself runs out (an OAUTHBEARER token's expiry):
    /// with re-authentication on, the session lasts no longer. The session's lifetime in ms
    /// (0 for ever).
    fn authenticated_as(
        &mut self,
        principal: &str,
        expires_ms: Option<i64>,
    ) -> Result<i64, String> {
        if let Some((before, _)) = self.previous.take() {
            if before != principal {
                return Err(format!(
                    "Cannot change principals during re-authentication from {before}: {principal}"
                ));
            }
        }
        self.principal = Some(principal.to_string());
        let mut lifetime = self.lifetime_ms as i64;
        if let (true, Some(expires)) = (lifetime > 0, expires_ms) {
            lifetime = lifetime.min((expires - crate::broker::now_ms()).max(0));
        }
        self.authenticated_until = (lifetime > 0)
            .then(|| std::time::Instant::now() + std::time::Duration::from_millis(lifetime as u64));
        Ok(lifetime)
    }

    /// Whether the next frame is a bare token (after a SaslHandshake v0).
    pub(crate) fn expects_raw_token(&self) -> bool {
        self.raw_tokens
    }

    /// The authenticated principal (`User:alice`), once there is one.
    pub(crate) fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// Takes a request frame of a connection that has not authenticated yet; SCRAM users'
    /// credentials are looked up in `credentials`.
    pub(crate) async fn step(
        &mut self,
        frame: &Bytes,
        credentials: &Credentials,
    ) -> Result<SaslStep, String> {
        if self.raw_tokens {
            // A bare token answered by a bare one; a failure closes the connection.
            return match self.authenticate(frame, credentials).await {
                Ok(progress) => {
                    let token = match progress {
                        Progress::Challenge(token) => token,
                        Progress::Authenticated {
                            principal,
                            last,
                            expires_ms,
                        } => {
                            if let Err(reason) = self.authenticated_as(&principal, expires_ms) {
                                return Ok(SaslStep::Close(reason));
                            }
                            last
                        }
                    };
                    let mut framed = bytes::BytesMut::with_capacity(4 + token.len());
                    framed.extend_from_slice(&(token.len() as u32).to_be_bytes());
                    framed.extend_from_slice(&token);
                    Ok(SaslStep::Reply {
                        reply: Reply {
                            frame: framed,
                            _memory: None,
                        },
                        close: false,
                    })
                }
                Err(reason) => Ok(SaslStep::Close(format!("authentication failed: {reason}"))),
            };
        }
        let api_key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let mut body = frame.clone();
        let decode_header = |body: &mut Bytes| {
            kafka_protocol::protocol::decode_request_header_from_buffer(body)
                .map_err(|e| format!("malformed request header: {e}"))
        };
        let reply = |response: &dyn EncodeAny, close| {
            response
                .encode_reply(api_key, version, correlation_id)
                .map(|reply| SaslStep::Reply { reply, close })
        };
        let key = ApiKey::try_from(api_key);
        let served = key
            .ok()
            .and_then(crate::dispatch::supported_versions)
            .is_some_and(|(min, max)| (min..=max).contains(&version));
        match key {
            Ok(ApiKey::ApiVersions) => Ok(SaslStep::Dispatch),
            Ok(ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) if !served => Ok(SaslStep::Close(
                format!("SASL api key {api_key} v{version} is not supported"),
            )),
            Ok(ApiKey::SaslHandshake) if self.mechanism.is_none() => {
                decode_header(&mut body)?;
                let request = SaslHandshakeRequest::decode(&mut body, version)
                    .map_err(|e| format!("malformed SaslHandshake v{version}: {e}"))?;
                let wanted = request.mechanism.as_str().to_ascii_uppercase();
                if let Some((_, before)) = self.previous.as_ref().filter(|(_, m)| *m != wanted) {
                    return Ok(SaslStep::Close(format!(
                        "re-authentication with {wanted} after {before}: the mechanism may not change"
                    )));
                }
                let enabled = self
                    .config
                    .mechanisms
                    .iter()
                    .map(|m| StrBytes::from_string(m.clone()))
                    .collect();
                let served = self.config.mechanisms.contains(&wanted);
                let response = SaslHandshakeResponse::default()
                    .with_mechanisms(enabled)
                    .with_error_code(match served {
                        true => 0,
                        false => UNSUPPORTED_SASL_MECHANISM,
                    });
                if served {
                    self.scram = ScramMechanism::from_name(&wanted).map(ScramServer::new);
                    self.mechanism = Some(wanted);
                    self.raw_tokens = version == 0;
                }
                reply(&response, !served)
            }
            Ok(ApiKey::SaslAuthenticate) if self.mechanism.is_some() => {
                decode_header(&mut body)?;
                let request = SaslAuthenticateRequest::decode(&mut body, version)
                    .map_err(|e| format!("malformed SaslAuthenticate v{version}: {e}"))?;
                let mut outcome = self.authenticate(&request.auth_bytes, credentials).await;
                let mut lifetime = 0;
                if let Ok(Progress::Authenticated {
                    principal,
                    expires_ms,
                    ..
                }) = &outcome
                {
                    match self.authenticated_as(&principal.clone(), *expires_ms) {
                        Ok(ms) => lifetime = ms,
                        Err(reason) => outcome = Err(reason),
                    }
                }
                let response = match &outcome {
                    Ok(Progress::Challenge(token)) => SaslAuthenticateResponse::default()
                        .with_auth_bytes(Bytes::copy_from_slice(token)),
                    // From v1 on, how long the authentication lasts (0: for ever).
                    Ok(Progress::Authenticated { last, .. }) if version >= 1 => {
                        SaslAuthenticateResponse::default()
                            .with_auth_bytes(Bytes::copy_from_slice(last))
                            .with_session_lifetime_ms(lifetime)
                    }
                    Ok(Progress::Authenticated { last, .. }) => SaslAuthenticateResponse::default()
                        .with_auth_bytes(Bytes::copy_from_slice(last)),
                    Err(reason) => SaslAuthenticateResponse::default()
                        .with_error_code(SASL_AUTHENTICATION_FAILED)
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "Authentication failed: {reason}"
                        )))),
                };
                reply(&response, outcome.is_err())
            }
            Ok(ApiKey::SaslHandshake) => {
                let response = SaslHandshakeResponse::default().with_error_code(ILLEGAL_SASL_STATE);
                decode_header(&mut body)?;
                reply(&response, true)
            }
            _ => Ok(SaslStep::Close(format!(
                "api key {api_key} before SASL authentication"
            ))),
        }
    }

    /// Checks a client's token with the mechanism it chose: the next challenge, or the
    /// principal once it has passed.
    async fn authenticate(
        &mut self,
        token: &[u8],
        credentials: &Credentials,
    ) -> Result<Progress, String> {
        if let Some(server) = self.scram.as_mut() {
            let mechanism = self
                .mechanism
                .as_deref()
                .and_then(ScramMechanism::from_name)
                .ok_or("no mechanism chosen")?;
            // The first message names the user whose credential the exchange needs.
            let credential = match ScramServer::user_of_first(token) {
                Some(user) if !server.started() => {
                    credentials.get(&user, mechanism).await.map_err(|error| {
                        tracing::warn!(%error, "could not read SCRAM credentials");
                        "the credentials could not be read".to_string()
                    })?
                }
                _ => None,
            };
            return match server.step(token, credential)? {
                ScramStep::Challenge(token) => Ok(Progress::Challenge(token)),
                ScramStep::Authenticated { user, last } => Ok(Progress::Authenticated {
                    principal: format!("User:{user}"),
                    last,
                    expires_ms: None,
                }),
            };
        }
        match self.mechanism.as_deref() {
            Some("PLAIN") => self.plain(token).map(|principal| Progress::Authenticated {
                principal,
                last: Vec::new(),
                expires_ms: None,
            }),
            Some("OAUTHBEARER") => {
                let validator = self
                    .config
                    .oauth
                    .as_ref()
                    .ok_or("OAUTHBEARER is not set up")?;
                let validated = validator
                    .validate(crate::oauth::bearer_token(token)?)
                    .await?;
                Ok(Progress::Authenticated {
                    principal: validated.principal,
                    last: Vec::new(),
                    expires_ms: validated.expires_ms,
                })
            }
            _ => Err("no mechanism chosen".to_string()),
        }
    }

    /// PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`.
    fn plain(&self, token: &[u8]) -> Result<String, String> {
        let mut parts = token.split(|b| *b == 0);
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("malformed PLAIN message".to_string());
        };
        let user = std::str::from_utf8(user).map_err(|_| "malformed PLAIN message")?;
        if !authzid.is_empty() && authzid != user.as_bytes() {
            return Err("the authorization id requested differs from the user name".to_string());
        }
        let known = self.config.plain_users.get(user);
        // Compared even for an unknown user, so that both take the same time.
        let expected = known.map_or(&[0u8; 0][..], |p| p.as_bytes());
        let matches = aws_lc_rs::constant_time::verify_slices_are_equal(expected, password).is_ok();
        match known.is_some() && matches {
            true => Ok(format!("User:{user}")),
            false => Err("Invalid username or password".to_string()),
        }
    }
}

/// Where an exchange stands after a client's token.
enum Progress {
    /// Send this token and wait for the next.
    Challenge(Vec<u8>),
    /// Authenticated: send this last token (empty for PLAIN and OAUTHBEARER); the
    /// credential runs out at `expires_ms` if it does.
    Authenticated {
        principal: String,
        last: Vec<u8>,
        expires_ms: Option<i64>,
    },
}

/// A response of either SASL API, encoded as a reply.
trait EncodeAny {
    fn encode_reply(
        &self,
        api_key: i16,
        version: i16,
        correlation_id: i32,
    ) -> Result<Reply, String>;
}

macro_rules! encode_any {
    ($($response:ty),*) => {$(
        impl EncodeAny for $response {
            fn encode_reply(
                &self,
                api_key: i16,
                version: i16,
                correlation_id: i32,
            ) -> Result<Reply, String> {
                match encode(api_key, version, correlation_id, self) {
                    Ok(Some(reply)) => Ok(reply),
                    _ => Err("could not encode the SASL response".to_string()),
                }
            }
        }
    )*};
}

encode_any!(SaslHandshakeResponse, SaslAuthenticateResponse);

#[cfg(test)]
mod tests {
    use super::*;

    const JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required
        username="admin" password="admin-secret"
        user_admin="admin-secret" user_alice="alice secret";"#;

    fn plain() -> SaslSession {
        let config =
            SaslConfig::new("SASL_SSL", "PLAIN", |_| Some(JAAS.to_string()), |_| None).unwrap();
        SaslSession::new(std::sync::Arc::new(config), 0)
    }

    #[test]
    fn jaas_users_are_read_as_kafka_writes_them() {
        let options = jaas_options(JAAS).unwrap();
        assert_eq!(options["user_alice"], "alice secret");
        assert_eq!(options["username"], "admin");
    }

    #[test]
    fn debug_output_names_users_but_no_password() {
        let config =
            SaslConfig::new("SASL_SSL", "PLAIN", |_| Some(JAAS.to_string()), |_| None).unwrap();
        let shown = format!("{config:?}");
        assert!(
            shown.contains("alice") && !shown.contains("alice secret"),
            "{shown}"
        );
    }

    #[test]
    fn plain_accepts_only_the_right_password() {
        let session = plain();
        assert_eq!(
            session.plain(b"\0alice\0alice secret").unwrap(),
            "User:alice"
        );
        assert!(session.plain(b"\0alice\0alice").is_err());
        assert!(session.plain(b"\0bob\0").is_err());
        assert!(session.plain(b"admin\0alice\0alice secret").is_err());
        assert!(session.plain(b"alice\0alice secret").is_err());
    }

    #[test]
    fn a_mechanism_that_is_not_served_or_has_no_users_stops_the_start() {
        let error = SaslConfig::new("SASL_SSL", "GSSAPI", |_| None, |_| None).unwrap_err();
        assert!(error.contains("GSSAPI"), "{error}");
        let error = SaslConfig::new("SASL_SSL", "PLAIN", |_| None, |_| None).unwrap_err();
        assert!(
            error.contains("listener.name.sasl_ssl.plain.sasl.jaas.config"),
            "{error}"
        );
    }
}
