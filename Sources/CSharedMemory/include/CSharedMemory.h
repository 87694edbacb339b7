#ifndef CSHAREDMEMORY_H
#define CSHAREDMEMORY_H

// The C shim: only what Swift cannot import from Glibc by itself (variadic functions, macros, GNU-only calls).
// Functions are prefixed csm_ and are thin: no policy lives here. Each returns what the C call returns and
// leaves errno as the call set it.

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/xattr.h>  // fsetxattr, fgetxattr, lgetxattr: Glibc's module map leaves them out

/// `mremap(old, old_size, new_size, flags)`: variadic in glibc, so Swift cannot call it.
void *csm_mremap(void *old_address, size_t old_size, size_t new_size, int may_move);

/// `shmctl(id, IPC_INFO, ...)`: the kernel's SysV limits (SHMMAX, SHMMIN, SHMMNI, SHMALL).
/// Returns the highest used index or -1 with errno set.
int csm_shm_limits(unsigned long *shmmax, unsigned long *shmmin, unsigned long *shmmni, unsigned long *shmall);

/// `memfd_create(name, flags)`.
int csm_memfd_create(const char *name, unsigned int flags);

/// `fcntl(fd, F_ADD_SEALS, seals)` and `fcntl(fd, F_GET_SEALS)`.
int csm_add_seals(int fd, int seals);
int csm_get_seals(int fd);

/// `fcntl(fd, F_GETFL)`: the access mode and status flags of an open file description.
int csm_get_status_flags(int fd);

/// `openat(dirfd, name, flags, mode)`: variadic in glibc.
int csm_openat(int dirfd, const char *name, int flags, unsigned int mode);

/// `statx(dirfd, path, AT_SYMLINK_NOFOLLOW, STATX_BTIME)` (with an empty path, AT_EMPTY_PATH: `dirfd` itself):
/// the birth time, or 0 seconds where the file system does not record it. Returns 0 or -1 with errno set.
int csm_birth_time(int dirfd, const char *path, int64_t *seconds, uint32_t *nanoseconds);

/// `renameat2(olddirfd, old, newdirfd, new, RENAME_NOREPLACE)`: fails with EEXIST rather than replace `new`.
int csm_rename_noreplace(int olddirfd, const char *old, int newdirfd, const char *new_name);

/// `sendmsg` with one descriptor in an SCM_RIGHTS message and `length` bytes of payload.
ssize_t csm_send_descriptor(int socket, int descriptor, const void *payload, size_t length);

/// `recvmsg` of one message with at most one descriptor (MSG_CMSG_CLOEXEC). `*descriptor` is -1 if none came;
/// `*truncated` is nonzero if the payload or the control data did not fit (extra descriptors are closed).
ssize_t csm_receive_descriptor(int socket, int *descriptor, void *payload, size_t capacity, int *truncated);

/// `futex(addr, FUTEX_WAIT, expected, timeout)` across processes (not FUTEX_PRIVATE): sleeps while `*addr` is
/// `expected`, at most `timeout_ns` (negative: no limit). 0 when woken, -1 with errno EAGAIN (the value had
/// changed), ETIMEDOUT or EINTR.
int csm_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns);

/// `futex(addr, FUTEX_WAKE, count)` across processes: the number of waiters woken.
int csm_futex_wake(uint32_t *addr, int count);

/// One word for `csm_futex_waitv`: its address and the value to sleep on (shared between processes, 32 bits).
struct csm_waited_word {
    uint32_t *address;
    uint32_t expected;
};

/// `futex_waitv(words, count, 0, deadline, CLOCK_MONOTONIC)` (Linux 5.16+): sleeps until any of the `count` words
/// (at most 128) is woken, or `deadline_ns` (absolute, CLOCK_MONOTONIC; negative: none) passes. Returns the index
/// of a woken word, or -1 with errno EAGAIN (a word no longer held its value), ETIMEDOUT, EINTR, or ENOSYS (a
/// kernel without the call).
int csm_futex_waitv(const struct csm_waited_word *words, unsigned int count, int64_t deadline_ns);

/// `kcmp(a, b, KCMP_VM, 0, 0)`: 0 if processes `a` and `b` share one address space (a child between `vfork` and
/// `exec` shares its parent's), 1 or 2 if not, -1 with errno (EPERM for a process this one may not ptrace, ENOSYS).
int csm_same_address_space(int a, int b);

/// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`: sys/eventfd.h is not in Glibc's module map.
int csm_eventfd(void);

/// `pthread_mutex_init` with PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST. Returns an error number.
int csm_mutex_init(void *mutex);

/// `pthread_mutex_clocklock(CLOCK_MONOTONIC)` with a timeout from now. Returns an error number.
int csm_mutex_lock_timeout(void *mutex, int64_t timeout_ns);

/// `pthread_rwlock_init` with PTHREAD_PROCESS_SHARED. Returns an error number.
int csm_rwlock_init(void *rwlock);

/// `pthread_rwlock_clockrdlock` / `clockwrlock(CLOCK_MONOTONIC)` with a timeout from now. Error numbers.
int csm_rwlock_read_timeout(void *rwlock, int64_t timeout_ns);
int csm_rwlock_write_timeout(void *rwlock, int64_t timeout_ns);

/// The sizes and alignments of pthread_mutex_t and pthread_rwlock_t.
size_t csm_mutex_size(void);
size_t csm_rwlock_size(void);

/// The CPUs this process may run on (`sched_getaffinity`), or the online CPUs if that fails.
int csm_allowed_cpus(void);

/// Whether this thread's last adaptive wait found its peer on its own CPU (WaitPolicy.sharesCPU): a word per thread,
/// since each thread waits for its own peer.
int csm_peer_shares_cpu(void);
void csm_set_peer_shares_cpu(int shares);

/// sched_yield(), and whether another thread ran on this CPU meanwhile: 1 if this thread's involuntary context
/// switches (getrusage(RUSAGE_THREAD), ru_nivcsw, which a yield that hands the CPU over counts) moved, else 0.
int csm_yield_switched(void);

/// Moves this thread to another CPU it may run on: sched_setaffinity without the CPU it is on (the kernel migrates it
/// at once), then its own mask again (so nothing it was allowed is taken away). 1 if it moved, 0 if it may run
/// nowhere else, -1 on an error.
int csm_move_off_this_cpu(void);

/// Nanoseconds the kernel takes to run a sleeping thread again on this machine: the median of 11 sleeps of this
/// thread on a futex with a 1 µs timeout (timer slack set to 1 ns meanwhile), past the timeout; measured on the
/// first call, with no other thread (a wait may run in a forked child, where starting one is unsafe), and
/// remembered. -1 if the timer slack could not be set.
int64_t csm_wake_up_cost_ns(void);

/// A hint to the CPU that this is a spin-wait loop (x86 PAUSE, ARM YIELD).
static inline void csm_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// Constants newer than this system's headers (Linux 6.3: MFD_NOEXEC_SEAL, F_SEAL_EXEC).
static const unsigned int CSM_MFD_CLOEXEC = 0x0001U;
static const unsigned int CSM_MFD_ALLOW_SEALING = 0x0002U;
static const unsigned int CSM_MFD_HUGETLB = 0x0004U;
static const unsigned int CSM_MFD_NOEXEC_SEAL = 0x0008U;
static const int CSM_F_SEAL_SEAL = 0x0001;
static const int CSM_F_SEAL_SHRINK = 0x0002;
static const int CSM_F_SEAL_GROW = 0x0004;
static const int CSM_F_SEAL_WRITE = 0x0008;
static const int CSM_F_SEAL_FUTURE_WRITE = 0x0010;
static const int CSM_F_SEAL_EXEC = 0x0020;
static const int CSM_O_PATH = 010000000;
static const int CSM_MADV_POPULATE_READ = 22;
static const int CSM_MADV_POPULATE_WRITE = 23;
/// The log2 of a huge page size goes in bits 26..31 of MAP_*, SHM_* and MFD_* flags (MAP_HUGE_SHIFT).
static const int CSM_HUGE_SHIFT = 26;

#endif
