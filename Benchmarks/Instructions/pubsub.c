/* The pubsub case of Harness in C, through Interop/c/smpubsub.h: a 64-byte publish (copied in) and an in-place
 * receive, one publisher and one subscriber in one process, N times, on a posix region holding a service of 64-byte
 * samples with one subscriber and queues of 8. run.sh counts its instructions beside the Swift ones. */
#include "smpubsub.h"
#include <sys/mman.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 0;
    char name[64];
    snprintf(name, sizeof name, "/smharness-c-%d", (int)getpid());
    uint64_t size = smps_size(64, 1, 8, 0);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0) return 1;
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    shm_unlink(name);
    if (base == MAP_FAILED || smps_format(base, size, 64, 1, 8, 0) != SMRING_OK) return 1;
    smps_subscriber subscriber;
    smps_publisher publisher;
    if (smps_subscribe(&subscriber, base, size, 0, SMPS_OVERWRITE_OLDEST, 0) != SMRING_OK) return 1;
    if (smps_publisher_attach(&publisher, base, size, 1000000000) != SMRING_OK) return 1;
    unsigned char message[64];
    memset(message, 7, sizeof message);
    uint64_t total = 0, sequence, length;
    for (long i = 0; i < n; i++) {
        if (smps_publish_copy(&publisher, message, sizeof message, &sequence) != SMRING_OK) return 1;
        const void *in;
        if (smps_receive(&subscriber, &in, &length, &sequence, -1) != SMRING_OK) return 1;
        total += length;
        smps_release(&subscriber);
    }
    smps_close(&subscriber);
    smps_finish(&publisher);
    return total == 42;
}
