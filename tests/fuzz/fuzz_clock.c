/*
 * fuzz_clock.c — libFuzzer harness for the replay clock's readers (src/clock.c).
 *
 * On an arbitrary line: clock_field_ns() for a top-level and a dotted path, and
 * clock_log_stamp_ns(), each on an exact-size heap copy so ASan sees any overread; every time
 * they return must be in [0, CLOCK_MAX_NS). clock_parse_time() runs on a NUL-terminated copy
 * and must return a time in [0, CLOCK_MAX_NS]. The readings then go through a clock_track,
 * which must never go back and never pass CLOCK_MAX_NS (UBSan catches an overflow).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

static void fc_check(int rc, int64_t v)
{
    if (rc == 0 && (v < 0 || v >= CLOCK_MAX_NS))
        abort();
    if (rc != 0 && rc != -ENOENT && rc != -EINVAL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size ? size : 1);
    char *text = malloc(size + 1);
    if (!line || !text)
        abort();
    memcpy(line, data, size);
    memcpy(text, data, size);
    text[size] = '\0';

    static const char *const paths[] = {"ts", "n1.t", "a.b.c"};
    static const int64_t units[] = {1, 1000, 1000000, 1000000000};
    int64_t readings[8];
    size_t n = 0;
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        int64_t v = -1;
        int rc = clock_field_ns(line, size, paths[i], units[(size + i) % 4], &v);
        fc_check(rc, v);
        if (rc == 0)
            readings[n++] = v;
    }
    int64_t v = -1;
    int rc = clock_log_stamp_ns(line, size, &v);
    if (rc != 0 && rc != -ENOENT)
        abort();
    fc_check(rc, v);
    if (rc == 0)
        readings[n++] = v;

    int64_t start = 0;
    if (clock_parse_time(text, &start) == 0 && (start < 0 || start > CLOCK_MAX_NS))
        abort();

    struct clock_track t = {.tolerance_ns = (int64_t)(size % 3) * 1000000000};
    int64_t last = -1;
    for (size_t round = 0; round < 2; round++)
        for (size_t i = 0; i < n; i++) {
            int64_t m = clock_track_map(&t, start, readings[(i + round) % n]);
            if (m < last || m > CLOCK_MAX_NS)
                abort();
            last = m;
        }
    free(text);
    free(line);
    return 0;
}
