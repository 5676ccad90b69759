/*
 * telemetry.h — node 2's telemetry line writer (the JSON line format of docs/sources.md).
 *
 *   {"ts":12000,"id":"N2","n1":{"t":27.6,"h":54.1,"g":84190},"n2":{"t":26.8,"h":48.8},
 *    "sig":{"rssi":-39,"snr":13},"sts":{"rx":1,"err":0,"dup":0}}<LF>
 *
 * One line, a real newline at the end. Temperatures/humidities are printed with one decimal,
 * rounded half away from zero from the ×100 values; a key whose sensor value is missing is
 * omitted ("n2":{} before node 2's first SHT3x read). sts.dup (duplicates dropped) is an
 * addition; the original keys are unchanged.
 *
 * Writes into a caller-provided fixed buffer: no malloc, no printf (newlib-nano's float printf
 * would cost flash and is not needed).
 */
#ifndef FW_TELEMETRY_H
#define FW_TELEMETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest possible line, all keys present and every number at its widest, plus NUL. */
#define TELEMETRY_MAX_LINE 200

struct telemetry {
    uint32_t ts_ms;
    bool n1_has_t, n1_has_h, n1_has_g;
    int16_t n1_t_x100;
    uint16_t n1_h_x100;
    uint32_t n1_g;
    bool n2_has_t, n2_has_h;
    int16_t n2_t_x100;
    uint16_t n2_h_x100;
    int16_t rssi;
    int16_t snr;
    uint32_t rx, err, dup;
};

/*
 * Format t into buf (NUL-terminated). Returns the line length (excluding the NUL, including the
 * newline) or -ENOSPC if buf is too small (buf then holds an unspecified prefix).
 */
int telemetry_format(const struct telemetry *t, char *buf, size_t len);

/* Round a ×100 value to tenths, half away from zero (2765 -> 277, -2765 -> -277). */
int32_t telemetry_round_tenths(int32_t x100);

#endif
