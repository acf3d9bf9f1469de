"""Server-side fetching of registered metrics URLs, safe against SSRF. I/O only, no ORM.

Rules (docs/metering.md, issue 10):
* only http:// and https://, no credentials in the URL (the bearer token has its own encrypted field);
* the host is resolved once and every address vetted: link-local (169.254.0.0/16, fe80::/10) and the
  cloud-metadata addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200) are refused always, private
  ranges unless `SCRAPE_ALLOW_PRIVATE`, loopback unless `SCRAPE_ALLOW_LOOPBACK`; unspecified, multicast and
  reserved addresses always;
* the connection goes to the vetted IP (Host header and TLS SNI keep the name), so a second DNS answer
  (rebinding) is never used;
* no redirects; a per-request deadline (`SCRAPE_TIMEOUT_S`, the whole exchange, not per read) and a body
  limit (`SCRAPE_MAX_BYTES`, counted while reading, decoded size).

The HTTP/1.1 client is a small `asyncio.Protocol` of our own rather than httpx: a scrape is one GET of a small
text page, and httpx/httpcore spent ≈ 3 ms of CPU per endpoint on it (pool bookkeeping, the anyio layers, header
models), ten times the cost of the parse. This one writes the request in one buffer, parses the status line and
headers once, and takes the body by Content-Length, chunked, or until close, decoding gzip/deflate. Connections
are kept alive per (vetted IP, port, TLS name): within one `fetch_many`, and, through `fetch_many_blocking` (the
scrape task), between batches of the same worker thread, as Prometheus does. Engines whose keep-alive timeout is
shorter than the scrape interval (uvicorn's 5 s) close them in between; those are noticed and replaced.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

__all__ = [
    "FetchError", "FetchPolicy", "FetchResult", "FetchTarget", "close_idle_connections", "fetch_many",
    "fetch_many_blocking", "fetch_one", "vet_address",
]

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, private in practice
NAT64 = ipaddress.ip_network("64:ff9b::/96")
USER_AGENT = "factory-portal-metering/1"
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
MAX_HEAD_BYTES = 64 * 1024  # status line + headers; a server sending more is broken or hostile
MAX_CHUNK_LINE = 1024
REDIRECTS = frozenset((301, 302, 303, 307, 308))


class FetchError(Exception):
    """The URL was refused or could not be fetched; the message is safe to store and show."""


@dataclass(frozen=True)
class FetchPolicy:
    timeout_s: float
    max_bytes: int
    allow_private: bool
    allow_loopback: bool

    @classmethod
    def from_settings(cls) -> FetchPolicy:
        from django.conf import settings

        return cls(
            timeout_s=float(settings.SCRAPE_TIMEOUT_S), max_bytes=int(settings.SCRAPE_MAX_BYTES),
            allow_private=bool(settings.SCRAPE_ALLOW_PRIVATE), allow_loopback=bool(settings.SCRAPE_ALLOW_LOOPBACK),
        )


@dataclass(frozen=True)
class FetchTarget:
    key: int | str  # the caller's id for this target (an endpoint pk)
    url: str
    bearer_token: str = ""

    def __repr__(self) -> str:  # never print the token
        return f"FetchTarget(key={self.key!r}, url={self.url!r})"


@dataclass(frozen=True)
class FetchResult:
    key: int | str
    text: str | None
    error: str | None
    fetched_at: float  # time.time() when the exchange ended
    elapsed_s: float


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def vet_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: FetchPolicy) -> str | None:
    """Why this address must not be fetched, or None when it may be."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = vet_address(embedded, policy)
            if reason:
                return reason
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud-metadata address and is never fetched"
    if any(ip in net for net in LINK_LOCAL):
        return f"{ip} is link-local and is never fetched"
    if ip.is_unspecified or ip.is_multicast:
        return f"{ip} is not a unicast host address"
    if ip.is_loopback:
        return None if policy.allow_loopback else f"{ip} is a loopback address (SCRAPE_ALLOW_LOOPBACK is off)"
    if ip.is_private or ip in SHARED_ADDRESS_SPACE:
        return None if policy.allow_private else f"{ip} is a private address (SCRAPE_ALLOW_PRIVATE is off)"
    if ip.is_reserved:
        return f"{ip} is a reserved address"
    return None


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def _resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass(frozen=True)
class _Plan:
    scheme: str
    ip: str  # the vetted address the connection goes to
    port: int
    target: str  # the request target: path and query, percent-encoded
    host_header: str
    sni_hostname: str | None  # https only: the name TLS sends and verifies (None: the IP literal itself)

    @property
    def url(self) -> str:  # with the vetted IP in place of the host (for messages and tests)
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{self.scheme}://{host}:{self.port}{self.target}"


def _ascii_host(host: str) -> str:
    try:
        host.encode("ascii")
        return host
    except UnicodeEncodeError:
        try:
            return host.encode("idna").decode("ascii")
        except UnicodeError:
            raise FetchError(f"invalid host name {host!r}") from None


async def plan_request(url: str, policy: FetchPolicy, resolver: Resolver | None = None,
                       dns_cache: dict[tuple[str, int], list[str]] | None = None) -> _Plan:
    """Check the URL and resolve its host to one vetted address. Raises FetchError before any connection.

    `dns_cache` (one batch) answers a host name seen earlier in the batch; every answer is vetted either way.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError("only http:// and https:// URLs are fetched")
    if parts.username is not None or parts.password is not None:
        raise FetchError("credentials in the URL are not allowed; use the endpoint's bearer token")
    host = parts.hostname
    if not host:
        raise FetchError("the URL has no host")
    if any(c <= " " or c == "\x7f" for c in parts.netloc):
        raise FetchError("the URL's host contains spaces or control characters")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        host = _ascii_host(host)
        addresses = dns_cache.get((host, port)) if dns_cache is not None else None
        if addresses is None:
            try:
                addresses = await (resolver or _resolve)(host, port)
            except (OSError, UnicodeError) as exc:
                raise FetchError(f"cannot resolve {host}: {exc}") from None
            if not addresses:
                raise FetchError(f"cannot resolve {host}")
            if dns_cache is not None:
                dns_cache[(host, port)] = addresses
    vetted: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        reason = vet_address(ip, policy)
        if reason:
            # One bad answer refuses the host: a name that also points at metadata is not trusted.
            raise FetchError(f"refused: {reason}")
        vetted.append(ip)
    ip = vetted[0]
    # The request line must stay one line: anything outside the URL alphabet is percent-encoded.
    target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    host_header = parts.netloc if literal is not None else _ascii_host(parts.netloc)
    sni = host if parts.scheme == "https" and literal is None else None
    return _Plan(scheme=parts.scheme, ip=str(ip), port=port, target=target, host_header=host_header,
                 sni_hostname=sni)


class _Broken(Exception):
    """The server broke HTTP/1.1 framing or closed early (the message says how)."""


class _Response:
    __slots__ = ("body", "keep_alive", "status")

    def __init__(self, status: int, body: bytes, keep_alive: bool) -> None:
        self.status, self.body, self.keep_alive = status, body, keep_alive


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, the response parsed as bytes arrive.

    The response is complete when its framing says so (Content-Length, the last chunk, or EOF when neither);
    `max_bytes` counts the decoded body while it arrives, so an endless or oversized page stops early.
    Non-200 answers finish at their headers (the connection is then dropped, not reused).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.max_bytes = 0
        self.idle_since = 0.0  # time.monotonic() when it went back to the pool
        self._waiter: asyncio.Future[_Response] | None = None

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.abort()  # bytes nobody asked for: the connection's framing can no longer be trusted
            return
        self._got_bytes = True
        self._buf += data
        try:
            self._advance()
        except (FetchError, _Broken) as exc:
            self._finish(exc)
        except zlib.error:
            self._finish(_Broken("the compressed body is corrupt"))

    def eof_received(self) -> bool:
        self._closed_by_peer()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed_by_peer()

    # -- use
    def request(self, raw: bytes, max_bytes: int) -> asyncio.Future[_Response]:
        assert self.transport is not None
        self.max_bytes = max_bytes
        self._waiter = asyncio.get_running_loop().create_future()
        self._buf = bytearray()
        self._got_bytes = False
        self._state = "head"
        self._status = 0
        self._keep_alive = True
        self._remaining = 0  # bytes of the current length-framed body or chunk still to come
        self._parts: list[bytes] = []
        self._size = 0
        self._decoder: zlib._Decompress | None = None
        self.transport.write(raw)
        return self._waiter

    @property
    def got_bytes(self) -> bool:
        return self._got_bytes

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- parsing
    def _closed_by_peer(self) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._state == "until_close":
            try:
                self._flush_decoder()
                self._keep_alive = False
                self._finish(None)
            except FetchError as exc:
                self._finish(exc)
            except zlib.error:
                self._finish(_Broken("the compressed body is corrupt"))
        else:
            self._finish(_Broken("the engine closed the connection before the response was complete"))

    def _finish(self, error: BaseException | None) -> None:
        waiter = self._waiter
        self._state = "done"
        if waiter is None or waiter.done():
            return
        if error is not None:
            self.abort()
            waiter.set_exception(error)
        else:
            waiter.set_result(_Response(self._status, b"".join(self._parts), self._keep_alive))

    def _add_body(self, data: bytes, *, decoded: bool = False) -> None:
        if self._decoder is not None and not decoded:
            # Ask for at most one byte past the limit: a compressed bomb never inflates in memory.
            data = self._decoder.decompress(data, self.max_bytes - self._size + 1)
        self._size += len(data)
        if self._size > self.max_bytes:
            raise FetchError(f"page larger than {self.max_bytes} bytes")
        if data:
            self._parts.append(data)

    def _flush_decoder(self) -> None:
        if self._decoder is not None:
            self._add_body(self._decoder.flush(), decoded=True)

    def _advance(self) -> None:  # noqa: C901 - one state machine, clearer in one place
        buf = self._buf
        while True:
            state = self._state
            if state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise _Broken("response headers too large")
                    return
                head = bytes(buf[:end])
                del buf[:end + 4]
                if self._parse_head(head):
                    continue  # an interim 1xx response: the real one follows
            elif state == "length":
                if not buf:
                    return
                take = min(self._remaining, len(buf))
                self._add_body(bytes(buf[:take]))
                del buf[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self._flush_decoder()
                    self._done_body()
                    return
            elif state == "chunk_size":
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_CHUNK_LINE:
                        raise _Broken("bad chunk size line")
                    return
                line = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[:end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise _Broken("bad chunk size line") from None
                if size < 0:
                    raise _Broken("bad chunk size line")
                self._remaining = size
                self._state = "chunk_data" if size else "trailer"
            elif state == "chunk_data":
                if self._remaining:
                    if not buf:
                        return
                    take = min(self._remaining, len(buf))
                    self._add_body(bytes(buf[:take]))
                    del buf[:take]
                    self._remaining -= take
                    if self._remaining:
                        return
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise _Broken("bad chunk framing")
                del buf[:2]
                self._state = "chunk_size"
            elif state == "trailer":
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise _Broken("response trailers too large")
                    return
                del buf[:end + 2]
                if end == 0:
                    self._flush_decoder()
                    self._done_body()
                    return
            elif state == "until_close":
                if buf:
                    self._add_body(bytes(buf))
                    buf.clear()
                return
            else:
                return

    def _done_body(self) -> None:
        if self._buf:
            self._keep_alive = False  # more bytes than the framing allows: do not reuse
        self._finish(None)

    def _parse_head(self, head: bytes) -> bool:
        """Parse the status line and headers; True for an interim 1xx response (skipped)."""
        lines = head.split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1.") or not status_line[1].isdigit() \
                or len(status_line[1]) != 3:
            raise _Broken("not an HTTP/1.x response")
        status = int(status_line[1])
        if 100 <= status < 200 and status != 101:
            return True
        self._status = status
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise _Broken("malformed response header")
            name = name.lower()
            value = value.strip()
            if name in headers:
                if name == b"content-length" and headers[name] != value:
                    raise _Broken("conflicting Content-Length headers")
                headers[name] = headers[name] + b", " + value
            else:
                headers[name] = value
        if status in REDIRECTS:
            raise FetchError(f"HTTP {status}: redirects are not followed")
        if status != 200:
            raise FetchError(f"HTTP {status} from the engine")
        connection = headers.get(b"connection", b"").lower()
        self._keep_alive = status_line[0] == b"HTTP/1.1" and b"close" not in connection
        encoding = headers.get(b"content-encoding", b"identity").lower().strip()
        if encoding in (b"gzip", b"x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == b"deflate":
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS)
        elif encoding not in (b"identity", b""):
            raise FetchError(f"unsupported Content-Encoding {encoding.decode('latin-1')!r}")
        transfer = headers.get(b"transfer-encoding")
        length = headers.get(b"content-length")
        if transfer is not None:
            if transfer.lower().rsplit(b",", 1)[-1].strip() != b"chunked":
                raise _Broken("unsupported Transfer-Encoding")
            self._state = "chunk_size"
        elif length is not None:
            if not length.isdigit():
                raise _Broken("bad Content-Length")
            self._remaining = int(length)
            if self._remaining > self.max_bytes:
                raise FetchError(f"page larger than {self.max_bytes} bytes")
            if self._remaining == 0:
                self._done_body()
            else:
                self._state = "length"
        else:
            self._state = "until_close"
            self._keep_alive = False
        return False


_default_ssl: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    global _default_ssl
    if _default_ssl is None:  # loading the CA bundle costs milliseconds: once per process
        _default_ssl = ssl.create_default_context()
    return _default_ssl


class _Pool:
    """Idle keep-alive connections per (vetted IP, port, scheme, TLS name, TLS context).

    A connection is only ever taken for a request whose URL was planned (and its address vetted) again, so
    keeping connections between batches never bypasses the SSRF rules.
    """

    MAX_IDLE = 20_000  # connections kept in all; beyond that the oldest are closed
    MAX_IDLE_S = 120.0  # an engine that was not scraped for this long gets a fresh connection

    def __init__(self) -> None:
        self.idle: dict[tuple, list[_Connection]] = {}
        self.count = 0

    def take(self, key: tuple) -> _Connection | None:
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            self.count -= 1
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    def put(self, key: tuple, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        self.idle.setdefault(key, []).append(conn)
        self.count += 1

    def prune(self) -> None:
        """Close connections the server closed, idle too long, or beyond MAX_IDLE (oldest first)."""
        cutoff = time.monotonic() - self.MAX_IDLE_S
        live = [(c.idle_since, key, c) for key, conns in self.idle.items() for c in conns]
        self.idle.clear()
        self.count = 0
        live.sort(key=lambda x: x[0], reverse=True)
        for n, (since, key, conn) in enumerate(live):
            if conn.closed or since < cutoff or n >= self.MAX_IDLE:
                conn.abort()
            else:
                self.idle.setdefault(key, []).append(conn)
                self.count += 1

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.abort()
        self.idle.clear()
        self.count = 0


class _Batch:
    """What one `fetch_many` shares: the policy, the resolver and its answers, the TLS context, the pool."""

    def __init__(self, policy: FetchPolicy, pool: _Pool, *, resolver: Resolver | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self.pool = pool
        self.resolver = resolver
        self.ssl_context = ssl_context
        self.dns: dict[tuple[str, int], list[str]] = {}  # this batch only: DNS answers are not kept longer

    def key(self, plan: _Plan) -> tuple:
        return plan.ip, plan.port, plan.scheme, plan.sni_hostname, id(self.ssl_context)

    async def connect(self, plan: _Plan) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if plan.scheme == "https":
            tls = self.ssl_context or _ssl_context()
        try:
            _transport, conn = await loop.create_connection(
                _Connection, host=plan.ip, port=plan.port, ssl=tls,
                server_hostname=(plan.sni_hostname or plan.ip) if tls else None,
            )
        except ssl.SSLError as exc:
            raise FetchError(f"TLS handshake failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise FetchError("connection refused or unreachable") from exc
        return conn


def _request_bytes(plan: _Plan, bearer_token: str) -> bytes:
    lines = [
        f"GET {plan.target} HTTP/1.1", f"Host: {plan.host_header}", f"User-Agent: {USER_AGENT}", f"Accept: {ACCEPT}",
        "Accept-Encoding: gzip", "Connection: keep-alive",
    ]
    if bearer_token:
        if any(c < " " or c == "\x7f" for c in bearer_token):
            raise FetchError("the bearer token contains control characters")
        lines.append(f"Authorization: Bearer {bearer_token}")
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise FetchError("the bearer token is not Latin-1 text") from None


async def _fetch(batch: _Batch, target: FetchTarget) -> str:
    plan = await plan_request(target.url, batch.policy, batch.resolver, batch.dns)
    raw = _request_bytes(plan, target.bearer_token)
    key = batch.key(plan)
    conn = batch.pool.take(key)
    while True:
        reused = conn is not None
        if conn is None:
            conn = await batch.connect(plan)
        try:
            response = await conn.request(raw, batch.policy.max_bytes)
        except _Broken:
            # A kept-alive connection the server closed just before our request: try once on a fresh one.
            if reused and not conn.got_bytes:
                conn.abort()
                conn = None
                continue
            raise
        except BaseException:
            conn.abort()  # a timeout or a refusal mid-response: never reuse a half-read connection
            raise
        break
    if response.keep_alive and not conn.closed:
        batch.pool.put(key, conn)
    else:
        conn.abort()
    try:
        return response.body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError("the page is not UTF-8 text") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FetchError):
        return str(exc)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    if isinstance(exc, _Broken):
        return f"the engine broke the HTTP protocol: {exc}"
    if isinstance(exc, ConnectionError):
        return "the engine closed the connection"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    return f"{type(exc).__name__}"


async def fetch_one(batch: _Batch, target: FetchTarget) -> FetchResult:
    started = time.monotonic()
    try:
        async with asyncio.timeout(batch.policy.timeout_s):
            text = await _fetch(batch, target)
        error = None
    except Exception as exc:  # noqa: BLE001 - every failure becomes the endpoint's reason, the batch goes on
        text, error = None, _describe(exc)
    return FetchResult(key=target.key, text=text, error=error, fetched_at=time.time(),
                       elapsed_s=time.monotonic() - started)


async def fetch_many(targets: Sequence[FetchTarget], policy: FetchPolicy, *, concurrency: int = 256,
                     resolver: Resolver | None = None, ssl_context: ssl.SSLContext | None = None,
                     pool: _Pool | None = None) -> list[FetchResult]:
    """Fetch all targets concurrently (at most `concurrency` at once); one result per target, in order.

    `ssl_context` replaces the system CA store (tests with their own CA); the default verifies certificates.
    `pool` keeps idle connections for a later call on the same event loop; without one they close at the end.
    """
    own_pool = pool is None
    batch = _Batch(policy, pool or _Pool(), resolver=resolver, ssl_context=ssl_context)
    if not own_pool:
        # Let the loop notice connections the servers closed while it was not running (an engine's keep-alive
        # timeout between two rounds), so they are not tried first.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        batch.pool.prune()
    results: list[FetchResult] = [None] * len(targets)  # type: ignore[list-item]
    queue = iter(enumerate(targets))

    # A fixed set of workers taking the next target, rather than a task per target behind a semaphore:
    # asyncio.Semaphore checks all its waiters on every acquire (quadratic in the batch size).
    async def worker() -> None:
        for i, target in queue:
            results[i] = await fetch_one(batch, target)

    try:
        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(targets))))))
    finally:
        if own_pool:
            batch.pool.close()
            await asyncio.sleep(0)  # let the aborted transports report connection_lost before the loop closes
    return results


class _Runner(threading.local):
    """This thread's event loop and connection pool, kept between batches (a Celery worker process runs one
    batch after another; reconnecting to thousands of engines every round was a third of the scrape's CPU)."""

    pid = 0
    loop: asyncio.AbstractEventLoop | None = None
    pool: _Pool | None = None

    def get(self) -> tuple[asyncio.AbstractEventLoop, _Pool]:
        if self.loop is None or self.pid != os.getpid():  # never use a loop or sockets inherited through fork
            self.loop, self.pool, self.pid = asyncio.new_event_loop(), _Pool(), os.getpid()
        return self.loop, self.pool  # type: ignore[return-value]

    def discard(self) -> None:
        loop, pool = self.loop, self.pool
        self.loop = self.pool = None
        if loop is None or loop.is_closed():
            return
        if self.pid == os.getpid():
            if pool is not None:
                pool.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            try:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            except BaseException:  # noqa: BLE001 - tearing down after a failure: nothing more to save
                pass
            loop.close()


_runner = _Runner()


def fetch_many_blocking(targets: Sequence[FetchTarget], policy: FetchPolicy, *,
                        concurrency: int = 256) -> list[FetchResult]:
    """`fetch_many` for synchronous callers (the scrape task), reusing connections from earlier calls in this
    thread. Anything escaping (a task's soft time limit) tears the loop and its connections down."""
    loop, pool = _runner.get()
    try:
        return loop.run_until_complete(fetch_many(targets, policy, concurrency=concurrency, pool=pool))
    except BaseException:
        _runner.discard()
        raise


def close_idle_connections() -> None:
    """Close this thread's kept-alive connections and its event loop (tests, benchmarks, worker shutdown)."""
    _runner.discard()
