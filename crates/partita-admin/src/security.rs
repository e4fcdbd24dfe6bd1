//! How the admin client reaches a secured cluster: TLS and SASL (PLAIN, SCRAM-SHA-256,
//! SCRAM-SHA-512), configured with the client properties Kafka's tools take
//! (`--command-config client.properties`) in the Java client's names or librdkafka's.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{AdminError, Result};

/// A SASL mechanism the admin client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(partita_scram::ScramMechanism),
}

/// SASL's user and password.
#[derive(Clone)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

/// The mechanism and user only.
impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// TLS and SASL settings; the default is plaintext.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) sasl: Option<SaslCredentials>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

impl ClientSecurity {
    /// The settings of a client properties file: `security.protocol`, `sasl.mechanism`,
    /// `sasl.jaas.config` (or `sasl.username` and `sasl.password`), and PEM files for TLS:
    /// `ssl.truststore.location` (or `ssl.ca.location`), and for a client certificate
    /// `ssl.keystore.location` (key and chain) or `ssl.certificate.location` and
    /// `ssl.key.location`.
    pub fn from_properties(text: &str) -> Result<ClientSecurity> {
        let properties = parse_properties(text);
        let get = |name: &str| properties.get(name).map(String::as_str);
        let invalid = |reason: String| AdminError::InvalidInput(reason);
        let protocol = get("security.protocol")
            .unwrap_or("PLAINTEXT")
            .to_ascii_uppercase();
        let (tls, sasl) = match protocol.as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => return Err(invalid(format!("security.protocol {other} is not known"))),
        };
        let mut security = ClientSecurity::default();
        if tls {
            security.tls = Some(Arc::new(tls_config(&get).map_err(invalid)?));
        }
        if sasl {
            security.sasl = Some(sasl_credentials(&get).map_err(invalid)?);
        }
        Ok(security)
    }
}

/// `key=value` lines (`:` also separates), `#` and `!` comments, `\` continuing a line, as
/// Java properties files are written.
fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut joined = String::new();
    let mut lines = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if joined.is_empty() && (line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                joined.push_str(start);
                joined.push(' ');
            }
            None => {
                joined.push_str(line);
                lines.push(std::mem::take(&mut joined));
            }
        }
    }
    lines.push(joined);
    lines
        .iter()
        .filter_map(|line| {
            let at = line.find(['=', ':'])?;
            Some((
                line[..at].trim().to_string(),
                line[at + 1..].trim().to_string(),
            ))
        })
        .collect()
}

fn sasl_credentials<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
) -> std::result::Result<SaslCredentials, String> {
    let mechanism = get("sasl.mechanism")
        .or(get("sasl.mechanisms"))
        .unwrap_or("GSSAPI")
        .to_ascii_uppercase();
    let mechanism = match mechanism.as_str() {
        "PLAIN" => SaslMechanism::Plain,
        other => SaslMechanism::Scram(partita_scram::ScramMechanism::from_name(other).ok_or_else(
            || {
                format!(
                    "sasl.mechanism {other} is not served: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                )
            },
        )?),
    };
    let from_jaas = get("sasl.jaas.config")
        .map(jaas_options)
        .unwrap_or_default();
    let field = |jaas: &str, flat: &str| {
        from_jaas
            .get(jaas)
            .cloned()
            .or(get(flat).map(str::to_string))
            .ok_or_else(|| format!("SASL needs {flat}, or {jaas}=\"...\" in sasl.jaas.config"))
    };
    Ok(SaslCredentials {
        mechanism,
        username: field("username", "sasl.username")?,
        password: field("password", "sasl.password")?,
    })
}

/// The `key="value"` options of a JAAS setting.
fn jaas_options(text: &str) -> BTreeMap<String, String> {
    let mut options = BTreeMap::new();
    let mut rest = text;
    while let Some(at) = rest.find("=\"") {
        let key = rest[..at]
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("")
            .to_string();
        let after = &rest[at + 2..];
        let Some(end) = after.find('"') else { break };
        options.insert(key, after[..end].to_string());
        rest = &after[end + 1..];
    }
    options
}

fn tls_config<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
) -> std::result::Result<rustls::ClientConfig, String> {
    let read =
        |name: &str, path: &str| std::fs::read(path).map_err(|e| format!("{name} {path}: {e}"));
    let trusted = match (
        get("ssl.truststore.location").or(get("ssl.ca.location")),
        get("ssl.truststore.certificates"),
    ) {
        (Some(path), _) => read("ssl.truststore.location", path)?,
        (None, Some(pem)) => pem.as_bytes().to_vec(),
        (None, None) => {
            return Err(
                "TLS needs the CA to trust: ssl.truststore.location (PEM) or ssl.ca.location"
                    .to_string(),
            )
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&trusted) {
        let certificate = certificate.map_err(|e| format!("the truststore is not PEM: {e}"))?;
        roots
            .add(certificate)
            .map_err(|e| format!("a truststore certificate is unusable: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let identity = match (
        get("ssl.keystore.location"),
        get("ssl.certificate.location"),
        get("ssl.key.location"),
    ) {
        (Some(path), _, _) => Some((read("ssl.keystore.location", path)?, None)),
        (None, Some(certificate), Some(key)) => Some((
            read("ssl.certificate.location", certificate)?,
            Some(read("ssl.key.location", key)?),
        )),
        _ => None,
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => {
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| format!("the client certificate is not PEM: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_deref().unwrap_or(&chain))
                .map_err(|e| format!("the client key is not PEM: {e}"))?;
            builder
                .with_client_auth_cert(certificates, key)
                .map_err(|e| format!("the client certificate and key: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_and_librdkafka_properties_are_both_read() {
        let java = "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n\
            # a comment\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \\\n\
              required username=\"alice\" password=\"s3 cret\";\n";
        let security = ClientSecurity::from_properties(java).unwrap();
        let sasl = security.sasl.unwrap();
        assert_eq!(
            (sasl.username.as_str(), sasl.password.as_str()),
            ("alice", "s3 cret")
        );
        assert_eq!(
            sasl.mechanism,
            SaslMechanism::Scram(partita_scram::ScramMechanism::Sha512)
        );
        assert!(security.tls.is_none());
        let rdkafka = "security.protocol=sasl_plaintext\nsasl.mechanisms=PLAIN\n\
            sasl.username=bob\nsasl.password=pw\n";
        let sasl = ClientSecurity::from_properties(rdkafka)
            .unwrap()
            .sasl
            .unwrap();
        assert_eq!(
            (sasl.mechanism, sasl.username.as_str()),
            (SaslMechanism::Plain, "bob")
        );
        assert!(!format!("{sasl:?}").contains("pw"));
    }

    #[test]
    fn what_cannot_work_is_said() {
        for (text, expected) in [
            ("security.protocol=SASL_PLAINTEXT\n", "GSSAPI"),
            (
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n",
                "sasl.username",
            ),
            ("security.protocol=SSL\n", "ssl.truststore.location"),
            (
                "security.protocol=SSL\nssl.truststore.location=/nonexistent\n",
                "/nonexistent",
            ),
            ("security.protocol=TLS\n", "TLS"),
        ] {
            let error = ClientSecurity::from_properties(text)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
