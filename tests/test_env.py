from pathlib import Path

import pytest

from factory_portal.env import database_from_url


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
