/*
 * sensor_model.c — seeded environment model (see sensor_model.h).
 */
#include "sensor_model.h"

#include <math.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- PRNG --------------------------------------------------------------------------------- */

double sensor_model_uniform(uint32_t *s)
{
    uint32_t x = *s ? *s : 0x9E3779B9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return (double)(x >> 8) / 16777216.0;
}

double sensor_model_gauss(uint32_t *s)
{
    double u1 = sensor_model_uniform(s), u2 = sensor_model_uniform(s);
    if (u1 < 1e-12)
        u1 = 1e-12;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ---- model -------------------------------------------------------------------------------- */

void sensor_model_defaults(struct sensor_model_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->seed = 1;
    cfg->start_hour = 12.0;
    cfg->t_mean = 24.0;
    cfg->t_amp = 3.0;
    cfg->h_mean = 52.0;
    cfg->h_amp = 6.0;
    cfg->g_base = 90000.0;
    cfg->g_drift_per_day = 0.20;
    cfg->t_noise = 0.08;
    cfg->h_noise = 0.3;
    cfg->g_noise = 0.01;
    cfg->heat_delta = 15.0;
}

void sensor_model_init(struct sensor_model *m, const struct sensor_model_config *cfg)
{
    m->cfg = *cfg;
    /* Spread small seeds over the state space so seeds 1 and 2 do not give similar series. */
    m->rng = cfg->seed * 2654435761u ^ 0xA5A5A5A5u;
    if (!m->rng)
        m->rng = 1;
}

/* Heat excursion weight 0..1 with 60 s linear ramps. */
static double heat_weight(const struct sensor_model_config *c, double t)
{
    const double ramp = 60.0;
    if (c->heat_for <= 0 || t < c->heat_at || t > c->heat_at + c->heat_for)
        return 0.0;
    double in = t - c->heat_at, out = c->heat_at + c->heat_for - t;
    double w = 1.0;
    if (in < ramp)
        w = in / ramp;
    if (out < ramp && out / ramp < w)
        w = out / ramp;
    return w;
}

void sensor_model_sample(struct sensor_model *m, double t_s, struct sensor_env *out)
{
    const struct sensor_model_config *c = &m->cfg;
    double hour = c->start_hour + t_s / 3600.0;
    double day = sin(2.0 * M_PI * (hour - 9.0) / 24.0);
    double heat = heat_weight(c, t_s) * c->heat_delta;

    out->t = c->t_mean + c->t_amp * day + heat + c->t_noise * sensor_model_gauss(&m->rng);
    out->h = c->h_mean - c->h_amp * day - 2.0 * heat + c->h_noise * sensor_model_gauss(&m->rng);
    if (out->h < 0.0)
        out->h = 0.0;
    if (out->h > 100.0)
        out->h = 100.0;
    double g = c->g_base * (1.0 + c->g_drift_per_day * t_s / 86400.0) * (1.0 + 0.05 * day);
    if (c->heat_delta > 0)
        g *= 1.0 - 0.3 * heat / c->heat_delta;
    g *= 1.0 + c->g_noise * sensor_model_gauss(&m->rng);
    out->g = g < 1000.0 ? 1000.0 : g;
}
