//! Listeners as Kafka configures them: `listeners`, `advertised.listeners` and
//! `listener.security.protocol.map`, and the TLS settings of each listener (`ssl.*`, or
//! `listener.name.<name>.ssl.*` for one listener only), read from PEM files or values
//! (KIP-651). TLS is rustls's; nothing of it is written here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::UnixTime;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use crate::principal::PrincipalMapper;
use crate::sasl::SaslConfig;

/// How a listener's connections are secured (`listener.security.protocol.map`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// Neither TLS nor SASL.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    fn parse(name: &str) -> Option<SecurityProtocol> {
        match name.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    /// Whether clients authenticate with SASL.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Whether connections start with a TLS handshake.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// One listener, resolved.
#[derive(Clone)]
pub struct Listener {
    /// Its name, upper case (`PLAINTEXT`, `SSL`, `CLIENT`, ...).
    pub name: String,
    /// How its connections are secured.
    pub protocol: SecurityProtocol,
    /// The address it binds.
    pub bind: SocketAddr,
    /// Host given to clients that connect through it.
    pub advertised_host: String,
    /// Port given to clients that connect through it.
    pub advertised_port: u16,
    /// Its TLS settings, for SSL and SASL_SSL.
    pub tls: Option<TlsSettings>,
    /// Its SASL settings, for SASL_PLAINTEXT and SASL_SSL.
    pub sasl: Option<Arc<SaslConfig>>,
    /// How a client certificate's subject becomes a principal, for SSL and SASL_SSL
    /// (`ssl.principal.mapping.rules`).
    pub principal_mapper: Option<Arc<PrincipalMapper>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .field("bind", &self.bind)
            .field("advertised", &(&self.advertised_host, self.advertised_port))
            .finish()
    }
}

/// The listener properties as given: `listeners`, `advertised.listeners`,
/// `listener.security.protocol.map`, `ssl.*` and `listener.name.*`.
#[derive(Clone, Default)]
pub struct ListenerProperties {
    values: BTreeMap<String, String>,
}

/// Shows every property, secrets (keys, passwords, JAAS settings) by name only.
impl std::fmt::Debug for ListenerProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.values.iter().map(|(name, value)| {
                let shown = match ListenerProperties::is_secret(name) {
                    true => "(hidden)",
                    false => value.as_str(),
                };
                (name, shown)
            }))
            .finish()
    }
}

/// The `ssl.*` properties a listener takes.
const SSL_PROPERTIES: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.keystore.password",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.truststore.password",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.protocol",
    "ssl.endpoint.identification.algorithm",
    "ssl.principal.mapping.rules",
];

/// Secrets: never shown.
const SECRET_PROPERTIES: &[&str] = &[
    "ssl.keystore.key",
    "ssl.keystore.password",
    "ssl.key.password",
    "ssl.truststore.password",
];

impl ListenerProperties {
    /// Keeps `name` if it is a listener property; false if it is not one.
    pub fn set(&mut self, name: &str, value: &str) -> bool {
        let listener_property = |property: &str| {
            SSL_PROPERTIES.contains(&property)
                || property == "sasl.enabled.mechanisms"
                || property.ends_with(".sasl.jaas.config")
                || property.starts_with("sasl.oauthbearer.")
        };
        let known = matches!(
            name,
            "listeners"
                | "advertised.listeners"
                | "listener.security.protocol.map"
                | "sasl.enabled.mechanisms"
        ) || SSL_PROPERTIES.contains(&name)
            || name.starts_with("sasl.oauthbearer.")
            || name
                .strip_prefix("listener.name.")
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(_, property)| listener_property(property));
        if known {
            self.values.insert(name.to_string(), value.to_string());
        }
        known
    }

    /// Whether `name` holds a secret.
    pub fn is_secret(name: &str) -> bool {
        let property = name
            .strip_prefix("listener.name.")
            .and_then(|rest| rest.split_once('.'))
            .map_or(name, |(_, property)| property);
        SECRET_PROPERTIES.contains(&property) || property.ends_with("sasl.jaas.config")
    }

    /// `listeners` or `advertised.listeners` as given, if it was, each entry written
    /// `NAME://HOST:PORT`.
    pub fn given(&self, name: &str) -> Option<String> {
        let entries = entries(self.get(name)?).ok()?;
        let shown: Vec<String> = entries
            .iter()
            .map(|(name, host, port)| format!("{name}://{host}:{port}"))
            .collect();
        Some(shown.join(","))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// A listener's setting: `listener.name.<listener>.<property>`, else `<property>`.
    fn for_listener(&self, listener: &str, property: &str) -> Option<&str> {
        let prefixed = format!("listener.name.{}.{property}", listener.to_ascii_lowercase());
        self.get(&prefixed).or_else(|| self.get(property))
    }

    /// Every listener, the first being the one `listen` and `advertised_*` describe. Each
    /// entry of `listeners` is `NAME://HOST:PORT` (a bare `HOST:PORT` is `PLAINTEXT`).
    pub fn resolve(
        &self,
        listen: SocketAddr,
        advertised_host: &str,
        advertised_port: u16,
    ) -> Result<Vec<Listener>, String> {
        let map = self.protocol_map()?;
        let advertised = match self.get("advertised.listeners") {
            Some(value) => entries(value)?,
            None => Vec::new(),
        };
        let given = match self.get("listeners") {
            Some(value) => entries(value)?,
            None => vec![(
                "PLAINTEXT".to_string(),
                listen.ip().to_string(),
                listen.port(),
            )],
        };
        let mut listeners: Vec<Listener> = Vec::new();
        for (index, (name, host, port)) in given.into_iter().enumerate() {
            if listeners.iter().any(|l| l.name == name) {
                return Err(format!("listeners names {name} twice"));
            }
            let protocol = map.get(&name).copied().ok_or_else(|| {
                format!(
                    "listener {name} has no security protocol: name it in \
                     listener.security.protocol.map (e.g. {name}:SSL)"
                )
            })?;
            let bind = match index {
                0 => listen,
                _ => parse_bind(&host, port)?,
            };
            let (advertised_host, advertised_port) =
                match advertised.iter().find(|(n, _, _)| *n == name) {
                    Some((_, host, port)) => (host.clone(), *port),
                    None if index == 0 => (advertised_host.to_string(), advertised_port),
                    None if bind.ip().is_unspecified() => (advertised_host.to_string(), port),
                    None => (bind.ip().to_string(), port),
                };
            let (tls, principal_mapper) = match protocol.tls() {
                true => {
                    let tls = self.tls_config(&name)?;
                    let rules = self
                        .for_listener(&name, "ssl.principal.mapping.rules")
                        .unwrap_or("DEFAULT");
                    let mapper = PrincipalMapper::parse(rules).map_err(|e| {
                        format!("listener {name}: ssl.principal.mapping.rules: {e}")
                    })?;
                    (Some(tls), Some(Arc::new(mapper)))
                }
                false => (None, None),
            };
            let sasl = match protocol.sasl() {
                true => Some(Arc::new(self.sasl_config(&name)?)),
                false => None,
            };
            listeners.push(Listener {
                name,
                protocol,
                bind,
                advertised_host,
                advertised_port,
                tls,
                sasl,
                principal_mapper,
            });
        }
        if let Some((name, _, _)) = advertised
            .iter()
            .find(|(n, _, _)| !listeners.iter().any(|l| l.name == *n))
        {
            return Err(format!(
                "advertised.listeners names {name}, which is not in listeners"
            ));
        }
        Ok(listeners)
    }

    fn protocol_map(&self) -> Result<BTreeMap<String, SecurityProtocol>, String> {
        let mut map: BTreeMap<String, SecurityProtocol> =
            ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
                .into_iter()
                .filter_map(|n| Some((n.to_string(), SecurityProtocol::parse(n)?)))
                .collect();
        if let Some(value) = self.get("listener.security.protocol.map") {
            map.clear();
            for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (name, protocol) = pair.split_once(':').ok_or_else(|| {
                    format!("listener.security.protocol.map: {pair:?} is not NAME:PROTOCOL")
                })?;
                let protocol = SecurityProtocol::parse(protocol.trim()).ok_or_else(|| {
                    format!(
                        "listener.security.protocol.map: {protocol:?} is not PLAINTEXT, SSL, \
                         SASL_PLAINTEXT or SASL_SSL"
                    )
                })?;
                map.insert(name.trim().to_ascii_uppercase(), protocol);
            }
        }
        Ok(map)
    }

    /// The SASL settings of listener `name`: `sasl.enabled.mechanisms` (Kafka's default,
    /// GSSAPI, is not served) and the JAAS setting of each mechanism.
    fn sasl_config(&self, name: &str) -> Result<SaslConfig, String> {
        let mechanisms = self
            .for_listener(name, "sasl.enabled.mechanisms")
            .unwrap_or("GSSAPI");
        let prefix = format!("listener.name.{}", name.to_ascii_lowercase());
        SaslConfig::new(
            name,
            mechanisms,
            |mechanism| {
                self.get(&format!("{prefix}.{mechanism}.sasl.jaas.config"))
                    .map(str::to_string)
            },
            |property| self.for_listener(name, property).map(str::to_string),
        )
    }

    /// The TLS settings of the HTTP listener (`http.listen=https://...`): those of a listener
    /// named HTTP (`listener.name.http.ssl.*`, else the plain `ssl.*`).
    pub fn http_tls_config(&self) -> Result<TlsSettings, String> {
        self.tls_config("HTTP")
            .map_err(|error| format!("the HTTPS listener (http.listen): {error}"))
    }

    /// The TLS server settings of listener `name`.
    fn tls_config(&self, name: &str) -> Result<TlsSettings, String> {
        let get = |property: &str| self.for_listener(name, property);
        let what = |property: &str| {
            let prefixed = format!("listener.name.{}.{property}", name.to_ascii_lowercase());
            match self.get(&prefixed) {
                Some(_) => prefixed,
                None => property.to_string(),
            }
        };
        if let Some(kind) = get("ssl.keystore.type").filter(|k| !k.eq_ignore_ascii_case("PEM")) {
            return Err(format!(
                "listener {name}: {} {kind} is not supported; give the key and certificates as \
                 PEM (ssl.keystore.type=PEM, KIP-651)",
                what("ssl.keystore.type")
            ));
        }
        if get("ssl.key.password").is_some() {
            return Err(format!(
                "listener {name}: encrypted private keys ({}) are not supported; give the key \
                 unencrypted in a file only the broker can read",
                what("ssl.key.password")
            ));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let keystore = match (
            get("ssl.keystore.certificate.chain"),
            get("ssl.keystore.key"),
            get("ssl.keystore.location"),
        ) {
            (Some(chain), Some(key), _) => {
                let certificates = pem_certificates(chain.as_bytes())
                    .map_err(|e| format!("{}: {e}", what("ssl.keystore.certificate.chain")))?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
                    format!("{}: no private key in it ({e})", what("ssl.keystore.key"))
                })?;
                let certified = certified_key(certificates, key, &provider)
                    .map_err(|e| format!("listener {name}: {e}"))?;
                Keystore::fixed(certified)
            }
            (_, _, Some(path)) => {
                let location = what("ssl.keystore.location");
                Keystore::from_file(PathBuf::from(path), Arc::clone(&provider))
                    .map_err(|e| format!("{location} {e}"))?
            }
            _ => {
                return Err(format!(
                    "listener {name} uses TLS but has no key and certificate: set \
                     ssl.keystore.location (a PEM file with both), or \
                     ssl.keystore.certificate.chain and ssl.keystore.key"
                ))
            }
        };
        let keystore = Arc::new(keystore);
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("listener {name}: {e}"))?;
        let client_auth = get("ssl.client.auth")
            .unwrap_or("none")
            .to_ascii_lowercase();
        let mut trusted = None;
        let builder = match client_auth.as_str() {
            "none" => builder.with_no_client_auth(),
            "required" | "requested" => {
                let truststore = Truststore::new(
                    self.truststore_source(name)?,
                    client_auth == "requested",
                    Arc::clone(&provider),
                )
                .map_err(|e| format!("listener {name}: {e}"))?;
                let truststore = Arc::new(truststore);
                trusted = Some(Arc::clone(&truststore));
                builder.with_client_cert_verifier(truststore)
            }
            other => {
                return Err(format!(
                    "{}: {other:?} is not required, requested or none",
                    what("ssl.client.auth")
                ))
            }
        };
        let config =
            builder.with_cert_resolver(Arc::clone(&keystore) as Arc<dyn ResolvesServerCert>);
        Ok(TlsSettings {
            config: Arc::new(config),
            keystore,
            truststore: trusted,
        })
    }

    /// Where the certificate authorities that client certificates are checked against are:
    /// PEM text in the settings, or a file.
    fn truststore_source(&self, name: &str) -> Result<PemSource, String> {
        match (
            self.for_listener(name, "ssl.truststore.certificates"),
            self.for_listener(name, "ssl.truststore.location"),
        ) {
            (Some(certificates), _) => Ok(PemSource::Text(certificates.as_bytes().to_vec())),
            (None, Some(path)) => Ok(PemSource::File(PathBuf::from(path))),
            (None, None) => Err(format!(
                "listener {name} checks client certificates (ssl.client.auth) but has no \
                 ssl.truststore.location or ssl.truststore.certificates"
            )),
        }
    }
}

/// A key and its certificate chain, checked to fit each other.
fn certified_key(
    certificates: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    if certificates.is_empty() {
        return Err("no certificate".to_string());
    }
    CertifiedKey::from_der(certificates, key, provider)
        .map_err(|e| format!("the key does not fit the certificate: {e}"))
}

/// A listener's TLS settings, and the files they are read from.
#[derive(Clone)]
pub struct TlsSettings {
    pub config: Arc<ServerConfig>,
    /// Its key and certificate chain.
    pub keystore: Arc<Keystore>,
    /// The authorities client certificates are checked against, when they are.
    pub truststore: Option<Arc<Truststore>>,
}

impl TlsSettings {
    /// The files to look at for changes, each with the name of what it holds.
    pub fn watched(&self) -> Vec<Arc<dyn Reload>> {
        let mut files: Vec<Arc<dyn Reload>> = vec![Arc::clone(&self.keystore) as Arc<dyn Reload>];
        if let Some(truststore) = &self.truststore {
            files.push(Arc::clone(truststore) as Arc<dyn Reload>);
        }
        files
    }
}

/// A TLS file read again when it changes (checked every few seconds): renewed certificates
/// and authorities are used from the next handshake on, without a restart.
pub trait Reload: Send + Sync {
    /// What it holds, for the log.
    fn what(&self) -> &'static str;
    /// The file it is read from, if it is.
    fn path(&self) -> Option<&Path>;
    /// Reads the file again if it changed since it was last read: `Ok(true)` if what it holds
    /// is used from now on. A file that cannot be used (half written, a key that does not
    /// fit) is an error, and what was in use stays.
    fn reload_if_changed(&self) -> Result<bool, String>;
}

/// A file, and its modification time when it was last read with success.
struct Watched {
    path: PathBuf,
    modified: Mutex<Option<SystemTime>>,
}

impl Watched {
    fn new(path: PathBuf) -> Watched {
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        Watched {
            path,
            modified: Mutex::new(modified),
        }
    }

    /// `read` of the file if it changed since the last successful read.
    fn if_changed<T>(
        &self,
        read: impl FnOnce(&Path) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let mut last = self.modified.lock().unwrap_or_else(|p| p.into_inner());
        if *last == Some(modified) {
            return Ok(None);
        }
        let value = read(&self.path)?;
        *last = Some(modified);
        Ok(Some(value))
    }
}

/// A listener's key and certificate chain: from PEM text in the settings, or from a PEM file
/// (`ssl.keystore.location`) that is read again when it changes, so that a renewed
/// certificate is served without a restart. Handshakes under way keep the one they began with.
pub struct Keystore {
    file: Option<Watched>,
    current: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("path", &self.path())
            .finish()
    }
}

impl ResolvesServerCert for Keystore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}

impl Keystore {
    fn fixed(key: CertifiedKey) -> Keystore {
        Keystore {
            file: None,
            current: RwLock::new(Arc::new(key)),
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        }
    }

    fn from_file(path: PathBuf, provider: Arc<CryptoProvider>) -> Result<Keystore, String> {
        let file = Watched::new(path);
        let key = read_keystore(&file.path, &provider)?;
        Ok(Keystore {
            file: Some(file),
            current: RwLock::new(Arc::new(key)),
            provider,
        })
    }
}

impl Reload for Keystore {
    fn what(&self) -> &'static str {
        "TLS key and certificate"
    }

    fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    fn reload_if_changed(&self) -> Result<bool, String> {
        let Some(file) = &self.file else {
            return Ok(false);
        };
        let Some(key) = file.if_changed(|path| read_keystore(path, &self.provider))? else {
            return Ok(false);
        };
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(true)
    }
}

/// PEM text given in the settings, or the file it is in.
pub enum PemSource {
    Text(Vec<u8>),
    File(PathBuf),
}

/// The certificate authorities a listener checks client certificates against
/// (`ssl.client.auth=required|requested`): from `ssl.truststore.certificates`, or from the
/// PEM file `ssl.truststore.location`, read again when it changes so that an authority can
/// be added or withdrawn without a restart. Connections already made are not checked again.
pub struct Truststore {
    file: Option<Watched>,
    optional: bool,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for Truststore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Truststore")
            .field("path", &self.path())
            .finish()
    }
}

impl Truststore {
    /// The authorities of `source`; with `optional`, a client may also present none.
    fn new(
        source: PemSource,
        optional: bool,
        provider: Arc<CryptoProvider>,
    ) -> Result<Truststore, String> {
        let (file, pem) = match source {
            PemSource::Text(pem) => (None, pem),
            PemSource::File(path) => {
                let pem = read_truststore(&path)?;
                (Some(Watched::new(path)), pem)
            }
        };
        let verifier = client_verifier(&pem, optional, &provider)?;
        Ok(Truststore {
            file,
            optional,
            provider,
            current: RwLock::new(verifier),
        })
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Reload for Truststore {
    fn what(&self) -> &'static str {
        "TLS truststore"
    }

    fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    fn reload_if_changed(&self) -> Result<bool, String> {
        let Some(file) = &self.file else {
            return Ok(false);
        };
        let read = |path: &Path| {
            let pem = read_truststore(path)?;
            client_verifier(&pem, self.optional, &self.provider)
                .map_err(|e| format!("{}: {e}", path.display()))
        };
        let Some(verifier) = file.if_changed(read)? else {
            return Ok(false);
        };
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = verifier;
        Ok(true)
    }
}

/// Every check goes to the verifier of the authorities read last.
impl ClientCertVerifier for Truststore {
    fn offer_client_auth(&self) -> bool {
        self.current().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.current().client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints are optional; sending none keeps them from outliving a reload.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

fn read_truststore(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "ssl.truststore.location {}: cannot read it: {e}",
            path.display()
        )
    })
}

/// A verifier of client certificates against the authorities in `pem`.
fn client_verifier(
    pem: &[u8],
    optional: bool,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    let certificates = pem_certificates(pem).map_err(|e| format!("truststore: {e}"))?;
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err("no usable certificate in the truststore".to_string());
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let verifier = match optional {
        true => verifier.allow_unauthenticated(),
        false => verifier,
    };
    verifier
        .build()
        .map_err(|e| format!("client certificates: {e}"))
}

/// A PEM file with a private key and its certificate chain.
fn read_keystore(path: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let shown = path.display();
    let text = std::fs::read(path).map_err(|e| format!("{shown}: cannot read it: {e}"))?;
    if !is_pem(&text) {
        return Err(format!(
            "{shown} is not PEM; Partita reads PEM keystores (ssl.keystore.type=PEM, KIP-651), \
             convert a JKS or PKCS12 one with keytool and openssl"
        ));
    }
    let certificates = pem_certificates(&text).map_err(|e| format!("{shown}: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&text)
        .map_err(|e| format!("{shown}: no private key in it ({e})"))?;
    certified_key(certificates, key, provider).map_err(|e| format!("{shown}: {e}"))
}

fn is_pem(text: &[u8]) -> bool {
    text.windows(11).any(|w| w == b"-----BEGIN ")
}

fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unreadable PEM: {e}"))?;
    match certificates.is_empty() {
        true => Err("no certificate in it".to_string()),
        false => Ok(certificates),
    }
}

/// The entries of a listener list: `NAME://HOST:PORT`, or `HOST:PORT` for `PLAINTEXT`.
fn entries(value: &str) -> Result<Vec<(String, String, u16)>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (name, address) = entry.split_once("://").unwrap_or(("PLAINTEXT", entry));
            let (host, port) = address
                .rsplit_once(':')
                .ok_or_else(|| format!("{entry:?}: expected NAME://HOST:PORT"))?;
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("{entry:?}: bad port {port:?}"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Ok((name.to_ascii_uppercase(), host.to_string(), port))
        })
        .collect()
}

/// The address to bind for `host` (an IP address, `localhost`, or empty for every address).
pub(crate) fn parse_bind(host: &str, port: u16) -> Result<SocketAddr, String> {
    let host = match host {
        "" => "0.0.0.0",
        "localhost" => "127.0.0.1",
        other => other,
    };
    let ip = host
        .parse::<std::net::IpAddr>()
        .map_err(|_| format!("listen address must be an IP address, got {host:?}"))?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties(pairs: &[(&str, &str)]) -> ListenerProperties {
        let mut p = ListenerProperties::default();
        for (name, value) in pairs {
            assert!(p.set(name, value), "{name}");
        }
        p
    }

    #[test]
    fn several_listeners_with_their_advertised_addresses() {
        let p = properties(&[
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:9092,CLIENT://0.0.0.0:9095",
            ),
            ("advertised.listeners", "CLIENT://broker1:19095"),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CLIENT:PLAINTEXT",
            ),
        ]);
        let listen = "127.0.0.1:9092".parse().unwrap();
        let listeners = p.resolve(listen, "127.0.0.1", 9092).unwrap();
        assert_eq!(listeners.len(), 2);
        assert_eq!(listeners[1].name, "CLIENT");
        assert_eq!(listeners[1].bind, "0.0.0.0:9095".parse().unwrap());
        assert_eq!(
            (
                listeners[1].advertised_host.as_str(),
                listeners[1].advertised_port
            ),
            ("broker1", 19095)
        );
    }

    #[test]
    fn mistakes_are_named() {
        let listen = "127.0.0.1:9092".parse().unwrap();
        let unmapped = properties(&[("listeners", "PLAINTEXT://:9092,CLIENT://:9095")]);
        let error = unmapped.resolve(listen, "h", 9092).unwrap_err();
        assert!(error.contains("listener.security.protocol.map"), "{error}");
        let no_key = properties(&[("listeners", "PLAINTEXT://:9092,SSL://:9093")]);
        let error = no_key.resolve(listen, "h", 9092).unwrap_err();
        assert!(error.contains("ssl.keystore.location"), "{error}");
        let jks = properties(&[("listeners", "SSL://:9093"), ("ssl.keystore.type", "JKS")]);
        let error = jks.resolve(listen, "h", 9093).unwrap_err();
        assert!(error.contains("PEM"), "{error}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let p = properties(&[
            ("ssl.keystore.key", "-----BEGIN PRIVATE KEY----- k3y"),
            (
                "listener.name.sasl_ssl.plain.sasl.jaas.config",
                "PlainLoginModule required user_alice=\"pa55\";",
            ),
            ("ssl.keystore.location", "/etc/partita/keystore.pem"),
        ]);
        let shown = format!("{p:?}");
        assert!(!shown.contains("k3y") && !shown.contains("pa55"), "{shown}");
        assert!(shown.contains("/etc/partita/keystore.pem"), "{shown}");
    }

    #[test]
    fn secrets_are_known_with_or_without_a_listener_prefix() {
        assert!(ListenerProperties::is_secret("ssl.keystore.key"));
        assert!(ListenerProperties::is_secret(
            "listener.name.ssl.ssl.key.password"
        ));
        assert!(!ListenerProperties::is_secret("ssl.keystore.location"));
    }
}
