//! The HTTP listener, on hyper: GET and HEAD of a handful of read-only pages.
//!
//! A connection must send its request head within [`HEADER_READ_TIMEOUT`] (also between two
//! requests of a kept-alive connection), so slow or silent connections go away on their own;
//! up to [`MAX_CONNECTIONS`] are served at once, so that many of them still leave room for a
//! scrape.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{routes, Observer};
use crate::server::Shutdown;

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 4096;

/// An HTTP response.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type,
            body: body.into(),
        }
    }

    pub(crate) fn text(status: u16, body: &str) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", body)
    }
}

/// Accepts connections until shutdown, with TLS if `tls` is given.
pub(crate) async fn run(
    observer: Arc<Observer>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: Shutdown,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&limit).acquire_owned() => permit,
            _ = shutdown.recv() => return,
        };
        let Ok(permit) = permit else {
            return;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.recv() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let observer = Arc::clone(&observer);
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(observer, stream).await,
                        Some(tls) => {
                            let handshake = tls.accept(stream);
                            match tokio::time::timeout(HEADER_READ_TIMEOUT, handshake).await {
                                Ok(Ok(stream)) => serve_connection(observer, stream).await,
                                Ok(Err(error)) => {
                                    tracing::debug!(%peer, %error, "HTTPS handshake failed")
                                }
                                Err(_) => tracing::debug!(%peer, "no HTTPS handshake in time"),
                            }
                        }
                    }
                    drop(permit);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection<S>(observer: Arc<Observer>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let observer = Arc::clone(&observer);
        async move { Ok::<_, Infallible>(answer(&observer, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "HTTP connection ended");
    }
}

async fn answer(
    observer: &Observer,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let head_only = request.method() == Method::HEAD;
    let auth = &observer.broker.config.http_auth;
    let authorization = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    if !auth.allows(authorization) {
        // Nothing of the broker's to an unauthenticated request, whatever it asks for.
        let mut response = hyper::Response::new(Full::new(match head_only {
            true => Bytes::new(),
            false => Bytes::from_static(b"authentication required\n"),
        }));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        let headers = response.headers_mut();
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(auth.challenge()));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return response;
    }
    let reply = match *request.method() {
        Method::GET | Method::HEAD => routes::route(observer, request.uri().path()).await,
        _ => Reply::text(405, "only GET and HEAD are served\n"),
    };
    let body = if head_only {
        Bytes::new()
    } else {
        Bytes::from(reply.body)
    };
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Decodes `%XX` escapes of a path segment; `None` if the result is not UTF-8.
pub(crate) fn percent_decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(
            percent_decode("my%20group%2F1").as_deref(),
            Some("my group/1")
        );
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz").as_deref(), Some("%zz"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
