//! The client side of an exchange, for the operator CLI.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::{ScramMechanism, MIN_ITERATIONS};

/// Iteration counts above this are refused: a server could otherwise make the client spin.
const MAX_CLIENT_ITERATIONS: i32 = 1_000_000;

/// A client's exchange: [`ScramClient::first`], then [`ScramClient::answer`] to the server's
/// challenge, then [`ScramClient::verify`] of the server's last message.
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    nonce: String,
    first_bare: String,
    /// The server signature the last message must carry, once the proof is sent.
    expected: Option<String>,
}

impl ScramClient {
    /// An exchange for `user` with `password`.
    pub fn new(mechanism: ScramMechanism, user: &str, password: &str) -> ScramClient {
        let nonce = crate::nonce::<24>();
        let name = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            mechanism,
            password: password.to_string(),
            first_bare: format!("n={name},r={nonce}"),
            nonce,
            expected: None,
        }
    }

    /// The client's first message.
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// The client's proof, given the server's first message.
    pub fn answer(&mut self, server_first: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(server_first).map_err(|_| "a server message not UTF-8")?;
        let field = |name: &str| {
            text.split(',')
                .find_map(|f| f.strip_prefix(name))
                .ok_or_else(|| format!("the server's first message has no {name}"))
        };
        let nonce = field("r=")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err("the server's nonce does not extend the client's".to_string());
        }
        let salt = BASE64
            .decode(field("s=")?)
            .map_err(|_| "the server's salt is not base64")?;
        let iterations: i32 = field("i=")?
            .parse()
            .map_err(|_| "the server's iteration count is not a number")?;
        if !(MIN_ITERATIONS..=MAX_CLIENT_ITERATIONS).contains(&iterations) {
            return Err(format!("the server asks for {iterations} iterations"));
        }
        let mechanism = self.mechanism;
        let salted = mechanism.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{text},{without_proof}", self.first_bare);
        let signature = mechanism.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = mechanism.hmac(&salted, b"Server Key");
        self.expected = Some(BASE64.encode(mechanism.hmac(&server_key, auth.as_bytes())));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server's last message: it must prove the server knows the credential.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(server_final).map_err(|_| "a server message not UTF-8")?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(format!("the server refused: {error}"));
        }
        match (text.strip_prefix("v="), &self.expected) {
            (Some(signature), Some(expected)) if signature == expected => Ok(()),
            _ => Err("the server did not prove it knows the credential".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ScramCredential, ScramServer, ScramStep};

    #[test]
    fn client_and_server_agree_and_a_wrong_password_fails() {
        for mechanism in ScramMechanism::ALL {
            let stored = ScramCredential::from_password(mechanism, "s3cret", 4096);
            for (password, accepted) in [("s3cret", true), ("wrong", false)] {
                let mut client = ScramClient::new(mechanism, "a,b=c", password);
                let mut server = ScramServer::new(mechanism);
                let user = ScramServer::user_of_first(&client.first());
                assert_eq!(user.as_deref(), Some("a,b=c"));
                let Ok(ScramStep::Challenge(challenge)) =
                    server.step(&client.first(), Some(stored.clone()))
                else {
                    panic!("no challenge")
                };
                let proof = client.answer(&challenge).unwrap();
                match server.step(&proof, None) {
                    Ok(ScramStep::Authenticated { user, last }) => {
                        assert!(accepted);
                        assert_eq!(user, "a,b=c");
                        client.verify(&last).unwrap();
                    }
                    Ok(other) => panic!("{other:?}"),
                    Err(_) => assert!(!accepted),
                }
            }
        }
    }

    #[test]
    fn a_server_that_cannot_prove_itself_is_not_believed() {
        let mut client = ScramClient::new(ScramMechanism::Sha256, "alice", "pw");
        let first = String::from_utf8(client.first()).unwrap();
        let nonce = first.rsplit("r=").next().unwrap();
        let challenge = format!("r={nonce}xyz,s=c2FsdA==,i=4096");
        client.answer(challenge.as_bytes()).unwrap();
        assert!(client.verify(b"v=AAAA").is_err());
        assert!(client.verify(b"e=invalid-proof").is_err());
        let mut other = ScramClient::new(ScramMechanism::Sha256, "alice", "pw");
        assert!(other.answer(b"r=not-mine,s=c2FsdA==,i=4096").is_err());
        let first = String::from_utf8(other.first()).unwrap();
        let nonce = first.rsplit("r=").next().unwrap();
        let too_few = format!("r={nonce}x,s=c2FsdA==,i=1");
        assert!(other
            .answer(too_few.as_bytes())
            .unwrap_err()
            .contains("iterations"));
    }
}
