/*
 * fwlog.h — firmware log lines on the debug console (RTT up-channel 0 / host stdout).
 *
 * Format: "INFO  message" / "WARN  message" / "ERROR message", one line each — the level
 * column probe-rs prints for defmt logs. Host builds (FW_LOG_LOCATION defined) add a second
 * line "└─ function @ file:line" like probe-rs does, so the simulator's stdout looks like a
 * real probe-rs session; the MCU build leaves the location out to save flash.
 */
#ifndef FW_FWLOG_H
#define FW_FWLOG_H

#include "hal.h"

#define FWLOG_MAX_LINE 256

#ifdef FW_LOG_LOCATION
#define FWLOG_LOC __func__, __FILE__, __LINE__
#else
#define FWLOG_LOC NULL, NULL, 0
#endif

#define FW_INFO(hal, ...)  fwlog_write((hal), "INFO ", FWLOG_LOC, __VA_ARGS__)
#define FW_WARN(hal, ...)  fwlog_write((hal), "WARN ", FWLOG_LOC, __VA_ARGS__)
#define FW_ERROR(hal, ...) fwlog_write((hal), "ERROR", FWLOG_LOC, __VA_ARGS__)

/*
 * Format and write one log line through hal->console_write. A message longer than
 * FWLOG_MAX_LINE is truncated (and still ends with a newline).
 */
void fwlog_write(const struct fw_hal *hal, const char *level, const char *func, const char *file,
                 int line, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#endif
