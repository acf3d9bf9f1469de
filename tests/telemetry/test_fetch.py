"""The SSRF-safe fetcher: refusals happen before any connection; limits, redirects, tokens, DNS pinning."""

from __future__ import annotations

import asyncio
import socket

import pytest

from telemetry.collectors import fetch
from telemetry.collectors.fetch import FetchPolicy, FetchTarget, fetch_many
from tests.telemetry.metering_server import EngineServer

POLICY = FetchPolicy(timeout_s=2.0, max_bytes=1_000_000, allow_private=True, allow_loopback=True)


@pytest.fixture
def server():
    with EngineServer() as s:
        yield s


@pytest.fixture
def no_connections(monkeypatch):
    """Any attempt to open a connection or send a request fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", refuse)
    monkeypatch.setattr(asyncio.BaseEventLoop, "sock_connect", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def run(url: str, policy: FetchPolicy = POLICY, token: str = "", resolver=None) -> fetch.FetchResult:
    return asyncio.run(fetch_many([FetchTarget(key=1, url=url, bearer_token=token)], policy, resolver=resolver))[0]


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/",
    "http://100.100.100.200/latest/meta-data/",
    "http://169.254.10.1:9400/metrics",
    "http://[fe80::1]/metrics",
    "http://[::ffff:169.254.169.254]/",
    "http://0.0.0.0:8000/metrics",
    "ftp://127.0.0.1/metrics",
    "file:///etc/passwd",
    "http://user:pw@127.0.0.1/metrics",
])
def test_forbidden_urls_are_refused_before_any_connection(url: str, no_connections) -> None:
    # given a policy that allows private and loopback addresses (the metadata range is never allowed)
    # when
    result = run(url)
    # then
    assert result.text is None and result.error


def test_a_name_resolving_to_metadata_is_refused_before_any_connection(no_connections) -> None:
    # given a DNS answer that points at the metadata address
    async def resolver(host: str, port: int) -> list[str]:
        return ["10.0.0.5", "169.254.169.254"]

    # when
    result = run("http://engine.internal:8000/metrics", resolver=resolver)
    # then
    assert "cloud-metadata" in result.error


def test_private_and_loopback_follow_the_settings(no_connections) -> None:
    # given
    closed = FetchPolicy(timeout_s=1, max_bytes=100, allow_private=False, allow_loopback=False)
    # when
    private = run("http://10.1.2.3:8000/metrics", closed)
    loopback = run("http://127.0.0.1:8000/metrics", closed)
    # then
    assert "SCRAPE_ALLOW_PRIVATE" in private.error
    assert "SCRAPE_ALLOW_LOOPBACK" in loopback.error


def test_connects_to_the_vetted_address_with_the_original_host_header(server) -> None:
    # given a resolver that vets 127.0.0.1 (a rebinding DNS would answer differently on a second lookup)
    server.set("/metrics", "vllm:num_requests_running 1\n")
    answers = iter([["127.0.0.1"], ["169.254.169.254"]])

    async def resolver(host: str, port: int) -> list[str]:
        return next(answers)

    # when
    result = run(f"http://engine.test:{server.port}/metrics", token="s3cret", resolver=resolver)
    # then: one lookup, the connection went to the vetted IP, the name and the token were sent
    assert result.text == "vllm:num_requests_running 1\n"
    path, headers = server.requests[-1]
    assert headers["Host"] == f"engine.test:{server.port}"
    assert headers["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in repr(FetchTarget(key=1, url="http://x", bearer_token="s3cret"))


def test_redirects_are_not_followed(server) -> None:
    # given
    server.set("/r", "", status=302, headers={"Location": "http://169.254.169.254/"})
    # when
    result = run(server.url("/r"))
    # then
    assert "redirects are not followed" in result.error
    assert len(server.requests) == 1


def test_body_limit_and_endless_stream(server) -> None:
    # given
    small = FetchPolicy(timeout_s=3, max_bytes=1000, allow_private=True, allow_loopback=True)
    server.set("/big", "x" * 5000)
    server.set("/endless", endless=True)
    # when
    big = run(server.url("/big"), small)
    endless = run(server.url("/endless"), small)
    # then
    assert "larger than 1000 bytes" in big.error
    assert "larger than 1000 bytes" in endless.error


def test_slow_engine_times_out_and_500_is_reported(server) -> None:
    # given
    quick = FetchPolicy(timeout_s=0.3, max_bytes=1000, allow_private=True, allow_loopback=True)
    server.set("/slow", "a 1\n", delay_s=1.5)
    server.set("/err", "boom", status=500)
    # when
    slow = run(server.url("/slow"), quick)
    err = run(server.url("/err"), quick)
    # then
    assert slow.error == "timed out" and slow.elapsed_s < 1.2
    assert err.error == "HTTP 500 from the engine"


def test_many_targets_over_several_small_pools_come_back_in_order(server) -> None:
    # given more targets than one pool holds, each path serving its own number, one of them failing
    policy = FetchPolicy(timeout_s=5, max_bytes=1_000_000, allow_private=False, allow_loopback=True)
    # socketserver listens with a backlog of 5; 96 simultaneous connects would meet SYN drops and retransmits.
    server.httpd.socket.listen(256)
    for i in range(150):
        server.set(f"/p{i}", f"n {i}\n")
    targets = [FetchTarget(key=i, url=server.url(f"/p{i}" if i != 77 else "/missing")) for i in range(150)]
    # when
    results = asyncio.run(fetch_many(targets, policy, concurrency=96))
    # then
    assert [r.key for r in results] == list(range(150))
    assert [r.text for r in results if r.key != 77] == [f"n {i}\n" for i in range(150) if i != 77], [
        r.error for r in results if r.error][:5]
    assert results[77].error == "HTTP 404 from the engine"
