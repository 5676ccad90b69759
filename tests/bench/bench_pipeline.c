/*
 * bench_pipeline.c — packets/s through extraction + JSON decode + default rule + line-protocol
 * encoding with the sinks disabled, against a bare cJSON_Parse loop over the same packets,
 * measured in the same run (target: >= 200k packets/s on one core and >= 0.4x cJSON).
 *
 * usage: bench_pipeline RULE SAMPLE_LOG [SECONDS]
 *
 * The pipeline input is the real-shaped RTT session (log prefixes, ANSI colours, suffixes);
 * only its telemetry lines are timed (the text lines would flatter the rate). The reference
 * parses exactly the objects the extractor finds in those lines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "extract.h"
#include "rules.h"
#include "util.h"

struct counts {
    unsigned long publishes, points, bytes;
};

static int sink_publish(void *ud, const char *topic, const char *payload, size_t len, int qos,
                        bool retain)
{
    struct counts *c = ud;
    (void)topic, (void)payload, (void)qos, (void)retain;
    c->publishes++;
    c->bytes += len;
    return 0;
}

static int sink_write(void *ud, const char *line, size_t len)
{
    struct counts *c = ud;
    (void)line;
    c->points++;
    c->bytes += len;
    return 0;
}

static char **read_lines(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(1);
    }
    char **v = NULL;
    size_t cap = 0;
    *n = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) > 0) {
        if (line[len - 1] == '\n')
            line[--len] = '\0';
        size_t off, olen;
        char tmp[8192];
        if ((size_t)len >= sizeof tmp)
            continue;
        memcpy(tmp, line, (size_t)len);
        size_t clen = extract_clean(tmp, (size_t)len);
        if (extract_object(tmp, clen, &off, &olen) != EXTRACT_OK)
            continue; /* time telemetry lines only */
        if (*n == cap) {
            cap = cap ? cap * 2 : 256;
            v = realloc(v, cap * sizeof *v);
        }
        v[(*n)++] = strdup(line);
    }
    free(line);
    fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s RULE SAMPLE_LOG [SECONDS]\n", argv[0]);
        return 2;
    }
    double seconds = argc > 3 ? atof(argv[3]) : 2.0;
    size_t n;
    char **lines = read_lines(argv[2], &n);
    if (!n) {
        fprintf(stderr, "no telemetry lines in %s\n", argv[2]);
        return 1;
    }
    size_t *lens = malloc(n * sizeof *lens);
    char **objs = malloc(n * sizeof *objs);
    for (size_t i = 0; i < n; i++) {
        lens[i] = strlen(lines[i]);
        char *tmp = strdup(lines[i]);
        size_t off, olen, clen = extract_clean(tmp, lens[i]);
        extract_object(tmp, clen, &off, &olen);
        objs[i] = strndup(tmp + off, olen);
        free(tmp);
    }

    /* --- reference: bare cJSON parse loop ------------------------------------------------ */
    unsigned long ref_iter = 0;
    double t0 = util_mono(), t1;
    do {
        for (size_t i = 0; i < n; i++) {
            cJSON *j = cJSON_Parse(objs[i]);
            if (!j) {
                fprintf(stderr, "cJSON failed on %s\n", objs[i]);
                return 1;
            }
            cJSON_Delete(j);
        }
        ref_iter += n;
        t1 = util_mono();
    } while (t1 - t0 < seconds);
    double ref_rate = (double)ref_iter / (t1 - t0);

    /* --- the pipeline ---------------------------------------------------------------------- */
    struct counts c = {0};
    struct rule_sink sink = {.ud = &c, .publish = sink_publish, .write = sink_write};
    struct rules_config rcfg = {.path = argv[1], .prefix = "iiot"};
    struct rules *r;
    char err[512];
    if (rules_open(&r, &rcfg, &sink, err, sizeof err)) {
        fprintf(stderr, "rules: %s\n", err);
        return 1;
    }
    char buf[8192];
    unsigned long iter = 0;
    int64_t now = util_now_ns();
    t0 = util_mono();
    do {
        for (size_t i = 0; i < n; i++) {
            memcpy(buf, lines[i], lens[i] + 1);
            size_t clen = extract_clean(buf, lens[i]);
            size_t off, olen;
            if (extract_object(buf, clen, &off, &olen) != EXTRACT_OK)
                return 1;
            struct packet p = {.source = "bench",
                               .line_no = i + 1,
                               .rx_ns = now + (int64_t)i,
                               .json = buf + off,
                               .json_len = olen};
            if (rules_packet(r, &p, err, sizeof err)) {
                fprintf(stderr, "rule error: %s\n", err);
                return 1;
            }
        }
        iter += n;
        t1 = util_mono();
    } while (t1 - t0 < seconds);
    double rate = (double)iter / (t1 - t0);
    rules_close(r);

    printf("pipeline (extract + decode + rule + line protocol), sinks disabled:\n");
    printf("  packets:          %lu in %.2f s, %.1f publishes + %.1f points per packet\n", iter,
           t1 - t0, (double)c.publishes / (double)iter, (double)c.points / (double)iter);
    printf("  rate:             %.0f packets/s   (target >= 200000)  %s\n", rate,
           rate >= 200000 ? "PASS" : "MISS");
    printf("  cJSON_Parse loop: %.0f objects/s (reference, same objects, same run)\n", ref_rate);
    printf("  ratio:            %.2fx of bare cJSON parse (target >= 0.40)  %s\n", rate / ref_rate,
           rate / ref_rate >= 0.4 ? "PASS" : "MISS");

    for (size_t i = 0; i < n; i++) {
        free(lines[i]);
        free(objs[i]);
    }
    free(lines);
    free(objs);
    free(lens);
    return 0;
}
