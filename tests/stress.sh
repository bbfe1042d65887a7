#!/usr/bin/env bash
# The stress run: the whole suite twice at the same time, plus a CPU hog on every core. It is what a
# busy CI machine does to timing; a test that fails here waits on something with too short a
# deadline or races. Usage: tests/stress.sh [ROUNDS]   (default 1; `make stress` runs 3)
# Every round must pass both suites; the script stops at the first failing round.
set -euo pipefail
# Job control: without it bash starts background jobs with SIGINT ignored, their children inherit
# that, and a test that stops a child with Ctrl-C (burnline logs -f) would wait forever.
set -m
cd "$(dirname "$0")/.."

rounds=${1:-1}
hog_seconds=${HOG_SECONDS:-3600}
out=$(mktemp -d "${TMPDIR:-/tmp}/burnline-stress.XXXXXX")
cores=$(nproc)

hogs=()
pids=()
cleanup() {
    # Each job is its own process group (set -m): end the whole group.
    for pid in "${hogs[@]}" "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
for _ in $(seq "$cores"); do
    # Bounded even if this script is killed: the hog ends by itself after hog_seconds.
    timeout "$hog_seconds" python3 -c 'while True: pass' &
    hogs+=($!)
done
echo "stress: $rounds round(s), 2 suites at once, $cores CPU hog(s); logs in $out"

for round in $(seq "$rounds"); do
    pids=()
    for suite in a b; do
        # --default-signal: a script started in the background has SIGINT ignored for good, and
        # children inherit that; a test that stops a child with Ctrl-C needs it back.
        env --default-signal=INT .venv/bin/pytest -q -p no:cacheprovider --basetemp="$out/tmp-$round-$suite" \
            >"$out/round-$round-$suite.log" 2>&1 &
        pids+=($!)
    done
    failed=0
    for i in 0 1; do
        wait "${pids[$i]}" || failed=1
    done
    for suite in a b; do
        echo "round $round suite $suite: $(tail -n 1 "$out/round-$round-$suite.log")"
    done
    if [ "$failed" != 0 ]; then
        grep -h -E "^(FAILED|ERROR) " "$out"/round-"$round"-*.log || true
        echo "stress: round $round failed" >&2
        exit 1
    fi
done
echo "stress: $rounds round(s) passed"
