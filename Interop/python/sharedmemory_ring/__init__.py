"""SharedMemory's message ring and publish/subscribe service from Python: the other side of a ring, or a publisher or
subscriber of a service, whose peers are Swift processes using SharedMemory, or C ones using Interop/c/smring.h and
smpubsub.h. The layouts and protocols are Docs/WireFormat.md's; every operation on the shared words runs in C (the
headers, built into this package), so each has the memory ordering the format asks for.

    from sharedmemory_ring import Region, RingReceiver, Subscriber
    with Region.open("posix:/orders") as region:
        receiver = RingReceiver(region)
        while (message := receiver.receive()) is not None:   # None: the sender finished
            handle(message)

    with Region.open("posix:/prices") as region:
        subscriber = Subscriber(region, history=4)
        while (sample := subscriber.receive()) is not None:  # None: the publisher finished
            handle(sample.sequence, sample.data)

Regions are opened by SharedMemory's names: `posix:/NAME`, `file:/PATH`, `sysv:0xKEY` (or `sysv:KEY`), `sysv-id:ID`.
"""
import ctypes
import ctypes.util
import glob
import mmap
import os
import stat

__all__ = ["Region", "RingSender", "RingReceiver", "format_ring", "wait_until_formatted", "ring_size",
           "Publisher", "Subscriber", "Sample", "format_service", "wait_until_service", "service_size",
           "OVERWRITE_OLDEST", "BLOCK_PUBLISHER",
           "RingError", "Foreign", "Busy", "TimedOut", "PeerDied", "TooLarge", "LimitExceeded", "NoSpace"]


class RingError(Exception):
    """A ring operation failed; the subclasses say how."""


class Foreign(RingError):
    """Not a ring of this format, or a corrupt one: nothing outside it was read or written."""


class Busy(RingError):
    """A live process already holds this seat (a ring has one sender and one receiver)."""


class TimedOut(RingError):
    """The wait ran out."""


class PeerDied(RingError):
    """The other side's process is gone (a receiver first reads everything it sent)."""


class TooLarge(RingError):
    """The message is larger than the ring's largest (capacity / 2 - 4 bytes)."""


class LimitExceeded(RingError):
    """Every subscriber slot of the service is taken by a live process."""


class NoSpace(RingError):
    """Every chunk of the service is held (by queues, reads and the history): something holds samples it should
    have released."""


_OK, _FOREIGN, _BUSY, _TIMED_OUT, _PEER_DIED, _FINISHED, _TOO_LARGE, _WOULD_BLOCK, _INVALID = 0, -1, -2, -3, -4, -5, -6, -7, -8
_LIMIT, _NO_SPACE = -9, -10
_ERRORS = {_FOREIGN: Foreign, _BUSY: Busy, _TIMED_OUT: TimedOut, _PEER_DIED: PeerDied, _TOO_LARGE: TooLarge,
           _LIMIT: LimitExceeded, _NO_SPACE: NoSpace, _INVALID: ValueError}


def _load():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = glob.glob(os.path.join(here, "_smring*.so"))
    if not candidates:
        raise ImportError("sharedmemory_ring's C part is not built: install the package with pip")
    lib = ctypes.CDLL(candidates[0])
    P, U32, U64, I64, I = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64, ctypes.c_int
    signatures = {
        "smr_attach": (P, [P, U64, I, ctypes.POINTER(I)]),
        "smr_free": (None, [P]),
        "smr_format": (I, [P, U64, U64]),
        "smr_wait_formatted": (I, [P, U64, I64]),
        "smr_capacity": (U64, [P]),
        "smr_maximum_message": (U32, [P]),
        "smr_send": (I, [P, ctypes.c_char_p, U32, I64]),
        "smr_finish": (None, [P]),
        "smr_close": (None, [P]),
        "smr_is_finished": (I, [P]),
        "smr_receive": (I, [P, ctypes.POINTER(P), ctypes.POINTER(U32), I64]),
        "smr_release": (None, [P]),
        "sps_size": (U64, [U64, U32, U32, U32]),
        "sps_format": (I, [P, U64, U64, U32, U32, U32]),
        "sps_wait_formatted": (I, [P, U64, I64]),
        "sps_publisher": (P, [P, U64, I64, ctypes.POINTER(I)]),
        "sps_publisher_max_payload": (U64, [P]),
        "sps_loan": (I, [P, ctypes.POINTER(P)]),
        "sps_publish": (I, [P, U64, ctypes.POINTER(U64)]),
        "sps_cancel": (None, [P]),
        "sps_publish_copy": (I, [P, ctypes.c_char_p, U64, ctypes.POINTER(U64)]),
        "sps_update": (I, [P]),
        "sps_finish": (None, [P]),
        "sps_last_sequence": (U64, [P]),
        "sps_subscriber_count": (U32, [P]),
        "sps_subscribe": (P, [P, U64, U32, U32, U32, ctypes.POINTER(I)]),
        "sps_subscriber_max_payload": (U64, [P]),
        "sps_receive": (I, [P, ctypes.POINTER(P), ctypes.POINTER(U64), ctypes.POINTER(U64), I64]),
        "sps_release": (None, [P]),
        "sps_lost": (U64, [P]),
        "sps_close": (None, [P]),
        "smr_message": (ctypes.c_char_p, [I]),
    }
    for name, (result, arguments) in signatures.items():
        function = getattr(lib, name)
        function.restype = result
        function.argtypes = arguments
    return lib


_lib = _load()
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.shmget.restype, _libc.shmget.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
_libc.shmat.restype, _libc.shmat.argtypes = ctypes.c_void_p, [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
_libc.shmdt.restype, _libc.shmdt.argtypes = ctypes.c_int, [ctypes.c_void_p]


class _ShmidDs(ctypes.Structure):
    # struct shmid_ds on x86-64 and arm64 Linux: ipc_perm (48 bytes), then shm_segsz.
    _fields_ = [("perm", ctypes.c_byte * 48), ("shm_segsz", ctypes.c_size_t), ("rest", ctypes.c_byte * 64)]


_libc.shmctl.restype, _libc.shmctl.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_ShmidDs)]
_IPC_STAT = 2


def ring_size(capacity):
    """The bytes a ring of `capacity` takes in a region: the capacity and a 256-byte header."""
    return 256 + capacity


def _nanoseconds(timeout):
    return -1 if timeout is None else max(0, int(timeout * 1e9))


def _check(result):
    if result != _OK:
        # The C side's sentence for the error it just returned in this thread: the Swift library's sentence.
        raise _ERRORS.get(result, RingError)(_lib.smr_message(result).decode("utf-8", "replace"))


class Region:
    """A region mapped read-write, opened by its SharedMemory name. Close it (or use `with`) when done; rings made
    in it must not be used after."""

    def __init__(self, name, address, size, keep=None, detach=None):
        self.name, self.address, self.size = name, address, size
        self._keep, self._detach = keep, detach

    @classmethod
    def open(cls, name):
        if name.startswith("posix:/"):
            return cls._map_file(name, "/dev/shm/" + name[len("posix:/"):])
        if name.startswith("file:/"):
            return cls._map_file(name, name[len("file:"):])
        if name.startswith("sysv-id:"):
            return cls._attach_segment(name, int(name[len("sysv-id:"):]))
        if name.startswith("sysv:"):
            key = int(name[len("sysv:"):], 0)
            key = key - 2**32 if key >= 2**31 else key
            ident = _libc.shmget(key, 0, 0)
            if ident < 0:
                raise OSError(ctypes.get_errno(), f"{name}: shmget: {os.strerror(ctypes.get_errno())}")
            return cls._attach_segment(name, ident)
        raise ValueError(f"{name!r} is not a posix:, file:, sysv: or sysv-id: name")

    @classmethod
    def _map_file(cls, name, path):
        # As SharedMemory does: no symbolic link anywhere on the path, and nothing but a regular file with one name
        # (another local user could plant a link, a FIFO, or a hard link to a file of theirs at a name).
        if os.path.realpath(path) != os.path.normpath(path):
            raise Foreign(f"{name}: the path goes through a symbolic link, which is not followed")
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO must not block
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise Foreign(f"{name}: not a regular file")
            if status.st_nlink != 1:
                raise Foreign(f"{name}: it has {status.st_nlink} names (hard links), so it may be someone else's file")
            mapped = mmap.mmap(fd, status.st_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        anchor = ctypes.c_char.from_buffer(mapped)
        return cls(name, ctypes.addressof(anchor), status.st_size, keep=(mapped, anchor))

    @classmethod
    def _attach_segment(cls, name, ident):
        status = _ShmidDs()
        if _libc.shmctl(ident, _IPC_STAT, ctypes.byref(status)) != 0:
            raise OSError(ctypes.get_errno(), f"{name}: shmctl: {os.strerror(ctypes.get_errno())}")
        address = _libc.shmat(ident, None, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"{name}: shmat: {os.strerror(ctypes.get_errno())}")
        return cls(name, address, status.shm_segsz, detach=lambda: _libc.shmdt(address))

    @classmethod
    def anonymous(cls, size):
        """Anonymous shared memory (for the tests, and for rings shared with children made by fork)."""
        mapped = mmap.mmap(-1, size, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        anchor = ctypes.c_char.from_buffer(mapped)
        return cls("anonymous", ctypes.addressof(anchor), size, keep=(mapped, anchor))

    def write(self, offset, data):
        ctypes.memmove(self.address + offset, data, len(data))

    def close(self):
        if self._keep is not None:
            mapped, anchor = self._keep
            del anchor
            self._keep = None
            mapped.close()
        if self._detach is not None:
            self._detach()
            self._detach = None

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.close()


def format_ring(region, offset=0, capacity=None):
    """Writes a new, empty ring at `offset` (a multiple of 64): `capacity` bytes of data, a power of two of at least
    4096, by default the largest that fits. Returns the capacity."""
    room = region.size - offset
    if capacity is None:
        capacity = 4096
        while ring_size(capacity * 2) <= room:
            capacity *= 2
    _check(_lib.smr_format(region.address + offset, room, capacity))
    return capacity


def wait_until_formatted(region, offset=0, timeout=10.0):
    """Waits until a ring has been formatted at `offset` (by any process); TimedOut or Foreign otherwise."""
    _check(_lib.smr_wait_formatted(region.address + offset, region.size - offset, _nanoseconds(timeout)))


class _Side:
    def __init__(self, region, offset, seat):
        result = ctypes.c_int(0)
        self._ring = _lib.smr_attach(region.address + offset, region.size - offset, seat, ctypes.byref(result))
        _check(result.value)
        self._region = region
        self.maximum_message = _lib.smr_maximum_message(self._ring)

    def close(self):
        """Gives the seat back (a sender finishes the stream first), so another process may attach."""
        if self._ring:
            _lib.smr_close(self._ring)
            _lib.smr_free(self._ring)
            self._ring = None

    def __del__(self):
        if getattr(self, "_ring", None):
            _lib.smr_free(self._ring)  # a dropped side ends nothing: only close() or finish() does


class RingSender(_Side):
    """The ring's only sender. Only finish() or close() (or this process's death) ends the stream."""

    def __init__(self, region, offset=0):
        super().__init__(region, offset, 0)

    def send(self, data, timeout=None):
        """Sends a copy of `data` (bytes-like), waiting for room at most `timeout` seconds (None: while the receiver
        lives)."""
        data = bytes(data)
        _check(_lib.smr_send(self._ring, data, len(data), _nanoseconds(timeout)))

    def try_send(self, data):
        """Sends `data` if there is room now; whether it did."""
        data = bytes(data)
        result = _lib.smr_send(self._ring, data, len(data), 0)
        if result == _WOULD_BLOCK:
            return False
        _check(result)
        return True

    def finish(self):
        """Tells the receiver no more messages come."""
        _lib.smr_finish(self._ring)


class RingReceiver(_Side):
    """The ring's only receiver."""

    def __init__(self, region, offset=0):
        super().__init__(region, offset, 1)

    def _next(self, timeout):
        message, length = ctypes.c_void_p(), ctypes.c_uint32()
        result = _lib.smr_receive(self._ring, ctypes.byref(message), ctypes.byref(length), _nanoseconds(timeout))
        if result in (_FINISHED, _WOULD_BLOCK):
            return None
        _check(result)
        return message.value or 0, length.value

    def receive(self, timeout=None):
        """The next message as bytes; None once the sender has finished and everything was read. Waits at most
        `timeout` seconds (None: while the sender lives), then raises TimedOut."""
        found = self._next(timeout)
        if found is None:
            return None
        address, length = found
        try:
            return ctypes.string_at(address, length)
        finally:
            _lib.smr_release(self._ring)

    def receive_into(self, body, timeout=None):
        """Zero-copy: calls `body` with the next message in place, as a read-only memoryview that is released when
        `body` returns, then frees its space; returns what `body` returned, or None once finished."""
        found = self._next(timeout)
        if found is None:
            return None
        address, length = found
        view = memoryview((ctypes.c_char * length).from_address(address)).cast("B").toreadonly()
        try:
            return body(view)
        finally:
            view.release()
            _lib.smr_release(self._ring)

    def try_receive(self):
        """The next message if one is there now, else None (also when the sender has finished)."""
        return self.receive(timeout=0)

    @property
    def is_finished(self):
        """Whether the sender has finished and every message has been read."""
        return bool(_lib.smr_is_finished(self._ring))


# ---- The publish/subscribe service (Docs/WireFormat.md, "The publish/subscribe service") ----

OVERWRITE_OLDEST, BLOCK_PUBLISHER = 0, 1


class Sample:
    """A received sample: its bytes and its sequence number (1 for the service's first, one more for each after)."""
    __slots__ = ("data", "sequence")

    def __init__(self, data, sequence):
        self.data, self.sequence = data, sequence

    def __repr__(self):
        return f"Sample(sequence={self.sequence}, {len(self.data)} bytes)"


def service_size(max_payload, subscribers, queue_depth, history=0):
    """The bytes a service of this configuration takes in a region (as Swift's PublishSubscribe.size)."""
    size = _lib.sps_size(max_payload, subscribers, queue_depth, history)
    if size == 0:
        raise ValueError("a service takes a payload of 0 bytes to 64 GiB, 1 to 62 subscribers, a queue depth of 1 to "
                         "65536 and a history of 0 to 65536")
    return size


def format_service(region, offset=0, *, max_payload, subscribers, queue_depth, history=0):
    """Makes a new service at `offset` (a multiple of 64) of a region that holds nothing there yet (its first 8 bytes
    zero; Busy otherwise, and nothing is overwritten)."""
    service_size(max_payload, subscribers, queue_depth, history)
    _check(_lib.sps_format(region.address + offset, region.size - offset, max_payload, subscribers, queue_depth, history))


def wait_until_service(region, offset=0, timeout=10.0):
    """Waits until a service has been formatted at `offset` (by any process); TimedOut or Foreign otherwise."""
    _check(_lib.sps_wait_formatted(region.address + offset, region.size - offset, _nanoseconds(timeout)))


class Publisher:
    """The service's only publisher. `block_timeout` (seconds) bounds each wait for room in a blocking subscriber's
    queue. Only finish() (or this process's death) ends the stream."""

    def __init__(self, region, offset=0, block_timeout=1.0):
        result = ctypes.c_int(0)
        self._publisher = _lib.sps_publisher(region.address + offset, region.size - offset, _nanoseconds(block_timeout),
                                             ctypes.byref(result))
        _check(result.value)
        self._region = region
        self.max_payload = _lib.sps_publisher_max_payload(self._publisher)

    def publish(self, data):
        """Publishes a copy of `data` (bytes-like) to every connected subscriber; returns its sequence number. A
        blocking subscriber still full after block_timeout misses it, and TimedOut is raised after the others got it."""
        data = bytes(data)
        sequence = ctypes.c_uint64()
        _check(_lib.sps_publish_copy(self._publisher, data, len(data), ctypes.byref(sequence)))
        return sequence.value

    def publish_into(self, size, body):
        """Zero-copy: calls `body` with a writable memoryview of `size` bytes in a chunk of the region (released
        when `body` returns), then publishes them; returns the sequence number. If `body` raises, nothing is
        published (the chunk goes back) and the exception propagates."""
        if size < 0 or size > self.max_payload:
            raise TooLarge(f"a sample of {size} bytes does not fit this service: at most {self.max_payload}")
        payload, sequence = ctypes.c_void_p(), ctypes.c_uint64()
        _check(_lib.sps_loan(self._publisher, ctypes.byref(payload)))
        view = memoryview((ctypes.c_char * size).from_address(payload.value)).cast("B")
        try:
            body(view)
        except BaseException:
            _lib.sps_cancel(self._publisher)
            raise
        finally:
            view.release()
        _check(_lib.sps_publish(self._publisher, size, ctypes.byref(sequence)))
        return sequence.value

    def update(self):
        """Delivers the history to subscribers that asked for it, and reclaims dead subscribers, without publishing."""
        _check(_lib.sps_update(self._publisher))

    def finish(self):
        """Ends the stream: subscribers read what was published, then receive() returns None."""
        _lib.sps_finish(self._publisher)

    @property
    def last_sequence(self):
        """The sequence number of the last sample published on the service (0 before the first)."""
        return _lib.sps_last_sequence(self._publisher)

    @property
    def subscriber_count(self):
        """Subscribers connected now."""
        return _lib.sps_subscriber_count(self._publisher)

    def __del__(self):
        if getattr(self, "_publisher", None):
            _lib.smr_free(self._publisher)  # dropping the handle ends nothing: only finish() does


class Subscriber:
    """A subscriber of the service: its own queue of `queue_depth` samples (None: the service's), `overflow`
    (OVERWRITE_OLDEST: the oldest unread sample is dropped and counted in `lost`; BLOCK_PUBLISHER: the publisher waits
    for room), and the last `history` samples delivered first. Close it to give its slot back at once."""

    def __init__(self, region, offset=0, queue_depth=None, overflow=OVERWRITE_OLDEST, history=0):
        result = ctypes.c_int(0)
        self._subscriber = _lib.sps_subscribe(region.address + offset, region.size - offset, queue_depth or 0, overflow,
                                              history, ctypes.byref(result))
        _check(result.value)
        self._region = region
        self.max_payload = _lib.sps_subscriber_max_payload(self._subscriber)

    def _next(self, timeout):
        sample, length, sequence = ctypes.c_void_p(), ctypes.c_uint64(), ctypes.c_uint64()
        result = _lib.sps_receive(self._subscriber, ctypes.byref(sample), ctypes.byref(length), ctypes.byref(sequence),
                                  _nanoseconds(timeout))
        if result == _FINISHED:
            return None
        if result == _WOULD_BLOCK:
            return False
        _check(result)
        return sample.value or 0, length.value, sequence.value

    def receive(self, timeout=None):
        """The next Sample (a copy); None once the publisher has finished and every sample was read. Waits at most
        `timeout` seconds (None: while the publisher lives), then raises TimedOut (0: returns False if there is
        none now). PeerDied once the publisher died and every sample it published was read."""
        found = self._next(timeout)
        if not found:
            return found
        address, length, sequence = found
        try:
            return Sample(ctypes.string_at(address, length), sequence)
        finally:
            _lib.sps_release(self._subscriber)

    def receive_into(self, body, timeout=None):
        """Zero-copy: calls `body(view, sequence)` with the next sample in place, as a read-only memoryview released
        when `body` returns, then gives the sample back; returns what `body` returned (None once finished)."""
        found = self._next(timeout)
        if not found:
            return found
        address, length, sequence = found
        view = memoryview((ctypes.c_char * length).from_address(address)).cast("B").toreadonly()
        try:
            return body(view, sequence)
        finally:
            view.release()
            _lib.sps_release(self._subscriber)

    @property
    def lost(self):
        """Samples dropped from this subscriber's full queue, or that a blocking one missed."""
        return _lib.sps_lost(self._subscriber)

    def close(self):
        """Leaves the service: the slot and everything queued in it are given back at once."""
        if self._subscriber:
            _lib.sps_close(self._subscriber)
            _lib.smr_free(self._subscriber)
            self._subscriber = None

    def __del__(self):
        if getattr(self, "_subscriber", None):
            _lib.smr_free(self._subscriber)  # the slot stays taken until close() or this process's death
