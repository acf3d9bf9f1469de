#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL cluster (DATABASE_URL exported), stopped and deleted afterwards.
# As root, the cluster runs as the unprivileged user `fptest`, since PostgreSQL refuses to run as root.
set -euo pipefail

find_pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
PG_BIN=${PG_BIN:-$(find_pg_bin)}
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing PostgreSQL server binaries (apt-get install postgresql)..." >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    PG_BIN=$(find_pg_bin)
  else
    echo "PostgreSQL server binaries not found: install the 'postgresql' package." >&2
    exit 1
  fi
fi

DIR=$(mktemp -d /tmp/fp-pg.XXXXXX)
RUN_AS=()
if [ "$(id -u)" = 0 ]; then
  id fptest >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin fptest
  chown fptest "$DIR"
  RUN_AS=(runuser -u fptest --)
fi
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cleanup() {
  "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

"${RUN_AS[@]}" "$PG_BIN/initdb" -D "$DIR/data" -U postgres -A trust --no-sync >/dev/null
"${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -o \
  "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
  start >/dev/null
echo "Throwaway PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT" >&2
export DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/factory_portal"
export PG_BIN PG_TEST_DIR="$DIR"
"$@"
