#!/usr/bin/env bash
# First contact: install ades into .venv, start a local Elasticsearch, create the indexes, print where to look.
# Stop Elasticsearch afterwards with: .venv/bin/ades services stop
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
exec .venv/bin/ades demo "$@"
