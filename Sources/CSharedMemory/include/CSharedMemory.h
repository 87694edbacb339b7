#ifndef CSHAREDMEMORY_H
#define CSHAREDMEMORY_H

// The C shim: only what Swift cannot import from Glibc by itself.
// Functions are prefixed csm_ and are thin: no policy lives here.

#include <stddef.h>
#include <sys/types.h>
#include <sys/xattr.h>  // fsetxattr, fgetxattr, lgetxattr: Glibc's module map leaves them out

/// `mremap(old, old_size, new_size, flags)`: variadic in glibc, so Swift cannot call it.
void *csm_mremap(void *old_address, size_t old_size, size_t new_size, int may_move);

/// `shmctl(id, IPC_INFO, ...)`: the kernel's SysV limits (SHMMAX, SHMMIN, SHMMNI, SHMALL).
/// Returns the highest used index or -1 with errno set.
int csm_shm_limits(unsigned long *shmmax, unsigned long *shmmin, unsigned long *shmmni, unsigned long *shmall);

/// SHMLBA: the alignment a SysV attach address must have (a page on Linux).
int csm_shmlba(void);

#endif
