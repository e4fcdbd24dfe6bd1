#!/usr/bin/env python3
"""What TLS and SASL cost: one Partita broker with PLAINTEXT, SSL, SASL_SSL (PLAIN) and
SASL_SSL (SCRAM-SHA-512) listeners, and in the same run, through each listener, librdkafka's rdkafka_performance
producing and consuming 1 KiB records (throughput, broker CPU per GB), and the rate at which
new connections are set up (TCP, TLS handshake, SASL exchange, an ApiVersions answered).

    bash bench/setup.sh              # rdkafka_performance_tls (librdkafka with OpenSSL)
    cargo build --release --bin partita
    bench/tls.sh                     # writes bench/results/tls-<date>.md

The CA and certificates are made with openssl for the run (EC P-256 keys). Goal of the
security issue: TLS costs at most 30% of plaintext throughput.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import produce_consume as pc  # noqa: E402

PASSWORD = "bench-secret"


def make_pki(d: Path) -> None:
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=bench-ca")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    (d / "keystore.pem").write_text((d / "server.key").read_text() + (d / "server.pem").read_text())


def client_options(listener: str, pki: Path) -> list[str]:
    if listener == "PLAINTEXT":
        return []
    protocol = "SASL_SSL" if listener == "SCRAM" else listener
    opts = ["-X", f"security.protocol={protocol}", "-X", f"ssl.ca.location={pki / 'ca.pem'}"]
    if listener == "SASL_SSL":
        opts += ["-X", "sasl.mechanism=PLAIN", "-X", "sasl.username=bench",
                 "-X", f"sasl.password={PASSWORD}"]
    if listener == "SCRAM":
        opts += ["-X", "sasl.mechanism=SCRAM-SHA-512", "-X", "sasl.username=bench",
                 "-X", f"sasl.password={PASSWORD}"]
    return opts


def frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def read_frame(s) -> bytes:
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data
    return exactly(struct.unpack(">i", exactly(4))[0])


def scram_exchange(s, client_id: bytes, salted_cache: dict) -> None:
    """SCRAM-SHA-512 as a client, with the salted password kept between connections (as a
    client that reconnects may): what is measured is mostly the broker's side."""
    import base64
    import hashlib
    import hmac

    def authenticate(token: bytes, correlation: int) -> bytes:
        s.sendall(frame(struct.pack(">hhi", 36, 1, correlation) + client_id +
                        struct.pack(">i", len(token)) + token))
        answer = read_frame(s)
        assert answer[4:6] == b"\x00\x00", f"SCRAM failed: {answer!r}"
        message_length = struct.unpack(">h", answer[6:8])[0]
        at = 8 + max(message_length, 0)
        length = struct.unpack(">i", answer[at:at + 4])[0]
        return answer[at + 4:at + 4 + length]
    s.sendall(frame(struct.pack(">hhi", 17, 1, 2) + client_id + b"\x00\x0dSCRAM-SHA-512"))
    read_frame(s)
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n=bench,r={nonce}"
    server_first = authenticate(f"n,,{first_bare}".encode(), 3).decode()
    fields = dict(f.split("=", 1) for f in server_first.split(","))
    key = (fields["s"], fields["i"])
    if key not in salted_cache:
        salted_cache[key] = hashlib.pbkdf2_hmac("sha512", PASSWORD.encode(),
                                                base64.b64decode(fields["s"]), int(fields["i"]))
    salted = salted_cache[key]
    client_key = hmac.new(salted, b"Client Key", hashlib.sha512).digest()
    stored = hashlib.sha512(client_key).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored, auth, hashlib.sha512).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    authenticate(f"{without_proof},p={base64.b64encode(proof).decode()}".encode(), 4)


def connection_rate(port: int, protocol: str, pki: Path, seconds: float) -> float:
    """New connections per second, one after another: connect, TLS handshake, SASL PLAIN
    (or SCRAM-SHA-512 on the SCRAM listener), then an ApiVersions v0 request answered, then
    close."""
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    client_id = b"\x00\x05bench"
    api_versions = frame(struct.pack(">hhi", 18, 0, 1) + client_id)
    handshake = frame(struct.pack(">hhi", 17, 1, 2) + client_id + b"\x00\x05PLAIN")
    token = b"\x00bench\x00" + PASSWORD.encode()
    authenticate = frame(struct.pack(">hhi", 36, 1, 3) + client_id +
                         struct.pack(">i", len(token)) + token)
    salted_cache: dict = {}
    done = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        s = context.wrap_socket(raw, server_hostname="127.0.0.1") if protocol != "PLAINTEXT" \
            else raw
        if protocol == "SASL_SSL":
            s.sendall(handshake)
            read_frame(s)
            s.sendall(authenticate)
            answer = read_frame(s)
            assert answer[4:6] == b"\x00\x00", "SASL authentication failed"
        if protocol == "SCRAM":
            scram_exchange(s, client_id, salted_cache)
        s.sendall(api_versions)
        read_frame(s)
        s.close()
        done += 1
    return done / (time.monotonic() - start)


def settle_page_cache() -> bool:
    """Writes dirty pages out and drops the page cache, if this process may (root on Linux);
    whether it could."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--connect-seconds", type=float, default=5.0)
    ap.add_argument("--partita-bin", type=Path, default=pc.REPO / "target/release/partita")
    ap.add_argument("--perf-bin", type=Path, default=pc.CACHE / "bin/rdkafka_performance_tls",
                    help="rdkafka_performance built with OpenSSL (bench/setup.sh)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="partita-tls-bench-"))
    pki = work / "pki"
    pki.mkdir()
    make_pki(pki)
    ports = {p: pc.free_port() for p in ("PLAINTEXT", "SSL", "SASL_SSL", "SCRAM")}
    listeners = ",".join(f"{p}://127.0.0.1:{port}" for p, port in ports.items())
    formatted = subprocess.run(
        [str(args.partita_bin), "storage", "format", "--data-dir", str(work / "data"),
         "--add-scram", f"SCRAM-SHA-512=[name=bench,password={PASSWORD}]"],
        capture_output=True, text=True)
    if formatted.returncode != 0:
        raise RuntimeError(formatted.stderr)
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            f'user_bench="{PASSWORD}";')
    argv = [str(args.partita_bin), "broker", "--data-dir", str(work / "data"),
            "--set", "http.listen=", "--set", f"listeners={listeners}",
            "--set", f"advertised.listeners={listeners}",
            "--set", f"ssl.keystore.location={pki / 'keystore.pem'}",
            "--set", "sasl.enabled.mechanisms=PLAIN",
            "--set", f"listener.name.sasl_ssl.plain.sasl.jaas.config={jaas}",
            "--set", "listener.security.protocol.map="
                     "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,SCRAM:SASL_SSL",
            "--set", "listener.name.scram.sasl.enabled.mechanisms=SCRAM-SHA-512"]
    broker = pc.Broker("partita", argv, ports["PLAINTEXT"], work / "broker.log", work)
    (work / "partita").mkdir()
    broker.start()
    results = {protocol: ([], []) for protocol in ports}
    dropped = []
    try:
        for protocol in ports:
            error = pc.create_topics(broker, [f"bench-{protocol.lower()}"], 6)
            if error:
                raise RuntimeError(error)

        def common(protocol: str) -> list[str]:
            return ["-b", f"127.0.0.1:{ports[protocol]}", "-X", "client.id=partita-bench"] + \
                client_options(protocol, pki)
        # Listeners take turns, rep by rep, each produce run starting from a page cache
        # emptied of the runs before (where the machine allows it): the cost of writing into
        # a full page cache grows with what earlier runs left there, and would otherwise fall
        # on whichever listener runs last.
        for i in range(args.reps):
            for protocol in ports:
                dropped.append(settle_page_cache())
                topic = f"bench-{protocol.lower()}"
                results[protocol][0].append(pc.run_step(
                    broker, f"produce-{protocol}-{i}",
                    [str(args.perf_bin), "-P", "-t", topic, "-s", "1024", "-c", str(args.records),
                     "-a", "1", "-X", "linger.ms=5", *common(protocol)],
                    work, 300, args.records, "produce", record_size=1024))
        for i in range(args.reps):
            for protocol in ports:
                topic = f"bench-{protocol.lower()}"
                results[protocol][1].append(pc.run_step(
                    broker, f"consume-{protocol}-{i}",
                    [str(args.perf_bin), "-C", "-t", topic, "-o", "beginning", "-e",
                     *[x for p in range(6) for x in ("-p", str(p))], *common(protocol)],
                    work, 300, args.records * args.reps, "consume"))
        rows = [(protocol, results[protocol][0], results[protocol][1],
                 connection_rate(port, protocol, pki, args.connect_seconds))
                for protocol, port in ports.items()]
    finally:
        broker.stop()

    def best(steps):
        ok = [s for s in steps if s.ok]
        return max(ok, key=lambda s: s.msgs_per_s) if ok else None

    def cpu_per_gb(steps):
        ok = [s for s in steps if s.ok and s.broker_cpu_s is not None]
        moved = sum((s.bytes or 0) for s in ok)
        return sum(s.broker_cpu_s for s in ok) / (moved / 1e9) if moved else float("nan")

    base = {"produce": best(rows[0][1]), "consume": best(rows[0][2])}
    lines = ["| listener | produce 1 KiB acks=1, records/s | consume 1 KiB, records/s | "
             "broker CPU s per GB produced | per GB consumed | new connections/s |",
             "|---|---|---|---|---|---|"]
    for protocol, produce, consume, rate in rows:
        protocol = "SASL_SSL, SCRAM-SHA-512" if protocol == "SCRAM" else protocol
        p, c = best(produce), best(consume)
        cell = lambda s, b: "failed" if s is None else (  # noqa: E731
            f"{s.msgs_per_s:,.0f}" + ("" if b is None or s is b else
                                       f" ({s.msgs_per_s / b.msgs_per_s - 1:+.0%})"))
        lines.append(f"| {protocol} | {cell(p, base['produce'])} | {cell(c, base['consume'])} | "
                     f"{cpu_per_gb(produce):.2f} | {cpu_per_gb(consume):.2f} | {rate:,.0f} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        cache = ("the page cache is dropped before each produce run" if all(dropped) else
                 "the page cache could not be dropped between runs (not root): later runs "
                 "write into a fuller one")
        pc.write_result(
            "tls", "TLS and SASL cost", f"bench/tls.sh {' '.join(sys.argv[1:])}",
            f"One broker, four listeners; rdkafka_performance ({args.records:,} records of "
            f"1 KiB per run, best of {args.reps}; the listeners take turns, and {cache}); "
            f"connections made one after another by a Python client (TCP, TLS 1.3 handshake, "
            f"SASL PLAIN or SCRAM-SHA-512 with the client's salted password kept between "
            f"connections, one ApiVersions).", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
