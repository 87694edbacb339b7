#include "CSharedMemory.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/shm.h>

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

int csm_shmlba(void) { return SHMLBA; }
