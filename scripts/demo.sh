#!/usr/bin/env bash
# First contact: install ades into .venv, start the services and the server, deploy a CWL workflow, run a labelled job.
# Stop the services afterwards with: .venv/bin/ades services stop
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
source scripts/_sandbox.sh
exec .venv/bin/ades demo "$@"
