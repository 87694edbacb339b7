// The C side of `shm bench`: the same loops as the Swift side, written against the system calls directly, so
// every Swift number has a C number measured in the same run beside it. `shm bench` compiles this with the
// system's cc (-O2) at run time.
//
// Each loop makes the same system calls SharedMemory makes for the same operation (exclusive create, exact
// mode with fchmod, the creator record, posix_fallocate, the identity check before unlinking), so a ratio
// measures what Swift and the library add, not what safety costs.
//
//   shmbench lifecycle BACKEND ITERATIONS          -> "median_ns p99_ns"
//   shmbench firsttouch BACKEND MODE BYTES REPEATS -> "median_ns p99_ns" for map + touch every page
//   shmbench placement ROUNDS                      -> "median_ns p99_ns" spin ping-pong round trip between a
//                                                     parent and a forked child: ~0.2 us when the two CPUs
//                                                     share a cache ("near"), ~0.7 us when not ("far")
//
// BACKEND: sysv posix file anonymous memfd. MODE: plain prefault huge.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
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

// Create, map, and (for the first-touch loop) prefault a region as SharedMemory.create does; returns the mapping.
static void *create(const char *backend, const char *name, size_t size, int prefault, int huge, int *fd, int *id) {
    void *p = NULL;
    *fd = -1;
    *id = -1;
    if (!strcmp(backend, "sysv")) {
        *id = shmget(IPC_PRIVATE, size, IPC_CREAT | IPC_EXCL | 0600 | (huge ? SHM_HUGETLB | HUGE_2MB : 0));
        if (*id < 0) die("shmget");
        struct shmid_ds ds;
        if (shmctl(*id, IPC_STAT, &ds) < 0) die("shmctl");
        p = shmat(*id, NULL, 0);
        if (p == (void *)-1) die("shmat");
    } else if (!strcmp(backend, "anonymous")) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | (huge ? MAP_HUGETLB | HUGE_2MB : 0), -1, 0);
        if (p == MAP_FAILED) die("mmap");
    } else {
        if (!strcmp(backend, "posix")) *fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        else if (!strcmp(backend, "file")) *fd = open(name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
        else *fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL | (huge ? MFD_HUGETLB | HUGE_2MB : 0));
        if (*fd < 0) die("open");
        if (fchmod(*fd, 0600) < 0) die("fchmod");
        record_creator(*fd);
        if (ftruncate(*fd, size) < 0) die("ftruncate");
        if (posix_fallocate(*fd, 0, size) != 0) die("posix_fallocate");
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
        if (p == MAP_FAILED) die("mmap");
    }
    if (prefault && madvise(p, size, MADV_POPULATE_WRITE) < 0) die("madvise");
    return p;
}

// Remove and detach as region.remove() and region.detach() do.
static void destroy(const char *backend, const char *name, void *p, size_t size, int fd, int id) {
    if (!strcmp(backend, "sysv")) {
        struct shmid_ds ds;
        if (shmctl(id, IPC_STAT, &ds) < 0 || shmctl(id, IPC_RMID, NULL) < 0) die("shmctl");
        if (shmdt(p) < 0) die("shmdt");
        return;
    }
    if (!strcmp(backend, "posix") || !strcmp(backend, "file")) {
        struct stat ours, named;
        char path[512];
        snprintf(path, sizeof path, "%s%s", !strcmp(backend, "posix") ? "/dev/shm" : "", name);
        if (fstat(fd, &ours) < 0 || lstat(path, &named) < 0) die("stat");
        if (!strcmp(backend, "posix") ? shm_unlink(name) : unlink(name)) die("unlink");
    }
    if (munmap(p, size) < 0) die("munmap");
    if (fd >= 0) close(fd);
}

static const char *region_name(const char *backend, char *buffer, size_t length, int i) {
    if (!strcmp(backend, "file")) snprintf(buffer, length, "/tmp/shmbench-c-%d-%d", getpid(), i);
    else snprintf(buffer, length, "/shmbench-c-%d-%d", getpid(), i);
    return buffer;
}

int main(int argc, char **argv) {
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
