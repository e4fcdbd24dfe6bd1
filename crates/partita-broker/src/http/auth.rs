//! Who may see the HTTP listener (`http.auth`): basic credentials (`basic:USER:PASSWORD`) and
//! bearer tokens (`bearer:TOKEN`), any number, comma-separated; none for a listener bound to
//! loopback only. Compared in constant time; never logged or shown.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// The credentials `http.auth` accepts.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HttpAuth {
    basic: Vec<(String, String)>,
    bearer: Vec<String>,
}

/// User names and how many tokens; never a password or a token.
impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.basic.iter().map(|(user, _)| user.as_str()).collect();
        f.debug_struct("HttpAuth")
            .field("basic_users", &users)
            .field("bearer_tokens", &self.bearer.len())
            .finish()
    }
}

impl HttpAuth {
    /// `basic:USER:PASSWORD` and `bearer:TOKEN` entries, comma-separated; empty or `none` for
    /// none.
    pub fn parse(value: &str) -> Result<HttpAuth, String> {
        let mut auth = HttpAuth::default();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry.split_once(':') {
                _ if entry.eq_ignore_ascii_case("none") => {}
                Some(("basic", credentials)) => match credentials.split_once(':') {
                    Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                        auth.basic.push((user.to_string(), password.to_string()))
                    }
                    _ => return Err("basic needs basic:USER:PASSWORD".to_string()),
                },
                Some(("bearer", token)) if !token.is_empty() => auth.bearer.push(token.to_string()),
                _ => {
                    return Err(
                        "expected basic:USER:PASSWORD or bearer:TOKEN entries, comma-separated"
                            .to_string(),
                    )
                }
            }
        }
        Ok(auth)
    }

    /// Whether anyone may look, with no credentials at all.
    pub fn is_open(&self) -> bool {
        self.basic.is_empty() && self.bearer.is_empty()
    }

    /// Whether an `Authorization` header carries accepted credentials.
    pub(crate) fn allows(&self, authorization: Option<&[u8]>) -> bool {
        if self.is_open() {
            return true;
        }
        let Some(header) = authorization.and_then(|h| std::str::from_utf8(h).ok()) else {
            return false;
        };
        let (scheme, credentials) = header.trim().split_once(' ').unwrap_or((header, ""));
        let credentials = credentials.trim();
        let equal = |a: &[u8], b: &[u8]| verify_slices_are_equal(a, b).is_ok();
        if scheme.eq_ignore_ascii_case("basic") {
            let Ok(decoded) = BASE64.decode(credentials) else {
                return false;
            };
            // Every entry is compared, so that the time taken tells nothing.
            return self.basic.iter().fold(false, |found, (user, password)| {
                let expected = format!("{user}:{password}");
                equal(expected.as_bytes(), &decoded) | found
            });
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.bearer.iter().fold(false, |found, token| {
                equal(token.as_bytes(), credentials.as_bytes()) | found
            });
        }
        false
    }

    /// The `WWW-Authenticate` challenge of a refusal.
    pub(crate) fn challenge(&self) -> &'static str {
        match self.basic.is_empty() {
            true => "Bearer realm=\"partita\"",
            false => "Basic realm=\"partita\", charset=\"UTF-8\"",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer_credentials_are_checked() {
        let auth = HttpAuth::parse("basic:prom:s3cret, bearer:tok-123").unwrap();
        let basic = |text: &str| format!("Basic {}", BASE64.encode(text));
        assert!(auth.allows(Some(basic("prom:s3cret").as_bytes())));
        assert!(!auth.allows(Some(basic("prom:wrong").as_bytes())));
        assert!(auth.allows(Some(b"Bearer tok-123")));
        assert!(!auth.allows(Some(b"Bearer tok-12")));
        assert!(!auth.allows(None));
        assert!(!auth.allows(Some(b"Digest x")));
        assert!(HttpAuth::parse("").unwrap().allows(None));
        assert!(HttpAuth::parse("none").unwrap().is_open());
        for bad in ["basic:prom", "bearer:", "token:x", "basic::pw"] {
            assert!(HttpAuth::parse(bad).is_err(), "{bad}");
        }
        let shown = format!("{auth:?}");
        assert!(shown.contains("prom") && !shown.contains("s3cret") && !shown.contains("tok-123"));
    }
}
