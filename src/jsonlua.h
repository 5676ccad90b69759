/*
 * jsonlua.h — JSON <-> Lua values for the rule engine: a strict JSON (RFC 8259) decoder that
 * builds Lua values directly, and the encoder behind gw.json and gw.publish(table).
 *
 * Why the decoder is not cJSON: cJSON stores every number as a double, so it cannot tell
 * `24.0` from `24` nor keep `84190` an integer, and the gateway promises that integers stay
 * integers end to end (MQTT payload "84190", never "84190.0") while floats stay floats
 * ("24.0" stays a float). Decoding straight into Lua values also skips the intermediate tree,
 * which matters on the hot path (one decode per packet, >= 200k packets/s target).
 *
 * Decoding, JSON -> Lua:
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
 * Encoding, Lua -> JSON (compact, no whitespace), the inverse where one exists:
 *   nil, jsonlua_null() -> null;  booleans -> true/false
 *   integer -> its decimal text ("84190"); float -> the shortest text that reads back as the
 *              same double and always reads as a float ("24.0", "27.6", "1e+300"), see
 *              jsonlua_number(); NaN and +-Inf have no JSON form
 *   string  -> JSON string (cJSON's escaping; bytes >= 0x80 are copied as they are); a string
 *              containing a NUL byte is refused
 *   table   -> array when its keys are exactly 1..n with n >= 1, else object; object keys
 *              must be strings without NUL and are emitted sorted (bytewise) so that the same
 *              table always gives the same text (Lua's hash order is not stable); {} -> {}
 *   functions, full userdata, threads and other light userdata have no JSON form
 * Limits: tables nested at most JSONLUA_MAX_DEPTH deep (a cycle hits this limit), at most
 * JSONLUA_MAX_NODES values in all; the text is built in memory allocated through L (a
 * userdata), so it counts against the rule state's memory cap: a table that references one
 * long string many times fails with -ENOMEM at the cap instead of growing the process.
 * Object keys are sorted with qsort: O(n log n) per object.
 *
 * Ownership and lifetimes: no state of its own, nothing kept between calls. The caller owns
 * every input text; values pushed on L are ordinary Lua values owned by L's garbage collector.
 * The encoder's scratch memory is Lua garbage once jsonlua_encode returns.
 *
 * Re-entrancy: every function is re-entrant and may run concurrently in several threads on
 * different lua_States (a lua_State itself is used by one thread at a time, as Lua requires).
 */
#ifndef IIOTGW_JSONLUA_H
#define IIOTGW_JSONLUA_H

#include <stddef.h>

#include <lua.h>

#define JSONLUA_MAX_DEPTH 64     /* nesting of arrays/objects, decoding and encoding */
#define JSONLUA_MAX_NODES 100000 /* values in one encoded document */
#define JSONLUA_NUM_MAX   48     /* buffer size for jsonlua_number(), NUL included */

/* The null sentinel (a fixed address, identical in every lua_State; never dereference it). */
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

/*
 * Encode the Lua value at idx (any valid index) as compact JSON by the mapping above and push
 * the text as a Lua string.
 *
 * Runs its own protected call: an allocation refused by L's allocator (memory cap) is
 * returned as -ENOMEM, never raised.
 *
 * Returns 0 with exactly one string pushed. Otherwise nothing is pushed, err (errlen bytes,
 * may be NULL/0) gets a reason without a prefix (e.g. "non-finite number (nan/inf) has no
 * JSON form"; the caller names the API function) and the return is
 *   -EINVAL  the value has no JSON form (unsupported type, NUL in a string or key, a key that
 *            is not a string, nesting deeper than JSONLUA_MAX_DEPTH, more than
 *            JSONLUA_MAX_NODES values, NaN/Inf);
 *   -ENOMEM  L's allocator refused (memory cap: err then says how large the text had grown)
 *            or L's stack ran out.
 * The value at idx is not modified; on failure the stack is left as it was.
 */
int jsonlua_encode(lua_State *L, int idx, char *err, size_t errlen);

/*
 * The JSON text of the number at idx, which must be a number (lua_type == LUA_TNUMBER):
 * an integer as "%lld", a float as the shortest round-trip text that always reads as a
 * float ("24.0", "27.6", "-0.0", "1e+300"). Also used for MQTT payloads and tag values, so
 * a number reads the same in every output. Writes out[0..return] (NUL-terminated, at most
 * JSONLUA_NUM_MAX bytes). Returns the length, or 0 for NaN/+-Inf (out is then undefined).
 * Never raises, never allocates.
 */
size_t jsonlua_number(lua_State *L, int idx, char *out);

#endif
