"""Small typed readers for settings that come from the environment."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def database_from_url(url: str, base_dir: Path) -> dict:
    """Turn `sqlite:///path` or `postgres://user:pass@host:port/name?sslmode=...` into a DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///relative/path is relative to the project; sqlite:////abs/path is absolute.
        raw = unquote(parts.path)
        path = Path(raw[1:]) if raw.startswith("//") else Path(raw.lstrip("/"))
        name = path if path.is_absolute() else base_dir / path
        # `make run` writes from web, beat and two worker processes: WAL lets readers go on while one writes, and
        # IMMEDIATE transactions take the write lock up front, so a writer waits (timeout) instead of failing
        # with "database is locked" when a read transaction would have to upgrade.
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(name), "OPTIONS": {
            "timeout": 30, "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}}
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        host = options.pop("host", None) or unquote(parts.hostname or "")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": host,
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": envint("DATABASE_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ValueError(f"DATABASE_URL scheme {parts.scheme!r} is not supported (use sqlite:// or postgres://)")


# A file cache prunes a third of its entries when it holds more than this; the dashboards keep per-site day pieces.
FILE_CACHE_MAX_ENTRIES = 20_000


def cache_from_url(url: str, base_dir: Path) -> dict:
    """Django's default cache from CACHE_URL: empty = this process's memory; `redis://…` = a Redis shared by every
    process; `file://var/cache` (relative to base_dir) or `file:///abs/path` = files shared by the processes of one
    machine (what `make run` uses, so the worker's pre-warmed charts reach the web process)."""
    if not url:
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss"):
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    if scheme == "file":
        path = Path(unquote(url.removeprefix("file://")))
        return {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": str(path if path.is_absolute() else base_dir / path),
                "OPTIONS": {"MAX_ENTRIES": FILE_CACHE_MAX_ENTRIES}}
    raise ValueError(f"CACHE_URL scheme {scheme!r} is not supported (use redis://, rediss:// or file://)")


def load_env_file(path: Path) -> None:
    """Read KEY=VALUE lines from `path` into the environment, never overriding what is already set."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        os.environ.setdefault(key.strip(), value.strip().strip('"').strip("'"))
