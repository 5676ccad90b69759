/*
 * replay.c — run a libFuzzer harness without libFuzzer: calls LLVMFuzzerTestOneInput once per
 * file named on the command line. Built with the normal compiler (gcc, and under ASan+UBSan
 * in the sanitizer build) so every regression input in corpus/regression/ is a ctest.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        size_t cap = 1 << 16, n = 0, r;
        uint8_t *buf = malloc(cap);
        while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0)
            if ((n += r) == cap)
                buf = realloc(buf, cap *= 2);
        fclose(f);
        if (!buf)
            return 1;
        /* An exact-size copy, so an overread shows up under ASan as it would in libFuzzer. */
        uint8_t *exact = malloc(n ? n : 1);
        if (!exact)
            return 1;
        for (size_t k = 0; k < n; k++)
            exact[k] = buf[k];
        free(buf);
        LLVMFuzzerTestOneInput(exact, n);
        free(exact);
        printf("ok %s (%zu bytes)\n", argv[i], n);
    }
    return 0;
}
