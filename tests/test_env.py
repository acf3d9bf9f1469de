from pathlib import Path

import pytest

from factory_portal.env import cache_from_url, database_from_url


def test_sqlite_urls_relative_and_absolute():
    base = Path("/srv/portal")
    assert database_from_url("sqlite:///var/db.sqlite3", base)["NAME"] == "/srv/portal/var/db.sqlite3"
    assert database_from_url("sqlite:////data/db.sqlite3", base)["NAME"] == "/data/db.sqlite3"


def test_postgres_url():
    db = database_from_url("postgres://fp:p%40ss@db.internal:6432/portal?sslmode=require", Path("/"))
    assert (db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "django.db.backends.postgresql", "portal", "fp", "p@ss", "db.internal", "6432")
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="not supported"):
        database_from_url("mysql://x/y", Path("/"))


def test_cache_urls_memory_redis_and_files():
    base = Path("/srv/portal")
    assert cache_from_url("", base)["BACKEND"].endswith("LocMemCache")
    assert cache_from_url("redis://cache:6379/1", base) == {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://cache:6379/1"}
    files = cache_from_url("file://var/cache", base)
    assert (files["BACKEND"], files["LOCATION"]) == ("django.core.cache.backends.filebased.FileBasedCache",
                                                     "/srv/portal/var/cache")
    assert cache_from_url("file:///tmp/fp-cache", base)["LOCATION"] == "/tmp/fp-cache"
    with pytest.raises(ValueError, match="not supported"):
        cache_from_url("memcached://x", base)
