#!/usr/bin/env bash
# The README's run command (`make run`): migrate, then web + one Celery worker with embedded beat.
# Ctrl-C stops all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${PORT:-8000}
HOSTNAME_SHORT=$(hostname -s 2>/dev/null || hostname)

"$BIN/python" manage.py migrate --noinput
"$BIN/python" manage.py bootstrap

pids=()
stop() {
  trap - INT TERM EXIT
  echo "Stopping Factory Portal..." >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

"$BIN/celery" -A factory_portal worker -B --loglevel "${CELERY_LOG_LEVEL:-WARNING}" \
  -Q "default,scrape,ingest,rollup,node.${HOSTNAME_SHORT}" --concurrency "${CELERY_CONCURRENCY:-2}" \
  --schedule var/celerybeat-schedule -n "portal@${HOSTNAME_SHORT}" &
pids+=($!)
"$BIN/python" manage.py runserver --noreload "127.0.0.1:${PORT}" &
pids+=($!)

echo
echo "Factory Portal is running at http://127.0.0.1:${PORT}/  (Ctrl-C stops web, worker and beat)"
echo
wait -n "${pids[@]}"
