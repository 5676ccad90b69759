/*
 * log.h — one line per event on stderr, key=value fields, journald-friendly.
 *
 *   ts=2026-11-24T21:51:30.123Z level=warn event=mqtt_disconnected rc=7 retry_in=1.7
 *
 * The first fields are always ts, level and event; the caller's printf-style fields follow.
 * Values that may contain spaces or quotes must go through log_quote().
 *
 * The level threshold is the one piece of process-wide state outside the gateway context:
 * logging is called from every module (and from signal-free paths only), and threading a
 * logger pointer through pure modules would buy nothing.
 */
#ifndef IIOTGW_LOG_H
#define IIOTGW_LOG_H

#include <stddef.h>

enum log_level { LL_ERROR = 0, LL_WARN = 1, LL_INFO = 2, LL_DEBUG = 3 };

/* Parse "error", "warn", "info", "debug". Returns the level, or -EINVAL. */
int log_level_parse(const char *s);
const char *log_level_name(int level);

void log_set_level(int level);
int log_get_level(void);

/* Non-zero when a message at `level` would be printed (use to skip costly formatting). */
int log_enabled(int level);

/*
 * Print one event. `fmt` (may be NULL) formats the key=value fields after the event name.
 * The line is written with a single write(2) so concurrent writers do not interleave.
 */
void log_emit(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(ev, ...) log_emit(LL_ERROR, ev, __VA_ARGS__)
#define log_warn(ev, ...)  log_emit(LL_WARN, ev, __VA_ARGS__)
#define log_info(ev, ...)  log_emit(LL_INFO, ev, __VA_ARGS__)
#define log_debug(ev, ...)                                                                         \
    do {                                                                                           \
        if (log_enabled(LL_DEBUG))                                                                 \
            log_emit(LL_DEBUG, ev, __VA_ARGS__);                                                   \
    } while (0)

/*
 * Quote `s` for use as a field value: wraps it in double quotes and escapes ", \ and
 * control characters (\n, \r, \t, \xNN), bytes that are not well-formed UTF-8 (\xNN) and
 * the C1 controls, U+2028 and U+2029 (\uNNNN); other UTF-8 is kept as it is. So a quoted
 * value is always one field on one line, whatever a device, a rule or a file name holds.
 * At most `n` bytes of `s` are read, up to a NUL (use (size_t)-1 for a C string); NULL is
 * "". Always NUL-terminates `out`; a value that does not fit ends in "...". Returns `out`:
 * log_warn("x", "err=%s", log_quote(b, sizeof b, e, -1)), or the shorthands below.
 *
 * Every logged value that can carry outside text (rule errors and gw.log text, topics, source
 * names and lines, file names, server messages) goes through this one function. As a
 * backstop, log_emit replaces any control character left in a line by '?'.
 */
char *log_quote(char *out, size_t outlen, const char *s, size_t n);

#define LOG_QUOTE_MAX 1024 /* buffer of log_q()/log_qn(): longer values end in "..." */

/* log_quote into a buffer that lives until the end of the enclosing full expression's block:
 * log_warn("x", "file=%s", log_q(path)). */
#define log_qn(s, n) log_quote((char[LOG_QUOTE_MAX]){0}, LOG_QUOTE_MAX, (s), (n))
#define log_q(s)     log_qn((s), (size_t)-1)

#endif
