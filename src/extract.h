/*
 * extract.h — turn one raw log line into (cleaned text, optional JSON object span).
 *
 * What arrives from probe-rs/OpenOCD/J-Link/serial is a telemetry object wrapped in log noise:
 *
 *   [INFO] JSON sent via VCP: {...}\n (wk5_gateway_firmware .../src/main.rs:573)
 *   \x1b[32mINFO \x1b[0m JSON sent via VCP: {...}\n
 *   12.500000 INFO  JSON sent via VCP: {...}\n
 *
 * extract_clean() removes every '\r', ANSI escape sequences (CSI "ESC [ ... final", OSC
 * "ESC ] ... BEL|ESC \", and "ESC x" or, with intermediates, "ESC ( B") and a trailing
 * literal backslash-n (the old firmware bug) plus trailing blanks (spaces/tabs, before and
 * after that "\n"), in place.
 * A CSI broken by a byte outside 0x20..0x7E ends before that byte (which is kept); a CSI/OSC
 * cut off by the end of the line and a lone trailing ESC drop the rest of the line.
 *
 * extract_object() finds the first *JSON-looking* object start — a '{' followed (after optional
 * blanks) by '"' or '}' — and its balanced end, honouring strings and escapes. Brace pairs that
 * cannot start a JSON object (e.g. "heartbeat {uptime_ms=907000}") are skipped as text. If the
 * candidate object never closes (RTT overflow cut the line) the result is EXTRACT_UNTERMINATED
 * and no inner object is salvaged. Validity of the JSON inside is the decoder's job.
 * A '{' at the very end of a line (nothing follows it) is not a candidate: EXTRACT_NONE.
 *
 * Pure module: no allocation, no I/O, no recursion (nesting depth is a counter).
 */
#ifndef IIOTGW_EXTRACT_H
#define IIOTGW_EXTRACT_H

#include <stddef.h>

enum extract_result {
    EXTRACT_NONE = 0,         /* no JSON object start: a plain text/log line */
    EXTRACT_OK = 1,           /* [*off, *off + *olen) is a balanced object */
    EXTRACT_UNTERMINATED = 2, /* an object started at *off but never closed */
};

/* Clean `line` in place (NUL bytes are ordinary bytes); returns the new length, <= len
 * (the byte at that index is not touched: no NUL is written). */
size_t extract_clean(char *line, size_t len);

/*
 * Locate the first JSON object in line[0..len). Always sets *off and *olen:
 * EXTRACT_OK: the object is line[*off .. *off + *olen); EXTRACT_UNTERMINATED: the object
 * starts at *off and *olen = len - *off (the cut-off remainder); EXTRACT_NONE: both 0.
 */
enum extract_result extract_object(const char *line, size_t len, size_t *off, size_t *olen);

#endif
