/* The ring case of Harness in C, through Interop/c/smring.h: a 64-byte send and an in-place receive, in one
 * process, N times, on a posix region of a 64 KiB ring. run.sh counts its instructions beside the Swift ones. */
#include "smring.h"
#include <stdlib.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 0;
    char name[64];
    snprintf(name, sizeof name, "/smharness-c-%d", (int)getpid());
    size_t size = smring_size(1 << 16);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) return 1;
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    shm_unlink(name);
    if (base == MAP_FAILED || smring_format(base, size, 1 << 16) != SMRING_OK) return 1;
    smring sender, receiver;
    if (smring_attach(&sender, base, size, SMRING_SENDER) != SMRING_OK) return 1;
    if (smring_attach(&receiver, base, size, SMRING_RECEIVER) != SMRING_OK) return 1;
    unsigned char message[64];
    memset(message, 7, sizeof message);
    long total = 0;
    for (long i = 0; i < n; i++) {
        if (smring_send(&sender, message, sizeof message, -1) != SMRING_OK) return 1;
        const void *in;
        uint32_t length;
        if (smring_receive(&receiver, &in, &length, -1) != SMRING_OK) return 1;
        total += length;
        smring_release(&receiver);
    }
    smring_finish(&sender);
    return total == 42;
}
