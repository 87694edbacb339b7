#!/usr/bin/env python3
"""Writes the ring test images (Docs/WireFormat.md, "Test images") and expected.txt, from the spec alone.

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
print(f"{len(cases)} images written")
