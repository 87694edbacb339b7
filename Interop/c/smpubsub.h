/*
 * smpubsub.h: SharedMemory's publish/subscribe service in C, header-only (C11, <stdatomic.h>, Linux, glibc).
 *
 * One publisher fills a chunk of the region in place and publishes it; each of up to 62 subscribers reads that
 * same chunk in place from its own queue. Laid out and driven exactly as Docs/WireFormat.md ("The publish/subscribe
 * service") says, so either side can be a C process while the other is a Swift process using SharedMemory's
 * Publisher and Subscriber (or a Python one using Interop/python). Map the region yourself and give this header
 * the address of the service in it (64-byte aligned).
 *
 *     smps_subscriber subscriber;
 *     if (smps_subscribe(&subscriber, base, region_size, 0, SMPS_OVERWRITE_OLDEST, 0) != SMRING_OK) ...;
 *     const void *sample; uint64_t length, sequence;
 *     while (smps_receive(&subscriber, &sample, &length, &sequence, -1) == SMRING_OK) {
 *         use(sample, length);              // in place
 *         smps_release(&subscriber);        // gives the chunk back
 *     }                                     // SMRING_FINISHED: the publisher finished and everything was read
 *     smps_close(&subscriber);
 *
 *     smps_publisher publisher;
 *     smps_publisher_attach(&publisher, base, region_size, 1000000000);   // waits at most 1 s for a full queue
 *     void *chunk; uint64_t sequence;
 *     smps_loan(&publisher, &chunk);  fill(chunk);  smps_publish(&publisher, length, &sequence);  // or smps_cancel
 *     smps_finish(&publisher);
 *
 * Every function returns SMRING_OK (0) or a negative code (smring.h's, and SMPS_LIMIT, SMPS_NO_SPACE); smps_error()
 * names it, and smring_message(code), called right after in the same thread, gives the Swift library's sentence. Timeouts are in nanoseconds: -1 waits as long as the peer lives, 0 does not wait. The connections' lock
 * is a glibc process-shared robust pthread mutex in the service, which is why this header needs glibc (or a libc
 * with the same pthread_mutex_t) where smring.h needs only a libc.
 */
#ifndef SMPUBSUB_H
#define SMPUBSUB_H

#include "smring.h"
#include <pthread.h>

#define SMPS_LIMIT (-9)     /* every subscriber slot is taken by a live process */
#define SMPS_NO_SPACE (-10) /* every chunk is held: something holds samples it should have released */

#define SMPS_MAGIC 0x4255534255504D53ull /* "SMPUBSUB" in memory */
#define SMPS_MAJOR 3u
#define SMPS_MINOR 0u
#define SMPS_MAX_SUBSCRIBERS 62
#define SMPS_OVERWRITE_OLDEST 0u
#define SMPS_BLOCK_PUBLISHER 1u

/* The header (Docs/WireFormat.md, "Service header"). */
enum {
    SMPS_OFF_MAGIC = 0, SMPS_OFF_MAJOR = 8, SMPS_OFF_MINOR = 10, SMPS_OFF_SUBSCRIBERS = 12, SMPS_OFF_MAX_PAYLOAD = 16,
    SMPS_OFF_QUEUE_DEPTH = 24, SMPS_OFF_HISTORY = 28, SMPS_OFF_CHUNK_COUNT = 32, SMPS_OFF_PUBLISHER_STATE = 36,
    SMPS_OFF_PUBLISHED = 40, SMPS_OFF_PUBLISHER_PID = 48, SMPS_OFF_PUBLISHER_VACATED = 52, SMPS_OFF_PUBLISHER_START = 56, SMPS_OFF_HISTORY_HEAD = 64,
    SMPS_OFF_SAMPLE_TYPE = 72, SMPS_OFF_SAMPLE_SIZE = 80, SMPS_OFF_SAMPLE_ALIGNMENT = 84, SMPS_OFF_SAMPLE_TYPE_NAME = 88, SMPS_OFF_LOCK = 128, SMPS_OFF_PUBLISH_EPOCH = 176,
    SMPS_OFF_EPOCH_WAITING = 184, SMPS_OFF_CONNECTIONS = 188, SMPS_OFF_HISTORY_ENTRIES = 192
};
/* A subscriber's slot. */
enum {
    SMPS_SLOT_STATE = 0, SMPS_SLOT_PID = 4, SMPS_SLOT_START = 8, SMPS_SLOT_GENERATION = 20, SMPS_SLOT_POLICY = 24,
    SMPS_SLOT_DEPTH = 28, SMPS_SLOT_LOST = 32, SMPS_SLOT_HISTORY_WANTED = 40, SMPS_SLOT_HISTORY_DELIVERED = 44,
    SMPS_SLOT_READ = 64, SMPS_SLOT_HELD = 72, SMPS_SLOT_PUBLISHER_SLEEPS = 76, SMPS_SLOT_WRITE = 128,
    SMPS_SLOT_SUBSCRIBER_SLEEPS = 136, SMPS_SLOT_ENTRIES = 140
};
enum { SMPS_FREE = 0, SMPS_CLAIMING = 1, SMPS_CONNECTED = 2, SMPS_RECLAIMING = 3 };
enum { SMPS_NO_PUBLISHER = 0, SMPS_PUBLISHING = 1, SMPS_FINISHED_STATE = 2 };
/* A chunk. */
enum { SMPS_CHUNK_HOLDERS = 0, SMPS_CHUNK_SEQUENCE = 8, SMPS_CHUNK_LENGTH = 16, SMPS_CHUNK_PAYLOAD = 64 };
#define SMPS_LOAN_BIT (1ull << 62)
#define SMPS_HISTORY_BIT (1ull << 63)

_Static_assert(sizeof(pthread_mutex_t) <= SMPS_OFF_PUBLISH_EPOCH - SMPS_OFF_LOCK, "the lock takes at most 48 bytes");

/* Where everything is, computed from the configuration (the same in every process). */
typedef struct smps_layout {
    uint64_t max_payload;
    uint32_t subscribers, queue_depth, history, queue_capacity, chunk_count;
    uint64_t chunk_stride, slot_stride, slots_at, chunks_at, size;
} smps_layout;

/* One process's view of a service: where it is and its layout, checked. */
typedef struct smps_service {
    unsigned char *base;
    smps_layout layout;
} smps_service;

typedef struct smps_publisher {
    smps_service service;
    uint32_t cursor;          /* where the next loan starts looking */
    int32_t loan;             /* the chunk loaned and not yet published, or -1 */
    int64_t block_timeout_ns; /* how long a publish waits for room in a blocking subscriber's queue */
    uint64_t connections_seen; /* the header's `connections` when the slots were last looked at (UINT64_MAX: never) */
    uint64_t connected;        /* the subscribers connected then, a bit each */
} smps_publisher;

typedef struct smps_subscriber {
    smps_service service;
    uint32_t index;           /* this subscriber's slot */
    int32_t held;             /* the chunk handed out by smps_receive and not yet released, or -1 */
    int spins;                /* polls before sleeping (SMRING_SPINS by default) */
} smps_subscriber;

static inline const char *smps_error(int code) {
    switch (code) {
    case SMPS_LIMIT: return "limit exceeded: every subscriber slot is taken by a live process";
    case SMPS_NO_SPACE: return "no space: every chunk of the service is held";
    case SMRING_FOREIGN: return "foreign: not a service of this format, or a corrupt one";
    case SMRING_BUSY: return "busy: a live process publishes on this service";
    case SMRING_FINISHED: return "finished: the publisher finished and every sample was read";
    case SMRING_TOO_LARGE: return "sample too large for the service";
    default: return smring_error(code);
    }
}

/* What a configuration out of range lacks, in the Swift library's words (Layout.check), or NULL if it is one. */
static inline const char *smps__wanted(uint64_t max_payload, uint32_t subscribers, uint32_t queue_depth, uint32_t history) {
    if (max_payload > (1ull << 36)) return "a payload of 0 bytes to 64 GiB";
    if (subscribers < 1 || subscribers > SMPS_MAX_SUBSCRIBERS) return "1 to 62 subscribers";
    if (queue_depth < 1 || queue_depth > (1u << 16)) return "a queue depth of 1 to 65536";
    if (history > (1u << 16)) return "a history of 0 to 65536 samples";
    return NULL;
}

/* Fills *l for a configuration; SMRING_INVALID if it is not one SharedMemory makes. */
static inline int smps_layout_of(smps_layout *l, uint64_t max_payload, uint32_t subscribers, uint32_t queue_depth, uint32_t history) {
    const char *wanted = smps__wanted(max_payload, subscribers, queue_depth, history);
    if (wanted) return smring__fail(SMRING_INVALID, "a publish/subscribe service takes %s", wanted);
    l->max_payload = max_payload;
    l->subscribers = subscribers;
    l->queue_depth = queue_depth;
    l->history = history;
    l->queue_capacity = queue_depth == 1 ? 1 : 1u << (32 - __builtin_clz(queue_depth - 1));
    l->chunk_count = subscribers * (queue_depth + 1) + history + 2;
    l->chunk_stride = SMPS_CHUNK_PAYLOAD + ((max_payload + 63) & ~63ull);
    l->slot_stride = (SMPS_SLOT_ENTRIES + (uint64_t)l->queue_capacity * 4 + 63) & ~63ull;
    l->slots_at = (SMPS_OFF_HISTORY_ENTRIES + (uint64_t)history * 4 + 63) & ~63ull;
    l->chunks_at = l->slots_at + subscribers * l->slot_stride;
    l->size = l->chunks_at + l->chunk_count * l->chunk_stride;
    return SMRING_OK;
}

/* The bytes a service of this configuration takes in a region (0 for a configuration SharedMemory does not make). */
static inline uint64_t smps_size(uint64_t max_payload, uint32_t subscribers, uint32_t queue_depth, uint32_t history) {
    smps_layout l;
    return smps_layout_of(&l, max_payload, subscribers, queue_depth, history) == SMRING_OK ? l.size : 0;
}

/* ---- Words ---- */

static inline _Atomic uint64_t *smps__u64(const smps_service *s, uint64_t offset) { return (_Atomic uint64_t *)(s->base + offset); }
static inline _Atomic uint32_t *smps__u32(const smps_service *s, uint64_t offset) { return (_Atomic uint32_t *)(s->base + offset); }
static inline _Atomic int32_t *smps__i32(const smps_service *s, uint64_t offset) { return (_Atomic int32_t *)(s->base + offset); }
static inline uint32_t smps__plain32(const smps_service *s, uint64_t offset) { uint32_t v; memcpy(&v, s->base + offset, 4); return v; }
static inline uint64_t smps__plain64(const smps_service *s, uint64_t offset) { uint64_t v; memcpy(&v, s->base + offset, 8); return v; }
static inline void smps__put32(smps_service *s, uint64_t offset, uint32_t v) { memcpy(s->base + offset, &v, 4); }
static inline void smps__put64(smps_service *s, uint64_t offset, uint64_t v) { memcpy(s->base + offset, &v, 8); }
static inline uint64_t smps__slot(const smps_service *s, uint32_t i) { return s->layout.slots_at + i * s->layout.slot_stride; }
static inline uint64_t smps__chunk(const smps_service *s, uint32_t c) { return s->layout.chunks_at + c * s->layout.chunk_stride; }
static inline _Atomic uint64_t *smps__holders(const smps_service *s, uint32_t c) { return smps__u64(s, smps__chunk(s, c) + SMPS_CHUNK_HOLDERS); }
static inline uint32_t smps__state(const smps_service *s, uint32_t i) {
    return atomic_load_explicit(smps__u32(s, smps__slot(s, i) + SMPS_SLOT_STATE), memory_order_acquire);
}
static inline uint32_t smps__entry(const smps_service *s, uint32_t i, uint64_t position) {
    return smps__plain32(s, smps__slot(s, i) + SMPS_SLOT_ENTRIES + (position & (s->layout.queue_capacity - 1)) * 4);
}

/* Whether the process recorded at pid_at/start_at runs (pid 0: nobody, which counts as not running). As the Swift
 * library: a process with that pid whose start time (field 22 of /proc/PID/stat) is the one recorded, or cannot be
 * read (/proc hidden). A recorded start time of 0 never runs: every writer records its real one (never 0 for a user
 * process), so 0 was written by something else, and believing it would let any peer hold a slot for ever. */
static inline int smps__alive(const smps_service *s, uint64_t pid_at, uint64_t start_at) {
    int32_t pid = atomic_load_explicit(smps__i32(s, pid_at), memory_order_acquire);
    if (pid <= 0) return 0;  /* nobody; and kill(-n, 0) would ask about a process group */
    if (kill(pid, 0) != 0 && errno != EPERM) return 0;
    uint64_t start = smps__plain64(s, start_at);
    if (start == 0) return 0;
    uint64_t now = smring__start_time(pid);
    return now == 0 || now == start;
}

static inline int smps__publisher_alive(const smps_service *s) { return smps__alive(s, SMPS_OFF_PUBLISHER_PID, SMPS_OFF_PUBLISHER_START); }

/* ---- Formatting and attaching ---- */

/* Writes a new service at `service` (64-byte aligned, `room` bytes from there, its first 8 bytes zero): zeroes it,
 * writes the configuration, initialises the lock, and writes the magic number last. */
static inline int smps_format(void *service, uint64_t room, uint64_t max_payload, uint32_t subscribers, uint32_t queue_depth, uint32_t history) {
    smps_service s = { .base = (unsigned char *)service };
    if (((uintptr_t)service & 63) != 0) return smring__fail(SMRING_INVALID, "a service's place must be 64-byte aligned");
    int result = smps_layout_of(&s.layout, max_payload, subscribers, queue_depth, history);
    if (result != SMRING_OK) return result;
    if (s.layout.size > room)
        return smring__fail(SMRING_INVALID, "a service of this configuration takes %llu bytes, and the region holds %llu from its place",
                            (unsigned long long)s.layout.size, (unsigned long long)room);
    if (atomic_load_explicit(smps__u64(&s, SMPS_OFF_MAGIC), memory_order_acquire) != 0)  /* something is there */
        return smring__fail(SMRING_BUSY, "the region already holds something here (a service, or other data): formatting would overwrite it");
    memset(s.base, 0, s.layout.size);
    uint16_t major = SMPS_MAJOR, minor = SMPS_MINOR;
    memcpy(s.base + SMPS_OFF_MAJOR, &major, 2);
    memcpy(s.base + SMPS_OFF_MINOR, &minor, 2);
    smps__put32(&s, SMPS_OFF_SUBSCRIBERS, subscribers);
    smps__put64(&s, SMPS_OFF_MAX_PAYLOAD, max_payload);
    smps__put32(&s, SMPS_OFF_QUEUE_DEPTH, queue_depth);
    smps__put32(&s, SMPS_OFF_HISTORY, history);
    smps__put32(&s, SMPS_OFF_CHUNK_COUNT, s.layout.chunk_count);
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    int error = pthread_mutex_init((pthread_mutex_t *)(s.base + SMPS_OFF_LOCK), &attributes);
    pthread_mutexattr_destroy(&attributes);
    if (error) return smring__fail(SMRING_INVALID, "pthread_mutex_init failed (%s)", strerror(error));
    atomic_store_explicit(smps__u64(&s, SMPS_OFF_MAGIC), SMPS_MAGIC, memory_order_release);
    smring__futex_wake(smps__u32(&s, SMPS_OFF_MAGIC));  /* processes attaching meanwhile sleep on the magic's low half */
    return SMRING_OK;
}

/* Checks the header at `service` (`room` bytes from there) and fills *s: SMRING_FOREIGN for anything SharedMemory
 * does not write (another magic or major version, a configuration out of range, a chunk count that does not
 * match, a size past `room`); SMRING_WOULD_BLOCK if nothing is formatted there yet (the magic still zero). */
static inline int smps_attach(smps_service *s, void *service, uint64_t room) {
    memset(s, 0, sizeof *s);
    s->base = (unsigned char *)service;
    if (((uintptr_t)service & 63) != 0) return smring__fail(SMRING_INVALID, "a service's place must be 64-byte aligned");
    if (room < SMPS_OFF_HISTORY_ENTRIES)
        return smring__fail(SMRING_INVALID, "a service needs at least %u bytes for its header; the region holds %llu from its place", SMPS_OFF_HISTORY_ENTRIES, (unsigned long long)room);
    uint64_t magic = atomic_load_explicit(smps__u64(s, SMPS_OFF_MAGIC), memory_order_acquire);
    if (magic == 0) return SMRING_WOULD_BLOCK;
    if (magic != SMPS_MAGIC)
        return smring__fail(SMRING_FOREIGN, "the region holds no publish/subscribe service here (its magic number is %llx)", (unsigned long long)magic);
    uint16_t major;
    memcpy(&major, s->base + SMPS_OFF_MAJOR, 2);
    if (major != SMPS_MAJOR)  /* any minor version is read */
        return smring__fail(SMRING_FOREIGN, "the service has format version %u; this library reads version %u", major, SMPS_MAJOR);
    const char *wanted = smps__wanted(smps__plain64(s, SMPS_OFF_MAX_PAYLOAD), smps__plain32(s, SMPS_OFF_SUBSCRIBERS),
                                      smps__plain32(s, SMPS_OFF_QUEUE_DEPTH), smps__plain32(s, SMPS_OFF_HISTORY));
    if (wanted) return smring__fail(SMRING_FOREIGN, "the service's header is not one SharedMemory writes (it must have %s)", wanted);
    smps_layout_of(&s->layout, smps__plain64(s, SMPS_OFF_MAX_PAYLOAD), smps__plain32(s, SMPS_OFF_SUBSCRIBERS),
                   smps__plain32(s, SMPS_OFF_QUEUE_DEPTH), smps__plain32(s, SMPS_OFF_HISTORY));
    if (smps__plain32(s, SMPS_OFF_CHUNK_COUNT) != s->layout.chunk_count)
        return smring__fail(SMRING_FOREIGN, "the service's chunk count does not match its configuration");
    if (s->layout.size > room)
        return smring__fail(SMRING_FOREIGN, "the service's header says it takes %llu bytes, and the region has %llu from its place",
                            (unsigned long long)s->layout.size, (unsigned long long)room);
    return SMRING_OK;
}

/* smps_attach, waiting at most `timeout_ns` (negative: no limit) for the service to be formatted, as the Swift
 * library does: asleep on the magic's low half (FUTEX_WAIT, which smps_format wakes), looking again at least every
 * 100 ms: SMRING_TIMED_OUT if it was not formatted in time. */
static inline int smps_attach_waiting(smps_service *s, void *service, uint64_t room, int64_t timeout_ns) {
    int64_t deadline = timeout_ns < 0 ? -1 : smring__now() + timeout_ns;
    for (;;) {
        int result = smps_attach(s, service, room);
        if (result != SMRING_WOULD_BLOCK) return result;
        int64_t left = deadline < 0 ? 100000000 : deadline - smring__now();
        if (left <= 0) return smring__fail(SMRING_TIMED_OUT, "no publish/subscribe service has been formatted here yet");
        smring__futex_wait(smps__u32(s, SMPS_OFF_MAGIC), 0, left < 100000000 ? left : 100000000);
    }
}

/* The error sentences on paths the publish and the receive inline: out of line and cold (their arguments would
 * otherwise make those paths too big to inline), and behind macros that yield the code itself, so the compiler sees
 * what is returned (a function's result it cannot see would be "maybe OK", every out parameter "maybe unset"). */

/* A queue or the history named a chunk the service does not have. */
__attribute__((cold, noinline, unused))
static void smps__say_bad_chunk(const smps_service *s, uint64_t c) {
    smring__note(SMRING_FOREIGN, "a queue of the service names chunk %llu, and it has %u", (unsigned long long)c, s->layout.chunk_count);
}
#define smps__bad_chunk(s, c) (smps__say_bad_chunk((s), (c)), SMRING_FOREIGN)

/* Subscriber i's queue positions do not add up. */
__attribute__((cold, noinline, unused))
static void smps__say_bad_queue(uint32_t i, uint64_t r, uint64_t w, uint64_t depth) {
    smring__note(SMRING_FOREIGN, "subscriber %u's queue positions (read %llu, write %llu, depth %llu) do not add up", i,
                 (unsigned long long)r, (unsigned long long)w, (unsigned long long)depth);
}
#define smps__bad_queue(i, r, w, depth) (smps__say_bad_queue((i), (r), (w), (depth)), SMRING_FOREIGN)

__attribute__((cold, noinline, unused))
static void smps__say_too_large(const smps_service *s, uint64_t length) {
    smring__note(SMRING_TOO_LARGE, "a sample of %llu bytes does not fit this service: at most %llu", (unsigned long long)length, (unsigned long long)s->layout.max_payload);
}
#define smps__too_large(s, length) (smps__say_too_large((s), (length)), SMRING_TOO_LARGE)

/* ---- The connections' lock, and repairs ---- */

/* A publish begins: the epoch odd (sequentially consistent) before it reads any slot's state, so a reclaimer that
 * marked a slot either is seen or sees the publish running and waits for it. No lock. */
static inline void smps__enter_publish(smps_service *s) {
    atomic_fetch_add_explicit(smps__u64(s, SMPS_OFF_PUBLISH_EPOCH), 1, memory_order_seq_cst);
}

/* A publish ends: the epoch even again, and a reclaimer waiting for it woken. */
static inline void smps__leave_publish(smps_service *s) {
    atomic_fetch_add_explicit(smps__u64(s, SMPS_OFF_PUBLISH_EPOCH), 1, memory_order_seq_cst);
    if (atomic_load_explicit(smps__u32(s, SMPS_OFF_EPOCH_WAITING), memory_order_seq_cst) != 0)
        smring__futex_wake(smps__u32(s, SMPS_OFF_PUBLISH_EPOCH));
}

/* After a slot was marked as leaving (sequentially consistent): waits until no publish that may have seen it
 * connected still runs (the epoch moves on), spinning a while, then asleep on the epoch's low half with
 * epoch_waiting raised; a publisher that died in its publish ends the wait (looked at between sleeps). Lock held. */
static inline void smps__wait_for_publishes(smps_service *s) {
    _Atomic uint64_t *epoch = smps__u64(s, SMPS_OFF_PUBLISH_EPOCH);
    _Atomic uint32_t *waiting = smps__u32(s, SMPS_OFF_EPOCH_WAITING);
    uint64_t seen = atomic_load_explicit(epoch, memory_order_seq_cst);
    if (!(seen & 1)) return;
    for (int spins = SMRING_SPINS; spins > 0 && atomic_load_explicit(epoch, memory_order_acquire) == seen; spins--) {}
    while (atomic_load_explicit(epoch, memory_order_acquire) == seen) {
        if (!smps__publisher_alive(s)) return;
        atomic_store_explicit(waiting, 1, memory_order_seq_cst);
        int timed_out = 0;
        if (atomic_load_explicit(epoch, memory_order_seq_cst) == seen)
            smring__sleep((_Atomic uint32_t *)epoch, (uint32_t)seen, -1, &timed_out);
        atomic_store_explicit(waiting, 0, memory_order_relaxed);
    }
}

/* A slot's state moved to or from connected (lock held, after the state was stored): `connections` moves on, so
 * that the next publish looks at the slots again. A reclaimer moves it before it reads the publish epoch. */
static inline void smps__connections_changed(smps_service *s) {
    atomic_fetch_add_explicit(smps__u32(s, SMPS_OFF_CONNECTIONS), 1, memory_order_seq_cst);
}

/* Subscriber i's process is dead (or its slot was left half made or half reclaimed): takes back every chunk it
 * held or had queued and frees the slot, once no publish that may have seen it connected still runs. Lock held,
 * never in a publish (it would wait for itself). Whether it reclaimed. */
static inline int smps__reclaim_if_dead(smps_service *s, uint32_t i) {
    uint64_t slot = smps__slot(s, i);
    uint32_t current = smps__state(s, i);
    if (current == SMPS_FREE) return 0;
    if (current != SMPS_RECLAIMING && smps__alive(s, slot + SMPS_SLOT_PID, slot + SMPS_SLOT_START)) return 0;
    atomic_store_explicit(smps__u32(s, slot + SMPS_SLOT_STATE), SMPS_RECLAIMING, memory_order_seq_cst);
    smps__connections_changed(s);
    smps__wait_for_publishes(s);
    uint64_t bit = 1ull << i;
    for (uint32_t c = 0; c < s->layout.chunk_count; c++)
        if (atomic_load_explicit(smps__holders(s, c), memory_order_relaxed) & bit)
            atomic_fetch_and_explicit(smps__holders(s, c), ~bit, memory_order_acq_rel);
    atomic_store_explicit(smps__u64(s, slot + SMPS_SLOT_WRITE), 0, memory_order_relaxed);
    atomic_store_explicit(smps__u64(s, slot + SMPS_SLOT_READ), 0, memory_order_relaxed);
    atomic_store_explicit(smps__u32(s, slot + SMPS_SLOT_HELD), 0, memory_order_relaxed);
    atomic_store_explicit(smps__i32(s, slot + SMPS_SLOT_PID), 0, memory_order_relaxed);
    atomic_store_explicit(smps__u32(s, slot + SMPS_SLOT_STATE), SMPS_FREE, memory_order_release);
    smring__futex_wake(smps__u32(s, slot + SMPS_SLOT_READ));  /* a publisher waiting for room looks again */
    return 1;
}

/* A dead publisher's loan goes back, each chunk is marked as in the history exactly when the history lists it, a
 * live subscriber's mark on a chunk neither in its queue nor the one it is reading is taken back (what a publish cut
 * short leaves), and the epoch, odd if it died in a publish, is made even. Lock held, and no publisher runs. */
static inline void smps__recover_from_dead_publisher(smps_service *s) {
    _Atomic uint64_t *epoch = smps__u64(s, SMPS_OFF_PUBLISH_EPOCH);
    uint64_t e = atomic_load_explicit(epoch, memory_order_acquire);
    if (e & 1) atomic_store_explicit(epoch, e + 1, memory_order_seq_cst);
    uint64_t head = atomic_load_explicit(smps__u64(s, SMPS_OFF_HISTORY_HEAD), memory_order_acquire);
    uint64_t kept = head < s->layout.history ? head : s->layout.history;
    for (uint32_t c = 0; c < s->layout.chunk_count; c++) {
        int listed = 0;
        for (uint64_t k = 0; k < kept && !listed; k++)
            listed = smps__plain32(s, SMPS_OFF_HISTORY_ENTRIES + ((head - 1 - k) % s->layout.history) * 4) == c;
        atomic_fetch_and_explicit(smps__holders(s, c), ~SMPS_LOAN_BIT, memory_order_acq_rel);
        if (listed) atomic_fetch_or_explicit(smps__holders(s, c), SMPS_HISTORY_BIT, memory_order_acq_rel);
        else atomic_fetch_and_explicit(smps__holders(s, c), ~SMPS_HISTORY_BIT, memory_order_acq_rel);
    }
    for (uint32_t i = 0; i < s->layout.subscribers; i++) {
        if (smps__state(s, i) != SMPS_CONNECTED) continue;
        uint64_t slot = smps__slot(s, i);
        uint64_t read = atomic_load_explicit(smps__u64(s, slot + SMPS_SLOT_READ), memory_order_acquire);
        uint64_t write = atomic_load_explicit(smps__u64(s, slot + SMPS_SLOT_WRITE), memory_order_acquire);
        uint32_t held = atomic_load_explicit(smps__u32(s, slot + SMPS_SLOT_HELD), memory_order_acquire);
        int sane = write >= read && write - read <= s->layout.queue_capacity;
        for (uint32_t c = 0; c < s->layout.chunk_count; c++) {
            if (!(atomic_load_explicit(smps__holders(s, c), memory_order_acquire) & (1ull << i))) continue;
            int queued = held == c + 1;
            for (uint64_t p = read; sane && p < write && !queued; p++) queued = smps__entry(s, i, p) == c;
            if (!queued) atomic_fetch_and_explicit(smps__holders(s, c), ~(1ull << i), memory_order_acq_rel);
        }
    }
}

/* After a process died holding the lock (connecting, closing, reclaiming, taking the seat): reclaims dead
 * subscribers, and recovers from a dead publisher. A live publisher's publishes take no lock and are left alone. */
static inline void smps__repair(smps_service *s) {
    for (uint32_t i = 0; i < s->layout.subscribers; i++) smps__reclaim_if_dead(s, i);
    if (!smps__publisher_alive(s)) smps__recover_from_dead_publisher(s);
}

/* Takes the connections' lock (a robust, process-shared pthread mutex); after a holder's death, repairs first. */
static inline int smps__lock(smps_service *s) {
    pthread_mutex_t *m = (pthread_mutex_t *)(s->base + SMPS_OFF_LOCK);
    int error = pthread_mutex_lock(m);
    if (error == EOWNERDEAD) {
        smps__repair(s);
        pthread_mutex_consistent(m);
        return SMRING_OK;
    }
    if (error == 0) return SMRING_OK;
    /* ENOTRECOVERABLE, EINVAL: not a lock this format writes */
    return smring__fail(SMRING_FOREIGN, "the service's lock is not one SharedMemory writes (pthread_mutex_lock: %s)", strerror(error));
}

static inline void smps__unlock(smps_service *s) { pthread_mutex_unlock((pthread_mutex_t *)(s->base + SMPS_OFF_LOCK)); }

/* ---- Publishing ---- */

/* Takes the publisher's seat: SMRING_BUSY if a live process publishes; a dead publisher's seat is taken over.
 * `block_timeout_ns` bounds each wait for room in a blocking subscriber's queue. */
static inline int smps_publisher_attach(smps_publisher *p, void *service, uint64_t room, int64_t block_timeout_ns) {
    memset(p, 0, sizeof *p);
    p->loan = -1;
    p->block_timeout_ns = block_timeout_ns;
    p->connections_seen = UINT64_MAX;
    int result = smps_attach(&p->service, service, room);
    if (result != SMRING_OK) return result;
    smps_service *s = &p->service;
    if ((result = smps__lock(s)) != SMRING_OK) return result;
    int32_t me = (int32_t)getpid();
    int32_t holder = atomic_load_explicit(smps__i32(s, SMPS_OFF_PUBLISHER_PID), memory_order_acquire);
    int alive = smps__publisher_alive(s);
    if (holder != 0 && alive && holder != me
        && atomic_load_explicit(smps__i32(s, SMPS_OFF_PUBLISHER_VACATED), memory_order_acquire) != holder
        && atomic_load_explicit(smps__u32(s, SMPS_OFF_PUBLISHER_STATE), memory_order_acquire) == SMPS_PUBLISHING) {
        smps__unlock(s);
        return smring__fail(SMRING_BUSY, "process %d already publishes on this service; a service has one publisher", (int)holder);
    }
    if (holder != 0 && !alive) smps__recover_from_dead_publisher(s);
    atomic_store_explicit(smps__i32(s, SMPS_OFF_PUBLISHER_VACATED), 0, memory_order_relaxed);
    smps__put64(s, SMPS_OFF_PUBLISHER_START, smring__start_time(me));
    atomic_store_explicit(smps__i32(s, SMPS_OFF_PUBLISHER_PID), me, memory_order_release);
    atomic_store_explicit(smps__u32(s, SMPS_OFF_PUBLISHER_STATE), SMPS_PUBLISHING, memory_order_release);
    smps__unlock(s);
    return SMRING_OK;
}

/* Loans a free chunk (no holder) for the next sample: *payload is where to write up to max_payload bytes. After a
 * full scan finds none, reclaims dead subscribers and scans once more; SMPS_NO_SPACE if still none. */
static inline int smps_loan(smps_publisher *p, void **payload) {
    smps_service *s = &p->service;
    if (p->loan >= 0) return smring__fail(SMRING_INVALID, "the chunk loaned before must be published or cancelled first");
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t k = 0; k < s->layout.chunk_count; k++) {
            uint32_t c = p->cursor;
            p->cursor = c + 1 == s->layout.chunk_count ? 0 : c + 1;
            uint64_t none = 0;
            if (atomic_compare_exchange_strong_explicit(smps__holders(s, c), &none, SMPS_LOAN_BIT, memory_order_acq_rel, memory_order_relaxed)) {
                p->loan = (int32_t)c;
                *payload = s->base + smps__chunk(s, c) + SMPS_CHUNK_PAYLOAD;
                return SMRING_OK;
            }
        }
        if (pass == 0) {
            int result = smps__lock(s);
            if (result != SMRING_OK) return result;
            for (uint32_t i = 0; i < s->layout.subscribers; i++) smps__reclaim_if_dead(s, i);
            smps__unlock(s);
        }
    }
    return smring__fail(SMPS_NO_SPACE, "every chunk of the service is held (by subscribers' queues and reads, and the history): something holds samples it should have released");
}

/* Puts chunk c at the end of subscriber i's queue; with the queue full, drops the oldest (overwriting subscribers)
 * or returns 0 (blocking ones). 1 once queued. In a publish (the epoch odd). */
__attribute__((always_inline))  /* the publish's inner loop: inlined there, as it was before its error sentences made it look big */
static inline int smps__enqueue(smps_service *s, uint32_t c, uint32_t i) {
    uint64_t slot = smps__slot(s, i);
    uint64_t depth = smps__plain32(s, slot + SMPS_SLOT_DEPTH), capacity = s->layout.queue_capacity;
    _Atomic uint64_t *write = smps__u64(s, slot + SMPS_SLOT_WRITE), *read = smps__u64(s, slot + SMPS_SLOT_READ);
    uint64_t w = atomic_load_explicit(write, memory_order_relaxed);
    for (;;) {
        uint64_t r = atomic_load_explicit(read, memory_order_acquire);
        if (w < r || w - r > depth || depth < 1 || depth > capacity) return smps__bad_queue(i, r, w, depth);
        if (w - r < depth) break;
        if (smps__plain32(s, slot + SMPS_SLOT_POLICY) != SMPS_OVERWRITE_OLDEST) return 0;
        uint32_t oldest = smps__entry(s, i, r);
        if (oldest >= s->layout.chunk_count) return smps__bad_chunk(s, oldest);
        if (atomic_compare_exchange_strong_explicit(read, &r, r + 1, memory_order_acq_rel, memory_order_acquire)) {
            atomic_fetch_and_explicit(smps__holders(s, oldest), ~(1ull << i), memory_order_acq_rel);
            atomic_fetch_add_explicit(smps__u64(s, slot + SMPS_SLOT_LOST), 1, memory_order_relaxed);
        }
    }
    atomic_fetch_or_explicit(smps__holders(s, c), 1ull << i, memory_order_acq_rel);
    smps__put32(s, slot + SMPS_SLOT_ENTRIES + (w & (capacity - 1)) * 4, c);
    atomic_store_explicit(write, w + 1, memory_order_seq_cst);
    if (atomic_load_explicit(smps__u32(s, slot + SMPS_SLOT_SUBSCRIBER_SLEEPS), memory_order_seq_cst) != 0)
        smring__futex_wake(smps__u32(s, slot + SMPS_SLOT_WRITE));
    return 1;
}

/* Delivers the history subscriber i asked for when it connected, once, oldest first (in a publish). */
static inline int smps__deliver_history(smps_service *s, uint32_t i) {
    uint64_t slot = smps__slot(s, i);
    if (smps__state(s, i) != SMPS_CONNECTED
        || atomic_load_explicit(smps__u32(s, slot + SMPS_SLOT_HISTORY_DELIVERED), memory_order_acquire) != 0)
        return SMRING_OK;
    uint64_t wanted = smps__plain32(s, slot + SMPS_SLOT_HISTORY_WANTED);
    if (wanted > s->layout.history) wanted = s->layout.history;
    uint64_t head = atomic_load_explicit(smps__u64(s, SMPS_OFF_HISTORY_HEAD), memory_order_relaxed);
    uint64_t available = head < wanted ? head : wanted;
    for (uint64_t k = available; k > 0; k--) {
        uint32_t c = smps__plain32(s, SMPS_OFF_HISTORY_ENTRIES + ((head - k) % s->layout.history) * 4);
        if (c >= s->layout.chunk_count) return smps__bad_chunk(s, c);
        int result = smps__enqueue(s, c, i);
        if (result < 0) return result;
    }
    atomic_store_explicit(smps__u32(s, slot + SMPS_SLOT_HISTORY_DELIVERED), 1, memory_order_release);
    return SMRING_OK;
}

/* Puts c into the history, evicting the oldest: marked before listed, the evicted one unmarked after (in a publish). */
static inline void smps__add_to_history(smps_service *s, uint32_t c) {
    uint64_t head = atomic_load_explicit(smps__u64(s, SMPS_OFF_HISTORY_HEAD), memory_order_relaxed);
    uint64_t at = SMPS_OFF_HISTORY_ENTRIES + (head % s->layout.history) * 4;
    uint32_t evicted = smps__plain32(s, at);
    atomic_fetch_or_explicit(smps__holders(s, c), SMPS_HISTORY_BIT, memory_order_acq_rel);
    smps__put32(s, at, c);
    if (head >= s->layout.history && evicted < s->layout.chunk_count && evicted != c)
        atomic_fetch_and_explicit(smps__holders(s, evicted), ~SMPS_HISTORY_BIT, memory_order_acq_rel);
    atomic_store_explicit(smps__u64(s, SMPS_OFF_HISTORY_HEAD), head + 1, memory_order_release);
}

/* `connections` moved (or this is the first publish): the connected subscribers found again, and the history
 * delivered to those that asked for it (in a publish). */
static inline int smps__look_at_slots(smps_publisher *p, uint64_t connections) {
    smps_service *s = &p->service;
    uint64_t connected = 0;
    for (uint32_t i = 0; i < s->layout.subscribers; i++) {
        if (atomic_load_explicit(smps__u32(s, smps__slot(s, i) + SMPS_SLOT_STATE), memory_order_seq_cst) != SMPS_CONNECTED) continue;
        int result = smps__deliver_history(s, i);
        if (result != SMRING_OK) return result;
        connected |= 1ull << i;
    }
    p->connected = connected;
    p->connections_seen = connections;
    return SMRING_OK;
}

/* For a blocking subscriber whose queue was full: waits without the lock for room, at most the block timeout, then
 * queues c if the subscriber is still the same one. 1 if delivered (or the subscriber left), 0 if it stayed full
 * (the sample is counted lost for it). */
static inline int smps__wait_and_enqueue(smps_publisher *p, uint32_t c, uint32_t i) {
    smps_service *s = &p->service;
    uint64_t slot = smps__slot(s, i);
    uint32_t generation = atomic_load_explicit(smps__u32(s, slot + SMPS_SLOT_GENERATION), memory_order_acquire);
    int64_t deadline = p->block_timeout_ns < 0 ? -1 : smring__now() + p->block_timeout_ns;
    _Atomic uint64_t *read = smps__u64(s, slot + SMPS_SLOT_READ);
    _Atomic uint32_t *sleeps = smps__u32(s, slot + SMPS_SLOT_PUBLISHER_SLEEPS);
    for (;;) {
        int result, dead = 0;
        smps__enter_publish(s);  /* queued as a publish queues: no lock */
        if (atomic_load_explicit(smps__u32(s, slot + SMPS_SLOT_STATE), memory_order_seq_cst) != SMPS_CONNECTED
            || atomic_load_explicit(smps__u32(s, slot + SMPS_SLOT_GENERATION), memory_order_acquire) != generation)
            result = 1;  /* it left, or died and was reclaimed: nothing to deliver */
        else if (!smps__alive(s, slot + SMPS_SLOT_PID, slot + SMPS_SLOT_START))
            result = dead = 1;
        else
            result = smps__enqueue(s, c, i);
        smps__leave_publish(s);
        if (dead) {  /* reclaimed under the lock, out of the publish (a reclaim waits for publishes to end) */
            if ((result = smps__lock(s)) != SMRING_OK) return result;
            smps__reclaim_if_dead(s, i);
            smps__unlock(s);
            return 1;
        }
        if (result != 0) return result;
        uint32_t seen = (uint32_t)atomic_load_explicit(read, memory_order_seq_cst);
        atomic_store_explicit(sleeps, 1, memory_order_seq_cst);
        int timed_out = 0;
        if ((uint32_t)atomic_load_explicit(read, memory_order_seq_cst) == seen)
            smring__sleep((_Atomic uint32_t *)read, seen, deadline, &timed_out);
        atomic_store_explicit(sleeps, 0, memory_order_relaxed);
        if (timed_out) {
            atomic_fetch_add_explicit(smps__u64(s, slot + SMPS_SLOT_LOST), 1, memory_order_relaxed);
            return 0;
        }
    }
}

/* The publish's timeout: the subscribers in `late` (a bit each) stayed full for the whole block timeout. Out of line
 * and cold, so that the publish's own path keeps no buffer for the sentence. */
__attribute__((cold, noinline, unused))
static int smps__late(const smps_publisher *p, uint64_t sequence, uint64_t late) {
    const smps_service *s = &p->service;
    char pids[400] = "", text[40];
    int count = 0;
    for (uint32_t i = 0; i < s->layout.subscribers; i++) {
        if (!(late & (1ull << i))) continue;
        size_t used = strlen(pids);
        snprintf(pids + used, sizeof pids - used, "%s%d", count++ ? ", " : "",
                 (int)atomic_load_explicit(smps__i32(s, smps__slot(s, i) + SMPS_SLOT_PID), memory_order_acquire));
    }
    return smring__fail(SMRING_TIMED_OUT, "sample %llu was published, but the queue of the subscriber%s in process %s stayed full for %s; they miss it (counted as lost)",
                        (unsigned long long)sequence, count == 1 ? "" : "s", pids, smring__seconds(p->block_timeout_ns, text, sizeof text));
}

/* Publishes the loaned chunk's first `length` bytes to every connected subscriber: its sequence number (one more
 * than the last) and length, the history owed to subscribers that asked, each queue, the history; *sequence gets
 * its number. A blocking subscriber whose queue stays full for the block timeout misses it (counted lost) and the
 * publish returns SMRING_TIMED_OUT after every other subscriber got it. */
static inline int smps_publish(smps_publisher *p, uint64_t length, uint64_t *sequence) {
    smps_service *s = &p->service;
    if (p->loan < 0) return smring__fail(SMRING_INVALID, "nothing was loaned to publish");
    uint32_t c = (uint32_t)p->loan;
    if (length > s->layout.max_payload) return smps__too_large(s, length);
    uint64_t chunk = smps__chunk(s, c), blocked = 0, next;
    int result = SMRING_OK;
    smps__enter_publish(s);  /* no lock: see smps__wait_for_publishes */
    {
        next = atomic_load_explicit(smps__u64(s, SMPS_OFF_PUBLISHED), memory_order_relaxed) + 1;
        smps__put64(s, chunk + SMPS_CHUNK_SEQUENCE, next);
        smps__put64(s, chunk + SMPS_CHUNK_LENGTH, length);
        /* The subscribers as of the last look at the slots, while `connections` has not moved since (read in
         * the epoch: a reclaimer either is seen or waits for this publish). */
        uint64_t connections = atomic_load_explicit(smps__u32(s, SMPS_OFF_CONNECTIONS), memory_order_seq_cst);
        if (connections != p->connections_seen) result = smps__look_at_slots(p, connections);
        for (uint64_t left = p->connected; left != 0 && result == SMRING_OK; left &= left - 1) {
            uint32_t i = (uint32_t)__builtin_ctzll(left);
            int queued = smps__enqueue(s, c, i);
            if (queued < 0) result = queued;
            else if (queued == 0) blocked |= 1ull << i;
        }
        if (result == SMRING_OK) {
            if (s->layout.history > 0) smps__add_to_history(s, c);
            atomic_store_explicit(smps__u64(s, SMPS_OFF_PUBLISHED), next, memory_order_release);
        }
    }
    smps__leave_publish(s);
    uint64_t late = 0;
    for (uint32_t i = 0; i < s->layout.subscribers && result == SMRING_OK; i++) {
        if (!(blocked & (1ull << i))) continue;
        int delivered = smps__wait_and_enqueue(p, c, i);
        if (delivered < 0) result = delivered;
        else if (delivered == 0) late |= 1ull << i;
    }
    atomic_fetch_and_explicit(smps__holders(s, c), ~SMPS_LOAN_BIT, memory_order_acq_rel);  /* the loan goes back */
    p->loan = -1;
    if (result != SMRING_OK) return result;
    if (sequence) *sequence = next;
    return late ? smps__late(p, next, late) : SMRING_OK;
}

/* Gives the loaned chunk back unpublished (the sample is abandoned: nothing reaches a subscriber). */
static inline void smps_cancel(smps_publisher *p) {
    if (p->loan < 0) return;
    atomic_fetch_and_explicit(smps__holders(&p->service, (uint32_t)p->loan), ~SMPS_LOAN_BIT, memory_order_acq_rel);
    p->loan = -1;
}

/* Copies `length` bytes into a chunk and publishes them. */
static inline int smps_publish_copy(smps_publisher *p, const void *bytes, uint64_t length, uint64_t *sequence) {
    if (length > p->service.layout.max_payload) return smps__too_large(&p->service, length);
    void *payload;
    int result = smps_loan(p, &payload);
    if (result != SMRING_OK) return result;
    if (length > 0) memcpy(payload, bytes, length);
    return smps_publish(p, length, sequence);
}

/* Delivers the history to subscribers that asked for it and reclaims dead subscribers, without publishing. */
static inline int smps_update(smps_publisher *p) {
    smps_service *s = &p->service;
    int result = smps__lock(s);
    if (result != SMRING_OK) return result;
    for (uint32_t i = 0; i < s->layout.subscribers; i++) smps__reclaim_if_dead(s, i);
    smps__unlock(s);
    smps__enter_publish(s);
    for (uint32_t i = 0; i < s->layout.subscribers && result == SMRING_OK; i++) result = smps__deliver_history(s, i);
    smps__leave_publish(s);
    return result;
}

/* Ends the stream: subscribers read what was published, then their receive says SMRING_FINISHED. The seat is free
 * for another publisher after. */
static inline void smps_finish(smps_publisher *p) {
    smps_service *s = &p->service;
    atomic_store_explicit(smps__u32(s, SMPS_OFF_PUBLISHER_STATE), SMPS_FINISHED_STATE, memory_order_release);
    for (uint32_t i = 0; i < s->layout.subscribers; i++) smring__futex_wake(smps__u32(s, smps__slot(s, i) + SMPS_SLOT_WRITE));
}

/* The sequence number of the last sample published (0 before the first). */
static inline uint64_t smps_last_sequence(const smps_publisher *p) {
    return atomic_load_explicit(smps__u64(&p->service, SMPS_OFF_PUBLISHED), memory_order_acquire);
}

/* ---- Subscribing ---- */

/* Connects with a queue of `queue_depth` samples (0: the service's), `overflow` (SMPS_OVERWRITE_OLDEST or
 * SMPS_BLOCK_PUBLISHER), and the last `history` samples delivered first (on the publisher's next publish or
 * update). A free slot is taken; with none, dead subscribers' slots are reclaimed; with still none, SMPS_LIMIT. */
static inline int smps_subscribe(smps_subscriber *sub, void *service, uint64_t room, uint32_t queue_depth, uint32_t overflow, uint32_t history) {
    memset(sub, 0, sizeof *sub);
    sub->held = -1;
    sub->spins = SMRING_SPINS;
    smps_service *s = &sub->service;
    int result = smps_attach(s, service, room);
    if (result != SMRING_OK) return result;
    uint32_t depth = queue_depth == 0 ? s->layout.queue_depth : queue_depth;
    if (depth > s->layout.queue_depth)
        return smring__fail(SMRING_INVALID, "a subscriber's queue holds 1 to %u samples on this service; %u is not", s->layout.queue_depth, depth);
    if (history > s->layout.history)
        return smring__fail(SMRING_INVALID, "this service keeps a history of %u samples; %u cannot be asked for", s->layout.history, history);
    if (overflow > SMPS_BLOCK_PUBLISHER) return smring__fail(SMRING_INVALID, "an overflow policy is 0 (overwrite the oldest) or 1 (block the publisher), not %u", overflow);
    if ((result = smps__lock(s)) != SMRING_OK) return result;
    int32_t found = -1;
    for (uint32_t i = 0; i < s->layout.subscribers && found < 0; i++) if (smps__state(s, i) == SMPS_FREE) found = (int32_t)i;
    for (uint32_t i = 0; i < s->layout.subscribers && found < 0; i++) if (smps__reclaim_if_dead(s, i)) found = (int32_t)i;
    if (found < 0) {
        smps__unlock(s);
        return smring__fail(SMPS_LIMIT, "all %u subscriber slots of the service are taken by live processes", s->layout.subscribers);
    }
    uint32_t i = (uint32_t)found;
    uint64_t slot = smps__slot(s, i);
    int32_t me = (int32_t)getpid();
    atomic_store_explicit(smps__u32(s, slot + SMPS_SLOT_STATE), SMPS_CLAIMING, memory_order_release);
    smps__put64(s, slot + SMPS_SLOT_START, smring__start_time(me));
    atomic_store_explicit(smps__i32(s, slot + SMPS_SLOT_PID), me, memory_order_release);
    smps__put32(s, slot + SMPS_SLOT_POLICY, overflow);
    smps__put32(s, slot + SMPS_SLOT_DEPTH, depth);
    atomic_store_explicit(smps__u64(s, slot + SMPS_SLOT_LOST), 0, memory_order_relaxed);
    smps__put32(s, slot + SMPS_SLOT_HISTORY_WANTED, history);
    atomic_store_explicit(smps__u32(s, slot + SMPS_SLOT_HISTORY_DELIVERED), history == 0, memory_order_relaxed);
    atomic_store_explicit(smps__u32(s, slot + SMPS_SLOT_HELD), 0, memory_order_relaxed);
    atomic_store_explicit(smps__u64(s, slot + SMPS_SLOT_WRITE), 0, memory_order_relaxed);
    atomic_store_explicit(smps__u64(s, slot + SMPS_SLOT_READ), 0, memory_order_relaxed);
    atomic_fetch_add_explicit(smps__u32(s, slot + SMPS_SLOT_GENERATION), 1, memory_order_relaxed);
    atomic_store_explicit(smps__u32(s, slot + SMPS_SLOT_STATE), SMPS_CONNECTED, memory_order_release);
    smps__connections_changed(s);
    smps__unlock(s);
    sub->index = i;
    return SMRING_OK;
}

/* One look at the queue: takes the next chunk (*c, its length and sequence checked) and returns 1, or 0 if the
 * queue is empty (*write: the write position seen). */
static inline int smps__take_now(smps_subscriber *sub, uint32_t *c, uint64_t *length, uint64_t *sequence, uint64_t *seen) {
    smps_service *s = &sub->service;
    uint64_t slot = smps__slot(s, sub->index);
    _Atomic uint64_t *read = smps__u64(s, slot + SMPS_SLOT_READ), *write = smps__u64(s, slot + SMPS_SLOT_WRITE);
    _Atomic uint32_t *held = smps__u32(s, slot + SMPS_SLOT_HELD);
    for (;;) {
        uint64_t r = atomic_load_explicit(read, memory_order_acquire);
        uint64_t w = atomic_load_explicit(write, memory_order_acquire);
        *seen = w;
        if (w < r || w - r > s->layout.queue_capacity) {
            /* An overwriting queue: the publisher may have dropped the oldest and queued more between the two loads,
             * so r is stale, not the positions wrong. Only a read position that held still says so. */
            if (atomic_load_explicit(read, memory_order_acquire) != r) continue;
            return smring__fail(SMRING_FOREIGN, "this subscriber's queue positions (read %llu, write %llu) do not add up", (unsigned long long)r, (unsigned long long)w);
        }
        if (w == r) return 0;
        uint32_t chunk = smps__entry(s, sub->index, r);
        if (chunk >= s->layout.chunk_count) return smps__bad_chunk(s, chunk);
        atomic_store_explicit(held, chunk + 1, memory_order_release);
        if (!atomic_compare_exchange_strong_explicit(read, &r, r + 1, memory_order_acq_rel, memory_order_acquire)) {
            atomic_store_explicit(held, 0, memory_order_release);
            continue;  /* the publisher dropped it (overwriting): the next one */
        }
        if (atomic_load_explicit(smps__u32(s, slot + SMPS_SLOT_PUBLISHER_SLEEPS), memory_order_seq_cst) != 0)
            smring__futex_wake((_Atomic uint32_t *)read);
        uint64_t at = smps__chunk(s, chunk);
        *length = smps__plain64(s, at + SMPS_CHUNK_LENGTH);
        *sequence = smps__plain64(s, at + SMPS_CHUNK_SEQUENCE);
        *c = chunk;
        if (*length > s->layout.max_payload) {
            sub->held = (int32_t)chunk;
            return SMRING_TOO_LARGE;
        }
        return 1;
    }
}

/* Gives back the sample smps_receive handed out: this subscriber's mark off its chunk, then its note of it. */
static inline void smps_release(smps_subscriber *sub) {
    if (sub->held < 0) return;
    smps_service *s = &sub->service;
    atomic_fetch_and_explicit(smps__holders(s, (uint32_t)sub->held), ~(1ull << sub->index), memory_order_acq_rel);
    atomic_store_explicit(smps__u32(s, smps__slot(s, sub->index) + SMPS_SLOT_HELD), 0, memory_order_release);
    sub->held = -1;
}

/* The next sample in place: *sample and *length (valid until smps_release) and its *sequence. SMRING_FINISHED once
 * the publisher finished and every sample was read; SMRING_PEER_DIED once it died and every sample was read;
 * SMRING_FOREIGN for a corrupt queue or sample (nothing outside the service was read). */
static inline int smps_receive(smps_subscriber *sub, const void **sample, uint64_t *length, uint64_t *sequence, int64_t timeout_ns) {
    smps_service *s = &sub->service;
    if (sub->held >= 0) return smring__fail(SMRING_INVALID, "the sample received before must be released first");
    uint64_t slot = smps__slot(s, sub->index);
    int64_t deadline = timeout_ns < 0 ? -1 : smring__now() + timeout_ns;
    int spins = sub->spins, look_at_publisher = 0;
    for (;;) {
        uint32_t c;
        uint64_t seen;
        int taken = smps__take_now(sub, &c, length, sequence, &seen);
        if (taken == SMRING_TOO_LARGE) {
            smps_release(sub);
            return smring__fail(SMRING_FOREIGN, "a sample says it has %llu bytes; the service's largest is %llu", (unsigned long long)*length, (unsigned long long)s->layout.max_payload);
        }
        if (taken < 0) return taken;
        if (taken == 1) {
            sub->held = (int32_t)c;
            *sample = s->base + smps__chunk(s, c) + SMPS_CHUNK_PAYLOAD;
            return SMRING_OK;
        }
        uint32_t state = atomic_load_explicit(smps__u32(s, SMPS_OFF_PUBLISHER_STATE), memory_order_acquire);
        if (state == SMPS_FINISHED_STATE) return SMRING_FINISHED;
        if (look_at_publisher && state == SMPS_PUBLISHING
            && atomic_load_explicit(smps__i32(s, SMPS_OFF_PUBLISHER_PID), memory_order_acquire) != 0 && !smps__publisher_alive(s))
            return smring__fail(SMRING_PEER_DIED, "the publisher (process %d) died after sample %llu; this subscriber has read every sample that reached its queue (one the publisher was still delivering when it died may have reached only some subscribers)",
                                (int)atomic_load_explicit(smps__i32(s, SMPS_OFF_PUBLISHER_PID), memory_order_acquire),
                                (unsigned long long)atomic_load_explicit(smps__u64(s, SMPS_OFF_PUBLISHED), memory_order_acquire));
        look_at_publisher = 0;
        if (timeout_ns == 0) return SMRING_WOULD_BLOCK;
        if (spins > 0) { spins--; continue; }
        _Atomic uint32_t *sleeps = smps__u32(s, slot + SMPS_SLOT_SUBSCRIBER_SLEEPS);
        atomic_store_explicit(sleeps, 1, memory_order_seq_cst);
        int timed_out = 0;
        if (atomic_load_explicit(smps__u64(s, slot + SMPS_SLOT_WRITE), memory_order_seq_cst) == seen)
            look_at_publisher = smring__sleep(smps__u32(s, slot + SMPS_SLOT_WRITE), (uint32_t)seen, deadline, &timed_out);
        atomic_store_explicit(sleeps, 0, memory_order_relaxed);
        if (timed_out) {
            char text[40];
            return smring__fail(SMRING_TIMED_OUT, "no sample arrived within %s", smring__seconds(timeout_ns, text, sizeof text));
        }
    }
}

/* Samples dropped from this subscriber's full queue, or that a blocking one missed when the publisher timed out. */
static inline uint64_t smps_lost(const smps_subscriber *sub) {
    return atomic_load_explicit(smps__u64(&sub->service, smps__slot(&sub->service, sub->index) + SMPS_SLOT_LOST), memory_order_relaxed);
}

/* Leaves the service: the slot and everything queued in it are given back at once. */
static inline void smps_close(smps_subscriber *sub) {
    smps_release(sub);
    smps_service *s = &sub->service;
    if (smps__lock(s) != SMRING_OK) return;
    atomic_store_explicit(smps__u32(s, smps__slot(s, sub->index) + SMPS_SLOT_STATE), SMPS_RECLAIMING, memory_order_release);
    smps__reclaim_if_dead(s, sub->index);
    smps__unlock(s);
}

#endif
