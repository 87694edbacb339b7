#!/usr/bin/env python3
"""Writes the ring's and the publish/subscribe service's test images (Docs/WireFormat.md, "Test images") and what a
reader must make of each (expected.txt, service-expected.txt), from the spec alone.

Each image is a 4 KiB ring: the 256-byte header and 4096 bytes of data. expected.txt has one line per image:
`NAME VERDICT MESSAGE...`, VERDICT being `open` (a receiver reads the messages, then finds the ring empty),
`finished` (it reads them, then the stream is over) or `foreign` (it refuses the ring, at attach or at a read);
each MESSAGE is hex, `-` for an empty one. Run it again only to change the images, and commit what it writes.
"""
import os, struct

CAPACITY = 4096
MAGIC = 0x53484D52494E4700
here = os.path.dirname(os.path.abspath(__file__))


def align8(n):
    return (n + 7) & ~7


class Ring:
    def __init__(self, major=1, minor=0, header=256, capacity=CAPACITY, magic=MAGIC):
        self.bytes = bytearray(256 + CAPACITY)
        struct.pack_into("<QHHIQ", self.bytes, 0, magic, major, minor, header, capacity)
        self.head = self.tail = 0
        self.finished = 0

    def at(self, position):
        """Starts the ring at a position (both head and tail), as if that many bytes had passed."""
        self.head = self.tail = position % 2**64
        return self

    def send(self, message):
        need = align8(4 + len(message))
        place = self.head & (CAPACITY - 1)
        if place + need > CAPACITY:
            struct.pack_into("<I", self.bytes, 256 + place, 0xFFFFFFFF)
            self.head = (self.head + CAPACITY - place) % 2**64
            place = 0
        struct.pack_into("<I", self.bytes, 256 + place, len(message))
        self.bytes[256 + place + 4:256 + place + 4 + len(message)] = message
        self.head = (self.head + need) % 2**64
        return self

    def finish(self):
        self.finished = 1
        return self

    def image(self):
        struct.pack_into("<Q", self.bytes, 64, self.head)
        struct.pack_into("<I", self.bytes, 72, self.finished)
        struct.pack_into("<Q", self.bytes, 128, self.tail)
        return bytes(self.bytes)


def poke(ring, offset, fmt, value):
    data = bytearray(ring.image())
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


forty = bytes(range(40))
cases = [
    ("empty", Ring().image(), "open", []),
    ("one-message", Ring().send(b"hello").image(), "open", [b"hello"]),
    ("finished", Ring().send(b"a").send(b"").finish().image(), "finished", [b"a", b""]),
    ("finished-empty", Ring().finish().image(), "finished", []),
    # The record would cross the end: a wrap marker at 4064, the message at 0.
    ("wrapped", Ring().at(4064).send(forty).image(), "open", [forty]),
    # Positions that wrap around 2^64 between the two messages.
    ("positions-wrap", Ring().at(2**64 - 16).send(b"12345678").send(b"xyz").finish().image(), "finished",
     [b"12345678", b"xyz"]),
    # A later minor version of the same major is read.
    ("minor-version", Ring(minor=5).send(b"new").image(), "open", [b"new"]),
    ("bad-magic", Ring(magic=0x1234).send(b"x").image(), "foreign", []),
    ("bad-major", Ring(major=2).send(b"x").image(), "foreign", []),
    ("bad-header-size", Ring(header=512).send(b"x").image(), "foreign", []),
    ("bad-capacity", Ring(capacity=5000).image(), "foreign", []),
    ("capacity-too-large", Ring(capacity=8192).image(), "foreign", []),
    # Positions more than a ring apart, or not 8-byte slots: refused at attach.
    ("positions-apart", poke(Ring(), 64, "<Q", CAPACITY + 8), "foreign", []),
    ("misaligned-head", poke(Ring(), 64, "<Q", 3), "foreign", []),
    # A length larger than a message can be (capacity / 2 - 4).
    ("length-too-large", poke(Ring().send(bytes(2040)), 256, "<I", 2045), "foreign", []),
    # A length longer than what was published.
    ("length-past-published", poke(Ring().send(b"12345678"), 256, "<I", 100), "foreign", []),
    # A record near the end whose length runs past the end of the data (though not past what was published).
    ("length-past-end", poke(Ring().at(4088).send(b"abc").send(bytes(100)), 256 + 4088, "<I", 50), "foreign", []),
]

with open(os.path.join(here, "expected.txt"), "w") as expected:
    for name, image, verdict, messages in cases:
        with open(os.path.join(here, name + ".ring"), "wb") as f:
            f.write(image)
        expected.write(" ".join([name, verdict] + [m.hex() or "-" for m in messages]) + "\n")
print(f"{len(cases)} ring images written")


# ---- The publish/subscribe service ----
#
# Each image is a service whose publisher (and some subscribers) were processes that are gone: their pid is one no
# process can have (above Linux's largest pid_max). A reader does, in this order: (1) connects a subscriber asking
# for the whole history, (2) takes the publisher's seat, (3) delivers the history (update), (4) receives every
# sample there is, (5) publishes the 3 bytes "end", (6) receives every sample there is again.
# service-expected.txt has one line per image: `NAME VERDICT SAMPLE...`, VERDICT being `ok` (each SAMPLE,
# `SEQUENCE:HEX`, received in that order) or `foreign` (refused at some step; what came before is not compared).

SERVICE_MAGIC = 0x4255534255504D53
DEAD = 0x7FFFFFF0
LOAN, HISTORY = 1 << 62, 1 << 63
# A subscriber slot's fields (since format 2.0): the first line is written at connect, the second by the subscriber, the
# third by the publisher (its queue's write position, then the entries).
SLOT_HISTORY_WANTED, SLOT_READ, SLOT_HELD, SLOT_WRITE, SLOT_ENTRIES = 40, 64, 72, 128, 140


def align64(n):
    return (n + 63) & ~63


class Service:
    def __init__(self, max_payload=64, subscribers=2, depth=4, history=3, magic=SERVICE_MAGIC, major=3, minor=0,
                 chunk_count=None):
        capacity = 1
        while capacity < depth:
            capacity *= 2
        self.max_payload, self.subscribers, self.depth, self.history, self.capacity = max_payload, subscribers, depth, history, capacity
        self.chunk_count = subscribers * (depth + 1) + history + 2
        self.chunk_stride = 64 + align64(max_payload)
        self.slot_stride = align64(SLOT_ENTRIES + capacity * 4)
        self.slots_at = align64(192 + history * 4)
        self.chunks_at = self.slots_at + subscribers * self.slot_stride
        self.size = self.chunks_at + self.chunk_count * self.chunk_stride
        self.bytes = bytearray(self.size)
        struct.pack_into("<QHHIQIIIIQiIQQ", self.bytes, 0, magic, major, minor, subscribers, max_payload, depth, history,
                         self.chunk_count if chunk_count is None else chunk_count, 1, 0, DEAD, 0, 0, 0)
        struct.pack_into("<i", self.bytes, 128 + 16, 0x90)  # glibc's pthread_mutex_t: robust (16) | shared (128)
        self.published = 0

    def chunk(self, c):
        return self.chunks_at + c * self.chunk_stride

    def holders(self, c):
        return struct.unpack_from("<Q", self.bytes, self.chunk(c))[0]

    def mark(self, c, bits):
        struct.pack_into("<Q", self.bytes, self.chunk(c), self.holders(c) | bits)

    def publish(self, payload):
        """As a publisher with no subscriber: a free chunk, its sequence and length, into the history."""
        c = next(c for c in range(self.chunk_count) if self.holders(c) == 0)
        self.published += 1
        struct.pack_into("<QQ", self.bytes, self.chunk(c) + 8, self.published, len(payload))
        self.bytes[self.chunk(c) + 64:self.chunk(c) + 64 + len(payload)] = payload
        head = struct.unpack_from("<Q", self.bytes, 64)[0]
        at = 192 + (head % self.history) * 4
        evicted = struct.unpack_from("<I", self.bytes, at)[0]
        self.mark(c, HISTORY)
        struct.pack_into("<I", self.bytes, at, c)
        if head >= self.history:
            struct.pack_into("<Q", self.bytes, self.chunk(evicted), self.holders(evicted) & ~HISTORY)
        struct.pack_into("<Q", self.bytes, 64, head + 1)
        struct.pack_into("<Q", self.bytes, 40, self.published)
        return c

    def dead_subscriber(self, slot, queued, held=None, pid=DEAD):
        """Subscriber `slot` was a process now gone (or `pid` names none), with chunks `queued` in its queue and
        `held` being read."""
        at = self.slots_at + slot * self.slot_stride
        struct.pack_into("<IiQ", self.bytes, at, 2, pid, 0)
        struct.pack_into("<III", self.bytes, at + 24, 0, self.depth, 0)
        struct.pack_into("<II", self.bytes, at + SLOT_HISTORY_WANTED, 0, 1)
        struct.pack_into("<I", self.bytes, at + SLOT_HELD, 0 if held is None else held + 1)
        for k, c in enumerate(queued):
            struct.pack_into("<I", self.bytes, at + SLOT_ENTRIES + (5 + k) % self.capacity * 4, c)
            self.mark(c, 1 << slot)
        if held is not None:
            self.mark(held, 1 << slot)
        struct.pack_into("<Q", self.bytes, at + SLOT_WRITE, 5 + len(queued))
        struct.pack_into("<Q", self.bytes, at + SLOT_READ, 5)
        return self

    def image(self, size=None):
        return bytes(self.bytes[:size])


def sample(s):
    return f"sample {s}".encode()


def published(service, count):
    chunks = [service.publish(sample(s)) for s in range(1, count + 1)]
    return service, chunks


def poke_service(service, offset, fmt, value):
    struct.pack_into(fmt, service.bytes, offset, value)
    return service


def expect(*sequences):
    return [(s, sample(s)) for s in sequences]


def end(sequence):
    return [(sequence, b"end")]


history5, _ = published(Service(), 5)
wrapped, _ = published(Service(), 7)
with_dead, chunks = published(Service(subscribers=1), 4)
with_dead.dead_subscriber(0, queued=chunks[2:4], held=chunks[1])
negative, negative_chunks = published(Service(subscribers=1), 2)
negative.dead_subscriber(0, queued=negative_chunks[1:2], pid=-1)
mid_publish, mid_chunks = published(Service(subscribers=1), 3)
mid_publish.dead_subscriber(0, queued=mid_chunks[2:3])
struct.pack_into("<Q", mid_publish.bytes, 176, 7)  # the publish epoch: odd, the dead publisher was publishing
loans, _ = published(Service(), 2)
for c in range(loans.chunk_count):
    if loans.holders(c) == 0:
        loans.mark(c, LOAN)  # the dead publisher's loans: every free chunk
stale, _ = published(Service(), 1)
stale.mark(0, 0)
for c in range(1, stale.chunk_count):
    stale.mark(c, HISTORY)  # history marks on chunks the history does not list
long_sample, long_chunks = published(Service(), 1)
bad_entry, _ = published(Service(), 2)

service_cases = [
    ("service-empty", Service().image(), "ok", end(1)),
    ("service-history", history5.image(), "ok", expect(3, 4, 5) + end(6)),
    # Seven samples into a history of three: its entries wrap.
    ("service-history-wrapped", wrapped.image(), "ok", expect(5, 6, 7) + end(8)),
    # A queue of 2 for a history of 3: the oldest is overwritten as the history is delivered.
    ("service-history-overflow", published(Service(depth=2), 5)[0].image(), "ok", expect(4, 5) + end(6)),
    ("service-minor-version", published(Service(minor=3), 1)[0].image(), "ok", expect(1) + end(2)),
    # The only slot is a dead subscriber's (one sample being read, two queued): it is reclaimed to connect.
    ("service-dead-subscriber", with_dead.image(), "ok", expect(2, 3, 4) + end(5)),
    # The only slot claims pid -1, which no process has (kill(-1, 0) would ask about every process): reclaimed.
    ("service-negative-pid", negative.image(), "ok", expect(1, 2) + end(3)),
    # The publisher died in a publish (its epoch odd) and the only slot is a dead subscriber's: reclaiming it to connect
    # must not wait for that publish to end, and taking the seat makes the epoch even.
    ("service-dead-publisher-mid-publish", mid_publish.image(), "ok", expect(1, 2, 3) + end(4)),
    # The dead publisher left every free chunk on loan, or history marks on chunks not in the history: taking its
    # seat gives them back (else the publish of "end" would find no free chunk).
    ("service-dead-publisher-loans", loans.image(), "ok", expect(1, 2) + end(3)),
    ("service-stale-history-marks", stale.image(), "ok", expect(1) + end(2)),
    ("service-bad-magic", Service(magic=0x1234).image(), "foreign", []),
    # Version 2, whose subscribers do not move `connections` (a publisher of version 3 would miss them), as any other
    # major version.
    ("service-bad-major", Service(major=2).image(), "foreign", []),
    ("service-too-many-subscribers", Service(subscribers=63).image(), "foreign", []),
    ("service-queue-depth-zero", poke_service(Service(), 24, "<I", 0).image(), "foreign", []),
    ("service-payload-too-large", poke_service(Service(), 16, "<Q", 1 << 37).image(), "foreign", []),
    ("service-chunk-count", Service(chunk_count=12).image(), "foreign", []),
    # The header says more bytes than the region has.
    ("service-truncated", Service().image(size=Service().size - 64), "foreign", []),
    # A history entry naming a chunk the service does not have: refused when the history is delivered.
    ("service-history-entry", poke_service(bad_entry, 192 + 4, "<I", 999).image(), "foreign", []),
    # A sample longer than the service's largest: refused when it is received.
    ("service-sample-length", poke_service(long_sample, long_sample.chunk(long_chunks[0]) + 16, "<Q", 65).image(),
     "foreign", []),
]

with open(os.path.join(here, "service-expected.txt"), "w") as expected:
    for name, image, verdict, samples in service_cases:
        with open(os.path.join(here, name + ".pubsub"), "wb") as f:
            f.write(image)
        expected.write(" ".join([name, verdict] + [f"{s}:{data.hex()}" for s, data in samples]) + "\n")
print(f"{len(service_cases)} service images written")
