/*
 * host_board.c — simulated board: scaled clock, emulated I2C sensors, radio glue, signals
 * (see host_board.h).
 */
#include "host_board.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "bme680.h"
#include "crc.h"
#include "sht3x.h"

/* Calibration the emulated BME680 reports (plausible values; see docs/firmware.md). */
#define SIM_PAR_G1         (-26)
#define SIM_PAR_G2         (-10291)
#define SIM_PAR_G3         18
#define SIM_RES_HEAT_RANGE 1
#define SIM_RES_HEAT_VAL   44

/* ---- clock ---------------------------------------------------------------------------------- */

static double real_elapsed(const struct host_board *b)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - b->t0.tv_sec) + (double)(now.tv_nsec - b->t0.tv_nsec) / 1e9;
}

double host_board_seconds(const struct host_board *b)
{
    if (b->manual_clock)
        return (double)b->manual_ms / 1000.0;
    return real_elapsed(b) * b->speed;
}

static uint32_t hb_millis(void *ctx)
{
    const struct host_board *b = ctx;
    if (b->manual_clock)
        return (uint32_t)b->manual_ms;
    return (uint32_t)(uint64_t)(host_board_seconds(b) * 1000.0);
}

static void hb_delay(void *ctx, uint32_t ms)
{
    struct host_board *b = ctx;
    if (b->manual_clock) {
        b->manual_ms += ms;
        return;
    }
    double s = (double)ms / 1000.0 / b->speed;
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - floor(s)) * 1e9)};
    nanosleep(&ts, NULL);
}

/* ---- emulated SHT3x ------------------------------------------------------------------------- */

static void sht_measure(struct host_board *b)
{
    sensor_model_sample(&b->model, host_board_seconds(b), &b->last_env);
    uint16_t t = sht3x_raw_from_temp_x100((int32_t)lround(b->last_env.t * 100.0));
    uint16_t h = sht3x_raw_from_hum_x100((int32_t)lround(b->last_env.h * 100.0));
    b->sht_out[0] = (uint8_t)(t >> 8);
    b->sht_out[1] = (uint8_t)t;
    b->sht_out[2] = crc8_sht3x(b->sht_out, 2);
    b->sht_out[3] = (uint8_t)(h >> 8);
    b->sht_out[4] = (uint8_t)h;
    b->sht_out[5] = crc8_sht3x(b->sht_out + 3, 2);
    /* A marginal bus: occasionally a word arrives with a bad CRC. */
    if (sensor_model_uniform(&b->model.rng) < b->sht_error)
        b->sht_out[2] ^= 0x40;
    if (sensor_model_uniform(&b->model.rng) < b->sht_error)
        b->sht_out[5] ^= 0x02;
    b->sht_ready = true;
}

/* ---- emulated BME680 (gas channel only) ----------------------------------------------------- */

static void bme_reset(struct host_board *b)
{
    memset(b->bme_regs, 0, sizeof(b->bme_regs));
    b->bme_regs[BME680_REG_CHIP_ID] = BME680_CHIP_ID;
    b->bme_regs[BME680_REG_PAR_G2] = (uint8_t)((uint16_t)SIM_PAR_G2 & 0xFF);
    b->bme_regs[BME680_REG_PAR_G2 + 1] = (uint8_t)((uint16_t)SIM_PAR_G2 >> 8);
    b->bme_regs[BME680_REG_PAR_G1] = (uint8_t)SIM_PAR_G1;
    b->bme_regs[BME680_REG_PAR_G3] = SIM_PAR_G3;
    b->bme_regs[BME680_REG_RES_HEAT_RANGE] = SIM_RES_HEAT_RANGE << 4;
    b->bme_regs[BME680_REG_RES_HEAT_VAL] = SIM_RES_HEAT_VAL;
    b->bme_regs[BME680_REG_RANGE_SW_ERR] = 0;
}

/* Forced mode: invert the datasheet float formula to the (adc, range) the chip would report. */
static void bme_measure(struct host_board *b)
{
    struct sensor_env env;
    sensor_model_sample(&b->model, host_board_seconds(b), &env);
    b->last_env.g = env.g;
    uint16_t adc = 512;
    uint8_t range = 0;
    double best = 1e9;
    for (uint8_t r = 0; r < 16; r++) {
        /* adc = 512 + 1340 · (1 / (1.25e-7 · 2^r · R) − 1) (k1 = k2 = 0); the range whose adc
         * lands nearest mid-scale gives the best resolution. */
        double a = 512.0 + 1340.0 * (1.0 / (1.25e-7 * (double)(1u << r) * env.g) - 1.0);
        if (a >= 0.0 && a <= 1023.0 && fabs(a - 512.0) < best) {
            best = fabs(a - 512.0);
            adc = (uint16_t)lround(a);
            range = r;
        }
    }
    bool heated =
        b->bme_regs[BME680_REG_RES_HEAT_0] != 0 && b->bme_regs[BME680_REG_GAS_WAIT_0] != 0;
    b->bme_regs[BME680_REG_GAS_R_MSB] = (uint8_t)(adc >> 2);
    b->bme_regs[BME680_REG_GAS_R_LSB] =
        (uint8_t)(((adc & 3) << 6) | BME680_GAS_VALID | (heated ? BME680_HEAT_STAB : 0) | range);
    b->bme_regs[BME680_REG_MEAS_STATUS] = BME680_NEW_DATA;
}

/* ---- I2C ------------------------------------------------------------------------------------ */

static int hb_i2c_write(void *ctx, uint8_t addr, const uint8_t *buf, size_t len)
{
    struct host_board *b = ctx;
    if (addr == SHT3X_ADDR && b->sht_present) {
        if (len == 2 && ((buf[0] << 8) | buf[1]) == SHT3X_CMD_SINGLE_HIGH) {
            sht_measure(b);
            return 0;
        }
        return -EIO;
    }
    if (addr == BME680_ADDR && b->bme_present && len >= 1) {
        b->bme_ptr = buf[0];
        /* burst write: register/value pairs */
        for (size_t i = 0; i + 1 < len; i += 2) {
            b->bme_regs[buf[i]] = buf[i + 1];
            if (buf[i] == BME680_REG_CTRL_MEAS && (buf[i + 1] & 0x03) == BME680_MODE_FORCED)
                bme_measure(b);
        }
        return 0;
    }
    return -EIO; /* no device: address NACK */
}

static int hb_i2c_read(void *ctx, uint8_t addr, uint8_t *buf, size_t len)
{
    struct host_board *b = ctx;
    if (addr == SHT3X_ADDR && b->sht_present) {
        if (!b->sht_ready || len > 6)
            return -EIO; /* the real sensor NACKs a read with no measurement pending */
        memcpy(buf, b->sht_out, len);
        b->sht_ready = false;
        return 0;
    }
    if (addr == BME680_ADDR && b->bme_present) {
        for (size_t i = 0; i < len; i++)
            buf[i] = b->bme_regs[(uint8_t)(b->bme_ptr + i)];
        return 0;
    }
    return -EIO;
}

/* ---- UART / console ------------------------------------------------------------------------- */

static void hb_radio_write(void *ctx, const char *buf, size_t len)
{
    radio_sim_uart_write(&((struct host_board *)ctx)->radio, buf, len);
}

static void hb_console(void *ctx, const char *buf, size_t len)
{
    struct host_board *b = ctx;
    if (b->console && fwrite(buf, 1, len, b->console) != len)
        b->stop = true; /* reader gone (EPIPE): nothing left to do */
}

static void hb_data(void *ctx, const char *buf, size_t len)
{
    struct host_board *b = ctx;
    if (b->data) {
        fwrite(buf, 1, len, b->data);
        fflush(b->data);
    }
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int host_board_init(struct host_board *b, double speed, const struct sensor_model_config *model,
                    const struct radio_sim_config *radio, FILE *console, FILE *data)
{
    sigset_t set;
    int rc;

    memset(b, 0, sizeof(*b));
    b->speed = speed;
    b->console = console;
    b->data = data;
    b->sigfd = -1;
    b->sht_present = b->bme_present = true;
    sensor_model_init(&b->model, model);
    bme_reset(b);
    clock_gettime(CLOCK_MONOTONIC, &b->t0);
    rc = radio_sim_open(&b->radio, radio);
    if (rc < 0)
        return rc;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed stdout shows up as a write error instead */
    b->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (b->sigfd < 0) {
        rc = -errno;
        radio_sim_close(&b->radio);
        return rc;
    }
    b->hal = (struct fw_hal){.ctx = b,
                             .millis = hb_millis,
                             .delay_ms = hb_delay,
                             .i2c_write = hb_i2c_write,
                             .i2c_read = hb_i2c_read,
                             .radio_write = hb_radio_write,
                             .console_write = hb_console,
                             .data_write = data ? hb_data : NULL};
    return 0;
}

void host_board_close(struct host_board *b)
{
    radio_sim_close(&b->radio);
    if (b->sigfd >= 0)
        close(b->sigfd);
    b->sigfd = -1;
}

void host_board_wait(struct host_board *b)
{
    struct pollfd p[2] = {{.fd = b->radio.fd, .events = POLLIN},
                          {.fd = b->sigfd, .events = POLLIN}};
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 200000};
    if (ppoll(p, 2, &ts, NULL) > 0) {
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(b->sigfd, &si, sizeof(si)) > 0)
                b->stop = true;
        }
    }
    radio_sim_poll(&b->radio);
}

/* ---- CLI helpers ---------------------------------------------------------------------------- */

int host_parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        return -EINVAL;
    *out = v;
    return 0;
}

int host_parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || v > 0xFFFFFFFFull || s[0] == '-')
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

/* ---- command line shared by the simulators ------------------------------------------------ */

static const struct option sim_options[] = {
    {"udp-port", required_argument, NULL, 'u'},  {"peer-port", required_argument, NULL, 'p'},
    {"seed", required_argument, NULL, 's'},      {"speed", required_argument, NULL, 'x'},
    {"loss", required_argument, NULL, 'l'},      {"corrupt", required_argument, NULL, 'c'},
    {"distance", required_argument, NULL, 'd'},  {"start-hour", required_argument, NULL, 'H'},
    {"sht-error", required_argument, NULL, 'E'}, {"count", required_argument, NULL, 'n'},
    {"duration", required_argument, NULL, 'T'},  {"help", no_argument, NULL, 'h'}};
#define SIM_NOPTIONS (sizeof(sim_options) / sizeof(sim_options[0]))
#define SIM_OWN_MAX  16 /* room for a node's own options */

void host_sim_args_defaults(struct host_sim_args *a, const char *prog, uint16_t udp_port,
                            uint16_t peer_port, uint32_t seed)
{
    memset(a, 0, sizeof(*a));
    a->prog = prog;
    sensor_model_defaults(&a->model);
    a->radio.udp_port = udp_port;
    a->radio.peer_port = peer_port;
    a->radio.distance_m = 30;
    a->speed = 1.0;
    a->seed = seed;
}

/* 1 = c is a shared option (*bad set for a bad value), 0 = it is not. */
static int sim_option(struct host_sim_args *a, int c, const char *arg, bool *bad)
{
    uint32_t u = 0; /* set by host_parse_u32 on success; -O3 cannot prove it */

    switch (c) {
    case 'u':
        *bad = host_parse_u32(arg, &u) || u > 65535;
        a->radio.udp_port = (uint16_t)u;
        break;
    case 'p':
        *bad = host_parse_u32(arg, &u) || u > 65535;
        a->radio.peer_port = (uint16_t)u;
        break;
    case 's':
        *bad = host_parse_u32(arg, &a->seed) != 0;
        break;
    case 'x':
        *bad = host_parse_double(arg, 0.001, 1e6, &a->speed) != 0;
        break;
    case 'l':
        *bad = host_parse_double(arg, 0, 1, &a->radio.loss) != 0;
        break;
    case 'c':
        *bad = host_parse_double(arg, 0, 1, &a->radio.corrupt) != 0;
        break;
    case 'd':
        *bad = host_parse_double(arg, 0.1, 1e6, &a->radio.distance_m) != 0;
        break;
    case 'H':
        *bad = host_parse_double(arg, 0, 24, &a->model.start_hour) != 0;
        break;
    case 'E':
        *bad = host_parse_double(arg, 0, 1, &a->sht_error) != 0;
        break;
    case 'n':
        *bad = host_parse_u32(arg, &a->count) != 0;
        break;
    case 'T':
        *bad = host_parse_double(arg, 0, 1e9, &a->duration) != 0;
        break;
    default:
        return 0;
    }
    return 1;
}

int host_sim_parse(struct host_sim_args *a, int argc, char **argv, const struct option *own,
                   host_sim_option_fn on_own, void *ud, void (*usage)(FILE *out))
{
    struct option opts[SIM_NOPTIONS + SIM_OWN_MAX + 1];
    size_t n = 0;
    int c;

    for (size_t i = 0; i < SIM_NOPTIONS; i++)
        opts[n++] = sim_options[i];
    for (; own && own->name && n < SIM_NOPTIONS + SIM_OWN_MAX; own++)
        opts[n++] = *own;
    memset(&opts[n], 0, sizeof(opts[n]));

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        bool bad = false;
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        if (c == '?') { /* unknown option or missing value: getopt said which */
            usage(stderr);
            return 2;
        }
        if (!sim_option(a, c, optarg, &bad))
            bad = on_own(ud, c, optarg) < 0;
        if (bad) {
            fprintf(stderr, "%s: invalid option value '%s' (see --help)\n", a->prog, optarg);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    a->model.seed = a->seed;
    a->radio.seed = a->seed;
    return -1;
}
