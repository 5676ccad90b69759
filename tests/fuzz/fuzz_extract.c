/*
 * fuzz_extract.c — libFuzzer harness for the line extractor (src/extract.c).
 *
 * On an arbitrary line: extract_clean() must return a length <= the input and leave no '\r';
 * extract_object() must return a span inside the
 * line that, for EXTRACT_OK, starts with '{', ends with '}' and is balanced when scanned with
 * JSON string/escape rules; EXTRACT_UNTERMINATED must run to the end of the line; EXTRACT_NONE
 * sets both outputs to 0. Both run on an exact-size heap copy so ASan sees any overread.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "extract.h"

/* Balanced: depth never < 0 inside, 0 exactly at the last byte, strings honoured. */
static int fx_balanced(const char *s, size_t n)
{
    long depth = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"')
            in_str = 1;
        else if (c == '{')
            depth++;
        else if (c == '}' && --depth == 0)
            return i == n - 1;
        if (depth <= 0)
            return 0;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size ? size : 1);
    if (!line)
        abort();
    memcpy(line, data, size);

    size_t off = 7, olen = 7;
    enum extract_result r = extract_object(line, size, &off, &olen);
    switch (r) {
    case EXTRACT_NONE:
        if (off != 0 || olen != 0)
            abort();
        break;
    case EXTRACT_OK:
        if (off >= size || olen < 2 || olen > size - off || line[off] != '{' ||
            line[off + olen - 1] != '}' || !fx_balanced(line + off, olen))
            abort();
        break;
    case EXTRACT_UNTERMINATED:
        if (off >= size || line[off] != '{' || olen != size - off || olen < 2)
            abort();
        break;
    default:
        abort();
    }

    size_t n = extract_clean(line, size);
    if (n > size)
        abort();
    if (memchr(line, '\r', n))
        abort();
    /* And again on the cleaned line, as the gateway does it (clean first, then locate). */
    r = extract_object(line, n, &off, &olen);
    if (r == EXTRACT_OK && (off + olen > n || !fx_balanced(line + off, olen)))
        abort();
    free(line);
    return 0;
}
