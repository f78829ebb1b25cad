#!/usr/bin/env bash
# The whole check: lint, then every test (unit + integration) against a real local Elasticsearch.
#   ./scripts/test.sh [pytest arguments]      (ADES_TEST_WORKERS: pytest-xdist workers, 2 by default)
# Starts Elasticsearch with `ades services start` (ADES_* settings apply, e.g. ADES_ES_URL to use another cluster)
# and stops it at the end -- unless it was already running before, then it is left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
source scripts/_sandbox.sh
source scripts/_browser.sh
source scripts/_podman.sh

.venv/bin/ruff check .

was_running=no
if .venv/bin/ades -q services status --check >/dev/null 2>&1; then
    was_running=yes
fi
stop_services() {
    if [ "$was_running" = no ]; then
        .venv/bin/ades services stop || true
    else
        echo "Elasticsearch was running before the tests: leaving it running"
    fi
}
trap stop_services EXIT

.venv/bin/ades services start
version=$(.venv/bin/python -c '
from ades.config import Settings
from ades.services.elasticsearch import status
print(status(Settings())["version"] or "unknown")')
echo "Testing against Elasticsearch $version"

# Two workers (pytest-xdist); tests/conftest.py groups the tests a worker must run together (a module's servers,
# the tests that start an Elasticsearch node of their own). ADES_TEST_WORKERS=0 runs them in this process.
set +e
.venv/bin/pytest -n "${ADES_TEST_WORKERS:-2}" --dist loadgroup "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    rc=1
fi
exit "$rc"
