/*
 * source_serial.c — the serial:DEV[:BAUD] kind of source: a UART, usually a USB-serial
 * adapter or an MCU's virtual COM port. Private to the source module (see source_int.h); the
 * contract is source.h.
 *
 * termios settings, applied on every open: cfmakeraw() (no line discipline: no echo, no
 * canonical mode, no CR/NL translation, no signals from the tty), 8 data bits, no parity, one
 * stop bit (CS8, ~PARENB, ~CSTOPB), receiver on and modem control lines ignored (CREAD,
 * CLOCAL: an adapter without DCD must still deliver), no hardware or software flow control
 * (~CRTSCTS, ~IXON/IXOFF/IXANY), VMIN 1 / VTIME 0, and the same input and output speed.
 * The device is opened O_NOCTTY (never our controlling terminal) and O_NONBLOCK.
 *
 * A live source: a device that is missing (not plugged in yet) or fails (read error, hang-up,
 * EOF on unplug) is closed and reopened with backoff, forever; each successful reopen counts
 * as a restart.
 *
 * Spec: the baud is the part after the last ':' only when it is all digits, because
 * /dev/serial/by-path names contain ':' themselves. Only the rates in source_serial_bauds
 * are accepted: anything else is a typo.
 */
#include "log.h"
#include "source_int.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define SOURCE_SERIAL_DEFAULT_BAUD 115200

/* The rates USB-serial adapters and MCU UARTs actually use. */
static const struct {
    int baud;
    speed_t speed;
} source_serial_bauds[] = {
    {9600, B9600},     {19200, B19200},   {38400, B38400},   {57600, B57600},   {115200, B115200},
    {230400, B230400}, {460800, B460800}, {500000, B500000}, {576000, B576000}, {921600, B921600},
};

struct source_serial {
    struct source base;
    int baud;
    speed_t speed;
};

/* The termios speed for a baud rate in the table, or 0 (B0) when it is not there. */
static speed_t source_serial_speed(long baud)
{
    for (size_t i = 0; i < ARRAY_LEN(source_serial_bauds); i++)
        if (source_serial_bauds[i].baud == baud)
            return source_serial_bauds[i].speed;
    return B0;
}

static int source_serial_parse(struct source_spec *sp, const char *spec, char *err, size_t errlen)
{
    const char *colon = memrchr(sp->arg, ':', sp->arg_len);
    if (colon && source_all_digits(colon + 1, strlen(colon + 1))) {
        size_t blen = strlen(colon + 1);
        long baud = blen > 8 ? -1 : source_parse_num(colon + 1, blen);
        sp->arg_len = (size_t)(colon - sp->arg);
        if (source_serial_speed(baud) == B0)
            return source_spec_error(err, errlen, spec,
                                     "baud rate %s not supported (use 9600, 19200, 38400, 57600, "
                                     "115200, 230400, 460800, 500000, 576000 or 921600)",
                                     colon + 1);
        sp->opt = colon + 1;
        sp->opt_len = blen;
    }
    if (sp->arg_len == 0)
        return source_spec_error(err, errlen, spec, "empty device (expected serial:DEV[:BAUD])");
    return 0;
}

static int source_serial_init(struct source *s, const struct source_spec *sp,
                              const struct source_config *cfg)
{
    (void)cfg;
    struct source_serial *ss = container_of(s, struct source_serial, base);
    ss->baud = sp->opt ? (int)source_parse_num(sp->opt, sp->opt_len) : SOURCE_SERIAL_DEFAULT_BAUD;
    ss->speed = source_serial_speed(ss->baud);
    return 0;
}

/* Open and configure the device (see the header comment). Returns the fd or -errno. */
static int source_serial_open(const struct source_serial *ss)
{
    int fd = open(ss->base.arg, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct termios t;
    if (tcgetattr(fd, &t) < 0)
        goto fail;
    cfmakeraw(&t);
    t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | CSTOPB | CRTSCTS);
    t.c_cflag |= CS8 | CLOCAL | CREAD;
    t.c_iflag &= ~(tcflag_t)(IXON | IXOFF | IXANY);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (cfsetispeed(&t, ss->speed) < 0 || cfsetospeed(&t, ss->speed) < 0 ||
        tcsetattr(fd, TCSANOW, &t) < 0)
        goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

/* One open attempt: at start and on every retry. */
static void source_serial_try(struct source *s)
{
    struct source_serial *ss = container_of(s, struct source_serial, base);
    int fd = source_serial_open(ss);
    if (fd < 0) {
        source_live_retry(s, -fd, "open");
        return;
    }
    s->fd = fd;
    ev_io_init(&s->io, source_live_io_cb, fd, EV_READ);
    ev_io_start(s->loop, &s->io);
    bool again = s->ever_up;
    source_live_up(s);
    char q[256];
    log_info("source_up", "source=%s dev=%s baud=%d reopened=%d", s->name,
             log_quote(q, sizeof q, s->arg, (size_t)-1), ss->baud, again);
}

static int source_serial_start(struct source *s, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    source_serial_try(s);
    return 0;
}

const struct source_kind_ops source_serial_ops = {
    .name = "serial",
    .kind = SOURCE_SERIAL,
    .size = sizeof(struct source_serial),
    .parse = source_serial_parse,
    .init = source_serial_init,
    .start = source_serial_start,
    .retry = source_serial_try,
};
