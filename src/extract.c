/*
 * extract.c — strip terminal/log noise from a raw line and locate its JSON object.
 * See extract.h for the contract.
 *
 * Why this shape: it runs once per input line (telemetry and log noise alike), so both
 * functions are single forward passes with no allocation and no recursion. extract_clean
 * skips the copy loop entirely for the common line with no '\r' and no ESC (memchr finds
 * the first one), and extract_object only decides *where* an object is — whether the text
 * is valid JSON is the decoder's job.
 *
 * Ownership: pure module; the caller owns the line (cleaned in place).
 */
#include "extract.h"

#include <stdbool.h>
#include <string.h>

#define ESC '\x1b'
#define BEL '\x07'

/* ------------------------------------------------------------------------------------ */
/* Cleaning                                                                             */
/* ------------------------------------------------------------------------------------ */

/*
 * Length of the escape sequence starting at s[0] == ESC (s has n >= 1 bytes), i.e. how many
 * bytes to drop. Follows ECMA-48 as far as log output needs it:
 *   CSI  ESC '[' {0x20..0x3F}* final(0x40..0x7E)   colours, cursor moves
 *   OSC  ESC ']' ... (BEL | ESC '\')               window titles, hyperlinks
 *   ESC {0x20..0x2F}* x                            any other sequence: two bytes ("ESC 7"),
 *                                                  or with intermediates ("ESC ( B", charset)
 * A CSI interrupted by a byte that cannot belong to it ends just before that byte (the byte
 * itself is kept and processed normally); a CSI or OSC cut off by the end of the line, and
 * a lone ESC at the end, swallow the rest of the line, as a terminal would.
 */
static size_t escape_len(const char *s, size_t n)
{
    if (n < 2)
        return n;
    if (s[1] == '[') {
        size_t i = 2;
        while (i < n && (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] <= 0x3F)
            i++;
        if (i < n && (unsigned char)s[i] >= 0x40 && (unsigned char)s[i] <= 0x7E)
            i++; /* the final byte */
        return i;
    }
    if (s[1] == ']') {
        for (size_t i = 2; i < n; i++) {
            if (s[i] == BEL)
                return i + 1;
            if (s[i] == ESC && i + 1 < n && s[i + 1] == '\\')
                return i + 2;
        }
        return n;
    }
    size_t i = 1;
    while (i < n && (unsigned char)s[i] >= 0x20 && (unsigned char)s[i] <= 0x2F)
        i++;
    return i < n ? i + 1 : n; /* the final byte, whatever it is */
}

static size_t strip_blanks(const char *line, size_t len)
{
    while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    return len;
}

size_t extract_clean(char *line, size_t len)
{
    /* Find the first byte that needs removing; most lines have none. */
    const char *esc = memchr(line, ESC, len);
    const char *cr = memchr(line, '\r', len);
    const char *first = !esc ? cr : !cr ? esc : esc < cr ? esc : cr;

    if (first) {
        size_t r = (size_t)(first - line), w = r;
        while (r < len) {
            char c = line[r];
            if (c == '\r') {
                r++;
            } else if (c == ESC) {
                r += escape_len(line + r, len - r);
            } else {
                line[w++] = c;
                r++;
            }
        }
        len = w;
    }

    /* The old firmware's literal "\n" (backslash, 'n') and blanks around it, at the end. */
    len = strip_blanks(line, len);
    if (len >= 2 && line[len - 2] == '\\' && line[len - 1] == 'n')
        len = strip_blanks(line, len - 2);
    return len;
}

/* ------------------------------------------------------------------------------------ */
/* Object location                                                                      */
/* ------------------------------------------------------------------------------------ */

static bool is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Does the '{' at line[i] look like the start of a JSON object ('{' ws* ('"' | '}'))? */
static bool is_candidate(const char *line, size_t len, size_t i)
{
    size_t j = i + 1;
    while (j < len && is_json_ws(line[j]))
        j++;
    return j < len && (line[j] == '"' || line[j] == '}');
}

enum extract_result extract_object(const char *line, size_t len, size_t *off, size_t *olen)
{
    *off = 0;
    *olen = 0;

    /* First candidate start; braces that cannot open JSON ("{uptime_ms=907000}") are text. */
    size_t start = len;
    for (const char *p = memchr(line, '{', len); p;) {
        size_t i = (size_t)(p - line);
        if (is_candidate(line, len, i)) {
            start = i;
            break;
        }
        p = memchr(p + 1, '{', len - i - 1);
    }
    if (start == len)
        return EXTRACT_NONE;

    /* Balanced end: a depth counter, with braces inside strings ignored. */
    size_t depth = 0;
    bool in_str = false;
    for (size_t k = start; k < len; k++) {
        char c = line[k];
        if (in_str) {
            if (c == '\\')
                k++; /* the escaped byte can never end the string */
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{') {
            depth++;
        } else if (c == '}') {
            if (--depth == 0) {
                *off = start;
                *olen = k - start + 1;
                return EXTRACT_OK;
            }
        }
    }
    /* Cut short (RTT overflow): report it, never salvage an inner object. */
    *off = start;
    *olen = len - start;
    return EXTRACT_UNTERMINATED;
}
