"""The Python side of the publish/subscribe service: in one process, and streams with a Swift process both ways.

The Swift peer is the test suite's RegionProbe (its ps-format, ps-publish and ps-subscribe operations): give its path
in SHM_PROBE (.ci/run does); without it, the cross-language tests are skipped. Samples follow the probe's pattern:
sample s has min(largest, [8, 64, 1000, largest][s % 4]) bytes, its first 8 are s (little-endian), and byte j after
them is (s % 251 + j) % 251.
"""
import os
import signal
import subprocess
import time

import pytest

from sharedmemory_ring import (BLOCK_PUBLISHER, Busy, Foreign, LimitExceeded, PeerDied, Publisher, Region, Subscriber,
                               TimedOut, TooLarge, format_service, service_size, wait_until_service)

PROBE = os.environ.get("SHM_PROBE")
VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "vectors")
PATTERN = bytes(range(251)) * 270  # byte j: j % 251, for samples of up to 64 KiB


def sample(sequence, limit):
    size = min(limit, [8, 64, 1000, limit][sequence % 4])
    start = sequence % 251
    return (sequence.to_bytes(8, "little") + PATTERN[start + 8:start + size])[:size]


def probe(*arguments):
    result = subprocess.run([PROBE, *arguments], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def service_cases():
    with open(os.path.join(VECTORS, "service-expected.txt")) as f:
        for line in f:
            name, verdict, *samples = line.split()
            yield name, verdict, [(int(s.split(":")[0]), bytes.fromhex(s.split(":")[1])) for s in samples]


@pytest.mark.parametrize("name,verdict,samples", list(service_cases()))
def test_vectors(name, verdict, samples):
    """What a reader makes of each service image (Docs/WireFormat.md, "Test images"): subscribe asking for the whole
    history, take the publisher's seat, update, receive everything, publish "end", receive everything."""
    with open(os.path.join(VECTORS, name + ".pubsub"), "rb") as f:
        image = f.read()
    with Region.anonymous(len(image)) as region:
        region.write(0, image)
        received, outcome = [], "ok"

        def drain(subscriber):
            while got := subscriber.receive(timeout=0):
                received.append((got.sequence, got.data))

        try:
            subscriber = Subscriber(region, history=int.from_bytes(image[28:32], "little"))
            publisher = Publisher(region)
            publisher.update()
            drain(subscriber)
            publisher.publish(b"end")
            drain(subscriber)
        except Foreign:
            outcome = "foreign"
        assert outcome == verdict
        if verdict != "foreign":
            assert received == samples


def test_in_one_process():
    size = service_size(max_payload=1024, subscribers=2, queue_depth=4, history=3)
    with Region.anonymous(size) as region:
        format_service(region, max_payload=1024, subscribers=2, queue_depth=4, history=3)
        with pytest.raises(Busy):  # something is there now: formatting again would overwrite it
            format_service(region, max_payload=1024, subscribers=2, queue_depth=4, history=3)
        publisher = Publisher(region)
        early = Subscriber(region)
        for s in range(1, 6):
            assert publisher.publish(sample(s, 1024)) == s
        # A queue of 4 that overwrites: the oldest of 5 was dropped and counted.
        got = [early.receive(timeout=1) for _ in range(4)]
        assert [g.sequence for g in got] == [2, 3, 4, 5] and all(g.data == sample(g.sequence, 1024) for g in got)
        assert early.lost == 1
        assert early.receive(timeout=0) is False
        # A late subscriber asks for the history: the last 3, delivered on the publisher's update, oldest first.
        late = Subscriber(region, history=3)
        publisher.update()
        assert [late.receive(timeout=1).sequence for _ in range(3)] == [3, 4, 5]
        # Both slots are taken by live subscribers.
        with pytest.raises(LimitExceeded):
            Subscriber(region)
        # Zero copy both ways.
        assert publisher.publish_into(5, lambda view: view.__setitem__(slice(0, 5), b"hello")) == 6
        assert early.receive_into(lambda view, sequence: (bytes(view), sequence), timeout=1) == (b"hello", 6)
        assert late.receive(timeout=1).data == b"hello"
        # A body that raises publishes nothing: the next sample is number 7, and it is the only one queued.
        with pytest.raises(RuntimeError):
            publisher.publish_into(4, lambda view: (_ for _ in ()).throw(RuntimeError("half written")))
        assert publisher.last_sequence == 6 and early.receive(timeout=0) is False
        assert publisher.publish(b"next") == 7 and early.receive(timeout=1).sequence == 7 and late.receive(timeout=1).sequence == 7
        with pytest.raises(TooLarge):
            publisher.publish(bytes(1025))
        with pytest.raises(TimedOut):
            early.receive(timeout=0.05)
        # Closing gives the slot back; the stream's end comes after what was published.
        late.close()
        third = Subscriber(region)
        publisher.publish(b"last")
        publisher.finish()
        assert early.receive(timeout=1).data == b"last"
        assert early.receive(timeout=1) is None
        assert third.receive(timeout=1).data == b"last" and third.receive(timeout=1) is None
        early.close()
        third.close()


def test_foreign_and_bad_configurations():
    with pytest.raises(ValueError):
        service_size(max_payload=64, subscribers=63, queue_depth=4)
    with Region.anonymous(4096) as region:
        region.write(0, b"NOTASERVICE!")
        with pytest.raises(Foreign):
            Subscriber(region)
        with pytest.raises(Foreign):
            Publisher(region)
    with Region.anonymous(service_size(max_payload=64, subscribers=1, queue_depth=1)) as region:
        with pytest.raises(TimedOut):
            wait_until_service(region, timeout=0.05)


# Each error carries the Swift library's sentence (its SharedMemoryError.reason) for the same case; the Swift test
# PublishSubscribeTests.sameSentences asserts the same strings.
SENTENCES = {
    "history": "this service keeps a history of 3 samples; 4 cannot be asked for",
    "depth": "a subscriber's queue holds 1 to 4 samples on this service; 9 is not",
    "slots": "all 1 subscriber slots of the service are taken by live processes",
    "too large": "a sample of 65 bytes does not fit this service: at most 64",
    "timed out": "no sample arrived within 0.05 seconds",
    "foreign": "the region holds no publish/subscribe service here (its magic number is 5652455341544f4e)",
}


def test_errors_say_what_swift_says():
    with Region.anonymous(service_size(max_payload=64, subscribers=1, queue_depth=4, history=3)) as region:
        format_service(region, max_payload=64, subscribers=1, queue_depth=4, history=3)
        with pytest.raises(ValueError) as error:
            Subscriber(region, history=4)
        assert str(error.value) == SENTENCES["history"]
        with pytest.raises(ValueError) as error:
            Subscriber(region, queue_depth=9)
        assert str(error.value) == SENTENCES["depth"]
        subscriber = Subscriber(region)
        with pytest.raises(LimitExceeded) as error:
            Subscriber(region)
        assert str(error.value) == SENTENCES["slots"]
        publisher = Publisher(region)
        with pytest.raises(TooLarge) as error:
            publisher.publish(bytes(65))
        assert str(error.value) == SENTENCES["too large"]
        with pytest.raises(TimedOut) as error:
            subscriber.receive(timeout=0.05)
        assert str(error.value) == SENTENCES["timed out"]
        subscriber.close()
        publisher.finish()
    with Region.anonymous(4096) as region:
        region.write(0, b"NOTASERVICE!")
        with pytest.raises(Foreign) as error:
            Subscriber(region)
        assert str(error.value) == SENTENCES["foreign"]


@pytest.fixture
def service_name():
    if not PROBE:
        pytest.skip("SHM_PROBE (the path of RegionProbe) is not set")
    name = f"posix:/smtest-{os.getpid()}-pypubsub-{time.monotonic_ns() % 100000}"
    assert probe("create", name, str(service_size(max_payload=65536, subscribers=3, queue_depth=8, history=2))).startswith("ok")
    yield name
    subprocess.run([PROBE, "remove", name], capture_output=True)


TOTAL = 256 << 20


def test_sizes_and_layout_agree_with_swift(service_name):
    """Swift formats; Python attaches, with the size Swift computed; a Python publisher's sample reaches a Python
    subscriber through the Swift-made layout."""
    answer = probe("ps-format", service_name, "65536", "3", "8", "2")
    assert answer == f"ok {service_size(max_payload=65536, subscribers=3, queue_depth=8, history=2)}"
    with Region.open(service_name) as region:
        subscriber, publisher = Subscriber(region), Publisher(region)
        assert subscriber.max_payload == 65536
        publisher.publish(b"through swift's layout")
        assert subscriber.receive(timeout=1).data == b"through swift's layout"
        publisher.finish()
        subscriber.close()


def test_swift_publishes_python_subscribes(service_name):
    with Region.open(service_name) as region:
        format_service(region, max_payload=65536, subscribers=3, queue_depth=8, history=2)
        subscriber = Subscriber(region, overflow=BLOCK_PUBLISHER)
        count = TOTAL // 16600 + 1  # the pattern's average sample is about 16.5 KiB
        swift = subprocess.Popen([PROBE, "ps-publish", service_name, str(count)], stdout=subprocess.PIPE, text=True)
        received = bytes_received = 0
        while (got := subscriber.receive(timeout=60)) is not None:
            received += 1
            assert got.sequence == received and got.data == sample(got.sequence, 65536), f"sample {got.sequence}"
            bytes_received += len(got.data)
        assert swift.communicate(timeout=120)[0].split() == ["ok", "publishing", "ok", str(count)]
        assert received == count and subscriber.lost == 0 and bytes_received >= TOTAL
        subscriber.close()


def test_python_publishes_swift_subscribes(service_name):
    with Region.open(service_name) as region:
        format_service(region, max_payload=65536, subscribers=3, queue_depth=8, history=2)
        swift = subprocess.Popen([PROBE, "ps-subscribe", service_name, "0", "block"], stdout=subprocess.PIPE, text=True)
        assert swift.stdout.readline().strip() == "ok connected"
        publisher = Publisher(region, block_timeout=30)
        published = sent = 0
        while sent < TOTAL:
            data = sample(published + 1, publisher.max_payload)
            assert publisher.publish(data) == published + 1
            published += 1
            sent += len(data)
        publisher.finish()
        assert swift.communicate(timeout=120)[0].strip() == f"ok {published} 0"


def test_subscriber_sees_swift_publisher_die(service_name):
    with Region.open(service_name) as region:
        format_service(region, max_payload=65536, subscribers=3, queue_depth=8, history=2)
        subscriber = Subscriber(region, overflow=BLOCK_PUBLISHER)
        swift = subprocess.Popen([PROBE, "ps-publish", service_name, "0", "1"], stdout=subprocess.PIPE)
        first = subscriber.receive(timeout=10)
        assert first.sequence == 1 and first.data == sample(1, 65536)
        os.kill(swift.pid, signal.SIGKILL)
        swift.wait()
        killed = time.monotonic()
        with pytest.raises(PeerDied):
            while (got := subscriber.receive(timeout=10)) is not None:
                assert got.data == sample(got.sequence, 65536)
        assert time.monotonic() - killed < 2
        subscriber.close()
