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
  limit (`SCRAPE_MAX_BYTES`, counted while streaming, decoded size).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

__all__ = ["FetchError", "FetchPolicy", "FetchResult", "FetchTarget", "fetch_many", "fetch_one", "vet_address"]

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, private in practice
NAT64 = ipaddress.ip_network("64:ff9b::/96")
USER_AGENT = "factory-portal-metering/1"


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
    url: str  # with the vetted IP in place of the host
    host_header: str
    sni_hostname: str | None


async def plan_request(url: str, policy: FetchPolicy, resolver: Resolver | None = None) -> _Plan:
    """Check the URL and resolve its host to one vetted address. Raises FetchError before any connection."""
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
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await (resolver or _resolve)(host, port)
        except (OSError, UnicodeError) as exc:
            raise FetchError(f"cannot resolve {host}: {exc}") from None
        if not addresses:
            raise FetchError(f"cannot resolve {host}")
    vetted: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        reason = vet_address(ip, policy)
        if reason:
            # One bad answer refuses the host: a name that also points at metadata is not trusted.
            raise FetchError(f"refused: {reason}")
        vetted.append(ip)
    ip = vetted[0]
    netloc_host = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = netloc_host if parts.port is None else f"{netloc_host}:{port}"
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    sni = parts.hostname if parts.scheme == "https" and literal is None else None
    return _Plan(url=target, host_header=parts.netloc, sni_hostname=sni)


async def _fetch(client: httpx.AsyncClient, target: FetchTarget, policy: FetchPolicy,
                 resolver: Resolver | None) -> str:
    plan = await plan_request(target.url, policy, resolver)
    headers = {"Host": plan.host_header, "Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1"}
    if target.bearer_token:
        headers["Authorization"] = f"Bearer {target.bearer_token}"
    extensions = {"sni_hostname": plan.sni_hostname} if plan.sni_hostname else {}
    request = client.build_request("GET", plan.url, headers=headers, extensions=extensions)
    response = await client.send(request, stream=True, follow_redirects=False)
    try:
        if response.is_redirect:
            raise FetchError(f"HTTP {response.status_code}: redirects are not followed")
        if response.status_code != 200:
            raise FetchError(f"HTTP {response.status_code} from the engine")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > policy.max_bytes:
            raise FetchError(f"page larger than {policy.max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > policy.max_bytes:
                raise FetchError(f"page larger than {policy.max_bytes} bytes")
            chunks.append(chunk)
    finally:
        await response.aclose()
    body = b"".join(chunks)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise FetchError("the page is not UTF-8 text") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FetchError):
        return str(exc)
    if isinstance(exc, (asyncio.TimeoutError, httpx.TimeoutException)):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or unreachable"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the engine closed the connection or broke the HTTP protocol"
    if isinstance(exc, httpx.HTTPError):
        return f"HTTP error: {type(exc).__name__}"
    return f"{type(exc).__name__}"


async def fetch_one(client: httpx.AsyncClient, target: FetchTarget, policy: FetchPolicy,
                    resolver: Resolver | None = None) -> FetchResult:
    started = time.monotonic()
    try:
        text = await asyncio.wait_for(_fetch(client, target, policy, resolver), timeout=policy.timeout_s)
        error = None
    except Exception as exc:  # noqa: BLE001 - every failure becomes the endpoint's reason, the batch goes on
        text, error = None, _describe(exc)
    return FetchResult(key=target.key, text=text, error=error, fetched_at=time.time(),
                       elapsed_s=time.monotonic() - started)


def new_client(policy: FetchPolicy, *, max_connections: int = 256) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(policy.timeout_s),
        follow_redirects=False,
        trust_env=False,  # never route through a proxy from the environment
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        headers={"User-Agent": USER_AGENT},
    )


# httpcore's pool scans all its connections for every request it assigns (quadratic in the pool size: with 256
# connections, most of a 250-endpoint batch's CPU went there), so a batch is spread over several small clients.
POOL_SIZE = 32


async def fetch_many(targets: Sequence[FetchTarget], policy: FetchPolicy, *, concurrency: int = 256,
                     resolver: Resolver | None = None) -> list[FetchResult]:
    """Fetch all targets concurrently (at most `concurrency` at once); one result per target, in order."""
    pools = max(1, min(len(targets), -(-concurrency // POOL_SIZE)))
    per_pool = max(1, concurrency // pools)

    async def shard(part: Sequence[FetchTarget]) -> list[FetchResult]:
        semaphore = asyncio.Semaphore(per_pool)
        async with new_client(policy, max_connections=per_pool) as client:

            async def one(target: FetchTarget) -> FetchResult:
                async with semaphore:
                    return await fetch_one(client, target, policy, resolver)

            return list(await asyncio.gather(*(one(t) for t in part)))

    parts = [targets[i::pools] for i in range(pools)]
    results = await asyncio.gather(*(shard(part) for part in parts))
    # Back to the targets' order: shard i holds targets i, i + pools, i + 2·pools, ...
    ordered: list[FetchResult] = [None] * len(targets)  # type: ignore[list-item]
    for i, part_results in enumerate(results):
        ordered[i::pools] = part_results
    return ordered
