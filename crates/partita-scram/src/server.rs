//! The server side of an exchange.

use std::sync::OnceLock;

use aws_lc_rs::constant_time;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::{random_bytes, ScramCredential, ScramMechanism, MIN_ITERATIONS};

/// Where an exchange stands.
enum State {
    /// Waiting for the client's first message.
    Start,
    /// The server's first message was sent; waiting for the client's proof.
    Challenged(Box<Challenged>),
    Done,
}

/// What the proof is checked against.
struct Challenged {
    user: String,
    /// The GS2 header the client sent (`n,,` or `n,a=<user>,`), echoed in `c=`.
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    /// The client's nonce, and the combined nonce the client must echo.
    client_nonce: String,
    nonce: String,
    /// `None` for a user with no credential of this mechanism: the exchange goes on
    /// with a made-up salt, and fails at the proof, so that it does not tell which
    /// users exist.
    credential: Option<ScramCredential>,
}

/// What the server says after one client message.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramStep {
    /// Send this challenge and wait for the next message.
    Challenge(Vec<u8>),
    /// Authenticated as `user`: send this last message.
    Authenticated { user: String, last: Vec<u8> },
}

/// The server side of one SCRAM exchange.
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            state: State::Start,
        }
    }

    /// Whether the client's first message has been taken.
    pub fn started(&self) -> bool {
        !matches!(self.state, State::Start)
    }

    /// The user named by a client's first message, so that its credential can be looked
    /// up before [`ScramServer::step`] takes the message. `None` before the first message
    /// or if it is malformed (then `step` says why).
    pub fn user_of_first(message: &[u8]) -> Option<String> {
        parse_client_first(message).ok().map(|first| first.user)
    }

    /// Takes the client's next message. `credential` is the named user's credential for
    /// this mechanism, looked up by the caller (only read with the first message).
    /// An error ends the exchange: the reason is for the client and the log, and names no
    /// secret.
    pub fn step(
        &mut self,
        message: &[u8],
        credential: Option<ScramCredential>,
    ) -> Result<ScramStep, String> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start => {
                let first = parse_client_first(message)?;
                let nonce = format!("{}{}", first.nonce, crate::nonce::<32>());
                let (salt, iterations) = match &credential {
                    Some(c) => (c.salt.clone(), c.iterations),
                    None => (made_up_salt(self.mechanism, &first.user), MIN_ITERATIONS),
                };
                let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(&salt));
                let challenge = server_first.clone().into_bytes();
                self.state = State::Challenged(Box::new(Challenged {
                    user: first.user,
                    gs2_header: first.gs2_header,
                    client_first_bare: first.bare,
                    server_first,
                    client_nonce: first.nonce,
                    nonce,
                    credential,
                }));
                Ok(ScramStep::Challenge(challenge))
            }
            State::Challenged(challenged) => {
                let Challenged {
                    user,
                    gs2_header,
                    client_first_bare,
                    server_first,
                    client_nonce,
                    nonce,
                    credential,
                } = *challenged;
                let text = std::str::from_utf8(message)
                    .map_err(|_| "Invalid client final message".to_string())?;
                let (without_proof, proof) = text
                    .rsplit_once(",p=")
                    .ok_or("Invalid client final message: no proof")?;
                let mut fields = without_proof.split(',');
                let binding = fields
                    .next()
                    .and_then(|f| f.strip_prefix("c="))
                    .ok_or("Invalid client final message: no channel binding")?;
                let echoed = fields
                    .next()
                    .and_then(|f| f.strip_prefix("r="))
                    .ok_or("Invalid client final message: no nonce")?;
                if BASE64.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
                    return Err("Invalid client final message: channel binding".to_string());
                }
                // The combined nonce, or (as librdkafka 2.0 sends it, the kcat of Debian 12)
                // the client's nonce followed by the combined nonce, which Kafka's own check
                // long let through; the proof covers what was echoed either way.
                let doubled = echoed
                    .strip_prefix(client_nonce.as_str())
                    .is_some_and(|rest| rest == nonce);
                if echoed != nonce && !doubled {
                    return Err("Invalid client final message: nonce".to_string());
                }
                let proof = BASE64
                    .decode(proof)
                    .map_err(|_| "Invalid client final message: proof")?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let credential = credential.ok_or_else(invalid_credentials)?;
                let signature = self
                    .mechanism
                    .hmac(&credential.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() {
                    return Err(invalid_credentials());
                }
                let client_key: Vec<u8> =
                    proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
                let expected = self.mechanism.hash(&client_key);
                constant_time::verify_slices_are_equal(&expected, &credential.stored_key)
                    .map_err(|_| invalid_credentials())?;
                let server_signature = self
                    .mechanism
                    .hmac(&credential.server_key, auth_message.as_bytes());
                Ok(ScramStep::Authenticated {
                    user,
                    last: format!("v={}", BASE64.encode(server_signature)).into_bytes(),
                })
            }
            State::Done => Err("the SCRAM exchange is over".to_string()),
        }
    }
}

fn invalid_credentials() -> String {
    "Invalid user credentials".to_string()
}

/// A salt for a user who has none, the same each time within this process, so that two
/// attempts cannot tell a missing user from a wrong password.
fn made_up_salt(mechanism: ScramMechanism, user: &str) -> Vec<u8> {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(random_bytes::<32>);
    let mut salt = mechanism.hmac(key, user.as_bytes());
    salt.truncate(32);
    salt
}

/// A client's first message, `<gs2 header><bare>`.
struct ClientFirst {
    gs2_header: String,
    bare: String,
    user: String,
    nonce: String,
}

/// Parses `n,[a=<authzid>],n=<user>,r=<nonce>[,<extensions>]`. Channel binding is not
/// served (`y` or `p` refused), as Kafka's; an authorization id must be the user's own; the
/// delegation-token extension (`tokenauth=true`) is refused, as no tokens are issued.
fn parse_client_first(message: &[u8]) -> Result<ClientFirst, String> {
    let invalid = |why: &str| format!("Invalid client first message: {why}");
    let text = std::str::from_utf8(message).map_err(|_| invalid("not UTF-8"))?;
    let rest = text
        .strip_prefix("n,")
        .ok_or_else(|| invalid("channel binding is not supported"))?;
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| invalid("no GS2 header"))?;
    let gs2_header = format!("n,{authzid},");
    let mut fields = bare.split(',');
    let user = fields
        .next()
        .and_then(|f| f.strip_prefix("n="))
        .ok_or_else(|| invalid("no user name"))?;
    let user = decode_sasl_name(user).ok_or_else(|| invalid("malformed user name"))?;
    let nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("no nonce"))?;
    for extension in fields {
        let (key, value) = extension
            .split_once('=')
            .ok_or_else(|| invalid("malformed extension"))?;
        if key == "tokenauth" && value.eq_ignore_ascii_case("true") {
            return Err("Authentication failed: delegation tokens are not supported".to_string());
        }
    }
    if !authzid.is_empty() {
        let requested = authzid
            .strip_prefix("a=")
            .and_then(decode_sasl_name)
            .ok_or_else(|| invalid("malformed authorization id"))?;
        if requested != user {
            return Err(
                "Authentication failed: Client requested an authorization id that is different from username"
                    .to_string(),
            );
        }
    }
    Ok(ClientFirst {
        gs2_header,
        bare: bare.to_string(),
        user,
        nonce: nonce.to_string(),
    })
}

/// A `saslname`: `=2C` stands for `,` and `=3D` for `=`; any other `=` is malformed.
fn decode_sasl_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side, for the tests: what any SCRAM client computes.
    fn client_final(
        mechanism: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let nonce = server_first
            .split(',')
            .next()
            .unwrap()
            .strip_prefix("r=")
            .unwrap();
        client_final_echoing(mechanism, password, client_first_bare, server_first, nonce)
    }

    /// [`client_final`] echoing `nonce`, right or not.
    fn client_final_echoing(
        mechanism: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        nonce: &str,
    ) -> (String, Vec<u8>) {
        let fields: Vec<&str> = server_first.split(',').collect();
        let salt = BASE64
            .decode(fields[1].strip_prefix("s=").unwrap())
            .unwrap();
        let iterations: i32 = fields[2].strip_prefix("i=").unwrap().parse().unwrap();
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mechanism.hmac(&stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = mechanism.hmac(&salted, b"Server Key");
        let expected_last = format!(
            "v={}",
            BASE64.encode(mechanism.hmac(&server_key, auth.as_bytes()))
        );
        (
            format!("{without_proof},p={}", BASE64.encode(proof)),
            expected_last.into_bytes(),
        )
    }

    fn exchange(
        mechanism: ScramMechanism,
        stored: Option<ScramCredential>,
        password: &str,
    ) -> Result<ScramStep, String> {
        let mut server = ScramServer::new(mechanism);
        let first = "n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL";
        assert_eq!(
            ScramServer::user_of_first(first.as_bytes()).as_deref(),
            Some("alice")
        );
        let ScramStep::Challenge(challenge) = server.step(first.as_bytes(), stored)? else {
            panic!("expected a challenge")
        };
        let challenge = String::from_utf8(challenge).unwrap();
        assert!(challenge.starts_with("r=fyko+d2lbbFgONRv9qkxdawL"));
        let (last, expected) = client_final(mechanism, password, &first[3..], &challenge);
        let step = server.step(last.as_bytes(), None)?;
        if let ScramStep::Authenticated { last, .. } = &step {
            assert_eq!(last, &expected, "the server proves it knows the credential");
        }
        Ok(step)
    }

    #[test]
    fn the_right_password_authenticates_with_both_mechanisms() {
        for mechanism in ScramMechanism::ALL {
            let stored = ScramCredential::from_password(mechanism, "alice-secret", 4096);
            let step = exchange(mechanism, Some(stored), "alice-secret").unwrap();
            assert!(
                matches!(step, ScramStep::Authenticated { ref user, .. } if user == "alice"),
                "{step:?}"
            );
        }
    }

    #[test]
    fn a_wrong_password_or_unknown_user_fails_at_the_proof_alike() {
        let mechanism = ScramMechanism::Sha512;
        let stored = ScramCredential::from_password(mechanism, "alice-secret", 4096);
        assert_eq!(
            exchange(mechanism, Some(stored), "wrong").unwrap_err(),
            "Invalid user credentials"
        );
        assert_eq!(
            exchange(mechanism, None, "anything").unwrap_err(),
            "Invalid user credentials"
        );
        // The made-up salt is stable, so a second attempt tells nothing either.
        assert_eq!(
            made_up_salt(mechanism, "bob"),
            made_up_salt(mechanism, "bob")
        );
    }

    #[test]
    fn the_rfc_7677_example_is_reproduced() {
        // RFC 7677, section 3: user "user", password "pencil".
        let mechanism = ScramMechanism::Sha256;
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = mechanism.salted_password(b"pencil", &salt, 4096);
        let stored = ScramCredential::from_salted_password(mechanism, &salt, &salted, 4096);
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!("{bare},{server_first},{without_proof}");
        let signature = mechanism.hmac(&stored.server_key, auth.as_bytes());
        assert_eq!(
            BASE64.encode(signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let client_key = mechanism.hmac(&salted, b"Client Key");
        let proof: Vec<u8> = client_key
            .iter()
            .zip(mechanism.hmac(&stored.stored_key, auth.as_bytes()))
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(
            BASE64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
    }

    #[test]
    fn malformed_first_messages_are_refused_with_a_reason() {
        for bad in [
            &b""[..],
            b"y,,n=alice,r=abc",
            b"p=tls-unique,,n=alice,r=abc",
            b"n,,r=abc",
            b"n,,n=alice",
            b"n,,n=alice,r=",
            b"n,,n=al=ZZice,r=abc",
            b"n,,n=,r=abc",
            b"n,a=bob,n=alice,r=abc",
            b"n,,n=alice,r=abc,tokenauth=true",
            b"\xff\xfe",
        ] {
            let mut server = ScramServer::new(ScramMechanism::Sha256);
            assert!(server.step(bad, None).is_err(), "{bad:?}");
        }
        let first = parse_client_first(b"n,a=a=2Cb,n=a=2Cb,r=abc,ext=1").unwrap();
        assert_eq!(first.user, "a,b");
        assert_eq!(first.gs2_header, "n,a=a=2Cb,");
    }

    #[test]
    fn a_final_message_with_the_wrong_nonce_or_binding_fails() {
        let mechanism = ScramMechanism::Sha256;
        let stored = ScramCredential::from_password(mechanism, "pw", 4096);
        for tamper in ["c=eSws,r=", "c=biws,r=other"] {
            let mut server = ScramServer::new(mechanism);
            let ScramStep::Challenge(challenge) = server
                .step(b"n,,n=alice,r=abc", Some(stored.clone()))
                .unwrap()
            else {
                panic!()
            };
            let challenge = String::from_utf8(challenge).unwrap();
            let (last, _) = client_final(mechanism, "pw", "n=alice,r=abc", &challenge);
            let nonce = challenge
                .split(',')
                .next()
                .unwrap()
                .strip_prefix("r=")
                .unwrap();
            let tampered = match tamper {
                "c=eSws,r=" => last.replacen("c=biws", "c=eSws", 1),
                _ => last.replacen(nonce, "other", 1),
            };
            assert!(server.step(tampered.as_bytes(), None).is_err(), "{tamper}");
        }
    }

    #[test]
    fn librdkafka_2_0s_doubled_client_nonce_is_taken_but_no_other_prefix() {
        let mechanism = ScramMechanism::Sha512;
        let stored = ScramCredential::from_password(mechanism, "pw", 4096);
        for (prefix, accepted) in [("abc", true), ("xyz", false), ("abcabc", false)] {
            let mut server = ScramServer::new(mechanism);
            let ScramStep::Challenge(challenge) = server
                .step(b"n,,n=alice,r=abc", Some(stored.clone()))
                .unwrap()
            else {
                panic!()
            };
            let challenge = String::from_utf8(challenge).unwrap();
            let nonce = challenge
                .split(',')
                .next()
                .unwrap()
                .strip_prefix("r=")
                .unwrap();
            let echoed = format!("{prefix}{nonce}");
            let (last, _) =
                client_final_echoing(mechanism, "pw", "n=alice,r=abc", &challenge, &echoed);
            let outcome = server.step(last.as_bytes(), None);
            assert_eq!(outcome.is_ok(), accepted, "{prefix}: {outcome:?}");
        }
    }

    #[test]
    fn debug_output_hides_salt_and_keys() {
        let stored = ScramCredential::from_password(ScramMechanism::Sha256, "pw", 4096);
        let shown = format!("{stored:?}");
        assert!(shown.contains("4096") && !shown.contains("salt"), "{shown}");
    }
}
