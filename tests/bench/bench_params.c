/*
 * bench_params.c — the per-packet time of two rules over the same packets, interleaved in
 * small batches in one process and timed in thread CPU time, so that the load of other
 * processes on the machine (which distorts wall-clock rates) cancels out of the ratio.
 *
 * usage: bench_params RULE_A RULE_B SAMPLE_LOG [SECONDS]
 *
 * Used by bench_params.py with RULE_A = rules/default.lua (thresholds from gw.param handles)
 * and RULE_B = the same rule with the thresholds as constants. Prints ns/packet of each
 * (extract + decode + rule + line protocol, sinks disabled) and the ratio A/B.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "extract.h"
#include "rules.h"
#include "util.h"

#define BATCH 2000 /* packets per turn: long enough to time, short enough to interleave */

static int sink_publish(void *ud, const char *topic, const char *payload, size_t len, int qos,
                        bool retain)
{
    (void)ud, (void)topic, (void)payload, (void)len, (void)qos, (void)retain;
    return 0;
}

static int sink_write(void *ud, const char *line, size_t len)
{
    (void)ud, (void)line, (void)len;
    return 0;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct side {
    struct rules *r;
    double cpu;
    unsigned long packets;
};

static char **lines;
static size_t nlines, next_line;

static void run_batch(struct side *s, int64_t now)
{
    char buf[8192], err[512];
    double t0 = cpu_now();
    for (int i = 0; i < BATCH; i++) {
        const char *line = lines[next_line++ % nlines];
        size_t len = strlen(line);
        memcpy(buf, line, len + 1);
        size_t clen = extract_clean(buf, len), off, olen;
        if (extract_object(buf, clen, &off, &olen) != EXTRACT_OK)
            continue;
        struct packet p = {.source = "bench",
                           .line_no = (uint64_t)i + 1,
                           .rx_ns = now + i,
                           .json = buf + off,
                           .json_len = olen};
        if (rules_packet(s->r, &p, err, sizeof err)) {
            fprintf(stderr, "rule error: %s\n", err);
            exit(1);
        }
        s->packets++;
    }
    s->cpu += cpu_now() - t0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s RULE_A RULE_B SAMPLE_LOG [SECONDS]\n", argv[0]);
        return 2;
    }
    double seconds = argc > 4 ? atof(argv[4]) : 4.0;
    FILE *f = fopen(argv[3], "r");
    if (!f) {
        perror(argv[3]);
        return 1;
    }
    size_t cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) > 0) {
        if (line[len - 1] == '\n')
            line[--len] = '\0';
        char tmp[8192];
        size_t off, olen;
        if ((size_t)len >= sizeof tmp)
            continue;
        memcpy(tmp, line, (size_t)len + 1);
        if (extract_object(tmp, extract_clean(tmp, (size_t)len), &off, &olen) != EXTRACT_OK)
            continue; /* telemetry lines only */
        if (nlines == cap) {
            cap = cap ? cap * 2 : 256;
            lines = realloc(lines, cap * sizeof *lines);
        }
        lines[nlines++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (!nlines) {
        fprintf(stderr, "no telemetry lines in %s\n", argv[3]);
        return 1;
    }
    struct side s[2] = {{0}};
    struct rule_sink sink = {.publish = sink_publish, .write = sink_write};
    for (int i = 0; i < 2; i++) {
        struct rules_config cfg = {.path = argv[1 + i], .prefix = "iiot"};
        char err[512];
        if (rules_open(&s[i].r, &cfg, &sink, err, sizeof err)) {
            fprintf(stderr, "rules %s: %s\n", argv[1 + i], err);
            return 1;
        }
    }
    int64_t now = util_now_ns();
    for (int i = 0; i < 2; i++) /* warm-up */
        run_batch(&s[i], now);
    s[0].cpu = s[1].cpu = 0;
    s[0].packets = s[1].packets = 0;
    double end = util_mono() + seconds;
    unsigned turns = 0;
    while (util_mono() < end) {
        /* Alternate which goes first, so neither always gets the warmer cache. */
        int first = (int)(turns & 1);
        run_batch(&s[first], now);
        run_batch(&s[!first], now);
        turns++;
    }
    double a = s[0].cpu / (double)s[0].packets * 1e9, b = s[1].cpu / (double)s[1].packets * 1e9;
    printf("A %s: %.1f ns/packet (%lu packets)\n", argv[1], a, s[0].packets);
    printf("B %s: %.1f ns/packet (%lu packets)\n", argv[2], b, s[1].packets);
    printf("ratio A/B: %.4f (%u interleaved turns of %d packets, thread CPU time)\n", a / b, turns,
           BATCH);
    rules_close(s[0].r);
    rules_close(s[1].r);
    for (size_t i = 0; i < nlines; i++)
        free(lines[i]);
    free(lines);
    return 0;
}
