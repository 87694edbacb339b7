#!/usr/bin/env bash
# Instructions per operation of SharedMemory's hot paths, which do not move with a noisy machine as times do:
# each operation runs N1 and N2 times under `valgrind --tool=callgrind`, and (Ir(N2) - Ir(N1)) / (N2 - N1) is
# printed, with the allocations per operation (calls to malloc and its kin) beside it. getset: a set and a get of a
# UInt64 on a posix region, through the factory's AnyRegion (getset-any: the same through `any SharedRegion`;
# getset-concrete: on an AnonymousRegion); atomic: a relaxed increment of an atomic in a region;
# ring: a 64-byte send and zero-copy receive in one process (and the same in C through Interop/c/smring.h);
# ring-copy: the same with each message received as a copy into a buffer; ring-array: received as an array of
# its own (`receive()`: an allocation and a free a message); ring-span: a 64-byte message written in
# place through an OutputRawSpan and read in place through a RawSpan; ring-unsafe: the same through sendUnsafe and
# receiveUnsafe; ring-struct and ring-class: ring with both sides kept in a struct, and in a class (#32: within
# 5% of the locals); pubsub: a 64-byte publish and zero-copy
# receive, one subscriber, in one process (and the same in C through Interop/c/smpubsub.h); pubsub-class: the same
# with the publisher and the subscriber kept in a class (#32: within 5% of pubsub); fanout-1, fanout-4: a publish and
# a receive by each of 1 and 4 subscribers (fanout-4-array: the four kept in an InlineArray, #32: within 5% of
# fanout-4), and publish-1, publish-4: the publish alone in those (#14: four at most 1.5 times one); pubsub-struct: a
# 64-byte struct through the byte forms; pubsub-typed: the same struct through TypedPublisher and TypedSubscriber
# (goal: no more than pubsub-struct); lifecycle: create, remove and detach of a 4 KiB posix region (lifecycle-memfd,
# lifecycle-sysv, lifecycle-anonymous: of a memfd, of a System V segment, and of anonymous memory); heap-allocate:
# a 64-byte allocate and free on a heap with 1 000 blocks in use; heap-find: a find of one of 1 000 named objects
# (and both through Boost.Interprocess, where libboost-dev is installed). Needs valgrind and cc (and c++ for Boost).
#
# With --check (as .ci/run does), each Swift figure must stay at or under its ceiling in Ceilings (committed, a few
# percent above what was measured: instruction counts are deterministic, but the lifecycle's move a little with what
# /dev/shm holds), and its allocations at or under the third column there (exact); a figure over its ceiling fails
# the run. Lower a ceiling when the code gets cheaper.
set -euo pipefail
cd "$(dirname "$0")"
check=false
[ "${1:-}" = "--check" ] && check=true
over=0
# The build's own output only when it fails (it prints its errors on standard output).
if ! build_log=$(swift build -c release 2>&1); then
    echo "$build_log" >&2
    echo "run.sh: swift build -c release failed (above)" >&2
    exit 1
fi
binary=$(mktemp)
trap 'rm -f "$binary" callgrind.out.tmp' EXIT
# valgrind cannot read Swift's debug information; the symbols stay (publish-1 and publish-4 count one function).
strip --strip-debug -o "$binary" "$(swift build -c release --show-bin-path)/Harness"
instructions() { valgrind --tool=callgrind --callgrind-out-file=callgrind.out.tmp $collect "$binary" "$@" 2>&1 >/dev/null | awk '/Collected/ { print $4 }'; }
# The calls to the allocator (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) the last run made, from
# its callgrind output (callee names are given once, as "(id) name", then by id alone).
allocations() {
    awk 'function callee(line,    id, rest) {
             id = line; sub(/^c?fn=/, "", id); rest = id
             if (id ~ /^\([0-9]+\) /) { sub(/ .*/, "", id); sub(/^\([0-9]+\) /, "", rest); names[id] = rest }
             else if (id !~ /^\([0-9]+\)$/) names[id] = id
             return names[id]
         }
         /^fn=/ { callee($0) }
         /^cfn=/ { called = callee($0) }
         /^calls=/ && called ~ /^(malloc|calloc|realloc|posix_memalign|aligned_alloc|memalign)$/ { n = $1; sub(/^calls=/, "", n); total += n }
         END { print total + 0 }' callgrind.out.tmp
}
collect=
declare -A swift_count
# measure NAME OPERATION N1 N2: the harness's OPERATION per run, as NAME: its instructions and allocations per
# operation, printed beside their ceilings (Ceilings: NAME, instructions, and allocations where they are checked),
# the instructions kept in swift_count, and with --check a failure if either is over its ceiling.
measure() {
    local name=$1 operation=$2 n1=$3 n2=$4 a b count ceiling mallocs_a mallocs mallocs_ceiling
    a=$(instructions "$operation" "$n1"); mallocs_a=$(allocations)
    b=$(instructions "$operation" "$n2"); mallocs=$(( ($(allocations) - mallocs_a) / (n2 - n1) ))
    count=$(( (b - a) / (n2 - n1) ))
    swift_count[$name]=$count
    read -r ceiling mallocs_ceiling <<< "$(awk -v op="$name" '$1 == op { print $2, $3 }' Ceilings)"
    echo "$name: $count instructions per operation (ceiling ${ceiling:-none}), $mallocs allocations (ceiling ${mallocs_ceiling:-none})"
    if $check && [ -n "$ceiling" ] && [ "$count" -gt "$ceiling" ]; then
        echo "$name costs $count instructions, over its ceiling of $ceiling (Benchmarks/Instructions/Ceilings)" >&2
        over=1
    fi
    if $check && [ -n "$mallocs_ceiling" ] && [ "$mallocs" -gt "$mallocs_ceiling" ]; then
        echo "$name makes $mallocs allocations an operation, over its ceiling of $mallocs_ceiling (Benchmarks/Instructions/Ceilings)" >&2
        over=1
    fi
}
for case in getset:10000:110000 getset-any:10000:110000 getset-concrete:10000:110000 atomic:10000:110000 ring:10000:110000 ring-copy:10000:110000 ring-array:10000:110000 ring-span:10000:110000 ring-unsafe:10000:110000 ring-struct:10000:110000 ring-class:10000:110000 pubsub:10000:110000 pubsub-class:10000:110000 pubsub-struct:10000:110000 pubsub-typed:10000:110000 fanout-1:10000:110000 fanout-4:10000:110000 fanout-4-array:10000:110000 lifecycle:200:2200 lifecycle-memfd:200:2200 lifecycle-sysv:200:2200 lifecycle-anonymous:200:2200 heap-allocate:10000:110000 heap-find:1000:11000; do
    IFS=: read -r operation n1 n2 <<< "$case"
    measure "$operation" "$operation" "$n1" "$n2"
done
# The publish alone (Publisher.publish of a buffer, with what it calls), with 1 and with 4 subscribers (#14: four at
# most 1.5 times one).
collect='--toggle-collect=$s12SharedMemory9PublisherV7publishys6UInt64VSWAA0aB5ErrorVYKF'
measure publish-1 fanout-1 10000 110000
measure publish-4 fanout-4 10000 110000
collect=""
if [ $(( swift_count[publish-4] * 10 )) -gt $(( swift_count[publish-1] * 15 )) ]; then
    echo "publish-4 costs ${swift_count[publish-4]} instructions, over 1.5 times publish-1's ${swift_count[publish-1]}" >&2
    over=1
fi
# The ring in C through the wire format's header (Interop/c/smring.h, ring.c), the same three operations, built by
# gcc and by clang at -O2 as a C user builds it, and again with every function of the header forced inline (what
# the best C gets from it, through the header's SMRING_INLINE: at -O2 neither compiler inlines smring_send or
# smring_receive, they are too large). The Swift/C ratio is against the lowest of these: the fair C of
# Docs/Benchmarks.md.
declare -A fair
for compiler in gcc clang; do
    command -v "$compiler" > /dev/null || { echo "ring in C: $compiler not installed"; continue; }
    for kind in plain inlined; do
        forced=(); [ "$kind" = inlined ] && forced=(-D'SMRING_INLINE=static inline __attribute__((always_inline))')
        "$compiler" -std=c11 -O2 "${forced[@]}" -I ../../Interop/c -o "$binary" ring.c -lrt
        for pair in ring:send ring-copy:copy ring-span:zero; do
            IFS=: read -r operation mode <<< "$pair"
            a=$(instructions 10000 "$mode"); b=$(instructions 110000 "$mode")
            count=$(( (b - a) / 100000 ))
            echo "$operation in C ($compiler -O2, $kind): $count instructions per operation"
            if [ -z "${fair[$operation]:-}" ] || [ "$count" -lt "${fair[$operation]}" ]; then fair[$operation]=$count; fi
        done
    done
done
# ring-unsafe is the same operation as ring-span in C (a pointer is all C has).
[ -n "${fair[ring-span]:-}" ] && fair[ring-unsafe]=${fair[ring-span]}
for operation in ring ring-copy ring-span ring-unsafe; do
    [ -n "${fair[$operation]:-}" ] || continue
    awk -v op="$operation" -v s="${swift_count[$operation]}" -v c="${fair[$operation]}" \
        'BEGIN { printf "%s: Swift %d, fair C %d: %.2fx\n", op, s, c, s / c }'
done
# A handle kept in a class or an InlineArray costs within 5% of one in locals (#32; Docs/Design.md, "A handle is
# one or two words").
for pair in ring-class:ring pubsub-class:pubsub fanout-4-array:fanout-4; do
    IFS=: read -r held local <<< "$pair"
    if [ $(( swift_count[$held] * 100 )) -gt $(( swift_count[$local] * 105 )) ]; then
        echo "$held costs ${swift_count[$held]} instructions, over 1.05 times $local's ${swift_count[$local]}" >&2
        over=1
    fi
done
if $check; then
    [ "$over" = 0 ] || exit 1
    exit 0
fi
# The service in C, through its header (Interop/c/smpubsub.h), by gcc and by clang; the ratio against the lower.
best=""
for compiler in gcc clang; do
    command -v "$compiler" > /dev/null || { echo "pubsub in C: $compiler not installed"; continue; }
    "$compiler" -std=c11 -O2 -I ../../Interop/c -o "$binary" pubsub.c -lrt
    a=$(instructions 10000); b=$(instructions 110000)
    count=$(( (b - a) / 100000 ))
    echo "pubsub in C ($compiler -O2, smpubsub.h): $count instructions per operation"
    if [ -z "$best" ] || [ "$count" -lt "$best" ]; then best=$count; fi
done
[ -n "$best" ] && awk -v s="${swift_count[pubsub]}" -v c="$best" 'BEGIN { printf "pubsub: Swift %d, C %d: %.2fx\n", s, c, s / c }'
# The heap in Boost.Interprocess (Benchmarks/Instructions/heap.cpp), for the Swift/Boost ratio.
if [ -e /usr/include/boost/interprocess/managed_shared_memory.hpp ]; then
    c++ -std=c++17 -O2 -o "$binary" heap.cpp -lrt -pthread
    for case in heap-allocate:10000:110000 heap-find:1000:11000; do
        IFS=: read -r operation n1 n2 <<< "$case"
        a=$(instructions "$operation" "$n1"); b=$(instructions "$operation" "$n2")
        echo "$operation in Boost.Interprocess: $(( (b - a) / (n2 - n1) )) instructions per operation"
    done
else
    echo "heap in Boost.Interprocess: skipped (Boost not installed: apt-get install libboost-dev)"
fi
