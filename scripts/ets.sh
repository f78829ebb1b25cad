#!/usr/bin/env bash
# The OGC Executable Test Suites of OGC API Processes (Part 1 and Part 2) against a fresh `ades serve`.
# Not part of CI: it needs the suites' source checkouts, Java 17+ and Maven (which fetches the suites' dependencies).
#
#   scripts/ets.sh [PART1_CHECKOUT [PART2_CHECKOUT]]
#
# PART1_CHECKOUT: opengeospatial/ets-ogcapi-processes10 at tag 1.3 (or $ETS_P1_SRC; default /work/src/ets-p1);
# PART2_CHECKOUT: opengeospatial/ets-ogcapi-processes10-part2, main (or $ETS_P2_SRC; default /work/src/ets-p2).
# Give "-" to leave a suite out. The checkouts are never written to: each is copied to $ETS_WORK (default
# .ades/ets) and built there once per checked-out commit. The server runs on a free port of 127.0.0.1 against the
# Elasticsearch of the settings (ADES_ES_URL, or the local node), with an index prefix and data dir of its own,
# both removed at the end. Prints each suite's totals and every failure with its message; the reports stay in
# $ETS_WORK/out-p1 and out-p2 (testng-results.xml). Exits 0 whatever the suites found.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh

p1_src=${1:-${ETS_P1_SRC:-/work/src/ets-p1}}
p2_src=${2:-${ETS_P2_SRC:-/work/src/ets-p2}}
work=$(realpath -m "${ETS_WORK:-.ades/ets}")
mkdir -p "$work"

# --- build ---------------------------------------------------------------------------------------------------
build() {  # build NAME CHECKOUT MAVEN_ARGS... -> prints the path of the suite's all-in-one jar
    local name=$1 src=$2; shift 2
    local rev
    rev=$(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)
    local dir="$work/$name"
    if [ ! -f "$dir/.built-$rev" ] || ! ls "$dir"/target/*-aio.jar >/dev/null 2>&1; then
        echo "building $name from $src ($rev)" >&2
        rm -rf "$dir"
        cp -r "$src" "$dir"
        (cd "$dir" && mvn -q -B -DskipTests -Denforcer.skip=true "$@" package >&2)
        touch "$dir/.built-$rev"
    fi
    ls "$dir"/target/*-aio.jar | head -n1
}

p1_jar="" p2_jar=""
[ "$p1_src" = "-" ] || p1_jar=$(build p1 "$p1_src")
[ "$p2_src" = "-" ] || p2_jar=$(build p2 "$p2_src" -Dspring-javaformat.skip=true)

# --- serve -----------------------------------------------------------------------------------------------------
free_port() { .venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
run_id="ets-$(date +%s)-$$"
data_dir="$work/$run_id"
mkdir -p "$data_dir/pkg"
port=$(free_port)
base="http://127.0.0.1:$port"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
    ADES_INDEX_PREFIX="$run_id-" .venv/bin/python - <<'EOF' || true
from ades.config import Settings
from ades.store import make_client
from ades.store.setup import drop_indexes

settings = Settings()
client = make_client(settings)
drop_indexes(client, settings)
client.close()
EOF
    rm -rf "$data_dir"
}
trap cleanup EXIT

# Part 2 deploys, redeploys (409), replaces and undeploys a package it downloads from `urlapppkg`
cat > "$data_dir/pkg/ets-app.cwl" <<'EOF'
cwlVersion: v1.2
class: CommandLineTool
id: ets-app
label: ETS application package
doc: Deployed, replaced and undeployed by the OGC API Processes Part 2 test suite.
baseCommand: echo
inputs:
  message: {type: string, inputBinding: {position: 1}}
outputs:
  out: {type: stdout}
EOF
pkg_port=$(free_port)
.venv/bin/python -m http.server "$pkg_port" --bind 127.0.0.1 --directory "$data_dir/pkg" >/dev/null 2>&1 &
pids+=($!)

ADES_INDEX_PREFIX="$run_id-" ADES_DATA_DIR="$data_dir/data" ADES_EVENT_SINK=direct ADES_PUBLIC_URL="$base" \
    ADES_ANONYMOUS_ROLES='["deployer"]' ADES_FETCH_ALLOW='["127.0.0.1"]' \
    .venv/bin/ades -q serve --port "$port" --workers 2 --job-workers 2 >"$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 120); do
    curl -fsS -o /dev/null "$base/processes" 2>/dev/null && break
    sleep 0.5
done
curl -fsS -o /dev/null "$base/processes/echo" || { echo "ades serve did not come up; see $work/serve.log" >&2; exit 1; }
# Part 2's undeploy test deletes the first mutable process it lists (it deploys none of its own before)
sed 's/^id: ets-app$/id: ets-mutable/' "$data_dir/pkg/ets-app.cwl" |
    curl -fsS -o /dev/null -H 'Content-Type: application/cwl+yaml' --data-binary @- "$base/processes"
echo "ades serve at $base (log: $work/serve.log)"

# --- run -------------------------------------------------------------------------------------------------------
props() {  # props FILE KEY=VALUE...
    local file=$1; shift
    {
        echo '<?xml version="1.0" encoding="UTF-8"?>'
        # no DOCTYPE: the suites would fetch its DTD from the internet
        echo '<properties version="1.0">'
        for pair in "$@"; do echo "  <entry key=\"${pair%%=*}\">${pair#*=}</entry>"; done
        echo '</properties>'
    } > "$file"
}

run_suite() {  # run_suite NAME JAR PROPS...
    local name=$1 jar=$2; shift 2
    local out="$work/out-$name"
    rm -rf "$out"; mkdir -p "$out"
    props "$out/props.xml" "$@"
    echo "running $name ($(basename "$jar"))"
    (cd "$out" && java -jar "$jar" -o "$out" props.xml >"$out/console.log" 2>&1) || true
    .venv/bin/python - "$name" "$out" <<'EOF' || true
import sys
from pathlib import Path
from xml.etree import ElementTree

name, out = sys.argv[1], Path(sys.argv[2])
reports = sorted(out.rglob("testng-results.xml"))
if not reports:
    sys.exit(f"{name}: no testng-results.xml under {out}; see {out}/console.log")
counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
failures = []
methods = [(cls.get("name").split(".")[-2], method) for cls in ElementTree.parse(reports[-1]).iter("class")
           for method in cls.iter("test-method") if method.get("is-config") != "true"]
for suite_class, method in methods:
    status = method.get("status")
    counts[status] = counts.get(status, 0) + 1
    if status in ("FAIL", "SKIP"):
        message = method.findtext("exception/message") or method.findtext("exception/full-stacktrace") or ""
        first = " ".join(message.split())[:400]
        failures.append(f"  {status} {suite_class}.{method.get('name')}: {first}")
total = sum(counts.values())
print(f"{name}: {total} tests, {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
print("\n".join(failures))
EOF
}

[ -z "$p1_jar" ] || run_suite p1 "$p1_jar" "iut=$base" "echoprocessid=echo"
[ -z "$p2_jar" ] || run_suite p2 "$p2_jar" "iut=$base" "echoprocessid=echo" \
    "urlapppkg=http://127.0.0.1:$pkg_port/ets-app.cwl" "processtestlimit=5"
