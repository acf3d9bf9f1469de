"""The fetcher's own HTTP/1.1 client against real loopback servers that answer byte for byte what a test scripts:
chunked and gzip bodies, keep-alive reuse, a kept-alive connection closed by the server, broken framing, TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import socket
import ssl
import threading
from collections.abc import Callable

import pytest

from telemetry.collectors.fetch import FetchPolicy, FetchTarget, fetch_many

POLICY = FetchPolicy(timeout_s=3.0, max_bytes=100_000, allow_private=False, allow_loopback=True)
PAGE = b"vllm:prompt_tokens_total{model_name=\"m\"} 12.0\n"


def ok(body: bytes, *headers: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: text/plain; version=0.0.4", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class RawServer:
    """A loopback TCP server: `respond(request_head)` returns the bytes to send, or None to close the connection.

    Keeps each connection open for further requests (HTTP keep-alive) until `respond` returns None or the client
    closes. Counts connections and records request heads; `tls` wraps every connection.
    """

    def __init__(self, respond: Callable[[bytes], bytes | None], tls: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        self.sock.close()

    def url(self, path: str = "/metrics", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                self.requests.append(head)
                answer = self.respond(head)
                if answer is None:
                    return
                conn.sendall(answer)
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()


def fetch(urls: list[str], policy: FetchPolicy = POLICY, **kwargs) -> list:
    targets = [FetchTarget(key=i, url=u) for i, u in enumerate(urls)]
    return asyncio.run(fetch_many(targets, policy, **kwargs))


def test_chunked_and_gzip_bodies_are_decoded() -> None:
    # given a server answering one path chunked and another gzip-compressed and chunked
    zipped = gzip.compress(PAGE * 50)

    def respond(head: bytes) -> bytes:
        if head.startswith(b"GET /chunked "):
            chunks = [PAGE[:10], PAGE[10:], PAGE]
            body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nX-Trailer: 1\r\n\r\n"
            return ok(body, "Transfer-Encoding: chunked")
        return ok(zipped, "Content-Encoding: gzip")

    with RawServer(respond) as server:
        # when
        chunked, zipped_result = fetch([server.url("/chunked"), server.url("/gz")])
    # then
    assert chunked.text == (PAGE * 2).decode()
    assert zipped_result.text == (PAGE * 50).decode()
    assert b"accept-encoding: gzip" in server.requests[0].lower()


def test_a_gzip_bomb_stops_at_the_decoded_limit() -> None:
    # given 50 MB of zeros compressed to ~50 KB, under a 100 KB limit
    bomb = gzip.compress(b"0" * 50_000_000)
    with RawServer(lambda head: ok(bomb, "Content-Encoding: gzip")) as server:
        # when
        (result,) = fetch([server.url()])
    # then
    assert result.error == "page larger than 100000 bytes"


def test_keep_alive_connections_are_reused_within_a_batch() -> None:
    # given one server behind many URLs, fetched two at a time
    with RawServer(lambda head: ok(PAGE)) as server:
        # when
        results = fetch([server.url(f"/e{i}/metrics") for i in range(20)], concurrency=2)
    # then: every page arrived over at most two connections
    assert [r.text for r in results] == [PAGE.decode()] * 20
    assert server.connections <= 2
    assert all(b"connection: keep-alive" in h.lower() for h in server.requests)


def test_a_kept_alive_connection_closed_by_the_server_is_retried_once_on_a_new_one() -> None:
    # given a server that closes every connection after its first answer without saying so
    def respond(head: bytes) -> bytes | None:
        return ok(PAGE)

    class OneShot(RawServer):
        def _handle(self, conn: socket.socket) -> None:
            try:
                while b"\r\n\r\n" not in (data := conn.recv(65536)):
                    if not data:
                        return
                self.requests.append(data)
                conn.sendall(ok(PAGE))
            finally:
                conn.close()

    with OneShot(respond) as server:
        # when
        results = fetch([server.url(f"/e{i}/metrics") for i in range(5)], concurrency=1)
    # then: each request that met a closed connection went out again on a fresh one
    assert [r.error for r in results] == [None] * 5
    assert server.connections == 5


@pytest.mark.parametrize(("answer", "message"), [
    (b"garbage\r\n\r\n", "the engine broke the HTTP protocol: not an HTTP/1.x response"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", "before the response was complete"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcde", "conflicting Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n\xff\xfe", "the page is not UTF-8 text"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\nab", "unsupported Content-Encoding"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "HTTP 101 from the engine"),
    (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000, "response headers too large"),
])
def test_broken_answers_become_the_endpoints_reason(answer: bytes, message: str) -> None:
    # given a server answering with broken framing, then closing
    def respond(head: bytes) -> bytes | None:
        return answer

    class ThenClose(RawServer):
        def _handle(self, conn: socket.socket) -> None:
            try:
                conn.recv(65536)
                conn.sendall(answer)
            finally:
                conn.close()

    with ThenClose(respond) as server:
        # when
        (result,) = fetch([server.url()])
    # then
    assert result.text is None and message in result.error


def test_an_http_1_0_body_until_close_and_an_interim_100_are_read() -> None:
    # given a server that sends 100 Continue, then an HTTP/1.0 answer without a length, then closes
    class UntilClose(RawServer):
        def _handle(self, conn: socket.socket) -> None:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\n" + PAGE)
            finally:
                conn.close()

    with UntilClose(lambda head: None) as server:
        # when
        (result,) = fetch([server.url()])
    # then
    assert result.text == PAGE.decode()


def test_a_url_with_spaces_and_a_token_with_a_newline_cannot_split_the_request() -> None:
    # given
    with RawServer(lambda head: ok(PAGE)) as server:
        # when
        spaced = fetch([server.url("/a b/metrics")])[0]
        injected = asyncio.run(fetch_many(
            [FetchTarget(key=1, url=server.url(), bearer_token="x\r\nX-Evil: 1")], POLICY))[0]
    # then: the path went percent-encoded, the token never left
    assert spaced.error is None
    assert server.requests[0].startswith(b"GET /a%20b/metrics HTTP/1.1\r\n")
    assert injected.error == "the bearer token contains control characters"
    assert len(server.requests) == 1


@pytest.fixture(scope="module")
def tls_pair():
    """A CA and a certificate for engine.test issued by it, as (server context, client context)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("engine.test")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("engine.test")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


def test_https_goes_to_the_vetted_ip_with_the_name_as_sni_and_is_verified(tls_pair) -> None:
    # given a TLS server for engine.test on loopback, and a resolver that vets 127.0.0.1 for that name
    server_ctx, client_ctx = tls_pair
    seen_sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, server_name, ctx: seen_sni.append(server_name)

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    with RawServer(lambda head: ok(PAGE), tls=server_ctx) as server:
        url = server.url(host="engine.test", scheme="https")
        # when
        good = fetch([url], resolver=resolver, ssl_context=client_ctx)[0]
        by_ip = fetch([server.url(scheme="https")], ssl_context=client_ctx)[0]
        untrusted = fetch([url], resolver=resolver)[0]
    # then: the name went as SNI and Host; the IP literal does not match the certificate; the system CAs
    # do not know the test CA
    assert good.text == PAGE.decode(), good.error
    assert seen_sni[0] == "engine.test"
    assert server.requests[0].split(b"\r\n")[1] == f"Host: engine.test:{server.port}".encode()
    assert by_ip.error.startswith("TLS handshake failed")
    assert untrusted.error.startswith("TLS handshake failed")


def test_the_blocking_fetch_keeps_connections_between_batches_and_replaces_closed_ones() -> None:
    # given a keep-alive server, and a second one that closes each connection after one answer (an engine whose
    # keep-alive timeout is shorter than the scrape interval)
    from telemetry.collectors.fetch import close_idle_connections, fetch_many_blocking

    class OneShot(RawServer):
        def _handle(self, conn: socket.socket) -> None:
            try:
                conn.recv(65536)
                conn.sendall(ok(PAGE))
            finally:
                conn.close()

    with RawServer(lambda head: ok(PAGE)) as keeps, OneShot(lambda head: None) as closes:
        targets = [FetchTarget(key=1, url=keeps.url()), FetchTarget(key=2, url=closes.url())]
        try:
            # when three batches run one after another in this thread
            rounds = [fetch_many_blocking(targets, POLICY) for _ in range(3)]
        finally:
            close_idle_connections()
    # then: one connection to the first server for all three, a fresh one each time to the second, no errors
    assert [[r.error for r in results] for results in rounds] == [[None, None]] * 3
    assert keeps.connections == 1 and len(keeps.requests) == 3
    assert closes.connections == 3
