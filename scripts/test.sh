#!/usr/bin/env bash
# The README's test command (`make test`): lint, migrations check, then pytest on a throwaway PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

# Browser tests drive Debian's Chromium; install it when we can (root + apt), as CI does on a fresh machine.
# The broker fault tests run a real Redis. Install both when we can (root + apt), as CI does on a fresh machine.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing ${missing[*]} for the tests (apt-get install)..." >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== ruff" >&2
"$BIN/ruff" check .
echo "== makemigrations --check" >&2
DJANGO_SETTINGS_MODULE=factory_portal.settings_test "$BIN/python" manage.py makemigrations --check --dry-run >/dev/null \
  || { echo "Model changes without a migration: run 'manage.py makemigrations'." >&2; exit 1; }
echo "== pytest on PostgreSQL" >&2
exec scripts/with_postgres.sh "$BIN/pytest" -n "${PYTEST_WORKERS:-2}" "$@"
