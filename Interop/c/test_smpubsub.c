/* Reads every publish/subscribe test image in Interop/vectors as Docs/WireFormat.md says a reader does (subscribe
 * asking for the whole history, take the publisher's seat, update, receive everything, publish "end", receive
 * everything) and checks that smpubsub.h makes of it what service-expected.txt says; then that `connections` works
 * (connections_hold).
 * Usage: test_smpubsub VECTORS_DIRECTORY. Exits 0 if every image agrees, 1 otherwise, saying which. */
#include "smpubsub.h"

static int hex_value(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

/* Receives every sample there is now, checking each against the next expected `SEQUENCE:HEX`; a result code. */
static int drain(smps_subscriber *subscriber, const char *name, int *ok) {
    for (;;) {
        const unsigned char *sample;
        uint64_t length, sequence;
        int result = smps_receive(subscriber, (const void **)&sample, &length, &sequence, 0);
        if (result == SMRING_WOULD_BLOCK) return SMRING_OK;
        if (result != SMRING_OK) return result;
        char *want = strtok(NULL, " \n");
        if (!want) { *ok = 0; fprintf(stderr, "%s: sample %llu was not expected\n", name, (unsigned long long)sequence); }
        else {
            char *bytes = strchr(want, ':');
            if (!bytes || strtoull(want, NULL, 10) != sequence || strlen(bytes + 1) != 2 * length) {
                *ok = 0;
                fprintf(stderr, "%s: sample %llu of %llu bytes, expected %s\n", name, (unsigned long long)sequence, (unsigned long long)length, want);
            }
            for (uint64_t i = 0; *ok && i < length; i++)
                if (sample[i] != hex_value(bytes[1 + 2 * i]) * 16 + hex_value(bytes[2 + 2 * i])) {
                    *ok = 0;
                    fprintf(stderr, "%s: sample %llu differs at byte %llu\n", name, (unsigned long long)sequence, (unsigned long long)i);
                }
        }
        smps_release(subscriber);
    }
}

static int read_image(unsigned char *region, uint64_t size, const char *name, int *ok) {
    smps_service service;
    int result = smps_attach(&service, region, size);
    if (result != SMRING_OK) return result;
    smps_subscriber subscriber;
    smps_publisher publisher;
    uint64_t sequence;
    if ((result = smps_subscribe(&subscriber, region, size, 0, SMPS_OVERWRITE_OLDEST, service.layout.history)) != SMRING_OK) return result;
    if ((result = smps_publisher_attach(&publisher, region, size, 0)) != SMRING_OK) return result;
    if ((result = smps_update(&publisher)) != SMRING_OK) return result;
    if ((result = drain(&subscriber, name, ok)) != SMRING_OK) return result;
    if ((result = smps_publish_copy(&publisher, "end", 3, &sequence)) != SMRING_OK) return result;
    return drain(&subscriber, name, ok);
}

/* Format 3's `connections` (Docs/WireFormat.md): a subscriber that connects after the publisher's first publish gets
 * the next sample, and one that takes a slot another left is queued to by its own depth, not by what the publisher
 * saw of the one before. 1 if all holds. */
static int connections_hold(void) {
    uint64_t size = smps_size(64, 1, 8, 0), sequence;
    unsigned char *region = aligned_alloc(64, (size + 63) / 64 * 64);
    memset(region, 0, size);
    smps_publisher publisher;
    smps_subscriber subscriber;
    int ok = smps_format(region, size, 64, 1, 8, 0) == SMRING_OK && smps_publisher_attach(&publisher, region, size, 0) == SMRING_OK
        && smps_publish_copy(&publisher, "1", 1, &sequence) == SMRING_OK;  /* no one subscribed yet */
    ok = ok && smps_subscribe(&subscriber, region, size, 8, SMPS_OVERWRITE_OLDEST, 0) == SMRING_OK;
    for (int i = 2; ok && i <= 9; i++) ok = smps_publish_copy(&publisher, "n", 1, &sequence) == SMRING_OK;
    for (uint64_t want = 2; ok && want <= 9; want++) {
        const void *sample;
        uint64_t length;
        ok = smps_receive(&subscriber, &sample, &length, &sequence, 0) == SMRING_OK && sequence == want;
        smps_release(&subscriber);
    }
    if (ok) smps_close(&subscriber);
    ok = ok && smps_subscribe(&subscriber, region, size, 2, SMPS_OVERWRITE_OLDEST, 0) == SMRING_OK;
    for (int i = 10; ok && i <= 12; i++) ok = smps_publish_copy(&publisher, "n", 1, &sequence) == SMRING_OK;
    ok = ok && smps_lost(&subscriber) == 1;
    for (uint64_t want = 11; ok && want <= 12; want++) {
        const void *sample;
        uint64_t length;
        ok = smps_receive(&subscriber, &sample, &length, &sequence, 0) == SMRING_OK && sequence == want;
        smps_release(&subscriber);
    }
    const void *sample;
    uint64_t length;
    ok = ok && smps_receive(&subscriber, &sample, &length, &sequence, 0) == SMRING_WOULD_BLOCK;
    free(region);
    if (!ok) fprintf(stderr, "connections: a subscriber connecting after a publish, or in a slot another left, was not served as it should\n");
    return ok;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: test_smpubsub VECTORS_DIRECTORY\n"); return 2; }
    char path[4096], line[16384];
    snprintf(path, sizeof path, "%s/service-expected.txt", argv[1]);
    FILE *expected = fopen(path, "r");
    if (!expected) { perror(path); return 2; }
    int failures = 0, cases = 0;
    while (fgets(line, sizeof line, expected)) {
        char *name = strtok(line, " \n"), *verdict = strtok(NULL, " \n");
        if (!name || !verdict) continue;
        cases++;
        snprintf(path, sizeof path, "%s/%s.pubsub", argv[1], name);
        FILE *f = fopen(path, "rb");
        if (!f) { perror(path); return 2; }
        unsigned char *region = aligned_alloc(64, 1 << 16);
        uint64_t size = fread(region, 1, 1 << 16, f);
        fclose(f);
        int ok = 1;
        int result = read_image(region, size, name, &ok);
        const char *outcome = result == SMRING_OK ? "ok" : result == SMRING_FOREIGN ? "foreign" : smps_error(result);
        if (strcmp(outcome, verdict) != 0) { ok = 0; fprintf(stderr, "%s: %s, expected %s\n", name, outcome, verdict); }
        if (strcmp(verdict, "foreign") != 0 && strtok(NULL, " \n")) { ok = 0; fprintf(stderr, "%s: fewer samples than expected\n", name); }
        failures += !ok;
        free(region);
    }
    fclose(expected);
    failures += !connections_hold();
    printf("%d images, %d disagree (and the connections check)\n", cases, failures);
    return failures ? 1 : 0;
}
