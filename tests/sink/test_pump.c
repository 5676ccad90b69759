/*
 * test_pump.c — the pump (forward.c) written against struct sink_ops, driven through a fake
 * sink over a real spool: the window, acknowledgements out of order, a sink that goes
 * unhealthy and loses what it was given (the records wait in the spool's backlog cursor and
 * are replayed once it recovers), and a permanent refusal (released from the spool and
 * reported to the reject callback, where the gateway dead-letters it).
 *
 * Each test closes the pump and reopens the spool directory with spool.c itself to check
 * what was acknowledged durably, not only what the pump believes.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <ev.h>

#include "forward.h"
#include "log.h"
#include "sink.h"
#include "spool.h"
#include "util.h"

/* ----------------------------------------------------------------------------------------- */
/* The fake sink                                                                             */
/* ----------------------------------------------------------------------------------------- */

#define FAKE_MAX 64

struct fake_rec {
    char data[64];
    uint64_t token;
    unsigned flags;
};

struct fake {
    bool healthy;
    bool losing; /* "down": take records and lose them (like a full MQTT offline FIFO) */
    struct fake_rec held[FAKE_MAX]; /* submitted, not yet acked or released */
    size_t nheld;
    struct fake_rec log[4 * FAKE_MAX]; /* every submit, in order */
    size_t nlog;
    struct sink_callbacks cb;
};

static int fake_check(const void *self, const void *rec, size_t len)
{
    (void)self;
    /* Records starting with '!' are ones this sink could never take. */
    return len == 0 || len >= sizeof((struct fake_rec *)0)->data || ((const char *)rec)[0] == '!'
               ? -EINVAL
               : 0;
}

static int fake_submit(void *self, const void *rec, size_t len, unsigned flags, uint64_t token)
{
    struct fake *f = self;
    struct fake_rec r = {.token = token, .flags = flags};
    memcpy(r.data, rec, len);
    assert_true(f->nlog < ARRAY_LEN(f->log));
    f->log[f->nlog++] = r;
    if (!f->losing) {
        assert_true(f->nheld < FAKE_MAX);
        f->held[f->nheld++] = r;
    }
    return 0;
}

static size_t fake_pending(const void *self)
{
    return ((const struct fake *)self)->nheld;
}

static bool fake_healthy(const void *self)
{
    return ((const struct fake *)self)->healthy;
}

static void fake_set_callbacks(void *self, const struct sink_callbacks *cb)
{
    struct fake *f = self;
    f->cb = cb ? *cb : (struct sink_callbacks){0};
}

static void fake_stats(const void *self, struct sink_stats *st)
{
    memset(st, 0, sizeof *st);
    st->pending = fake_pending(self);
}

static void fake_free(void *self)
{
    (void)self;
}

static const struct sink_ops fake_ops = {
    .name = "fake",
    .check = fake_check,
    .submit = fake_submit,
    .pending = fake_pending,
    .healthy = fake_healthy,
    .set_callbacks = fake_set_callbacks,
    .flush = NULL,
    .close = NULL,
    .stats = fake_stats,
    .free = fake_free,
};

/* Take held record `i` out of the sink; returns it. */
static struct fake_rec fake_take(struct fake *f, size_t i)
{
    assert_true(i < f->nheld);
    struct fake_rec r = f->held[i];
    memmove(&f->held[i], &f->held[i + 1], (f->nheld - i - 1) * sizeof *f->held);
    f->nheld--;
    return r;
}

/* The server acknowledged held record `i`; `user` plays the producer token in the record. */
static void fake_ack(struct fake *f, size_t i, uint64_t user)
{
    struct fake_rec r = fake_take(f, i);
    f->cb.ack(f->cb.ud, r.token, user);
}

/* ----------------------------------------------------------------------------------------- */
/* Fixture                                                                                   */
/* ----------------------------------------------------------------------------------------- */

struct fx {
    char dir[256];
    struct ev_loop *loop;
    struct fake fake;
    struct forward *fw;
    uint64_t acked_users[64];
    size_t nacked;
    char rejected[256];
    long reject_status;
    enum forward_dest reject_dest;
};

static void on_ack(void *ud, uint64_t user)
{
    struct fx *x = ud;
    if (x->nacked < ARRAY_LEN(x->acked_users))
        x->acked_users[x->nacked++] = user;
}

static void on_reject(void *ud, enum forward_dest dest, const char *data, size_t len, long status,
                      const char *message)
{
    struct fx *x = ud;
    (void)message;
    x->reject_dest = dest;
    x->reject_status = status;
    snprintf(x->rejected, sizeof x->rejected, "%.*s", (int)len, data);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    struct fx *x = calloc(1, sizeof *x);
    const char *tmp = getenv("TMPDIR");
    snprintf(x->dir, sizeof x->dir, "%s/pumptest-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(x->dir))
        return -1;
    x->loop = ev_loop_new(EVFLAG_AUTO);
    x->fake.healthy = true;
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct fx *x = *state;
    forward_free(x->fw);
    ev_loop_destroy(x->loop);
    nftw(x->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(x);
    return 0;
}

/* A pump over the fake in the InfluxDB slot (no MQTT sink) with the given window. */
static void open_pump(struct fx *x, size_t window)
{
    struct forward_config fc = {
        .dir = x->dir,
        .sync_interval = 0.02,
        .replay_share = 0.5,
    };
    fc.window[FWD_MQTT] = 1;
    fc.window[FWD_INFLUX] = window;
    struct sink sinks[FWD_NDEST] = {[FWD_INFLUX] = {&fake_ops, &x->fake}};
    char err[256] = "";
    assert_int_equal(forward_new(&x->fw, x->loop, &fc, sinks, err, sizeof err), 0);
    forward_set_callbacks(x->fw, on_ack, on_reject, x);
    /* The spool's pending records are pumped from the loop's first iteration on, once the
     * callbacks are set (a record refused at once must reach on_reject). */
    ev_run(x->loop, EVRUN_NOWAIT);
}

static void submit(struct fx *x, const char *rec)
{
    assert_int_equal(forward_submit(x->fw, FWD_INFLUX, rec, strlen(rec), 0), 0);
}

/* Close the pump and return the records the spool still holds for the InfluxDB cursors. */
static uint64_t durable_pending(struct fx *x)
{
    forward_free(x->fw);
    x->fw = NULL;
    struct spool *sp;
    struct spool_config c = {.nsinks = 2 * FWD_NDEST};
    assert_int_equal(spool_open(&sp, x->dir, &c, NULL), 0);
    struct spool_stats st;
    spool_stats(sp, &st);
    spool_close(sp);
    return st.pending[2] + st.pending[3];
}

static void stop_loop(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void run_loop(struct fx *x, double seconds)
{
    ev_timer t;
    ev_timer_init(&t, stop_loop, seconds, 0.);
    ev_timer_start(x->loop, &t);
    ev_run(x->loop, 0);
    ev_timer_stop(x->loop, &t);
}

/* ----------------------------------------------------------------------------------------- */
/* Tests                                                                                     */
/* ----------------------------------------------------------------------------------------- */

/* The pump never lets the sink hold more than the window; each ack lets the next one in. */
static void window_bounds_the_sink(void **state)
{
    struct fx *x = *state;
    open_pump(x, 3);
    const char *recs[] = {"r1", "r2", "r3", "r4", "r5"};
    for (size_t i = 0; i < ARRAY_LEN(recs); i++)
        submit(x, recs[i]);
    assert_int_equal(x->fake.nheld, 3);
    assert_int_equal(forward_pending(x->fw, FWD_INFLUX, false), 5);
    fake_ack(&x->fake, 0, 0);
    assert_int_equal(x->fake.nheld, 3);
    assert_string_equal(x->fake.held[2].data, "r4");
    while (x->fake.nheld)
        fake_ack(&x->fake, 0, 0);
    assert_int_equal(x->fake.nlog, 5);
    for (size_t i = 0; i < ARRAY_LEN(recs); i++) {
        assert_string_equal(x->fake.log[i].data, recs[i]); /* in order */
        assert_int_equal(x->fake.log[i].flags, 0);         /* live: not a replay */
    }
    assert_int_equal(forward_pending(x->fw, FWD_INFLUX, true), 0);
    assert_int_equal(durable_pending(x), 0);
}

/* Acks in any order reach the spool and the producer callback, each exactly once. */
static void acks_out_of_order(void **state)
{
    struct fx *x = *state;
    open_pump(x, 8);
    submit(x, "a");
    submit(x, "b");
    submit(x, "c");
    submit(x, "d");
    assert_int_equal(x->fake.nheld, 4);
    fake_ack(&x->fake, 2, 103); /* c */
    fake_ack(&x->fake, 0, 101); /* a */
    fake_ack(&x->fake, 1, 104); /* d */
    assert_int_equal(forward_pending(x->fw, FWD_INFLUX, true), 1);
    /* Until "b" is acked the spool's committed point cannot pass it. */
    fake_ack(&x->fake, 0, 102); /* b */
    assert_int_equal(x->nacked, 4);
    assert_int_equal(x->acked_users[0], 103);
    assert_int_equal(x->acked_users[1], 101);
    assert_int_equal(x->acked_users[2], 104);
    assert_int_equal(x->acked_users[3], 102);
    assert_int_equal(forward_pending(x->fw, FWD_INFLUX, true), 0);
    assert_int_equal(durable_pending(x), 0);
}

/* Acked in part, then closed: after a restart the sink re-reads from the committed point
 * (the lowest unacked record) as replays; the acked prefix never comes back, and the producer
 * tokens of an older run are not reported. */
static void acks_partial_survive_restart(void **state)
{
    struct fx *x = *state;
    open_pump(x, 8);
    submit(x, "p1");
    submit(x, "p2");
    submit(x, "p3");
    fake_ack(&x->fake, 2, 7); /* p3 */
    fake_ack(&x->fake, 0, 5); /* p1 */
    forward_free(x->fw);
    x->fw = NULL;
    x->fake = (struct fake){.healthy = true};
    x->nacked = 0;
    open_pump(x, 8);
    /* p2 is pending; p3 lies above the committed point, so it comes again (at-least-once). */
    assert_int_equal(x->fake.nheld, 2);
    assert_string_equal(x->fake.held[0].data, "p2");
    assert_string_equal(x->fake.held[1].data, "p3");
    assert_int_equal(x->fake.held[0].flags, SINK_REPLAY);
    assert_int_equal(x->fake.held[1].flags, SINK_REPLAY);
    fake_ack(&x->fake, 0, 9);
    fake_ack(&x->fake, 0, 9);
    assert_int_equal(x->nacked, 0);
    assert_int_equal(durable_pending(x), 0);
}

/* An unhealthy sink: records go to the backlog cursor; what the sink lost while down is read
 * again from the spool once it holds nothing, and delivered as replay after recovery. */
static void unhealthy_backlog_replayed(void **state)
{
    struct fx *x = *state;
    open_pump(x, 8);
    x->fake.healthy = false;
    x->fake.losing = true;
    submit(x, "down1");
    submit(x, "down2");
    assert_int_equal(x->fake.nlog, 2);
    assert_int_equal(x->fake.log[0].flags, SINK_REPLAY); /* backlog records are replays */
    assert_int_equal(x->fake.nheld, 0);                  /* ... and the sink lost them */
    struct forward_stats st;
    forward_get_stats(x->fw, &st);
    assert_int_equal(st.pending[FWD_INFLUX], 2); /* still in the spool */

    x->fake.healthy = true;
    x->fake.losing = false;
    /* The tick notices that the sink holds nothing of what it was given, rewinds, resends. */
    run_loop(x, 0.2);
    assert_int_equal(x->fake.nheld, 2);
    assert_string_equal(x->fake.held[0].data, "down1");
    assert_string_equal(x->fake.held[1].data, "down2");
    assert_int_equal(x->fake.held[0].flags, SINK_REPLAY);
    assert_int_equal(x->fake.held[1].flags, SINK_REPLAY);
    /* Healthy again: new records are live. */
    submit(x, "live1");
    assert_int_equal(x->fake.nheld, 3);
    assert_string_equal(x->fake.held[2].data, "live1");
    assert_int_equal(x->fake.held[2].flags, 0);
    while (x->fake.nheld)
        fake_ack(&x->fake, 0, 0);
    assert_int_equal(forward_pending(x->fw, FWD_INFLUX, true), 0);
    assert_int_equal(durable_pending(x), 0);
}

/* Refused for good: the reject callback gets the data, and the release frees the spool. A
 * record the sink's check refuses is never spooled at all. */
static void refusal_released_and_reported(void **state)
{
    struct fx *x = *state;
    open_pump(x, 8);
    assert_int_equal(forward_submit(x->fw, FWD_INFLUX, "!never", 6, 0), -EINVAL);
    assert_int_equal(x->fake.nlog, 0);
    submit(x, "bad");
    submit(x, "good");
    struct fake_rec r = fake_take(&x->fake, 0);
    assert_string_equal(r.data, "bad");
    x->fake.cb.reject(x->fake.cb.ud, r.data, strlen(r.data), 400, "unparsable");
    x->fake.cb.release(x->fake.cb.ud, r.token, 0);
    assert_string_equal(x->rejected, "bad");
    assert_int_equal(x->reject_status, 400);
    assert_int_equal(x->reject_dest, FWD_INFLUX);
    assert_int_equal(forward_pending(x->fw, FWD_INFLUX, true), 1);
    fake_ack(&x->fake, 0, 0);
    assert_int_equal(durable_pending(x), 0);
}

int main(int argc, char **argv)
{
    log_set_level(LL_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(window_bounds_the_sink, setup, teardown),
        cmocka_unit_test_setup_teardown(acks_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(acks_partial_survive_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(unhealthy_backlog_replayed, setup, teardown),
        cmocka_unit_test_setup_teardown(refusal_released_and_reported, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
