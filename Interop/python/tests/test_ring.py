"""The Python side of the ring: the shared test images, and streams with a Swift process both ways.

The Swift peer is the test suite's RegionProbe: give its path in SHM_PROBE (.ci/run does); without it, the
cross-language tests are skipped.
"""
import os
import signal
import subprocess
import time

import pytest

from sharedmemory_ring import (Foreign, PeerDied, Region, RingReceiver, RingSender, format_ring, ring_size,
                               wait_until_formatted)

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "vectors")
PROBE = os.environ.get("SHM_PROBE")
SIZES = [0, 8, 24, 104, 4096, 65536, 784, 16]
PATTERN = bytes(range(251)) * 270  # message i, byte j: (i + j) % 251, for messages of up to 64 KiB


def expected_cases():
    with open(os.path.join(VECTORS, "expected.txt")) as f:
        for line in f:
            name, verdict, *messages = line.split()
            yield name, verdict, [b"" if m == "-" else bytes.fromhex(m) for m in messages]


@pytest.mark.parametrize("name,verdict,messages", list(expected_cases()))
def test_vectors(name, verdict, messages):
    with open(os.path.join(VECTORS, name + ".ring"), "rb") as f:
        image = f.read()
    with Region.anonymous(len(image)) as region:
        region.write(0, image)
        received, outcome = [], None
        try:
            receiver = RingReceiver(region)
            while (message := receiver.try_receive()) is not None:
                received.append(message)
            outcome = "finished" if receiver.is_finished else "open"
        except Foreign:
            outcome = "foreign"
        assert outcome == verdict
        if verdict != "foreign":
            assert received == messages


def message(index, limit):
    size = min(SIZES[index % 8], limit) & ~7
    start = index % 251
    return PATTERN[start:start + size]


def probe(*arguments):
    result = subprocess.run([PROBE, *arguments], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def ring_name():
    if not PROBE:
        pytest.skip("SHM_PROBE (the path of RegionProbe) is not set")
    name = f"posix:/smtest-{os.getpid()}-python-{time.monotonic_ns() % 100000}"
    assert probe("create", name, str(ring_size(1 << 20))).startswith("ok")
    yield name
    subprocess.run([PROBE, "remove", name], capture_output=True)


TOTAL = 256 << 20


def test_python_sends_swift_receives(ring_name):
    with Region.open(ring_name) as region:
        format_ring(region)
        swift = subprocess.Popen([PROBE, "ring-receive", ring_name, "interop"], stdout=subprocess.PIPE, text=True)
        sender = RingSender(region)
        sent = index = 0
        while sent < TOTAL:
            data = message(index, sender.maximum_message)
            sender.send(data)
            sent += len(data)
            index += 1
        sender.close()
        answer = swift.communicate(timeout=120)[0].strip()
        assert answer == f"ok {index} {sent}"


def test_swift_sends_python_receives(ring_name):
    with Region.open(ring_name) as region:
        format_ring(region)
        swift = subprocess.Popen([PROBE, "ring-send", ring_name, str(TOTAL), "interop"], stdout=subprocess.PIPE, text=True)
        receiver = RingReceiver(region)
        index = received = 0
        while True:
            data = receiver.receive_into(bytes, timeout=60)
            if data is None:
                break
            assert data == message(index, receiver.maximum_message), f"message {index}"
            received += len(data)
            index += 1
        receiver.close()
        answer = swift.communicate(timeout=120)[0].strip()
        assert answer == f"ok {index} {received}"
        assert received >= TOTAL


def test_receiver_sees_swift_sender_die(ring_name):
    with Region.open(ring_name) as region:
        format_ring(region)
        swift = subprocess.Popen([PROBE, "ring-send", ring_name, "0", "interop"], stdout=subprocess.PIPE)
        wait_until_formatted(region)
        receiver = RingReceiver(region)
        index = 0
        assert receiver.receive(timeout=10) == message(0, receiver.maximum_message)
        index = 1
        os.kill(swift.pid, signal.SIGKILL)
        swift.wait()
        killed = time.monotonic()
        with pytest.raises(PeerDied):
            while True:
                data = receiver.receive(timeout=10)
                assert data == message(index, receiver.maximum_message)
                index += 1
        assert time.monotonic() - killed < 2
        receiver.close()


@pytest.mark.parametrize("kind", ["sysv", "file", "posix"])
def test_open_by_every_name(kind):
    """Region.open reaches a region by each kind of SharedMemory name: a ring made in it through one attachment
    carries a message through another."""
    if not PROBE:
        pytest.skip("SHM_PROBE (the path of RegionProbe) is not set")
    tag = f"{os.getpid() & 0xfff:03x}{time.monotonic_ns() & 0xfff:03x}"
    name = {"sysv": f"sysv:0x5e{tag}", "file": f"file:/tmp/smtest-{os.getpid()}-py-{tag}",
            "posix": f"posix:/smtest-{os.getpid()}-py-{tag}"}[kind]
    assert probe("create", name, str(ring_size(4096))).startswith("ok")
    try:
        with Region.open(name) as writer, Region.open(name) as reader:
            assert writer.size >= ring_size(4096)
            format_ring(writer, capacity=4096)
            sender, receiver = RingSender(writer), RingReceiver(reader)
            sender.send(b"over " + kind.encode())
            assert receiver.receive(timeout=5) == b"over " + kind.encode()
            sender.close()
            receiver.close()
    finally:
        subprocess.run([PROBE, "remove", name], capture_output=True)


def test_planted_names_are_refused(tmp_path):
    """What another local user could plant at a name: a FIFO (which must not block the open), a hard link, a
    symbolic link on the way. Each is Foreign, as in the Swift library."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(Foreign):
        Region.open(f"file:{fifo}")
    target = tmp_path / "target"
    target.write_bytes(bytes(8192))
    os.link(target, tmp_path / "link")
    with pytest.raises(Foreign):
        Region.open(f"file:{tmp_path / 'link'}")
    os.unlink(tmp_path / "link")
    os.symlink(tmp_path, tmp_path / "through")
    with pytest.raises(Foreign):
        Region.open(f"file:{tmp_path / 'through' / 'target'}")
    with Region.open(f"file:{target}") as region:  # the file itself is fine
        assert region.size == 8192


def test_errors_say_what_swift_says():
    """Each error carries the Swift library's sentence for the same case (RingTests.sameSentences asserts them)."""
    from sharedmemory_ring import Busy, TooLarge
    with Region.anonymous(ring_size(4096)) as region:
        format_ring(region, capacity=4096)
        sender = RingSender(region)
        with pytest.raises(TooLarge) as error:
            sender.send(bytes(2045))
        assert str(error.value) == "a message of 2045 bytes does not fit this ring: at most 2044 (half its capacity)"
        with pytest.raises(Busy) as error:
            RingSender(region)
        assert str(error.value) == f"process {os.getpid()} is already this ring's sender; a ring has one of each"
        sender.close()
