"""`manage.py check --deploy` is clean under the production settings (PRODUCTION=1), and production refuses to
start without a SECRET_KEY."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE"}}
    environ.update(env, DJANGO_SETTINGS_MODULE="factory_portal.settings")
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=120)


def test_check_deploy_is_clean_in_production(tmp_path):
    result = _manage("check", "--deploy", "--fail-level", "WARNING", PRODUCTION="1",
                     SECRET_KEY=secrets.token_urlsafe(60), ALLOWED_HOSTS="portal.example.com",
                     VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_without_secret_key_refuses_to_start(tmp_path):
    result = _manage("check", PRODUCTION="1", VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY must be set when PRODUCTION=1" in result.stderr
