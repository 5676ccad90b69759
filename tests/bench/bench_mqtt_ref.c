/*
 * bench_mqtt_ref.c — the reference for the latency benchmark: a bare libmosquitto client
 * (TCP_NODELAY, no rule, no gateway) publishing bursts of 9 QoS 1 messages at a fixed rate and
 * timing each burst until its 9th PUBACK. The gateway's figure is compared with this floor in
 * the same run.
 *
 * usage: bench_mqtt_ref HOST PORT RATE SECONDS      prints "p50_ms p99_ms max_ms n"
 */
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

static int acks;

static void on_publish(struct mosquitto *m, void *ud, int mid)
{
    (void)m, (void)ud, (void)mid;
    acks++;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT RATE SECONDS\n", argv[0]);
        return 2;
    }
    double rate = atof(argv[3]), secs = atof(argv[4]);
    size_t n = (size_t)(rate * secs), k = 0;
    double *lat = calloc(n, sizeof *lat);
    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new("iiotgw-bench-ref", true, NULL);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_publish_callback_set(m, on_publish);
    if (mosquitto_connect(m, argv[1], atoi(argv[2]), 30) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "connect failed\n");
        return 1;
    }
    static const char *topics[9] = {
        "bench/ref/node1/temperature", "bench/ref/node1/humidity", "bench/ref/node1/gas",
        "bench/ref/node2/temperature", "bench/ref/node2/humidity", "bench/ref/signal/rssi",
        "bench/ref/signal/snr",        "bench/ref/stats/rx",       "bench/ref/stats/err"};
    double start = util_mono();
    for (k = 0; k < n; k++) {
        double due = start + (double)k / rate;
        while (util_mono() < due)
            mosquitto_loop(m, 1, 1);
        acks = 0;
        double t0 = util_mono();
        for (int i = 0; i < 9; i++)
            mosquitto_publish(m, NULL, topics[i], 4, "27.6", 1, i < 5);
        while (acks < 9)
            mosquitto_loop(m, 10, 1);
        lat[k] = util_mono() - t0;
    }
    qsort(lat, n, sizeof *lat, cmp);
    printf("%.3f %.3f %.3f %zu\n", lat[(n - 1) / 2] * 1e3,
           lat[(size_t)((double)(n - 1) * 0.99)] * 1e3, lat[n - 1] * 1e3, n);
    mosquitto_disconnect(m);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    free(lat);
    return 0;
}
