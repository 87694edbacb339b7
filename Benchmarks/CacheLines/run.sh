#!/usr/bin/env bash
# The cache lines of the region that cross between the two sides, per message: the ring's 64-byte message and
# publish/subscribe's 64-byte sample (one subscriber), each traced in one process under valgrind's lackey (every load
# and store, by address) and counted by lines.py (which says how). Deterministic: no timing, no second core, so it
# measures on any machine what a two-core run pays in line transfers. Needs valgrind and python3.
#
# Goal (#32): a sample crosses at most one line more than a ring message. With --check (as .ci/run does), a run that
# misses it fails.
set -euo pipefail
check=false
[ "${1:-}" = "--check" ] && check=true
cd "$(dirname "$0")/../Instructions"
if ! build_log=$(swift build -c release 2>&1); then
    echo "$build_log" >&2
    echo "run.sh: swift build -c release failed (above)" >&2
    exit 1
fi
binary=$(mktemp); trace=$(mktemp); output=$(mktemp)
trap 'rm -f "$binary" "$trace" "$output"' EXIT
strip -o "$binary" "$(swift build -c release --show-bin-path)/Harness"
declare -A figure
for operation in lines-ring lines-pubsub; do
    valgrind --tool=lackey --trace-mem=yes --log-file="$trace" "$binary" "$operation" 2000 > "$output"
    figure[$operation]=$(python3 ../CacheLines/lines.py "$trace" "$output" 1000)
    echo "${operation#lines-}: ${figure[$operation]}"
done
ring=$(awk '{ print $1 }' <<< "${figure[lines-ring]}"); pubsub=$(awk '{ print $1 }' <<< "${figure[lines-pubsub]}")
echo "publish/subscribe - ring: $(python3 -c "print(f'{$pubsub - $ring:+.2f}')") lines per message (goal: at most +1)"
if $check && python3 -c "import sys; sys.exit(0 if $pubsub - $ring > 1 else 1)"; then
    echo "a publish/subscribe sample crosses more than one cache line more than a ring message (Docs/Benchmarks.md)" >&2
    exit 1
fi
