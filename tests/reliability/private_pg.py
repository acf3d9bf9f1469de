"""A private PostgreSQL cluster for one test, so it can be restarted (or crashed) without touching the suite's
shared cluster that the other xdist workers use. Same recipe as scripts/with_postgres.sh: the server binaries come
from `PG_BIN` (that script exports it), and as root the cluster runs as the unprivileged user `fptest`, since
PostgreSQL refuses to run as root. Everything is stopped and deleted by `stop()` (call it in a `finally`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from tests.reliability.procs import free_port, wait_until

# fsync off, as scripts/with_postgres.sh: a restart or a crash of the server process is not an OS crash, so WAL
# written to the page cache survives it. synchronous_commit stays ON, unlike that script: with it off, COMMIT returns
# while the WAL is still in shared memory (the WAL writer writes it up to 600 ms later), and an immediate shutdown —
# the crash these tests make — loses transactions the workers were told had committed: readings "stored" that are
# gone after recovery, which production (synchronous_commit on) never does.
SERVER_OPTIONS = ("-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=on -c full_page_writes=off "
                  "-c max_connections=100")


def pg_bin() -> Path:
    found = os.environ.get("PG_BIN", "")
    if not found or not (Path(found) / "initdb").exists():
        pytest.skip("PG_BIN is not set to PostgreSQL's server binaries (scripts/with_postgres.sh exports it)")
    return Path(found)


class PrivatePostgres:
    """`initdb` into a fresh directory, start on a free port and its own unix-socket directory, one database."""

    def __init__(self, *, db_name: str = "factory_portal") -> None:
        self.bin = pg_bin()
        self.db_name = db_name
        self.port = free_port()
        # mkdtemp, not pytest's tmp_path: the unprivileged server user must be able to reach it (and a unix
        # socket path must stay under ~100 characters).
        self.dir = Path(tempfile.mkdtemp(prefix="fp-pgpriv."))
        self.data = self.dir / "data"
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            if subprocess.run(["id", "fptest"], capture_output=True).returncode != 0:
                subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "fptest"],
                               check=True, capture_output=True)
            shutil.chown(self.dir, user="fptest")
            self.run_as = ["runuser", "-u", "fptest", "--"]
        self.restarts: list[tuple[str, float]] = []

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.db_name}"

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run([*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.data), *args], check=True,
                       capture_output=True, timeout=timeout)

    def _start_args(self) -> list[str]:
        return ["-l", str(self.dir / "server.log"), "-w", "-o", f"-p {self.port} -k {self.dir} {SERVER_OPTIONS}"]

    def start(self) -> None:
        subprocess.run([*self.run_as, str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                        "--no-sync"], check=True, capture_output=True, timeout=120)
        self._pg_ctl(*self._start_args(), "start")
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')

    def restart(self, mode: str) -> float:
        """`pg_ctl restart -m fast` (sessions terminated, clean checkpoint) or `-m immediate` (a crash: no
        checkpoint, WAL recovery on start). Returns the seconds the server was unavailable."""
        started = time.monotonic()
        self._pg_ctl("-m", mode, *self._start_args(), "restart")
        took = time.monotonic() - started
        self.restarts.append((mode, took))
        return took

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=self.db_name,
                               autocommit=True)

    def scalar(self, sql: str, params: tuple = ()) -> object:
        """One value, on a fresh connection each time (it must work across the restarts)."""
        def attempt() -> tuple[object] | None:
            try:
                with self.connect() as conn:
                    return (conn.execute(sql, params).fetchone()[0],)
            except psycopg.OperationalError:
                return None  # the server is restarting

        return wait_until(attempt, timeout_s=30, what=f"the private database to answer {sql[:60]}")[0]

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._pg_ctl("-m", "immediate", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
