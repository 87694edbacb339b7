/* Reads every test image in Interop/vectors and checks that smring.h makes of it what expected.txt says.
 * Usage: test_smring VECTORS_DIRECTORY. Exits 0 if every image agrees, 1 otherwise, saying which. */
#include "smring.h"
#include <stdlib.h>

static int hex_value(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: test_smring VECTORS_DIRECTORY\n"); return 2; }
    char path[4096], line[16384];
    snprintf(path, sizeof path, "%s/expected.txt", argv[1]);
    FILE *expected = fopen(path, "r");
    if (!expected) { perror(path); return 2; }
    int failures = 0, cases = 0;
    while (fgets(line, sizeof line, expected)) {
        char *name = strtok(line, " \n"), *verdict = strtok(NULL, " \n");
        if (!name || !verdict) continue;
        cases++;
        snprintf(path, sizeof path, "%s/%s.ring", argv[1], name);
        FILE *f = fopen(path, "rb");
        if (!f) { perror(path); return 2; }
        unsigned char *region = aligned_alloc(64, 8192);
        size_t size = fread(region, 1, 8192, f);
        fclose(f);
        smring ring;
        int result = smring_attach(&ring, region, size, SMRING_RECEIVER);
        int index = 0, ok = 1;
        const char *outcome = "?";
        while (result == SMRING_OK) {
            const void *message;
            uint32_t length;
            result = smring_receive(&ring, &message, &length, 0);
            if (result != SMRING_OK) break;
            char *want = strtok(NULL, " \n");
            if (!want) { ok = 0; fprintf(stderr, "%s: message %d was not expected\n", name, index); break; }
            size_t want_length = strcmp(want, "-") == 0 ? 0 : strlen(want) / 2;
            if (want_length != length) { ok = 0; fprintf(stderr, "%s: message %d has %u bytes, not %zu\n", name, index, length, want_length); }
            for (size_t i = 0; ok && i < length; i++)
                if (((const unsigned char *)message)[i] != hex_value(want[2 * i]) * 16 + hex_value(want[2 * i + 1])) {
                    ok = 0;
                    fprintf(stderr, "%s: message %d differs at byte %zu\n", name, index, i);
                }
            smring_release(&ring);
            index++;
        }
        if (result == SMRING_FINISHED) outcome = "finished";
        else if (result == SMRING_WOULD_BLOCK) outcome = "open";
        else if (result == SMRING_FOREIGN) outcome = "foreign";
        if (strcmp(outcome, verdict) != 0) { ok = 0; fprintf(stderr, "%s: %s, expected %s\n", name, outcome, verdict); }
        if (strcmp(verdict, "foreign") != 0 && strtok(NULL, " \n")) { ok = 0; fprintf(stderr, "%s: fewer messages than expected\n", name); }
        failures += !ok;
        free(region);
    }
    fclose(expected);
    printf("%d images, %d disagree\n", cases, failures);
    return failures ? 1 : 0;
}
