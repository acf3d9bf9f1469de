"""Real processes for the reliability tests: a Redis broker and Celery workers on 127.0.0.1, started as
children of the test and ended by their own process ids (never by name)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], object], *, timeout_s: float, every_s: float = 0.2, what: str = "") -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
        time.sleep(every_s)


def redis_server_binary() -> str:
    """Debian's redis-server; installed on demand when we are root with apt (as scripts/test.sh does for
    Chromium), else the test is skipped with the reason."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run("apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                       "redis-server >/dev/null", shell=True, check=False, timeout=300)
        found = shutil.which("redis-server")
        if found:
            return found
    pytest.skip("redis-server is not installed (apt-get install redis-server)")


class Redis:
    """`redis-server --port P --save ''` on 127.0.0.1: no persistence, so a restart loses queued messages."""

    def __init__(self) -> None:
        self.binary = redis_server_binary()
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--protected-mode", "yes"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(up, timeout_s=10, what="redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def worker_env(*, broker_url: str, db_name: str, var_dir: Path, **extra: str) -> dict[str, str]:
    parts = urlsplit(os.environ["DATABASE_URL"])
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "factory_portal.settings",
            "DATABASE_URL": urlunsplit(parts._replace(path="/" + db_name)), "DATABASE_CONN_MAX_AGE": "0",
            "VAR_DIR": str(var_dir), "CELERY_BROKER_URL": broker_url, "CELERY_TASK_ALWAYS_EAGER": "0",
            "SECRET_KEY": "test-only", "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO", **extra}


class Worker:
    """`celery -A tests.reliability.celery_app worker` in its own session, so SIGKILL reaches its children."""

    def __init__(self, env: dict[str, str], *, queues: str, name: str, log: Path, concurrency: int = 1,
                 launcher: tuple[str, ...] = ("-m", "celery"), app: str = "tests.reliability.celery_app") -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, *launcher, "-A", app, "worker", "-Q", queues,
             "-c", str(concurrency), "--without-heartbeat", "--without-mingle", "--without-gossip",
             "-n", f"{name}@reliability", "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float = 60) -> None:
        wait_until(lambda: b" ready." in self.log_path.read_bytes() or self.proc.poll() is not None,
                   timeout_s=timeout_s, what="the worker to be ready")
        assert self.proc.poll() is None, self.log_path.read_text()[-3000:]

    def kill(self) -> None:
        """SIGKILL the whole worker (parent and pool children): no shutdown handler runs, nothing is acked."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
