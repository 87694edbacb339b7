/* The ring cases of Harness in C, through Interop/c/smring.h, in one process, N times, on a posix region of a
 * 64 KiB ring: `ring.c N` a 64-byte send and an in-place receive (Harness's ring); `ring.c N copy` the receive
 * copied into a buffer (ring-copy); `ring.c N zero` the message written in place (smring_reserve, eight 8-byte
 * words, smring_publish) and its last word read in place (Harness's ring-span and ring-unsafe). run.sh counts
 * their instructions beside the Swift ones, built by gcc and by clang at -O2 (the header's functions inlined). */
#include "smring.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 0;
    const char *mode = argc > 2 ? argv[2] : "send";
    int copy = strcmp(mode, "copy") == 0, zero = strcmp(mode, "zero") == 0;
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
    unsigned char buffer[64];
    for (long i = 0; i < n; i++) {
        if (zero) {
            void *slot;
            if (smring_reserve(&sender, 64, -1, &slot) != SMRING_OK) return 1;
            for (int word = 0; word < 8; word++) { uint64_t value = (uint64_t)i; memcpy((char *)slot + word * 8, &value, 8); }
            if (smring_publish(&sender, 64) != SMRING_OK) return 1;
        } else if (smring_send(&sender, message, sizeof message, -1) != SMRING_OK) {
            return 1;
        }
        uint32_t length;
        if (copy) {
            if (smring_receive_copy(&receiver, buffer, sizeof buffer, &length, -1) != SMRING_OK) return 1;
            /* The copy is the operation counted: without this, the compiler sees a buffer nobody reads and drops the
             * memcpy (it did, at -O2, both compilers: "copy" then cost less than the in-place receive). An empty asm
             * that may read the buffer keeps it, for no instruction. */
            __asm__ volatile("" : : "r"(buffer) : "memory");
            total += length;
            continue;
        }
        const void *in;
        if (smring_receive(&receiver, &in, &length, -1) != SMRING_OK) return 1;
        if (zero) { uint64_t last; memcpy(&last, (const char *)in + 56, 8); total += (long)last; } else { total += length; }
        smring_release(&receiver);
    }
    smring_finish(&sender);
    return total == 42;
}
