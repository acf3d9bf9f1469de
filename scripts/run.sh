#!/usr/bin/env bash
# The README's run command (`make run`): migrate, first-run setup (administrator; on an empty database the
# SIMULATED demo unless DEMO=0), then web + one Celery worker with embedded beat + the demo's engine simulator.
# Ctrl-C stops all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${PORT:-8000}
export PORT
# One cache for the web process and the worker (files under var/), so the charts the worker pre-warms every minute
# reach the pages; a CACHE_URL in the environment or in .env wins.
if [ -z "${CACHE_URL:-}" ] && ! grep -qs '^CACHE_URL=.' .env; then
  export CACHE_URL="file://${VAR_DIR:-var}/cache"
fi

"$BIN/python" manage.py migrate --noinput
"$BIN/python" manage.py bootstrap
# Central queues, this machine's node queue, and the node queues of the simulated demo nodes (their GPU polls
# run in this worker).
QUEUES=$("$BIN/python" manage.py bootstrap --worker-queues)

pids=()
stop() {
  trap - INT TERM EXIT
  echo "Stopping Factory Portal..." >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

if [ "${DEMO:-1}" != "0" ]; then
  "$BIN/python" manage.py run_simulator &
  pids+=($!)
fi
"$BIN/celery" -A factory_portal worker -B --loglevel "${CELERY_LOG_LEVEL:-WARNING}" \
  -Q "$QUEUES" --concurrency "${CELERY_CONCURRENCY:-2}" \
  --schedule var/celerybeat-schedule -n "portal@$(hostname -s 2>/dev/null || hostname)" &
pids+=($!)
"$BIN/python" manage.py runserver --noreload "127.0.0.1:${PORT}" &
pids+=($!)

echo
echo "Factory Portal is running at http://127.0.0.1:${PORT}/  (Ctrl-C stops web, worker, beat and simulator)"
if [ "${DEMO:-1}" != "0" ]; then
  echo "Demo logins (partner 'Demo Capital', SIMULATED data): demo-operator (owner), demo-viewer, acme-admin,"
  echo "globex-admin; password as printed when the demo was seeded (or DEMO_PASSWORD). GPU readings every 10 s,"
  echo "engine scrapes every 15 s: the live numbers move within two minutes. See docs/demo.md."
fi
echo
wait -n "${pids[@]}"
