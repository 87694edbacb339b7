#include "CSharedMemory.h"

#include <errno.h>
#include <linux/futex.h>
#include <linux/kcmp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <unistd.h>

void *csm_mremap(void *old_address, size_t old_size, size_t new_size, int may_move) {
    return mremap(old_address, old_size, new_size, may_move ? MREMAP_MAYMOVE : 0);
}

int csm_shm_limits(unsigned long *shmmax, unsigned long *shmmin, unsigned long *shmmni, unsigned long *shmall) {
    struct shminfo info;
    int result = shmctl(0, IPC_INFO, (struct shmid_ds *)&info);
    if (result < 0) return -1;
    *shmmax = info.shmmax;
    *shmmin = info.shmmin;
    *shmmni = info.shmmni;
    *shmall = info.shmall;
    return result;
}

int csm_memfd_create(const char *name, unsigned int flags) { return memfd_create(name, flags); }

int csm_openat(int dirfd, const char *name, int flags, unsigned int mode) { return openat(dirfd, name, flags, (mode_t)mode); }

int csm_birth_time(int dirfd, const char *path, int64_t *seconds, uint32_t *nanoseconds) {
    struct statx st;
    int flags = AT_SYMLINK_NOFOLLOW | (path[0] == 0 ? AT_EMPTY_PATH : 0);
    if (statx(dirfd, path, flags, STATX_BTIME, &st) < 0) return -1;
    *seconds = (st.stx_mask & STATX_BTIME) ? st.stx_btime.tv_sec : 0;
    *nanoseconds = (st.stx_mask & STATX_BTIME) ? st.stx_btime.tv_nsec : 0;
    return 0;
}

int csm_rename_noreplace(int olddirfd, const char *old, int newdirfd, const char *new_name) {
    return renameat2(olddirfd, old, newdirfd, new_name, RENAME_NOREPLACE);
}

int csm_add_seals(int fd, int seals) { return fcntl(fd, F_ADD_SEALS, seals); }

int csm_get_seals(int fd) { return fcntl(fd, F_GET_SEALS); }

int csm_get_status_flags(int fd) { return fcntl(fd, F_GETFL); }

ssize_t csm_send_descriptor(int socket, int descriptor, const void *payload, size_t length) {
    union { char buffer[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = { .iov_base = (void *)payload, .iov_len = length };
    struct msghdr message = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer, .msg_controllen = sizeof control.buffer,
    };
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &descriptor, sizeof(int));
    return sendmsg(socket, &message, MSG_NOSIGNAL);
}

ssize_t csm_receive_descriptor(int socket, int *descriptor, void *payload, size_t capacity, int *truncated) {
    // Room for several descriptors, so that a peer sending more than one is noticed and none of them leaks.
    union { char buffer[CMSG_SPACE(sizeof(int) * 8)]; struct cmsghdr align; } control;
    struct iovec iov = { .iov_base = payload, .iov_len = capacity };
    struct msghdr message = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer, .msg_controllen = sizeof control.buffer,
    };
    *descriptor = -1;
    *truncated = 0;
    ssize_t received = recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
    if (received < 0) return received;
    int count = 0;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
            if (count++ == 0) *descriptor = fd; else close(fd);
        }
    }
    if (count > 1 || (message.msg_flags & (MSG_CTRUNC | MSG_TRUNC))) *truncated = 1;
    return received;
}

int csm_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns) {
    struct timespec timeout = { .tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000 };
    return (int)syscall(SYS_futex, addr, FUTEX_WAIT, expected, timeout_ns < 0 ? NULL : &timeout, NULL, 0);
}

int csm_futex_wake(uint32_t *addr, int count) {
    return (int)syscall(SYS_futex, addr, FUTEX_WAKE, count, NULL, NULL, 0);
}

int csm_futex_waitv(const struct csm_waited_word *words, unsigned int count, int64_t deadline_ns) {
#ifdef SYS_futex_waitv
    // The kernel's struct futex_waitv, declared here so that older headers build too.
    struct { uint64_t val; uint64_t uaddr; uint32_t flags; uint32_t reserved; } vector[128];
    if (count > 128) { errno = EINVAL; return -1; }
    for (unsigned int i = 0; i < count; i++) {
        vector[i].val = words[i].expected;
        vector[i].uaddr = (uint64_t)(uintptr_t)words[i].address;
        vector[i].flags = 0x02;  // FUTEX2_SIZE_U32, not FUTEX2_PRIVATE: shared between processes
        vector[i].reserved = 0;
    }
    struct timespec deadline = { .tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000 };
    return (int)syscall(SYS_futex_waitv, vector, count, 0, deadline_ns < 0 ? NULL : &deadline, CLOCK_MONOTONIC);
#else
    (void)words; (void)count; (void)deadline_ns;
    errno = ENOSYS;
    return -1;
#endif
}

int csm_same_address_space(int a, int b) {
#ifdef SYS_kcmp
    return (int)syscall(SYS_kcmp, a, b, KCMP_VM, 0, 0);
#else
    (void)a; (void)b;
    errno = ENOSYS;
    return -1;
#endif
}

int csm_eventfd(void) {
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

int csm_mutex_init(void *mutex) {
    pthread_mutexattr_t attributes;
    int error = pthread_mutexattr_init(&attributes);
    if (!error) error = pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    if (!error) error = pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    if (!error) error = pthread_mutex_init((pthread_mutex_t *)mutex, &attributes);
    pthread_mutexattr_destroy(&attributes);
    return error;
}

static struct timespec deadline(int64_t timeout_ns) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t total = now.tv_nsec + timeout_ns % 1000000000;
    now.tv_sec += timeout_ns / 1000000000 + total / 1000000000;
    now.tv_nsec = total % 1000000000;
    return now;
}

int csm_mutex_lock_timeout(void *mutex, int64_t timeout_ns) {
    struct timespec until = deadline(timeout_ns);
    return pthread_mutex_clocklock((pthread_mutex_t *)mutex, CLOCK_MONOTONIC, &until);
}

int csm_rwlock_init(void *rwlock) {
    pthread_rwlockattr_t attributes;
    int error = pthread_rwlockattr_init(&attributes);
    if (!error) error = pthread_rwlockattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    if (!error) error = pthread_rwlock_init((pthread_rwlock_t *)rwlock, &attributes);
    pthread_rwlockattr_destroy(&attributes);
    return error;
}

int csm_rwlock_read_timeout(void *rwlock, int64_t timeout_ns) {
    struct timespec until = deadline(timeout_ns);
    return pthread_rwlock_clockrdlock((pthread_rwlock_t *)rwlock, CLOCK_MONOTONIC, &until);
}

int csm_rwlock_write_timeout(void *rwlock, int64_t timeout_ns) {
    struct timespec until = deadline(timeout_ns);
    return pthread_rwlock_clockwrlock((pthread_rwlock_t *)rwlock, CLOCK_MONOTONIC, &until);
}

size_t csm_mutex_size(void) { return sizeof(pthread_mutex_t); }
size_t csm_rwlock_size(void) { return sizeof(pthread_rwlock_t); }

int csm_allowed_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
    return (int)sysconf(_SC_NPROCESSORS_ONLN);
}

static __thread int peer_shares_cpu;
int csm_peer_shares_cpu(void) { return peer_shares_cpu; }
void csm_set_peer_shares_cpu(int shares) { peer_shares_cpu = shares; }

int csm_yield_switched(void) {
    struct rusage before, after;
    if (getrusage(RUSAGE_THREAD, &before) != 0) { sched_yield(); return 0; }
    sched_yield();
    if (getrusage(RUSAGE_THREAD, &after) != 0) return 0;
    return after.ru_nivcsw != before.ru_nivcsw;
}

int csm_move_off_this_cpu(void) {
    cpu_set_t allowed, others;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return -1;
    int cpu = sched_getcpu();
    if (cpu < 0 || cpu >= CPU_SETSIZE) return -1;
    others = allowed;
    CPU_CLR(cpu, &others);
    if (CPU_COUNT(&others) == 0) return 0;
    if (sched_setaffinity(0, sizeof others, &others) != 0) return -1;
    return sched_setaffinity(0, sizeof allowed, &allowed) == 0 ? 1 : -1;
}

// The wake-up measurement, with no second thread: a library wait runs in forked children of multithreaded
// processes, where starting a thread is unsafe (and fatal under ThreadSanitizer), so this thread sleeps on a futex
// nobody wakes, with a 1 µs timeout, and measures how long past the timeout it runs again: the kernel's cost to
// wake a sleeping thread here (a timer's interrupt instead of a peer's FUTEX_WAKE; on a VM both leave an idle vCPU's
// halt). Timer slack (50 µs by default) would be measured instead: it is set to 1 ns for the measurement and put
// back.
#include <sys/prctl.h>

static int64_t csm_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static int compare_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

enum { csm_wake_up_rounds = 11 };

static int64_t csm_measure_wake_up(void) {
    int slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    if (slack < 0 || prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0) != 0) return -1;
    uint32_t word = 0;
    int64_t costs[csm_wake_up_rounds];
    for (int round = 0; round < csm_wake_up_rounds; round++) {
        struct timespec timeout = { .tv_sec = 0, .tv_nsec = 1000 };
        int64_t started = csm_now_ns();
        syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &timeout, NULL, 0);
        costs[round] = csm_now_ns() - started - 1000;
    }
    prctl(PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);
    qsort(costs, csm_wake_up_rounds, sizeof costs[0], compare_int64);
    return costs[csm_wake_up_rounds / 2] > 0 ? costs[csm_wake_up_rounds / 2] : 1;
}

int64_t csm_wake_up_cost_ns(void) {
    // 0: not measured yet. Two first callers may both measure; either answer is right.
    static _Atomic int64_t cost = 0;
    int64_t known = atomic_load_explicit(&cost, memory_order_relaxed);
    if (known != 0) return known;
    int64_t measured = csm_measure_wake_up();
    atomic_store_explicit(&cost, measured, memory_order_relaxed);
    return measured;
}
