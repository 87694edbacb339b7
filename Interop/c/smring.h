/*
 * smring.h: SharedMemory's message ring in C, header-only (C11, <stdatomic.h>, Linux, libc only).
 *
 * A single-producer, single-consumer ring of variable-size messages in shared memory, laid out and driven exactly
 * as Docs/WireFormat.md says, so that a C process can be either side of a ring whose other side is a Swift process
 * using SharedMemory (or a Python one using Interop/python). Map the region yourself (shm_open + mmap, shmat,
 * mmap of a file) and give this header the address of the ring in it.
 *
 *     smring ring;
 *     if (smring_attach(&ring, base, region_size, SMRING_RECEIVER) != SMRING_OK) ...;
 *     const void *message; uint32_t length;
 *     while (smring_receive(&ring, &message, &length, -1) == SMRING_OK) {
 *         use(message, length);        // in place
 *         smring_release(&ring);       // frees its space
 *     }                                // SMRING_FINISHED: the sender finished and everything was read
 *
 * Every function returns SMRING_OK (0) or a negative SMRING_* code; smring_error() names it, and smring_message(code),
 * called right after in the same thread, gives the sentence the Swift library's error has for the same case (what
 * failed, with the figures). Timeouts are in nanoseconds: -1 waits as long as the peer lives, 0 does not wait.
 */
#ifndef SMRING_H
#define SMRING_H

/* How the ring's functions are declared. At -O2 neither gcc nor clang inlines the larger ones (smring_send,
 * smring_receive); a program that wants the hot path inlined into its loop, as Swift's is, defines this first:
 *     #define SMRING_INLINE static inline __attribute__((always_inline))
 * (Benchmarks/Instructions/run.sh and `shm bench --instructions` measure the ring in C that way: the fair C.) */
#ifndef SMRING_INLINE
#define SMRING_INLINE static inline
#endif

/* syscall, kill and clock_gettime are POSIX and Linux, not ISO C: under -std=c11, include this header first (or
 * compile with -std=gnu11). */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define SMRING_OK 0
#define SMRING_FOREIGN (-1)     /* not a ring of this format, or a corrupt one: nothing was read or written outside it */
#define SMRING_BUSY (-2)        /* the seat is held by a live process */
#define SMRING_TIMED_OUT (-3)
#define SMRING_PEER_DIED (-4)   /* the other side's process is gone (a receiver first reads everything it sent) */
#define SMRING_FINISHED (-5)    /* the sender finished and every message has been read */
#define SMRING_TOO_LARGE (-6)   /* a message larger than capacity / 2 - 4 */
#define SMRING_WOULD_BLOCK (-7) /* a timeout of 0 and no message, or no room */
#define SMRING_INVALID (-8)     /* a bad argument: capacity, alignment, size */

#define SMRING_SENDER 0
#define SMRING_RECEIVER 1

#define SMRING_HEADER_SIZE 256u
#define SMRING_MAGIC 0x53484D52494E4700ull
#define SMRING_MAJOR 1u
#define SMRING_MINOR 0u
#define SMRING_WRAP 0xFFFFFFFFu
#define SMRING_SPINS 2000

/* Header offsets (Docs/WireFormat.md, "Header"). */
enum {
    SMRING_OFF_MAGIC = 0, SMRING_OFF_MAJOR = 8, SMRING_OFF_MINOR = 10, SMRING_OFF_HEADER_SIZE = 12,
    SMRING_OFF_CAPACITY = 16, SMRING_OFF_SENDER_PID = 32, SMRING_OFF_SENDER_VACATED = 36, SMRING_OFF_SENDER_START = 40,
    SMRING_OFF_RECEIVER_PID = 48, SMRING_OFF_RECEIVER_VACATED = 52, SMRING_OFF_RECEIVER_START = 56, SMRING_OFF_HEAD = 64, SMRING_OFF_FINISHED = 72,
    SMRING_OFF_SENDER_TOKEN = 80, SMRING_OFF_TAIL = 128, SMRING_OFF_RECEIVER_TOKEN = 136, SMRING_OFF_DATA_SIGNAL = 192,
    SMRING_OFF_RECEIVER_WAITING = 196, SMRING_OFF_SPACE_SIGNAL = 224, SMRING_OFF_SENDER_WAITING = 228
};

/* One side's handle: where the ring is, and this side's own copies of the two positions. */
typedef struct smring {
    unsigned char *base;     /* the header */
    unsigned char *data;     /* base + 256 */
    uint64_t capacity;
    uint64_t head;           /* the sender's position (its own); the receiver's last look at it */
    uint64_t tail;           /* the receiver's position (its own); the sender's last look at it */
    int seat;
    int spins;               /* how many times to poll before sleeping (SMRING_SPINS by default) */
    uint32_t pending;        /* receiver: bytes of the message handed out and not yet released; sender: room reserved */
    uint64_t pending_end;    /* sender: the position after the reserved record's padding */
    int reserved;
} smring;

SMRING_INLINE _Atomic uint64_t *smring__u64(const smring *r, unsigned offset) { return (_Atomic uint64_t *)(r->base + offset); }
SMRING_INLINE _Atomic uint32_t *smring__u32(const smring *r, unsigned offset) { return (_Atomic uint32_t *)(r->base + offset); }
SMRING_INLINE _Atomic int32_t *smring__i32(const smring *r, unsigned offset) { return (_Atomic int32_t *)(r->base + offset); }
SMRING_INLINE uint64_t smring__align8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

/* The largest message a ring of `capacity` carries. */
SMRING_INLINE uint32_t smring_maximum_message(uint64_t capacity) { return (uint32_t)(capacity / 2 - 4); }

/* The bytes a ring of `capacity` takes in a region. */
SMRING_INLINE uint64_t smring_size(uint64_t capacity) { return SMRING_HEADER_SIZE + capacity; }

SMRING_INLINE const char *smring_error(int code) {
    switch (code) {
    case SMRING_OK: return "ok";
    case SMRING_FOREIGN: return "foreign: not a ring of this format, or a corrupt one";
    case SMRING_BUSY: return "busy: a live process holds the seat";
    case SMRING_TIMED_OUT: return "timed out";
    case SMRING_PEER_DIED: return "peer died";
    case SMRING_FINISHED: return "finished";
    case SMRING_TOO_LARGE: return "message too large for the ring";
    case SMRING_WOULD_BLOCK: return "would block";
    case SMRING_INVALID: return "invalid argument";
    default: return "unknown";
    }
}

/* The sentence of the last error a function of this header (or smpubsub.h) returned in this thread: what failed and
 * why, the sentence the Swift library's error has (without the region's name, which C does not know). Every error
 * return sets it. smring_message(code) gives it for the code just returned, or smring_error(code) if it was not
 * the last error here. */
static _Thread_local char smring__text[400];
static _Thread_local int smring__text_code;

/* Out of line and cold, so the error paths leave the inlined fast paths as they were; smring__fail is a macro so that
 * the compiler sees the code it returns (a function's result it cannot see would be "maybe OK" to it, and every out
 * parameter of the caller "maybe uninitialized"). */
__attribute__((format(printf, 2, 3), cold, noinline, unused))
static void smring__note(int code, const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(smring__text, sizeof smring__text, format, arguments);
    va_end(arguments);
    smring__text_code = code;
}

#define smring__fail(code, ...) (smring__note((code), __VA_ARGS__), (code))

SMRING_INLINE const char *smring_message(int code) {
    return code == smring__text_code && smring__text[0] ? smring__text : smring_error(code);
}

/* A timeout as Swift's Duration prints it: "1.0 seconds", "0.25 seconds". */
SMRING_INLINE const char *smring__seconds(int64_t ns, char *text, size_t size) {
    if (ns % 1000000000 == 0) snprintf(text, size, "%lld.0 seconds", (long long)(ns / 1000000000));
    else snprintf(text, size, "%.9g seconds", (double)ns / 1e9);
    return text;
}

/* ---- Time, futexes and processes ---- */

SMRING_INLINE int64_t smring__now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* FUTEX_WAIT (shared: the word is in memory two processes map) while *word == seen, at most `ns`. */
SMRING_INLINE void smring__futex_wait(_Atomic uint32_t *word, uint32_t seen, int64_t ns) {
    struct timespec t = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, seen, &t, NULL, 0);
}

SMRING_INLINE void smring__futex_wake(_Atomic uint32_t *word) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

/* Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot; 0 if unknown. */
SMRING_INLINE uint64_t smring__start_time(int32_t pid) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return 0;
    text[n] = 0;
    char *p = strrchr(text, ')');  /* the command name may hold spaces and parentheses */
    if (!p) return 0;
    for (int field = 2; field < 22 && p; field++) p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* Whether the process in a seat runs: an empty seat (pid 0) counts as alive, since the peer has not come yet; a
   recorded start time of 0 never does; a start time that cannot be read (/proc hidden) is taken as the same. */
SMRING_INLINE int smring__alive(const smring *r, int seat) {
    unsigned pid_offset = seat == SMRING_SENDER ? SMRING_OFF_SENDER_PID : SMRING_OFF_RECEIVER_PID;
    unsigned start_offset = seat == SMRING_SENDER ? SMRING_OFF_SENDER_START : SMRING_OFF_RECEIVER_START;
    int32_t pid = atomic_load_explicit(smring__i32(r, pid_offset), memory_order_acquire);
    if (pid == 0) return 1;
    if (pid < 0) return 0;  /* no process: and kill(-n, 0) would ask about a process group */
    if (kill(pid, 0) != 0 && errno != EPERM) return 0;
    uint64_t start;
    memcpy(&start, r->base + start_offset, 8);
    /* Every writer records its real start time (never 0 for a user process): a seat naming 0 was written by
       something else, and is not believed, or any peer could hold it for ever as pid 1, start 0. */
    if (start == 0) return 0;
    uint64_t now = smring__start_time(pid);
    return now == 0 || now == start;
}

/* ---- Formatting and attaching ---- */

/* Writes a new, empty ring of `capacity` (a power of two, at least 4096) at `ring`, which must be 64-byte aligned
 * with `room` bytes from there; wakes every side waiting in smring_wait_formatted. */
SMRING_INLINE int smring_format(void *ring, uint64_t room, uint64_t capacity) {
    if (((uintptr_t)ring & 63) != 0) return smring__fail(SMRING_INVALID, "a ring's place must be 64-byte aligned");
    if (capacity < 4096 || (capacity & (capacity - 1)) != 0)
        return smring__fail(SMRING_INVALID, "a ring's capacity is a power of two of at least 4096 bytes, not %llu", (unsigned long long)capacity);
    if (smring_size(capacity) > room)
        return smring__fail(SMRING_INVALID, "a ring of capacity %llu needs %llu bytes (the capacity and a %u-byte header), and the region holds %llu from the ring's place",
                            (unsigned long long)capacity, (unsigned long long)smring_size(capacity), SMRING_HEADER_SIZE, (unsigned long long)room);
    smring r = { .base = (unsigned char *)ring };
    memset(r.base, 0, SMRING_HEADER_SIZE);
    uint16_t major = SMRING_MAJOR, minor = SMRING_MINOR;
    uint32_t header = SMRING_HEADER_SIZE;
    memcpy(r.base + SMRING_OFF_MAJOR, &major, 2);
    memcpy(r.base + SMRING_OFF_MINOR, &minor, 2);
    memcpy(r.base + SMRING_OFF_HEADER_SIZE, &header, 4);
    memcpy(r.base + SMRING_OFF_CAPACITY, &capacity, 8);
    atomic_store_explicit(smring__u64(&r, SMRING_OFF_MAGIC), SMRING_MAGIC, memory_order_release);  /* last */
    smring__futex_wake(smring__u32(&r, SMRING_OFF_MAGIC));  /* the magic's low half */
    return SMRING_OK;
}

/* Checks the header at `ring` (`room` bytes from there) and returns its capacity in *capacity. */
SMRING_INLINE int smring_validate(const void *ring, uint64_t room, uint64_t *capacity) {
    smring r = { .base = (unsigned char *)ring };
    if (((uintptr_t)ring & 63) != 0) return smring__fail(SMRING_INVALID, "a ring's place must be 64-byte aligned");
    if (room < SMRING_HEADER_SIZE) return smring__fail(SMRING_INVALID, "a ring needs at least %u bytes for its header; the region holds %llu from the ring's place", SMRING_HEADER_SIZE, (unsigned long long)room);
    uint64_t magic = atomic_load_explicit(smring__u64(&r, SMRING_OFF_MAGIC), memory_order_acquire);
    if (magic != SMRING_MAGIC)
        return smring__fail(SMRING_FOREIGN, "there is no message ring here (magic 0x%llx); format one with MessageRing.format", (unsigned long long)magic);
    uint16_t major;
    uint32_t header;
    uint64_t found;
    memcpy(&major, r.base + SMRING_OFF_MAJOR, 2);
    memcpy(&header, r.base + SMRING_OFF_HEADER_SIZE, 4);
    memcpy(&found, r.base + SMRING_OFF_CAPACITY, 8);
    if (major != SMRING_MAJOR || header != SMRING_HEADER_SIZE) {  /* any minor version is read */
        uint16_t minor;
        memcpy(&minor, r.base + SMRING_OFF_MINOR, 2);
        return smring__fail(SMRING_FOREIGN, "the ring was written by version %u.%u of its layout (header %u bytes); this library reads version %u.x only",
                            major, minor, header, SMRING_MAJOR);
    }
    if (found < 4096 || (found & (found - 1)) != 0 || found > room - SMRING_HEADER_SIZE)
        return smring__fail(SMRING_FOREIGN, "the ring's header claims %llu bytes of data, which is not a power of two that fits in the region", (unsigned long long)found);
    if (capacity) *capacity = found;
    return SMRING_OK;
}

/* Waits at most `timeout_ns` for a ring to be formatted at `ring`: SMRING_OK, SMRING_TIMED_OUT, or SMRING_FOREIGN
 * once the time is up with something else there (at once for a ring of another layout). */
SMRING_INLINE int smring_wait_formatted(void *ring, uint64_t room, int64_t timeout_ns) {
    smring r = { .base = (unsigned char *)ring };
    int64_t deadline = smring__now() + timeout_ns;
    for (;;) {
        uint32_t seen = atomic_load_explicit(smring__u32(&r, SMRING_OFF_MAGIC), memory_order_acquire);
        if (seen == (uint32_t)SMRING_MAGIC) return smring_validate(ring, room, NULL);
        int64_t left = deadline - smring__now();
        if (left <= 0) {
            char text[40];
            return seen == 0 ? smring__fail(SMRING_TIMED_OUT, "no message ring has been formatted here within %s; is the process that formats it running?",
                                            smring__seconds(timeout_ns, text, sizeof text))
                             : smring_validate(ring, room, NULL);
        }
        smring__futex_wait(smring__u32(&r, SMRING_OFF_MAGIC), seen, left < 100000000 ? left : 100000000);
    }
}

/* Attaches as the ring's sender or receiver (SMRING_SENDER, SMRING_RECEIVER): validates the header and both
 * positions, and takes the seat (SMRING_BUSY if a live process holds it). */
SMRING_INLINE int smring_attach(smring *r, void *ring, uint64_t room, int seat) {
    memset(r, 0, sizeof *r);
    r->base = (unsigned char *)ring;
    r->seat = seat;
    r->spins = SMRING_SPINS;
    int result = smring_validate(ring, room, &r->capacity);
    if (result != SMRING_OK) return result;
    r->data = r->base + SMRING_HEADER_SIZE;
    unsigned pid_offset = seat == SMRING_SENDER ? SMRING_OFF_SENDER_PID : SMRING_OFF_RECEIVER_PID;
    unsigned start_offset = seat == SMRING_SENDER ? SMRING_OFF_SENDER_START : SMRING_OFF_RECEIVER_START;
    unsigned token_offset = seat == SMRING_SENDER ? SMRING_OFF_SENDER_TOKEN : SMRING_OFF_RECEIVER_TOKEN;
    unsigned vacated_offset = seat == SMRING_SENDER ? SMRING_OFF_SENDER_VACATED : SMRING_OFF_RECEIVER_VACATED;
    int32_t me = (int32_t)getpid();
    uint64_t my_start = smring__start_time(me);
    for (;;) {
        int32_t holder = atomic_load_explicit(smring__i32(r, pid_offset), memory_order_acquire);
        /* A live holder keeps the seat unless its handle went away (it wrote its pid into the vacated word). */
        if (holder != 0 && smring__alive(r, seat)
            && atomic_load_explicit(smring__i32(r, vacated_offset), memory_order_acquire) != holder)
            return smring__fail(SMRING_BUSY, "process %d is already this ring's %s; a ring has one of each", (int)holder, seat == SMRING_SENDER ? "sender" : "receiver");
        atomic_store_explicit(smring__i32(r, vacated_offset), 0, memory_order_relaxed);
        memcpy(r->base + start_offset, &my_start, 8);
        if (atomic_compare_exchange_strong_explicit(smring__i32(r, pid_offset), &holder, me, memory_order_acq_rel, memory_order_acquire))
            break;
    }
    uint64_t token = 0;
    while (getrandom(&token, sizeof token, 0) != sizeof token) {}
    atomic_store_explicit(smring__u64(r, token_offset), token | 1, memory_order_release);
    r->head = atomic_load_explicit(smring__u64(r, SMRING_OFF_HEAD), memory_order_acquire);
    r->tail = atomic_load_explicit(smring__u64(r, SMRING_OFF_TAIL), memory_order_acquire);
    if ((r->head & 7) != 0 || (r->tail & 7) != 0 || r->head - r->tail > r->capacity) {
        atomic_store_explicit(smring__i32(r, pid_offset), 0, memory_order_release);
        return smring__fail(SMRING_FOREIGN, "the ring is corrupt: its write position %llu and read position %llu are not 8-byte slots at most %llu bytes apart",
                            (unsigned long long)r->head, (unsigned long long)r->tail, (unsigned long long)r->capacity);
    }
    if (seat == SMRING_SENDER) atomic_store_explicit(smring__u32(r, SMRING_OFF_FINISHED), 0, memory_order_release);
    return SMRING_OK;
}

/* The sender found the receiver's position impossible. */
SMRING_INLINE int smring__corrupt_tail(const smring *r) {
    return smring__fail(SMRING_FOREIGN, "the ring is corrupt: its read position %llu is not within a ring of the write position %llu; the receiver is not a SharedMemory ring receiver, or it wrote over the ring",
                        (unsigned long long)r->tail, (unsigned long long)r->head);
}

/* ---- Waiting (Docs/WireFormat.md, "Waiting") ---- */

/* Sleeps on `signal` until it moves, the deadline passes or 100 ms go by. Returns 1 if the slice elapsed. */
SMRING_INLINE int smring__sleep(_Atomic uint32_t *signal, uint32_t seen, int64_t deadline, int *timed_out) {
    int64_t slice = 100000000;
    if (deadline >= 0) {
        int64_t left = deadline - smring__now();
        if (left <= 0) { *timed_out = 1; return 0; }
        if (left < slice) slice = left;
    }
    int64_t before = smring__now();
    smring__futex_wait(signal, seen, slice);
    return smring__now() - before >= slice;
}

/* ---- Sending ---- */

/* Reserves room for up to `count` bytes, waiting at most `timeout_ns`; *slot is where to write them. Publish them
 * with smring_publish. */
SMRING_INLINE int smring_reserve(smring *r, uint32_t count, int64_t timeout_ns, void **slot) {
    if (r->seat != SMRING_SENDER) return smring__fail(SMRING_INVALID, "only the ring's sender sends");
    if (r->reserved) return smring__fail(SMRING_INVALID, "the message reserved before must be published first");
    if (count > smring_maximum_message(r->capacity))
        return smring__fail(SMRING_TOO_LARGE, "a message of %u bytes does not fit this ring: at most %u (half its capacity)", count, smring_maximum_message(r->capacity));
    uint64_t need = smring__align8(4 + (uint64_t)count);
    int64_t deadline = timeout_ns < 0 ? -1 : smring__now() + timeout_ns;
    int spins = r->spins, look_at_peer = 0;
    for (;;) {
        uint64_t place = r->head & (r->capacity - 1);
        uint64_t pad = place + need > r->capacity ? r->capacity - place : 0;
        uint64_t end = r->head + pad + need;
        if (end - r->tail > r->capacity) {
            r->tail = atomic_load_explicit(smring__u64(r, SMRING_OFF_TAIL), memory_order_acquire);
            if (r->head - r->tail > r->capacity) return smring__corrupt_tail(r);  /* not a receiver's position */
        }
        if (end - r->tail <= r->capacity) {
            if (pad > 0) { uint32_t wrap = SMRING_WRAP; memcpy(r->data + place, &wrap, 4); }
            uint64_t start = (r->head + pad) & (r->capacity - 1);
            *slot = r->data + start + 4;
            r->pending = count;
            r->pending_end = r->head + pad;  /* the record starts here */
            r->reserved = 1;
            return SMRING_OK;
        }
        if (timeout_ns == 0) return SMRING_WOULD_BLOCK;
        if (spins > 0) { spins--; continue; }
        if (look_at_peer && !smring__alive(r, SMRING_RECEIVER))
            return smring__fail(SMRING_PEER_DIED, "the receiving process died; nothing will drain the ring");
        _Atomic uint32_t *signal = smring__u32(r, SMRING_OFF_SPACE_SIGNAL);
        uint32_t seen = atomic_load_explicit(signal, memory_order_acquire);
        atomic_store_explicit(smring__u32(r, SMRING_OFF_SENDER_WAITING), 1, memory_order_seq_cst);
        r->tail = atomic_load_explicit(smring__u64(r, SMRING_OFF_TAIL), memory_order_seq_cst);
        if (r->head - r->tail > r->capacity) return smring__corrupt_tail(r);
        if (end - r->tail > r->capacity) {
            int timed_out = 0;
            look_at_peer = smring__sleep(signal, seen, deadline, &timed_out);
            atomic_store_explicit(smring__u32(r, SMRING_OFF_SENDER_WAITING), 0, memory_order_relaxed);
            if (timed_out) {
                char text[40];
                return smring__fail(SMRING_TIMED_OUT, "the ring was still full after %s", smring__seconds(timeout_ns, text, sizeof text));
            }
        } else {
            atomic_store_explicit(smring__u32(r, SMRING_OFF_SENDER_WAITING), 0, memory_order_relaxed);
        }
    }
}

SMRING_INLINE void smring__wake(smring *r, unsigned signal_offset, unsigned waiting_offset, int always) {
    atomic_thread_fence(memory_order_seq_cst);
    if (always || atomic_load_explicit(smring__u32(r, waiting_offset), memory_order_relaxed) != 0) {
        atomic_fetch_add_explicit(smring__u32(r, signal_offset), 1, memory_order_release);
        smring__futex_wake(smring__u32(r, signal_offset));
    }
}

/* Publishes the first `written` bytes (at most the count reserved) of the slot smring_reserve gave as a message. */
SMRING_INLINE int smring_publish(smring *r, uint32_t written) {
    if (!r->reserved) return smring__fail(SMRING_INVALID, "nothing was reserved to publish");
    if (written > r->pending) return smring__fail(SMRING_INVALID, "%u bytes were written, and %u reserved", written, r->pending);
    uint64_t start = r->pending_end & (r->capacity - 1);
    memcpy(r->data + start, &written, 4);
    r->head = r->pending_end + smring__align8(4 + (uint64_t)written);
    r->reserved = 0;
    atomic_store_explicit(smring__u64(r, SMRING_OFF_HEAD), r->head, memory_order_release);
    smring__wake(r, SMRING_OFF_DATA_SIGNAL, SMRING_OFF_RECEIVER_WAITING, 0);
    return SMRING_OK;
}

/* Sends a copy of `length` bytes, waiting for room at most `timeout_ns`. */
SMRING_INLINE int smring_send(smring *r, const void *bytes, uint32_t length, int64_t timeout_ns) {
    void *slot;
    int result = smring_reserve(r, length, timeout_ns, &slot);
    if (result != SMRING_OK) return result;
    if (length > 0) memcpy(slot, bytes, length);
    return smring_publish(r, length);
}

/* Tells the receiver no more messages come. */
SMRING_INLINE void smring_finish(smring *r) {
    atomic_store_explicit(smring__u32(r, SMRING_OFF_FINISHED), 1, memory_order_release);
    smring__wake(r, SMRING_OFF_DATA_SIGNAL, SMRING_OFF_RECEIVER_WAITING, 1);
}

/* ---- Receiving ---- */

/* The next message in place: *message and *length, valid until smring_release. SMRING_FINISHED once the sender
 * finished and everything was read; SMRING_FOREIGN for a corrupt ring (nothing outside it was read). */
SMRING_INLINE int smring_receive(smring *r, const void **message, uint32_t *length, int64_t timeout_ns) {
    if (r->seat != SMRING_RECEIVER) return smring__fail(SMRING_INVALID, "only the ring's receiver receives");
    if (r->pending) return smring__fail(SMRING_INVALID, "the message received before must be released first");
    int64_t deadline = timeout_ns < 0 ? -1 : smring__now() + timeout_ns;
    int spins = r->spins, look_at_peer = 0;
    for (;;) {
        uint64_t current = r->tail;
        if (r->head == current) r->head = atomic_load_explicit(smring__u64(r, SMRING_OFF_HEAD), memory_order_acquire);
        if (r->head != current) {
            uint64_t published = r->head - current;
            uint64_t place = current & (r->capacity - 1);
            uint32_t found;
            memcpy(&found, r->data + place, 4);
            if (found == SMRING_WRAP && published <= r->capacity) {
                r->tail = current + (r->capacity - place);
                continue;
            }
            if (published > r->capacity || found > smring_maximum_message(r->capacity)
                || smring__align8(4 + (uint64_t)found) > published || place + 4 + found > r->capacity)
                return smring__fail(SMRING_FOREIGN, "the ring is corrupt: a message of %u bytes at offset %llu, with %llu bytes published; the sender is not a SharedMemory ring sender, or it wrote over the ring",
                                    found, (unsigned long long)place, (unsigned long long)published);
            *message = r->data + place + 4;
            *length = found;
            r->pending = (uint32_t)smring__align8(4 + (uint64_t)found);
            return SMRING_OK;
        }
        if (atomic_load_explicit(smring__u32(r, SMRING_OFF_FINISHED), memory_order_acquire) != 0) {
            if (atomic_load_explicit(smring__u64(r, SMRING_OFF_HEAD), memory_order_acquire) == current) return SMRING_FINISHED;
            continue;
        }
        if (timeout_ns == 0) return SMRING_WOULD_BLOCK;
        if (spins > 0) { spins--; continue; }
        if (look_at_peer && !smring__alive(r, SMRING_SENDER))
            return smring__fail(SMRING_PEER_DIED, "the sending process died without finishing; every message it sent has been read");
        _Atomic uint32_t *signal = smring__u32(r, SMRING_OFF_DATA_SIGNAL);
        uint32_t seen = atomic_load_explicit(signal, memory_order_acquire);
        atomic_store_explicit(smring__u32(r, SMRING_OFF_RECEIVER_WAITING), 1, memory_order_seq_cst);
        if (atomic_load_explicit(smring__u64(r, SMRING_OFF_HEAD), memory_order_seq_cst) == current
            && atomic_load_explicit(smring__u32(r, SMRING_OFF_FINISHED), memory_order_acquire) == 0) {
            int timed_out = 0;
            look_at_peer = smring__sleep(signal, seen, deadline, &timed_out);
            atomic_store_explicit(smring__u32(r, SMRING_OFF_RECEIVER_WAITING), 0, memory_order_relaxed);
            if (timed_out) {
                char text[40];
                return smring__fail(SMRING_TIMED_OUT, "no message came within %s", smring__seconds(timeout_ns, text, sizeof text));
            }
        } else {
            atomic_store_explicit(smring__u32(r, SMRING_OFF_RECEIVER_WAITING), 0, memory_order_relaxed);
        }
    }
}

/* Frees the space of the message smring_receive handed out, and wakes a sender waiting for room. */
SMRING_INLINE void smring_release(smring *r) {
    if (!r->pending) return;
    r->tail += r->pending;
    r->pending = 0;
    atomic_store_explicit(smring__u64(r, SMRING_OFF_TAIL), r->tail, memory_order_release);
    smring__wake(r, SMRING_OFF_SPACE_SIGNAL, SMRING_OFF_SENDER_WAITING, 0);
}

/* Receives a copy into `buffer` (room for `room` bytes; SMRING_TOO_LARGE, message left in the ring, if it does not
 * fit) and frees its space. */
SMRING_INLINE int smring_receive_copy(smring *r, void *buffer, uint32_t room, uint32_t *length, int64_t timeout_ns) {
    const void *message;
    int result = smring_receive(r, &message, length, timeout_ns);
    if (result != SMRING_OK) return result;
    if (*length > room) {
        r->pending = 0;
        return smring__fail(SMRING_TOO_LARGE, "the next message has %u bytes and the buffer holds %u; the message stays in the ring: receive it into a buffer of at least %u bytes (maxMessage, %u, takes any), or in place with receive { }",
                            *length, room, *length, smring_maximum_message(r->capacity));
    }
    memcpy(buffer, message, *length);
    smring_release(r);
    return SMRING_OK;
}

/* Whether the sender has finished and every message has been read. */
SMRING_INLINE int smring_is_finished(smring *r) {
    return atomic_load_explicit(smring__u32(r, SMRING_OFF_FINISHED), memory_order_acquire) != 0
        && atomic_load_explicit(smring__u64(r, SMRING_OFF_HEAD), memory_order_acquire) == r->tail;
}

/* Gives the seat back (a sender finishes the stream first), so another process may attach. */
SMRING_INLINE void smring_close(smring *r) {
    if (r->seat == SMRING_SENDER) smring_finish(r);
    unsigned pid_offset = r->seat == SMRING_SENDER ? SMRING_OFF_SENDER_PID : SMRING_OFF_RECEIVER_PID;
    atomic_store_explicit(smring__i32(r, pid_offset), 0, memory_order_release);
}

#endif
