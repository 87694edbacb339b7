/* One side of a ring in a POSIX shared-memory object, for the cross-language tests: it streams, or receives and
 * checks, the interop pattern (message i has sizes[i % 8] bytes, at most the ring's largest message, rounded down
 * to 8; byte j of it is (i + j) % 251).
 *
 *   smring_peer send /NAME BYTES    sends messages until BYTES bytes are sent, finishes, prints "COUNT BYTES"
 *   smring_peer receive /NAME       receives until the stream ends, checks every byte, prints "COUNT BYTES",
 *                                   or "bad message I", or "peerDied COUNT" (exit 3) if the sender died
 * The ring is at offset 0 of the object and must be formatted already. */
#include "smring.h"
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>

static const uint32_t sizes[8] = { 0, 8, 24, 104, 4096, 65536, 784, 16 };

static uint32_t message_size(uint64_t index, uint32_t limit) {
    uint32_t size = sizes[index % 8];
    return (size < limit ? size : limit) & ~7u;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: smring_peer send|receive /NAME [BYTES]\n"); return 2; }
    int sending = strcmp(argv[1], "send") == 0;
    int fd = shm_open(argv[2], O_RDWR, 0);
    struct stat status;
    if (fd < 0 || fstat(fd, &status) != 0) { perror(argv[2]); return 2; }
    void *base = mmap(NULL, (size_t)status.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 2; }
    smring ring;
    int result = smring_attach(&ring, base, (uint64_t)status.st_size, sending ? SMRING_SENDER : SMRING_RECEIVER);
    if (result != SMRING_OK) { printf("error %s\n", smring_error(result)); return 1; }
    uint32_t limit = smring_maximum_message(ring.capacity);
    uint64_t index = 0, bytes = 0;
    if (sending) {
        uint64_t total = strtoull(argv[3], NULL, 10);
        while (bytes < total) {
            uint32_t size = message_size(index, limit);
            void *slot;
            if ((result = smring_reserve(&ring, size, -1, &slot)) != SMRING_OK) { printf("error %s\n", smring_error(result)); return 1; }
            for (uint32_t j = 0; j < size; j++) ((unsigned char *)slot)[j] = (unsigned char)((index + j) % 251);
            smring_publish(&ring, size);
            bytes += size;
            index++;
        }
        smring_close(&ring);
    } else {
        const void *message;
        uint32_t length;
        while ((result = smring_receive(&ring, &message, &length, -1)) == SMRING_OK) {
            int good = length == message_size(index, limit);
            for (uint32_t j = 0; good && j < length; j++) good = ((const unsigned char *)message)[j] == (index + j) % 251;
            if (!good) { printf("bad message %llu\n", (unsigned long long)index); return 1; }
            smring_release(&ring);
            bytes += length;
            index++;
        }
        if (result == SMRING_PEER_DIED) { printf("peerDied %llu\n", (unsigned long long)index); return 3; }
        if (result != SMRING_FINISHED) { printf("error %s\n", smring_error(result)); return 1; }
        smring_close(&ring);
    }
    printf("%llu %llu\n", (unsigned long long)index, (unsigned long long)bytes);
    return 0;
}
