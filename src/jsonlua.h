/*
 * jsonlua.h — strict JSON (RFC 8259) decoder that builds Lua values directly.
 *
 * Why this exists instead of cJSON: cJSON stores every number as a double, so it cannot tell
 * `24.0` from `24` nor keep `84190` an integer, and the brief requires integers to stay
 * integers end to end (MQTT payload "84190", never "84190.0") while floats stay floats
 * ("24.0" stays a float). Decoding straight into Lua values also skips the intermediate tree,
 * which matters on the hot path (one decode per packet, >= 200k packets/s target).
 *
 * Mapping:
 *   object  -> table with string keys (duplicate keys: the last one wins)
 *   array   -> 1-based sequence
 *   number  -> Lua integer when the text has no '.', 'e' or 'E' and fits in int64;
 *              otherwise a Lua float (correctly rounded)
 *   string  -> Lua string, UTF-8; \uXXXX escapes incl. surrogate pairs become UTF-8
 *   true/false -> booleans
 *   null    -> the sentinel light userdata jsonlua_null() (exposed to rules as gw.null), so
 *              that arrays keep their length and `v == gw.null` can be tested
 * Strictness: exactly one value surrounded by optional JSON whitespace; no comments, no
 * trailing commas, no leading zeros, no control characters in strings, invalid UTF-8 and lone
 * surrogates are rejected, nesting is limited to JSONLUA_MAX_DEPTH.
 *
 * Ownership: pure module, no state. The caller owns the input text.
 * Owner: rules engineer.
 */
#ifndef IIOTGW_JSONLUA_H
#define IIOTGW_JSONLUA_H

#include <stddef.h>

#include <lua.h>

#define JSONLUA_MAX_DEPTH 64

/* The null sentinel (a fixed address, identical in every lua_State). */
void *jsonlua_null(void);

/*
 * Decode s[0..len) and push the resulting value on L.
 *
 * Must run inside a protected call (lua_pcall / lua_resume): building tables allocates and
 * the allocator may refuse (memory cap), which raises a Lua error.
 *
 * Returns 0 with exactly one value pushed; -EBADMSG when the text is not valid JSON: nothing
 * is pushed and err (errlen bytes, may be NULL/0) says "offset N: what" with N the byte
 * offset of the problem.
 */
int jsonlua_decode(lua_State *L, const char *s, size_t len, char *err, size_t errlen);

/*
 * Non-zero when s[0..len) is valid UTF-8 by the same rules the decoder applies (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). Shared with topic validation, since
 * MQTT topics must be UTF-8 too.
 */
int jsonlua_utf8_valid(const char *s, size_t len);

#endif
