/* One side of a publish/subscribe service in a POSIX shared-memory object, for the cross-language tests. Samples
 * follow the tests' pattern (Tests/RegionProbe/PubSub.swift): sample s has min(largest, [8, 64, 1000, largest][s % 4])
 * bytes; its first 8 are s (little-endian), byte j after them is (s % 251 + j) % 251.
 *
 *   smpubsub_peer publish /NAME COUNT       takes the publisher's seat, prints "ok publishing", publishes COUNT
 *                                           samples (0: until killed), finishes, prints "ok COUNT"
 *   smpubsub_peer subscribe /NAME COUNT [block]
 *                                           connects (with `block`, the publisher waits for room in its queue),
 *                                           prints "ok connected", receives COUNT samples (0: until the stream
 *                                           ends) checking each, prints "ok RECEIVED LOST", or "bad sample S", or
 *                                           "peerDied RECEIVED" (exit 3) if the publisher died
 * The service is at offset 0 of the object; both wait up to 5 s for it to be formatted. */
#include "smpubsub.h"
#include <sys/mman.h>
#include <sys/stat.h>

static uint64_t sample_size(uint64_t sequence, uint64_t limit) {
    uint64_t sizes[4] = { 8, 64, 1000, limit };
    uint64_t size = sizes[sequence % 4];
    return size < limit ? size : limit;
}

static unsigned char sample_byte(uint64_t sequence, uint64_t j) {
    return j < 8 ? (unsigned char)(sequence >> (8 * j)) : (unsigned char)((sequence % 251 + j) % 251);
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: smpubsub_peer publish|subscribe /NAME COUNT [block]\n"); return 2; }
    int fd = shm_open(argv[2], O_RDWR, 0);
    struct stat status;
    if (fd < 0 || fstat(fd, &status) != 0) { perror(argv[2]); return 2; }
    void *base = mmap(NULL, (size_t)status.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 2; }
    uint64_t count = strtoull(argv[3], NULL, 10), done = 0;
    smps_service service;
    int result = smps_attach_waiting(&service, base, (uint64_t)status.st_size, 5000000000);
    if (result != SMRING_OK) { printf("error %s\n", smps_error(result)); return 1; }
    if (strcmp(argv[1], "publish") == 0) {
        smps_publisher publisher;
        if ((result = smps_publisher_attach(&publisher, base, (uint64_t)status.st_size, 10000000000)) != SMRING_OK) {
            printf("error %s\n", smps_error(result));
            return 1;
        }
        printf("ok publishing\n");
        fflush(stdout);
        uint64_t limit = publisher.service.layout.max_payload;
        while (count == 0 || done < count) {
            uint64_t next = smps_last_sequence(&publisher) + 1, size = sample_size(next, limit), sequence;
            unsigned char *chunk;
            if ((result = smps_loan(&publisher, (void **)&chunk)) != SMRING_OK) { printf("error %s\n", smps_error(result)); return 1; }
            for (uint64_t j = 0; j < size; j++) chunk[j] = sample_byte(next, j);
            if ((result = smps_publish(&publisher, size, &sequence)) != SMRING_OK) { printf("error %s\n", smps_error(result)); return 1; }
            if (sequence != next) { printf("published %llu, expected %llu\n", (unsigned long long)sequence, (unsigned long long)next); return 1; }
            done++;
        }
        smps_finish(&publisher);
    } else {
        smps_subscriber subscriber;
        uint32_t overflow = argc > 4 && strcmp(argv[4], "block") == 0 ? SMPS_BLOCK_PUBLISHER : SMPS_OVERWRITE_OLDEST;
        if ((result = smps_subscribe(&subscriber, base, (uint64_t)status.st_size, 0, overflow, 0)) != SMRING_OK) {
            printf("error %s\n", smps_error(result));
            return 1;
        }
        printf("ok connected\n");
        fflush(stdout);
        uint64_t limit = subscriber.service.layout.max_payload;
        const unsigned char *sample;
        uint64_t length, sequence;
        while (count == 0 || done < count) {
            result = smps_receive(&subscriber, (const void **)&sample, &length, &sequence, -1);
            if (result != SMRING_OK) break;
            int good = length == sample_size(sequence, limit);
            for (uint64_t j = 0; good && j < length; j++) good = sample[j] == sample_byte(sequence, j);
            if (!good) { printf("bad sample %llu\n", (unsigned long long)sequence); return 1; }
            smps_release(&subscriber);
            done++;
        }
        if (result == SMRING_PEER_DIED) { printf("peerDied %llu\n", (unsigned long long)done); return 3; }
        if (result != SMRING_OK && result != SMRING_FINISHED) { printf("error %s\n", smps_error(result)); return 1; }
        printf("ok %llu %llu\n", (unsigned long long)done, (unsigned long long)smps_lost(&subscriber));
        smps_close(&subscriber);
        return 0;
    }
    printf("ok %llu\n", (unsigned long long)done);
    return 0;
}
