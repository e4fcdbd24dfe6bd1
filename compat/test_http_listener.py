"""The HTTP listener under slow and silent connections: 2,000 of them open at once must not
keep a Prometheus scrape or the dashboard from being answered, and they are closed by the
broker once they have taken too long to send their request."""

from __future__ import annotations

import resource
import socket
import time
import urllib.request

from partita_compat import free_port, wait_until
from test_tls import pki  # noqa: F401 - the fixture

SILENT = 1000
SLOW = 1000


def open_connections(port: int, n: int) -> list:
    sockets = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setblocking(False)
        sockets.append(s)
    return sockets


def closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_slow_and_silent_connections_do_not_keep_a_scrape_out(start_broker):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SILENT + SLOW + 512
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    http_port = free_port()
    start_broker({"http.listen": f"127.0.0.1:{http_port}"})
    wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics",
                                              timeout=5).status == 200, 30, "the HTTP listener")
    silent = open_connections(http_port, SILENT)
    slow = open_connections(http_port, SLOW)
    for s in slow:
        s.send(b"GET /metrics HTTP/1.1\r\n")
    try:
        # Trickle a byte of a header now and then on the slow ones while scraping.
        for round_ in range(3):
            for s in slow:
                try:
                    s.send(b"X")
                except OSError:
                    pass
            started = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics",
                                        timeout=10) as response:
                body = response.read().decode()
            elapsed = time.monotonic() - started
            assert response.status == 200 and "partita_connections_open" in body
            print(f"scrape {round_} with {SILENT + SLOW} slow and silent connections open: "
                  f"{elapsed * 1000:.0f} ms")
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/groups",
                                        timeout=10) as response:
                assert response.status == 200
            time.sleep(0.5)
        # The broker closes what has not sent a whole request head in time.
        wait_until(lambda: all(closed_by_peer(s) for s in silent), 60,
                   "every silent connection closed by the broker")
        wait_until(lambda: all(closed_by_peer(s) for s in slow), 60,
                   "every slow connection closed by the broker")
    finally:
        for s in silent + slow:
            s.close()


def _get(url: str, context=None, headers=None):
    """(status, body) of a GET, a refusal included."""
    import urllib.error
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_https_with_basic_and_bearer_credentials_shows_nothing_to_strangers(start_broker,
                                                                            pki):
    import base64
    import ssl
    http_port = free_port()
    start_broker({"http.listen": f"https://127.0.0.1:{http_port}",
                  "ssl.keystore.location": str(pki / "server-keystore.pem"),
                  "http.auth": "basic:prom:Scrape-Pw-5,bearer:token-Abc-6"})
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    base = f"https://127.0.0.1:{http_port}"
    wait_until(lambda: _get(f"{base}/metrics", context)[0] == 401, 30, "the HTTPS listener")
    basic = "Basic " + base64.b64encode(b"prom:Scrape-Pw-5").decode()
    for path in ("/metrics", "/", "/api/groups", "/api/topics"):
        status, body = _get(base + path, context)
        assert status == 401 and "partita" not in body, (path, status, body)
        assert _get(base + path, context, {"Authorization": basic})[0] == 200, path
    status, body = _get(f"{base}/metrics", context, {"Authorization": "Bearer token-Abc-6"})
    assert status == 200 and "partita_" in body
    wrong = "Basic " + base64.b64encode(b"prom:nope").decode()
    assert _get(f"{base}/metrics", context, {"Authorization": wrong})[0] == 401
    # Plain HTTP on the HTTPS port gets nothing.
    import http.client
    import urllib.error
    try:
        status = _get(f"http://127.0.0.1:{http_port}/metrics")[0]
    except (urllib.error.URLError, http.client.HTTPException, OSError):
        status = None
    assert status != 200


def test_an_http_listener_reachable_from_other_machines_needs_credentials(start_broker):
    import pytest
    with pytest.raises(RuntimeError) as refused:
        start_broker({"http.listen": f"0.0.0.0:{free_port()}"})
    assert "http.auth" in str(refused.value)
    http_port = free_port()
    start_broker({"http.listen": f"0.0.0.0:{http_port}", "http.auth": "bearer:token-Xyz-7"})
    wait_until(lambda: _get(f"http://127.0.0.1:{http_port}/metrics")[0] == 401, 30,
               "the HTTP listener")
