// The C side of `shm bench`: the same loops as the Swift side, written against the system calls directly, so
// every Swift number has a C number measured in the same run beside it. It is built with the package and linked
// into `shm`, which runs it in a process of its own as `shm c-bench ARGUMENTS` (so an installed `shm` needs
// neither the source nor a C compiler).
//
// Each loop makes the same system calls SharedMemory makes for the same operation (exclusive create, exact
// mode with fchmod, the creator record, posix_fallocate, the lifetime record of a process-lifetime region,
// a file's directory reached without following links, and removal by renaming aside, checking and unlinking),
// so a ratio measures what Swift and the library add, not what safety costs.
//
//   shm c-bench lifecycle BACKEND ITERATIONS          -> "median_ns p99_ns"
//   shm c-bench lifecycle1 BACKEND ITERATIONS         -> the same cycles untimed, under one name, no output (for
//                                                     instruction counts)
//   shm c-bench firsttouch BACKEND MODE BYTES REPEATS -> "median_ns p99_ns" for map + touch every page
//   shm c-bench stream-smring BACKEND BYTES MESSAGE   -> the same, both sides through Interop/c/smring.h
//   shm c-bench stream BACKEND BYTES MESSAGE          -> "ns 0 1": BYTES through a 4 MiB message ring in messages of
//                                                     MESSAGE bytes, parent to forked child, the ring's
//                                                     algorithm and layout exactly as Sources/SharedMemory/
//                                                     Channel/MessageRing.swift; BACKEND pipe, pipe1m (1 MiB
//                                                     pipe buffer) or socketpair streams through the kernel
//   shm c-bench pingpong KIND STRATEGY ROUNDS         -> "median_ns p99_ns": 64-byte round trips parent ->
//                                                     child -> parent; KIND ring (two rings in anonymous
//                                                     memory, STRATEGY spin, spinsleep or sleep), pipe or
//                                                     socketpair (STRATEGY ignored)
//   shm c-bench queue-pingpong KIND SIZE ROUNDS       -> "median_ns p99_ns": SIZE-byte round trips through the
//                                                     kernel's own queues, the peers a user would pick instead
//                                                     of a ring: KIND posixmq (mq_send/mq_receive), sysvmq
//                                                     (msgsnd/msgrcv) or unixdgram (a SOCK_DGRAM socketpair);
//                                                     "skip REASON" if the kernel's limits refuse SIZE
//   shm c-bench queue-stream KIND SIZE BYTES          -> "ns 0 1": BYTES in SIZE-byte messages, parent to child
//   shm c-bench getset N                              -> a store and a load of a uint64_t in a posix object, N times,
//                                                     each through a bounds-checked accessor (getset-bare: a volatile
//                                                     pointer, no checks; getset-dispatch: the checked accessors
//                                                     called through a table of function pointers chosen at run
//                                                     time, C's counterpart of `any SharedRegion`)
//   shm c-bench ring1 N                               -> a 64-byte send and in-place receive through smring.h in one
//                                                     process, N times (both for instruction counts: no output)
//   shm c-bench ring1copy N                           -> the same, each message received as a copy into a buffer
//                                                     (smring_receive_copy)
//   shm c-bench pubsub1 N                             -> a 64-byte publish (copied in) and in-place receive through
//                                                     smpubsub.h, one publisher and one subscriber in one process,
//                                                     N times (for instruction counts: no output)
//   shm c-bench placement ROUNDS                      -> "median_ns p99_ns" spin ping-pong round trip between a
//                                                     parent and a forked child: ~0.2 us when the two CPUs
//                                                     share a cache ("near"), ~0.7 us when not ("far")
//
// BACKEND: sysv posix file anonymous memfd. MODE: plain prefault huge.

#define _GNU_SOURCE
// The ring's functions inlined into their callers, as the best C gets from its header (Docs/Benchmarks.md, "fair
// C"): SwiftPM's clang -O2 would call smring_send and smring_receive, and a comparison against those calls flattered
// the Swift side (0.54x where it is about 1x).
#define SMRING_INLINE static inline __attribute__((always_inline))
#include "smpubsub.h"  // Interop/c: the ring's and the service's wire formats in C (first: they ask for the POSIX declarations)
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mqueue.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/random.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define HUGE_2MB (21 << 26)

static void die(const char *what) { perror(what); exit(1); }

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int compare(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static void report(long long *samples, int n) {
    qsort(samples, n, sizeof *samples, compare);
    int p99 = (int)((n - 1) * 0.99 + 0.5);
    printf("%lld %lld %d\n", samples[n / 2], samples[p99], n);
}

static void record_creator(int fd) {
    char value[64];
    snprintf(value, sizeof value, "%d:%d", getpid(), 0);
    fsetxattr(fd, "user.sharedmemory.creator", value, strlen(value), 0);
}

// The backends, and each name's kind found with strcmp once: the loops pass the same argv string every cycle, and
// the Swift side parses its Backend once before its loop, so no cycle here may pay for comparing names (harness work
// on one side only; it was 100 of the anonymous cycle's 230 instructions).
enum backend_kind { KIND_SYSV, KIND_ANONYMOUS, KIND_POSIX, KIND_FILE, KIND_MEMFD };

static enum backend_kind kind_of(const char *backend) {
    static const char *last;
    static enum backend_kind kind;
    if (backend != last) {
        kind = !strcmp(backend, "sysv") ? KIND_SYSV : !strcmp(backend, "anonymous") ? KIND_ANONYMOUS
             : !strcmp(backend, "posix") ? KIND_POSIX : !strcmp(backend, "file") ? KIND_FILE : KIND_MEMFD;
        last = backend;
    }
    return kind;
}

// The directory holding a posix or file name, open, as SharedMemory reaches it: /dev/shm; or from / one
// component at a time with O_NOFOLLOW. *entry is the last component.
static int open_parent(const char *backend, const char *name, const char **entry) {
    if (kind_of(backend) == KIND_POSIX) {
        *entry = name + 1;
        return open("/dev/shm", O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    int dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    const char *start = name + 1, *slash;
    char component[256];
    while ((slash = strchr(start, '/'))) {
        snprintf(component, sizeof component, "%.*s", (int)(slash - start), start);
        int next = openat(dir, component, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(dir);
        if (next < 0) die("openat");
        dir = next;
        start = slash + 1;
    }
    *entry = start;
    return dir;
}

// The lifetime record of a process-lifetime region, written and removed as LifetimeRecords does.
static void record_file(const char *backend, int id, int fd, char *file, size_t length) {
    if (id >= 0) { snprintf(file, length, "sysv-%d", id); return; }
    struct stat st;
    if (fstat(fd, &st) < 0) die("fstat");
    snprintf(file, length, "%s-%lu-%lu", backend, (unsigned long)st.st_dev, (unsigned long)st.st_ino);
}

// The record directory, open; -1 with errno ENOENT if it is not there (or vanished between mkdirat and openat: any
// process of this user removes it with its last record).
static int open_record_directory(int creating) {
    char directory[64];
    snprintf(directory, sizeof directory, ".sharedmemory-%u", geteuid());
    int shm = open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (creating && mkdirat(shm, directory, 0700) < 0 && errno != EEXIST) die("mkdirat");
    int dir = openat(shm, directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int saved = errno;
    close(shm);
    struct stat st;
    if (dir >= 0 && fstat(dir, &st) < 0) die("fstat");
    errno = saved;
    return dir;
}

// Writes the record as LifetimeRecords.write does: into a temporary file in the directory, then renamed. The
// directory may vanish under it (another process removed its last record) before the temporary file is in it: then
// it is made again, up to 10 times, as the library does. Returns 0, or -1 with errno set (the caller backs out).
static int write_record(const char *backend, const char *name, int id, int fd) {
    char file[128], temporary[64], text[640];
    record_file(backend, id, fd, file, sizeof file);
    for (int attempt = 0; attempt < 10; attempt++) {
        int dir = open_record_directory(1);
        if (dir < 0) {
            if (errno == ENOENT) continue;
            return -1;
        }
        unsigned long long random;
        if (getrandom(&random, sizeof random, 0) != sizeof random) die("getrandom");
        snprintf(temporary, sizeof temporary, ".tmp-%016llx", random);
        int record = openat(dir, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (record < 0) {
            int saved = errno;
            close(dir);
            if (saved == ENOENT) continue;  // the directory was removed after we opened it
            errno = saved;
            return -1;
        }
        // From here the directory holds our temporary file, so nobody can remove it (rmdir fails while it is not empty).
        struct statx born = {0};
        if (id < 0 && statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BTIME, &born) < 0) die("statx");
        int length = id >= 0
            ? snprintf(text, sizeof text, "sharedmemory-lifetime 1\ncreator %d 0\nborn 0 0\nname sysv-id:%d", getpid(), id)
            : snprintf(text, sizeof text, "sharedmemory-lifetime 1\ncreator %d 0\nborn %lld %u\nname %s:%s", getpid(),
                       (long long)born.stx_btime.tv_sec, born.stx_btime.tv_nsec, backend, name);
        int ok = write(record, text, length) == length;
        close(record);
        if (!ok || renameat(dir, temporary, dir, file) < 0) {
            int saved = ok ? errno : EIO;
            unlinkat(dir, temporary, 0);
            close(dir);
            errno = saved;
            return -1;
        }
        close(dir);
        return 0;
    }
    errno = ENOENT;
    return -1;
}

static void remove_record(const char *backend, int id, int fd) {
    char file[128], directory[64];
    record_file(backend, id, fd, file, sizeof file);
    int dir = open_record_directory(0);
    if (dir < 0) return;
    int removed = unlinkat(dir, file, 0) == 0;
    close(dir);
    if (removed) {
        int shm = open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        snprintf(directory, sizeof directory, ".sharedmemory-%u", geteuid());
        unlinkat(shm, directory, AT_REMOVEDIR);  // fails while other records are there
        close(shm);
    }
}

// Create, map, and (for the first-touch loop) prefault a process-lifetime region as SharedMemory.create does;
// returns the mapping.
static void *create(const char *backend, const char *name, size_t size, int prefault, int huge, int *fd, int *id) {
    void *p = NULL;
    *fd = -1;
    *id = -1;
    enum backend_kind kind = kind_of(backend);
    if (kind == KIND_SYSV) {
        *id = shmget(IPC_PRIVATE, size, IPC_CREAT | IPC_EXCL | 0600 | (huge ? SHM_HUGETLB | HUGE_2MB : 0));
        if (*id < 0) die("shmget");
        struct shmid_ds ds;
        if (shmctl(*id, IPC_STAT, &ds) < 0) die("shmctl");
        p = shmat(*id, NULL, 0);
        if (p == (void *)-1) die("shmat");
        if (write_record(backend, name, *id, -1) < 0) {
            // Back out: the segment is ours (IPC_PRIVATE, just made), and without its record shm gc could never
            // collect it.
            int saved = errno;
            shmdt(p);
            shmctl(*id, IPC_RMID, NULL);
            errno = saved;
            die("write the lifetime record");
        }
    } else if (kind == KIND_ANONYMOUS) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | (huge ? MAP_HUGETLB | HUGE_2MB : 0), -1, 0);
        if (p == MAP_FAILED) die("mmap");
    } else {
        int flags = O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
        if (kind == KIND_POSIX) {
            *fd = shm_open(name, flags, 0600);
        } else if (kind == KIND_FILE) {
            const char *entry;
            int dir = open_parent(backend, name, &entry);
            *fd = openat(dir, entry, flags, 0600);
            close(dir);
        } else {
            *fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL | (huge ? MFD_HUGETLB | HUGE_2MB : 0));
        }
        if (*fd < 0) die("open");
        if (fchmod(*fd, 0600) < 0) die("fchmod");
        record_creator(*fd);
        if (ftruncate(*fd, size) < 0) die("ftruncate");
        if (posix_fallocate(*fd, 0, size) != 0) die("posix_fallocate");
        if (kind != KIND_MEMFD && write_record(backend, name, -1, *fd) < 0) {
            // Back out: the object is ours (O_EXCL, just made), and without its record shm gc could never collect it.
            int saved = errno;
            char path[512];
            snprintf(path, sizeof path, "%s%s", kind == KIND_POSIX ? "/dev/shm" : "", name);
            struct stat ours, named;
            if (fstat(*fd, &ours) == 0 && lstat(path, &named) == 0 && named.st_ino == ours.st_ino && named.st_dev == ours.st_dev) {
                unlink(path);  // still ours by its inode: nothing else is removed
            }
            errno = saved;
            die("write the lifetime record");
        }
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
        if (p == MAP_FAILED) die("mmap");
    }
    if (prefault && madvise(p, size, MADV_POPULATE_WRITE) < 0) die("madvise");
    return p;
}

// Remove and detach as region.remove() and region.detach() do.
static void destroy(const char *backend, const char *name, void *p, size_t size, int fd, int id) {
    enum backend_kind kind = kind_of(backend);
    if (kind == KIND_SYSV) {
        struct shmid_ds ds;
        if (shmctl(id, IPC_STAT, &ds) < 0 || shmctl(id, IPC_RMID, NULL) < 0) die("shmctl");
        remove_record(backend, id, -1);
        if (shmdt(p) < 0) die("shmdt");
        return;
    }
    if (kind == KIND_POSIX || kind == KIND_FILE) {
        // Only our own object: rename it aside, check it there, unlink it.
        struct stat ours, named, moved;
        const char *entry;
        char aside[64];
        unsigned long long random;
        if (fstat(fd, &ours) < 0) die("fstat");
        int dir = open_parent(backend, name, &entry);
        if (fstatat(dir, entry, &named, AT_SYMLINK_NOFOLLOW) < 0) die("fstatat");
        if (getrandom(&random, sizeof random, 0) != sizeof random) die("getrandom");
        snprintf(aside, sizeof aside, ".sm-removing-%016llx", random);
        if (renameat2(dir, entry, dir, aside, RENAME_NOREPLACE) < 0) die("renameat2");
        if (fstatat(dir, aside, &moved, AT_SYMLINK_NOFOLLOW) < 0) die("fstatat");
        if (moved.st_ino != ours.st_ino || unlinkat(dir, aside, 0) < 0) die("unlinkat");
        close(dir);
        remove_record(backend, -1, fd);
    }
    if (munmap(p, size) < 0) die("munmap");
    if (fd >= 0) close(fd);
}

// A mapping as a careful C program keeps one, and its typed accessors: each access checks that the mapping is
// there and that the value lies inside it, as SharedMemory's get and set do (the bare loop, getset-bare, does not).
struct checked_region { char *base; size_t size; };

// Volatile, as the memory is shared: another process may write it, so no access may be merged or left out.
static inline int region_set_u64(struct checked_region *r, size_t offset, uint64_t value) {
    if (!r->base || offset > r->size || r->size - offset < sizeof value) return -1;
    *(volatile uint64_t *)(r->base + offset) = value;
    return 0;
}

static inline int region_get_u64(const struct checked_region *r, size_t offset, uint64_t *value) {
    if (!r->base || offset > r->size || r->size - offset < sizeof *value) return -1;
    *value = *(volatile uint64_t *)(r->base + offset);
    return 0;
}

static struct checked_region getset_region;  // where the program keeps its mapping

// Dynamic dispatch, as through `any SharedRegion`: the program holds a region whose type it learns at run time, so
// each access is an indirect call through that type's table (the compiler cannot inline or hoist across it).
struct region_operations {
    int (*set_u64)(void *region, size_t offset, uint64_t value);
    int (*get_u64)(const void *region, size_t offset, uint64_t *value);
};
static int checked_set_u64(void *r, size_t offset, uint64_t value) { return region_set_u64(r, offset, value); }
static int checked_get_u64(const void *r, size_t offset, uint64_t *value) { return region_get_u64(r, offset, value); }
static const struct region_operations checked_operations = { checked_set_u64, checked_get_u64 };
const struct region_operations *getset_operations;  // chosen at run time, visible to other units: not folded

static const char *region_name(const char *backend, char *buffer, size_t length, int i);

// n stores and loads of a uint64_t at offset 64 of a posix object: bare (a volatile pointer) or checked. Out of
// line, so that it does not change how the compiler inlines the other loops in shmbench_main.
__attribute__((noinline)) static void getset(int bare, int dispatch, long n, long page) {
    char name[256];
    int fd, id;
    volatile uint64_t *p = create("posix", region_name("posix", name, sizeof name, 0), page, 0, 0, &fd, &id);
    uint64_t sum = 0;
    if (bare) {
        for (long i = 0; i < n; i++) { p[8] = (uint64_t)i; sum += p[8]; }
    } else if (dispatch) {
        getset_region = (struct checked_region){ (char *)p, (size_t)page };
        getset_operations = &checked_operations;
        for (long i = 0; i < n; i++) {
            if (getset_operations->set_u64(&getset_region, 64, (uint64_t)i) < 0) die("set_u64");
            uint64_t value;
            if (getset_operations->get_u64(&getset_region, 64, &value) < 0) die("get_u64");
            sum += value;
        }
    } else {
        getset_region = (struct checked_region){ (char *)p, (size_t)page };
        for (long i = 0; i < n; i++) {
            if (region_set_u64(&getset_region, 64, (uint64_t)i) < 0) die("region_set_u64");
            uint64_t value;
            if (region_get_u64(&getset_region, 64, &value) < 0) die("region_get_u64");
            sum += value;
        }
    }
    destroy("posix", name, (void *)p, page, fd, id);
    if (sum == 42) printf("%llu\n", (unsigned long long)sum);
}

// A fresh name for iteration i; System V (IPC_PRIVATE) and anonymous regions have none, as on the Swift side.
static const char *region_name(const char *backend, char *buffer, size_t length, int i) {
    if (!strcmp(backend, "sysv") || !strcmp(backend, "anonymous")) buffer[0] = 0;
    else if (!strcmp(backend, "file")) snprintf(buffer, length, "/tmp/shmbench-c-%d-%d", getpid(), i);
    else snprintf(buffer, length, "/shmbench-c-%d-%d", getpid(), i);
    return buffer;
}

// ---- The message ring, as MessageRing.swift lays it out and runs it ----

enum { H_MAGIC = 0, H_VERSION = 8, H_HEADER = 12, H_CAPACITY = 16, H_HEAD = 64, H_FINISHED = 72, H_TAIL = 128,
       H_DATA_SIGNAL = 192, H_CONSUMER_WAITING = 196, H_SPACE_SIGNAL = 224, H_PRODUCER_WAITING = 228, HEADER = 256 };
#define AT(base, offset, type) ((type *)((char *)(base) + (offset)))
#define LOAD(p, order) __atomic_load_n(p, order)
#define STORE(p, v, order) __atomic_store_n(p, v, order)

struct ring { char *base, *data; uint64_t capacity, mask, head, tail; int spins; };

static void ring_format(char *base, uint64_t capacity) {
    memset(base, 0, HEADER);
    *AT(base, H_VERSION, uint32_t) = 1;
    *AT(base, H_HEADER, uint32_t) = HEADER;
    *AT(base, H_CAPACITY, uint64_t) = capacity;
    STORE(AT(base, H_MAGIC, uint64_t), 0x53484D52494E4700ULL, __ATOMIC_RELEASE);
}

static void ring_attach(struct ring *r, char *base, int spins) {
    r->base = base;
    r->data = base + HEADER;
    r->capacity = *AT(base, H_CAPACITY, uint64_t);
    r->mask = r->capacity - 1;
    r->head = LOAD(AT(base, H_HEAD, uint64_t), __ATOMIC_ACQUIRE);
    r->tail = LOAD(AT(base, H_TAIL, uint64_t), __ATOMIC_ACQUIRE);
    r->spins = spins;
}

static void futex_wait(uint32_t *word, uint32_t seen) {
    struct timespec slice = { 0, 100000000 };
    syscall(SYS_futex, word, FUTEX_WAIT, seen, &slice, NULL, 0);
}

static void futex_wake(uint32_t *word) { syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0); }

static void ring_send(struct ring *r, const void *bytes, uint32_t count) {
    uint64_t need = (4 + count + 7) & ~7ULL;
    int spins = r->spins;
    for (;;) {
        uint64_t offset = r->head & r->mask;
        uint64_t pad = offset + need > r->capacity ? r->capacity - offset : 0;
        if (r->head + pad + need - r->tail > r->capacity) r->tail = LOAD(AT(r->base, H_TAIL, uint64_t), __ATOMIC_ACQUIRE);
        if (r->head + pad + need - r->tail <= r->capacity) {
            if (pad) *(uint32_t *)(r->data + offset) = UINT32_MAX;
            uint64_t start = (r->head + pad) & r->mask;
            *(uint32_t *)(r->data + start) = count;
            memcpy(r->data + start + 4, bytes, count);
            r->head += pad + need;
            STORE(AT(r->base, H_HEAD, uint64_t), r->head, __ATOMIC_RELEASE);
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            if (LOAD(AT(r->base, H_CONSUMER_WAITING, uint32_t), __ATOMIC_RELAXED)) {
                __atomic_fetch_add(AT(r->base, H_DATA_SIGNAL, uint32_t), 1, __ATOMIC_RELEASE);
                futex_wake(AT(r->base, H_DATA_SIGNAL, uint32_t));
            }
            return;
        }
        if (spins > 0) { spins--; __builtin_ia32_pause(); continue; }
        uint32_t seen = LOAD(AT(r->base, H_SPACE_SIGNAL, uint32_t), __ATOMIC_ACQUIRE);
        STORE(AT(r->base, H_PRODUCER_WAITING, uint32_t), 1, __ATOMIC_SEQ_CST);
        r->tail = LOAD(AT(r->base, H_TAIL, uint64_t), __ATOMIC_SEQ_CST);
        if (r->head + pad + need - r->tail > r->capacity) futex_wait(AT(r->base, H_SPACE_SIGNAL, uint32_t), seen);
        STORE(AT(r->base, H_PRODUCER_WAITING, uint32_t), 0, __ATOMIC_RELAXED);
    }
}

static void ring_finish(struct ring *r) {
    STORE(AT(r->base, H_FINISHED, uint32_t), 1, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_fetch_add(AT(r->base, H_DATA_SIGNAL, uint32_t), 1, __ATOMIC_RELEASE);
    futex_wake(AT(r->base, H_DATA_SIGNAL, uint32_t));
}

// Copies the next message into `out`; its length, or -1 once finished and empty.
static long ring_receive(struct ring *r, void *out) {
    int spins = r->spins;
    for (;;) {
        if (r->head == r->tail) r->head = LOAD(AT(r->base, H_HEAD, uint64_t), __ATOMIC_ACQUIRE);
        if (r->head != r->tail) {
            uint64_t offset = r->tail & r->mask;
            uint32_t length = *(uint32_t *)(r->data + offset);
            if (length == UINT32_MAX) { r->tail += r->capacity - offset; continue; }
            memcpy(out, r->data + offset + 4, length);
            r->tail += (4 + length + 7) & ~7ULL;
            STORE(AT(r->base, H_TAIL, uint64_t), r->tail, __ATOMIC_RELEASE);
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            if (LOAD(AT(r->base, H_PRODUCER_WAITING, uint32_t), __ATOMIC_RELAXED)) {
                __atomic_fetch_add(AT(r->base, H_SPACE_SIGNAL, uint32_t), 1, __ATOMIC_RELEASE);
                futex_wake(AT(r->base, H_SPACE_SIGNAL, uint32_t));
            }
            return length;
        }
        if (LOAD(AT(r->base, H_FINISHED, uint32_t), __ATOMIC_ACQUIRE)) {
            if (LOAD(AT(r->base, H_HEAD, uint64_t), __ATOMIC_ACQUIRE) == r->tail) return -1;
            continue;
        }
        if (spins > 0) { spins--; __builtin_ia32_pause(); continue; }
        uint32_t seen = LOAD(AT(r->base, H_DATA_SIGNAL, uint32_t), __ATOMIC_ACQUIRE);
        STORE(AT(r->base, H_CONSUMER_WAITING, uint32_t), 1, __ATOMIC_SEQ_CST);
        if (LOAD(AT(r->base, H_HEAD, uint64_t), __ATOMIC_SEQ_CST) == r->tail && !LOAD(AT(r->base, H_FINISHED, uint32_t), __ATOMIC_ACQUIRE))
            futex_wait(AT(r->base, H_DATA_SIGNAL, uint32_t), seen);
        STORE(AT(r->base, H_CONSUMER_WAITING, uint32_t), 0, __ATOMIC_RELAXED);
    }
}

static int spins_for(const char *strategy) {
    return !strcmp(strategy, "spin") ? INT32_MAX : !strcmp(strategy, "sleep") ? 0 : 2000;
}

// Two descriptors from parent to child (and back, for the ping-pong): pipes or a socketpair.
static void channel(const char *kind, int to_child[2], int to_parent[2]) {
    if (!strcmp(kind, "socketpair")) {
        int s[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) < 0) die("socketpair");
        to_child[0] = s[1]; to_child[1] = s[0]; to_parent[0] = s[0]; to_parent[1] = s[1];
        return;
    }
    if (pipe(to_child) < 0 || pipe(to_parent) < 0) die("pipe");
    if (!strcmp(kind, "pipe1m")) {
        fcntl(to_child[1], F_SETPIPE_SZ, 1 << 20);
        fcntl(to_parent[1], F_SETPIPE_SZ, 1 << 20);
    }
}

static void read_all(int fd, char *buffer, size_t count) {
    while (count > 0) {
        ssize_t n = read(fd, buffer, count);
        if (n <= 0) die("read");
        buffer += n;
        count -= n;
    }
}

static void write_all(int fd, const char *buffer, size_t count) {
    while (count > 0) {
        ssize_t n = write(fd, buffer, count);
        if (n <= 0) die("write");
        buffer += n;
        count -= n;
    }
}

static void stream(const char *backend, size_t total, size_t message) {
    char *buffer = malloc(message);
    memset(buffer, 7, message);
    long long start;
    pid_t child;
    if (!strcmp(backend, "pipe") || !strcmp(backend, "pipe1m") || !strcmp(backend, "socketpair")) {
        int down[2], up[2];
        channel(backend, down, up);
        child = fork();
        if (child == 0) {
            for (size_t got = 0; got < total;) {
                ssize_t n = read(down[0], buffer, message);
                if (n <= 0) die("read");
                got += n;
            }
            _exit(0);
        }
        start = now_ns();
        for (size_t sent = 0; sent < total; sent += message) write_all(down[1], buffer, message);
    } else {
        int fd, id;
        char name[256];
        size_t size = HEADER + (4 << 20);
        char *base = create(backend, region_name(backend, name, sizeof name, 0), size, 0, 0, &fd, &id);
        ring_format(base, 4 << 20);
        child = fork();
        if (child == 0) {
            struct ring r;
            ring_attach(&r, base, 2000);
            while (ring_receive(&r, buffer) >= 0) {}
            _exit(0);
        }
        struct ring r;
        ring_attach(&r, base, 2000);
        start = now_ns();
        for (size_t sent = 0; sent < total; sent += message) ring_send(&r, buffer, message);
        ring_finish(&r);
        waitpid(child, NULL, 0);
        long long elapsed = now_ns() - start;
        destroy(backend, name, base, size, fd, id);
        printf("%lld %lld 1\n", elapsed, elapsed);
        return;
    }
    waitpid(child, NULL, 0);
    long long elapsed = now_ns() - start;
    printf("%lld %lld 1\n", elapsed, elapsed);
}

// The same stream, both sides through Interop/c/smring.h, the wire format's C implementation (with its checks
// of every length and position, and its liveness look at the peer when a side waits), instead of the bare ring
// above.
static void stream_smring(const char *backend, size_t total, size_t message) {
    char *buffer = malloc(message);
    memset(buffer, 7, message);
    int fd, id;
    char name[256];
    size_t size = HEADER + (4 << 20);
    char *base = create(backend, region_name(backend, name, sizeof name, 0), size, 0, 0, &fd, &id);
    if (smring_format(base, size, 4 << 20) != SMRING_OK) die("smring_format");
    pid_t child = fork();
    if (child == 0) {
        smring r;
        uint32_t length;
        if (smring_attach(&r, base, size, SMRING_RECEIVER) != SMRING_OK) _exit(1);
        while (smring_receive_copy(&r, buffer, (uint32_t)message, &length, -1) == SMRING_OK) {}
        _exit(0);
    }
    smring r;
    if (smring_attach(&r, base, size, SMRING_SENDER) != SMRING_OK) die("smring_attach");
    long long start = now_ns();
    for (size_t sent = 0; sent < total; sent += message)
        if (smring_send(&r, buffer, (uint32_t)message, -1) != SMRING_OK) die("smring_send");
    smring_close(&r);
    waitpid(child, NULL, 0);
    long long elapsed = now_ns() - start;
    destroy(backend, name, base, size, fd, id);
    free(buffer);
    printf("%lld %lld 1\n", elapsed, elapsed);
}

static void pingpong(const char *kind, const char *strategy, int rounds) {
    long long *samples = calloc(rounds, sizeof *samples);
    char message[64] = { 1 };
    if (!strcmp(kind, "ring")) {
        size_t size = 2 * (HEADER + 4096);
        char *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) die("mmap");
        ring_format(base, 4096);
        ring_format(base + HEADER + 4096, 4096);
        pid_t child = fork();
        struct ring in, out;
        if (child == 0) {
            ring_attach(&in, base, spins_for(strategy));
            ring_attach(&out, base + HEADER + 4096, spins_for(strategy));
            for (int i = 0; i < rounds; i++) { ring_receive(&in, message); ring_send(&out, message, 64); }
            _exit(0);
        }
        ring_attach(&out, base, spins_for(strategy));
        ring_attach(&in, base + HEADER + 4096, spins_for(strategy));
        for (int i = 0; i < rounds; i++) {
            long long t = now_ns();
            ring_send(&out, message, 64);
            ring_receive(&in, message);
            samples[i] = now_ns() - t;
        }
        waitpid(child, NULL, 0);
        munmap(base, size);
    } else {
        int down[2], up[2];
        channel(kind, down, up);
        pid_t child = fork();
        if (child == 0) {
            for (int i = 0; i < rounds; i++) { read_all(down[0], message, 64); write_all(up[1], message, 64); }
            _exit(0);
        }
        for (int i = 0; i < rounds; i++) {
            long long t = now_ns();
            write_all(down[1], message, 64);
            read_all(up[0], message, 64);
            samples[i] = now_ns() - t;
        }
        waitpid(child, NULL, 0);
    }
    report(samples, rounds);
}

// The kernel's own message queues, two-way (down: parent to child; up: child to parent), for the peers' rows.
struct queue {
    enum { POSIX_MQ, SYSV_MQ, UNIX_DGRAM } kind;
    size_t size;
    mqd_t mq[2];
    int msq[2];
    int sockets[2];  // the socketpair: the parent's end, the child's end
    char *buffer;    // SysV: mtype, then the message
};

static long read_limit(const char *path) {
    FILE *f = fopen(path, "r");
    long value = -1;
    if (f) { if (fscanf(f, "%ld", &value) != 1) value = -1; fclose(f); }
    return value;
}

// Opens the two queues, or prints "skip REASON" and returns 0 if the kernel's limits refuse messages of `size`.
static int queue_open(struct queue *q, const char *kind, size_t size) {
    memset(q, 0, sizeof *q);
    q->size = size;
    q->buffer = calloc(1, sizeof(long) + size);
    if (!strcmp(kind, "posixmq")) {
        q->kind = POSIX_MQ;
        for (int i = 0; i < 2; i++) {
            char name[64];
            snprintf(name, sizeof name, "/shmbench-mq-%d-%d", getpid(), i);
            struct mq_attr attributes = { .mq_maxmsg = 8, .mq_msgsize = (long)size };
            q->mq[i] = mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, &attributes);
            if (q->mq[i] == (mqd_t)-1) {
                int error = errno;
                if (i == 1) mq_close(q->mq[0]);
                printf("skip mq_open refused %zu-byte messages (%s; fs.mqueue.msgsize_max is %ld)\n", size, strerror(error),
                       read_limit("/proc/sys/fs/mqueue/msgsize_max"));
                return 0;
            }
            mq_unlink(name);  // the descriptors (inherited by the child) keep the queue
        }
    } else if (!strcmp(kind, "sysvmq")) {
        q->kind = SYSV_MQ;
        long most = read_limit("/proc/sys/kernel/msgmax"), room = read_limit("/proc/sys/kernel/msgmnb");
        if ((long)size > most || (long)size > room) {
            printf("skip System V queues carry at most %ld bytes a message here (kernel.msgmax; kernel.msgmnb %ld)\n", most, room);
            return 0;
        }
        for (int i = 0; i < 2; i++) {
            q->msq[i] = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
            if (q->msq[i] < 0) die("msgget");
        }
    } else if (!strcmp(kind, "unixdgram")) {
        q->kind = UNIX_DGRAM;
        if (socketpair(AF_UNIX, SOCK_DGRAM, 0, q->sockets) < 0) die("socketpair");
        int buffer = 4 << 20;
        for (int i = 0; i < 2; i++) {
            setsockopt(q->sockets[i], SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
            setsockopt(q->sockets[i], SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
        }
    } else {
        fprintf(stderr, "unknown queue %s\n", kind);
        exit(2);
    }
    return 1;
}

// `child`: whether the caller is the child (it receives from down, sends up).
static void queue_send(struct queue *q, int child, const char *bytes) {
    switch (q->kind) {
    case POSIX_MQ:
        if (mq_send(q->mq[child], bytes, q->size, 0) < 0) die("mq_send");
        break;
    case SYSV_MQ:
        *(long *)q->buffer = 1;
        memcpy(q->buffer + sizeof(long), bytes, q->size);
        while (msgsnd(q->msq[child], q->buffer, q->size, 0) < 0) if (errno != EINTR) die("msgsnd");
        break;
    case UNIX_DGRAM:
        if (send(q->sockets[child], bytes, q->size, 0) != (ssize_t)q->size) die("send");
        break;
    }
}

static void queue_receive(struct queue *q, int child, char *bytes) {
    switch (q->kind) {
    case POSIX_MQ:
        if (mq_receive(q->mq[1 - child], bytes, q->size, NULL) != (ssize_t)q->size) die("mq_receive");
        break;
    case SYSV_MQ:
        while (msgrcv(q->msq[1 - child], q->buffer, q->size, 0, 0) < 0) if (errno != EINTR) die("msgrcv");
        memcpy(bytes, q->buffer + sizeof(long), q->size);
        break;
    case UNIX_DGRAM:
        if (recv(q->sockets[child], bytes, q->size, 0) != (ssize_t)q->size) die("recv");
        break;
    }
}

static void queue_close(struct queue *q) {
    for (int i = 0; i < 2; i++) {
        if (q->kind == POSIX_MQ) mq_close(q->mq[i]);
        if (q->kind == SYSV_MQ) msgctl(q->msq[i], IPC_RMID, NULL);
        if (q->kind == UNIX_DGRAM) close(q->sockets[i]);
    }
    free(q->buffer);
}

static void queue_pingpong(const char *kind, size_t size, int rounds) {
    struct queue q;
    if (!queue_open(&q, kind, size)) return;
    long long *samples = calloc(rounds, sizeof *samples);
    char *message = calloc(1, size);
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < rounds; i++) { queue_receive(&q, 1, message); queue_send(&q, 1, message); }
        _exit(0);
    }
    for (int i = 0; i < rounds; i++) {
        long long t = now_ns();
        queue_send(&q, 0, message);
        queue_receive(&q, 0, message);
        samples[i] = now_ns() - t;
    }
    waitpid(child, NULL, 0);
    queue_close(&q);
    report(samples, rounds);
}

static void queue_stream(const char *kind, size_t size, size_t total) {
    struct queue q;
    if (!queue_open(&q, kind, size)) return;
    char *message = calloc(1, size);
    pid_t child = fork();
    if (child == 0) {
        for (size_t got = 0; got < total; got += size) queue_receive(&q, 1, message);
        _exit(0);
    }
    long long start = now_ns();
    for (size_t sent = 0; sent < total; sent += size) queue_send(&q, 0, message);
    waitpid(child, NULL, 0);
    long long elapsed = now_ns() - start;
    queue_close(&q);
    printf("%lld %lld 1\n", elapsed, elapsed);
}

// n 64-byte sends through smring.h in one process, each received in place, or (copy) as a copy into a buffer of
// the receiver's (smring_receive_copy). Out of line, as getset; a loop for each, so neither pays for the other.
__attribute__((noinline)) static void ring1(long n, int copy) {
    char name[256];
    int fd, id;
    size_t size = smring_size(1 << 16);
    char *base = create("posix", region_name("posix", name, sizeof name, 0), size, 0, 0, &fd, &id);
    if (smring_format(base, size, 1 << 16) != SMRING_OK) die("smring_format");
    smring sender, receiver;
    if (smring_attach(&sender, base, size, SMRING_SENDER) != SMRING_OK) die("smring_attach");
    if (smring_attach(&receiver, base, size, SMRING_RECEIVER) != SMRING_OK) die("smring_attach");
    unsigned char message[64], buffer[1 << 15];
    memset(message, 7, sizeof message);
    long total = 0;
    if (copy) {
        for (long i = 0; i < n; i++) {
            if (smring_send(&sender, message, sizeof message, -1) != SMRING_OK) die("smring_send");
            uint32_t length;
            if (smring_receive_copy(&receiver, buffer, sizeof buffer, &length, -1) != SMRING_OK) die("smring_receive_copy");
            total += length + buffer[i & 63];
        }
    } else {
        for (long i = 0; i < n; i++) {
            if (smring_send(&sender, message, sizeof message, -1) != SMRING_OK) die("smring_send");
            const void *in;
            uint32_t length;
            if (smring_receive(&receiver, &in, &length, -1) != SMRING_OK) die("smring_receive");
            total += length;
            smring_release(&receiver);
        }
    }
    smring_finish(&sender);
    destroy("posix", name, base, size, fd, id);
    if (total == 42) printf("%ld\n", total);
}

// n 64-byte publishes (copied in) and in-place receives through smpubsub.h, one subscriber, in one process.
__attribute__((noinline)) static void pubsub1(long n) {
    char name[256];
    int fd, id;
    size_t size = smps_size(64, 1, 8, 0);
    char *base = create("posix", region_name("posix", name, sizeof name, 0), size, 0, 0, &fd, &id);
    if (smps_format(base, size, 64, 1, 8, 0) != SMRING_OK) die("smps_format");
    smps_publisher publisher;
    smps_subscriber subscriber;
    if (smps_subscribe(&subscriber, base, size, 0, SMPS_OVERWRITE_OLDEST, 0) != SMRING_OK) die("smps_subscribe");
    if (smps_publisher_attach(&publisher, base, size, 1000000000) != SMRING_OK) die("smps_publisher_attach");
    unsigned char message[64];
    memset(message, 7, sizeof message);
    uint64_t total = 0, sequence, length;
    for (long i = 0; i < n; i++) {
        if (smps_publish_copy(&publisher, message, sizeof message, &sequence) != SMRING_OK) die("smps_publish_copy");
        const void *in;
        if (smps_receive(&subscriber, &in, &length, &sequence, -1) != SMRING_OK) die("smps_receive");
        total += length;
        smps_release(&subscriber);
    }
    smps_close(&subscriber);
    smps_finish(&publisher);
    destroy("posix", name, base, size, fd, id);
    if (total == 42) printf("%llu\n", (unsigned long long)total);
}

int shmbench_main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: see the top of shmbench.c\n"); return 2; }
    const char *backend = argv[2];
    char name[256];
    long page = sysconf(_SC_PAGESIZE);
    if (!strcmp(argv[1], "lifecycle") && argc == 4) {
        int n = atoi(argv[3]);
        long long *samples = calloc(n, sizeof *samples);
        for (int i = 0; i < n; i++) {
            int fd, id;
            long long start = now_ns();
            char *p = create(backend, region_name(backend, name, sizeof name, i), page, 0, 0, &fd, &id);
            p[0] = 1;
            destroy(backend, name, p, page, fd, id);
            samples[i] = now_ns() - start;
        }
        report(samples, n);
    } else if (!strcmp(argv[1], "lifecycle1") && argc == 4) {
        // The same cycle, untimed and unrecorded, under one name (each cycle removes the region before the next
        // makes it again): what the instruction counts compare, without the loop's own formatting of names.
        int n = atoi(argv[3]);
        region_name(backend, name, sizeof name, 0);
        for (int i = 0; i < n; i++) {
            int fd, id;
            char *p = create(backend, name, page, 0, 0, &fd, &id);
            p[0] = 1;
            destroy(backend, name, p, page, fd, id);
        }
    } else if (!strcmp(argv[1], "firsttouch") && argc == 6) {
        const char *mode = argv[3];
        size_t size = strtoull(argv[4], NULL, 10);
        int n = atoi(argv[5]);
        long long *samples = calloc(n, sizeof *samples);
        for (int i = 0; i < n; i++) {
            int fd, id;
            long long start = now_ns();
            volatile char *p = create(backend, region_name(backend, name, sizeof name, i), size,
                                      !strcmp(mode, "prefault"), !strcmp(mode, "huge"), &fd, &id);
            for (size_t offset = 0; offset < size; offset += page) p[offset] = 1;
            samples[i] = now_ns() - start;
            destroy(backend, name, (void *)p, size, fd, id);
        }
        report(samples, n);
    } else if (!strcmp(argv[1], "stream") && argc == 5) {
        stream(backend, strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
    } else if (!strcmp(argv[1], "stream-smring") && argc == 5) {
        stream_smring(backend, strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
    } else if (!strcmp(argv[1], "pingpong") && argc == 5) {
        pingpong(argv[2], argv[3], atoi(argv[4]));
    } else if (!strcmp(argv[1], "queue-pingpong") && argc == 5) {
        queue_pingpong(argv[2], strtoull(argv[3], NULL, 10), atoi(argv[4]));
    } else if (!strcmp(argv[1], "queue-stream") && argc == 5) {
        queue_stream(argv[2], strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10));
    } else if ((!strcmp(argv[1], "getset") || !strcmp(argv[1], "getset-bare") || !strcmp(argv[1], "getset-dispatch")) && argc == 3) {
        getset(!strcmp(argv[1], "getset-bare"), !strcmp(argv[1], "getset-dispatch"), atol(argv[2]), page);
    } else if (!strcmp(argv[1], "ring1") && argc == 3) {
        ring1(atol(argv[2]), 0);
    } else if (!strcmp(argv[1], "ring1copy") && argc == 3) {
        ring1(atol(argv[2]), 1);
    } else if (!strcmp(argv[1], "pubsub1") && argc == 3) {
        pubsub1(atol(argv[2]));
    } else if (!strcmp(argv[1], "placement")) {
        int n = atoi(argv[2]);
        long long *samples = calloc(n, sizeof *samples);
        volatile int *flag = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (flag == MAP_FAILED) die("mmap");
        pid_t child = fork();
        if (child == 0) {
            for (int i = 0; i < n; i++) {
                while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) != 2 * i + 1) {}
                __atomic_store_n(flag, 2 * i + 2, __ATOMIC_RELEASE);
            }
            _exit(0);
        }
        for (int i = 0; i < n; i++) {
            long long start = now_ns();
            __atomic_store_n(flag, 2 * i + 1, __ATOMIC_RELEASE);
            while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) != 2 * i + 2) {}
            samples[i] = now_ns() - start;
        }
        waitpid(child, NULL, 0);
        report(samples, n);
    } else {
        fprintf(stderr, "unknown experiment %s\n", argv[1]);
        return 2;
    }
    return 0;
}
