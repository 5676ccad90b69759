/*
 * sensor_model.h — deterministic environment model behind the simulated sensors.
 *
 * Given a seed and a simulated time it yields what a sensor would "see":
 *   temperature  mean + amplitude · sin(2π (hour − 9) / 24)   (coolest 03:00, warmest 15:00)
 *   humidity     moves against temperature: mean − amplitude · sin(...) − 2 %RH per °C of an
 *                injected heat excursion, clamped to 0..100
 *   gas          base · (1 + drift_per_day · days) + a slow daily ripple, minus 30 % during a
 *                heat excursion (hot air carries VOCs: resistance drops)
 *   plus Gaussian noise (seeded xorshift32 + Box–Muller), so the same seed always gives the
 *   same series.
 * An optional heat excursion adds heat_delta °C between heat_at and heat_at + heat_for
 * (simulated seconds since start), ramping over 60 s at both ends — what the alert tests need.
 *
 * Ownership: caller-allocated struct, no heap.
 */
#ifndef FW_SENSOR_MODEL_H
#define FW_SENSOR_MODEL_H

#include <stdint.h>

struct sensor_model_config {
    uint32_t seed;
    double start_hour;      /* local time of day at simulated t = 0, default 12 */
    double t_mean, t_amp;   /* °C; default 24, 3 */
    double h_mean, h_amp;   /* %RH; default 52, 6 */
    double g_base;          /* ohms; default 90000 */
    double g_drift_per_day; /* fraction; default 0.20 (a new sensor's resistance still climbs) */
    double t_noise, h_noise, g_noise;     /* std dev; default 0.08 °C, 0.3 %RH, 0.01 (fraction) */
    double heat_at, heat_for, heat_delta; /* s, s, °C; heat_for = 0 disables */
};

struct sensor_env {
    double t; /* °C */
    double h; /* %RH */
    double g; /* ohms */
};

struct sensor_model {
    struct sensor_model_config cfg;
    uint32_t rng;
};

void sensor_model_defaults(struct sensor_model_config *cfg);
void sensor_model_init(struct sensor_model *m, const struct sensor_model_config *cfg);
/* Sample the environment at simulated time t_s (seconds since start); advances the noise PRNG. */
void sensor_model_sample(struct sensor_model *m, double t_s, struct sensor_env *out);
/* Uniform [0, 1) and standard normal draws from a caller-owned xorshift32 state. */
double sensor_model_uniform(uint32_t *state);
double sensor_model_gauss(uint32_t *state);

#endif
