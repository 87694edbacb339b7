#!/usr/bin/env python3
"""Counts the cache lines of a region that cross between the two sides of a channel, per message, from a
`valgrind --tool=lackey --trace-mem=yes` trace of Benchmarks/Instructions' harness (`lines-ring`, `lines-pubsub`).

The harness runs both sides in one process on one mapping, in turns, and marks each turn with a store to a marker
word (first word: the sending side's turn, second: the receiving side's, third: the end). Every load, store and
modify inside the region is given to the side whose turn it is, by the 64-byte line it touches (an access that spans
two lines touches both). A line crosses when a side touches it in its turn, the other side touched it since this
side last did, and either side wrote it in those touches: what a core must fetch from the other core's cache, or take
from it (a write to a line the other core holds, even unmodified, must invalidate that copy). Reads by both sides
after one write share the line: one crossing, not two. The order of a side's accesses within its turn does not
matter (a read before a write in the same turn is the same ownership taken). Reported per message, over the turns
after the first `warmup` messages (enough for the ring to wrap once, so that its data lines have been written
before), with which lines (by offset in the region) cross most.

Usage: lines.py TRACE HARNESS_OUTPUT [warmup]
"""
import collections, sys


def main():
    trace, first_line = sys.argv[1], open(sys.argv[2]).readline().split()
    warmup = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    base, size, marker = int(first_line[1], 16), int(first_line[2]), int(first_line[4], 16)
    turn = 0                 # 0 before the first mark, 1 sending side, 2 receiving side
    messages = 0             # sending turns begun
    last = {}                # line -> (side, wrote): the side that touched it last, and whether it wrote it since the other did
    touched = {}             # line -> wrote, in the current turn
    crossings = collections.Counter()      # (from side, to side) -> count, after warm-up
    by_line = collections.Counter()        # line offset -> crossings, after warm-up
    counted = 0

    def end_turn():
        for line, wrote in touched.items():
            previous = last.get(line)
            if previous is not None and previous[0] != turn and (previous[1] or wrote):
                if messages > warmup:
                    crossings[(previous[0], turn)] += 1
                    by_line[line * 64] += 1
            if previous is None or previous[0] != turn:
                last[line] = (turn, wrote)
            else:
                last[line] = (turn, previous[1] or wrote)
        touched.clear()

    with open(trace, errors="replace") as lines:
        for raw in lines:
            if len(raw) < 4 or raw[0] != " " or raw[1] not in "LSM":
                continue
            kind = raw[1]
            address, _, width = raw[3:].strip().partition(",")
            address, width = int(address, 16), int(width)
            if marker <= address < marker + 24:
                if kind == "L":
                    continue
                end_turn()
                which = (address - marker) // 8 + 1
                if which == 3:
                    break
                turn = which
                if turn == 1:
                    messages += 1
                    if messages > warmup:
                        counted += 1
                continue
            if turn == 0 or not (base <= address < base + size):
                continue
            wrote = kind in "SM"
            for line in range((address - base) // 64, (address + width - 1 - base) // 64 + 1):
                touched[line] = touched.get(line, False) or wrote
    if counted == 0:
        sys.exit("lines.py: no message after the warm-up in the trace")
    to_receiver, to_sender = crossings[(1, 2)] / counted, crossings[(2, 1)] / counted
    most = [(offset, count) for offset, count in by_line.most_common() if count / counted >= 0.5]
    rest = sum(by_line.values()) - sum(count for _, count in most)
    top = ", ".join([f"{offset}: {count / counted:.2f}" for offset, count in most] + [f"the {len(by_line) - len(most)} others: {rest / counted:.2f}"])
    print(f"{to_receiver + to_sender:.2f} lines per message ({to_receiver:.2f} to the receiving side, "
          f"{to_sender:.2f} back), over {counted} messages; by offset: {top}")


main()
