#!/usr/bin/env bash
# Runs every example and checks what it prints. Called by .ci/run after the tests; needs `swift build` first.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(swift build --show-bin-path)
fail() { echo "examples: $*" >&2; exit 1; }

# Capture first, then look: grep -q would stop reading early and break the pipe under the program.
out=$("$bin/fork-counter") || fail "fork-counter: $out"
grep -qx "4 children × 100000 increments = 400000" <<< "$out" || fail "fork-counter: $out"
out=$("$bin/sealed-memfd") || fail "sealed-memfd: $out"
grep -q "making it writable is refused by the kernel" <<< "$out" || fail "sealed-memfd: $out"

# The server/client pair over three backends, each twice (a second run of the server must work), and a region
# left behind by a dead server is replaced.
for region in sysv:0x5eed0001 posix:/sm-example-$$ file:/tmp/sm-example-$$; do
    for run in 1 2; do
        "$bin/messages" server --region "$region" > /tmp/sm-example-server.$$ &
        server=$!
        out=$("$bin/messages" client --region "$region" hello world)
        wait $server || fail "server on $region, run $run: $(cat /tmp/sm-example-server.$$)"
        [ "$out" = $'client: hello -> HELLO\nclient: world -> WORLD' ] || fail "client on $region, run $run: $out"
    done
done
# The client may start first: it waits for the server to create and format the region (20 times in a row).
for run in $(seq 20); do
    "$bin/messages" client --region posix:/sm-example-race-$$ hi > /tmp/sm-example-client.$$ &
    client=$!
    sleep 0.2
    "$bin/messages" server --region posix:/sm-example-race-$$ > /tmp/sm-example-server.$$ || fail "server after client, run $run: $(cat /tmp/sm-example-server.$$)"
    wait $client || fail "client before server, run $run: $(cat /tmp/sm-example-client.$$)"
    [ "$(cat /tmp/sm-example-client.$$)" = "client: hi -> HI" ] || fail "client before server, run $run: $(cat /tmp/sm-example-client.$$)"
done
rm -f /tmp/sm-example-client.$$
"$bin/shm" create posix:/sm-example-stale-$$ --size 4K > /dev/null
"$bin/messages" server --region posix:/sm-example-stale-$$ > /tmp/sm-example-server.$$ &
server=$!
out=$("$bin/messages" client --region posix:/sm-example-stale-$$ again)
[ "$out" = "client: again -> AGAIN" ] || fail "stale region: $out"
wait $server
grep -q "replacing posix:/sm-example-stale-$$" /tmp/sm-example-server.$$ || fail "stale region not replaced"
rm -f /tmp/sm-example-server.$$
# The heap: two writers (the first formats), then a reader in a third process walks the six orders they linked.
for backend in posix:/sm-example-book-$$ file:/tmp/sm-example-book-$$ sysv:0x5eed0002; do
    "$bin/heap-book" writer --region "$backend" > /dev/null || fail "heap-book writer on $backend"
    out=$("$bin/heap-book" writer --region "$backend") || fail "heap-book writer on $backend: $out"
    [ "$out" = "writer: added orders at 104 to 106" ] || fail "heap-book writer on $backend: $out"
    out=$("$bin/heap-book" reader --region "$backend") || fail "heap-book reader on $backend: $out"
    "$bin/shm" rm "$backend" > /dev/null
    [ "$(head -1 <<< "$out")" = "reader: 60 at 106" ] && [ "$(tail -1 <<< "$out")" = "reader: 6 orders in 7 blocks, 1 named" ] \
        || fail "heap-book reader on $backend: $out"
done
# Publish/subscribe: a publisher and two subscriber processes; both subscribers get all ten quotes in order.
"$bin/quotes" publisher --region posix:/sm-example-quotes-$$ --count 10 > /tmp/sm-example-publisher.$$ &
publisher=$!
"$bin/quotes" subscriber --region posix:/sm-example-quotes-$$ > /tmp/sm-example-subscriber1.$$ &
first=$!
out=$("$bin/quotes" subscriber --region posix:/sm-example-quotes-$$) || fail "quotes subscriber: $out"
wait $first || fail "quotes subscriber: $(cat /tmp/sm-example-subscriber1.$$)"
wait $publisher || fail "quotes publisher: $(cat /tmp/sm-example-publisher.$$)"
for got in "$out" "$(cat /tmp/sm-example-subscriber1.$$)"; do
    [ "$(tail -1 <<< "$got")" = "subscriber: 10 quotes, 0 lost" ] && grep -qx "subscriber: #10 EURUSD 1.081" <<< "$got" \
        || fail "quotes subscriber: $got"
done
grep -qx "publisher: published 10 quotes to 2 subscribers" /tmp/sm-example-publisher.$$ || fail "quotes publisher: $(cat /tmp/sm-example-publisher.$$)"
rm -f /tmp/sm-example-publisher.$$ /tmp/sm-example-subscriber1.$$
# Request/response: a server and a client process.
"$bin/uppercase" server --region posix:/sm-example-upper-$$ --requests 3 > /tmp/sm-example-server.$$ &
server=$!
out=$("$bin/uppercase" client --region posix:/sm-example-upper-$$ hello shared memory) || fail "uppercase client: $out"
wait $server || fail "uppercase server: $(cat /tmp/sm-example-server.$$)"
[ "$out" = $'client: hello -> HELLO\nclient: shared -> SHARED\nclient: memory -> MEMORY' ] || fail "uppercase client: $out"
# An actor serves a ring from async code while a ticker task keeps running on the same pool.
"$bin/async-tally" server --region posix:/sm-example-tally-$$ > /tmp/sm-example-server.$$ &
server=$!
out=$("$bin/async-tally" client --region posix:/sm-example-tally-$$ 1 2 3) || fail "async-tally client: $out"
wait $server || fail "async-tally server: $(cat /tmp/sm-example-server.$$)"
[ "$out" = $'client: +1 -> 1\nclient: +2 -> 3\nclient: +3 -> 6' ] || fail "async-tally client: $out"
grep -qx "server: served 3 requests, total 6, while the ticker kept running" /tmp/sm-example-server.$$ || fail "async-tally server: $(cat /tmp/sm-example-server.$$)"
rm -f /tmp/sm-example-server.$$

# Run the wrong way round, each fails like a program: exit status 1, one line on standard error saying why, nothing
# on standard output (an example is what users copy; a crash report is not an answer).
one_line_failure() {  # NAME EXPECTED-PREFIX COMMAND...
    local what=$1 prefix=$2 status=0
    shift 2
    "$@" > /tmp/sm-example-out.$$ 2> /tmp/sm-example-err.$$ || status=$?
    [ "$status" = 1 ] || fail "$what: exit status $status: $(cat /tmp/sm-example-out.$$ /tmp/sm-example-err.$$)"
    [ ! -s /tmp/sm-example-out.$$ ] || fail "$what: printed $(cat /tmp/sm-example-out.$$)"
    [ "$(wc -l < /tmp/sm-example-err.$$)" = 1 ] || fail "$what: not one line: $(cat /tmp/sm-example-err.$$)"
    grep -q "^$prefix" /tmp/sm-example-err.$$ || fail "$what: $(cat /tmp/sm-example-err.$$)"
}
one_line_failure "heap-book reader before its writer" "heap-book: posix:/sm-example-nobook-$$: shm_open failed" \
    "$bin/heap-book" reader --region posix:/sm-example-nobook-$$
one_line_failure "a lone quotes subscriber" "quotes: subscriber: no service at posix:/sm-example-noquotes-$$" \
    "$bin/quotes" subscriber --region posix:/sm-example-noquotes-$$
# An uppercase server that answers one request, and a client that sends two: the second is peerDied, said in a line.
"$bin/uppercase" server --region posix:/sm-example-short-$$ --requests 1 > /tmp/sm-example-server.$$ &
server=$!
"$bin/uppercase" client --region posix:/sm-example-short-$$ one two > /tmp/sm-example-out.$$ 2> /tmp/sm-example-err.$$ && fail "uppercase client of a short server succeeded"
wait $server || fail "uppercase short server: $(cat /tmp/sm-example-server.$$)"
[ "$(cat /tmp/sm-example-out.$$)" = "client: one -> ONE" ] || fail "uppercase client of a short server: $(cat /tmp/sm-example-out.$$)"
[ "$(wc -l < /tmp/sm-example-err.$$)" = 1 ] && grep -q "^uppercase: .*the server finished" /tmp/sm-example-err.$$ \
    || fail "uppercase client of a short server: $(cat /tmp/sm-example-err.$$)"
# A messages client started before its server says, within a second, what it waits for; then the server comes.
"$bin/messages" client --region posix:/sm-example-late-$$ hi > /tmp/sm-example-out.$$ 2> /tmp/sm-example-err.$$ &
client=$!
sleep 1.5
grep -q "^client: waiting for posix:/sm-example-late-$$ to be created" /tmp/sm-example-err.$$ || fail "messages client said nothing while waiting: $(cat /tmp/sm-example-err.$$)"
"$bin/messages" server --region posix:/sm-example-late-$$ > /tmp/sm-example-server.$$ || fail "late server: $(cat /tmp/sm-example-server.$$)"
wait $client || fail "messages client before a late server: $(cat /tmp/sm-example-err.$$)"
[ "$(cat /tmp/sm-example-out.$$)" = "client: hi -> HI" ] || fail "messages client before a late server: $(cat /tmp/sm-example-out.$$)"
rm -f /tmp/sm-example-server.$$ /tmp/sm-example-out.$$ /tmp/sm-example-err.$$
echo "examples: all ran as expected"
