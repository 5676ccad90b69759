/*
 * rules_harness.h — test harness for rule tests: a capture sink that records every publish,
 * point and log line the rule makes, and helpers to load a rule from text (written to a
 * private temp directory) and feed it packets, lines and ticks.
 *
 * Header-only (static functions) so each test executable includes exactly what it uses.
 */
#ifndef IIOTGW_TEST_RULES_HARNESS_H
#define IIOTGW_TEST_RULES_HARNESS_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>

#include "rules.h"

#define CAP_MAX 512

struct cap_pub {
    char *topic;
    char *payload;
    size_t len;
    int qos;
    bool retain;
};

struct cap {
    struct cap_pub pub[CAP_MAX];
    size_t npub;
    char *line[CAP_MAX];
    size_t nline;
    char *log[CAP_MAX]; /* "level where msg" */
    size_t nlog;
};

static char *dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static __attribute__((unused)) int cap_publish(void *ud, const char *topic, const char *payload,
                                               size_t len, int qos, bool retain)
{
    struct cap *c = ud;
    if (c->npub == CAP_MAX)
        return -ENOSPC;
    struct cap_pub *p = &c->pub[c->npub++];
    p->topic = dup_n(topic, strlen(topic));
    p->payload = dup_n(payload, len);
    p->len = len;
    p->qos = qos;
    p->retain = retain;
    return 0;
}

static __attribute__((unused)) int cap_write(void *ud, const char *line, size_t len)
{
    struct cap *c = ud;
    if (c->nline == CAP_MAX)
        return -ENOSPC;
    c->line[c->nline++] = dup_n(line, len);
    return 0;
}

static __attribute__((unused)) void cap_log(void *ud, int level, const char *where, const char *msg)
{
    struct cap *c = ud;
    if (c->nlog == CAP_MAX)
        return;
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%d %s %s", level, where, msg);
    c->log[c->nlog++] = dup_n(tmp, strlen(tmp));
}

static __attribute__((unused)) void cap_clear(struct cap *c)
{
    for (size_t i = 0; i < c->npub; i++) {
        free(c->pub[i].topic);
        free(c->pub[i].payload);
    }
    for (size_t i = 0; i < c->nline; i++)
        free(c->line[i]);
    for (size_t i = 0; i < c->nlog; i++)
        free(c->log[i]);
    c->npub = c->nline = c->nlog = 0;
}

/* Assert publish #i is exactly (topic, payload, qos, retain). */
static __attribute__((unused)) void expect_pub(const struct cap *c, size_t i, const char *topic,
                                               const char *payload, int qos, bool retain)
{
    if (i >= c->npub)
        fail_msg("publish #%zu missing (only %zu): wanted %s %s", i, c->npub, topic, payload);
    assert_string_equal(c->pub[i].topic, topic);
    assert_string_equal(c->pub[i].payload, payload);
    assert_int_equal(c->pub[i].qos, qos);
    assert_int_equal(c->pub[i].retain, retain);
}

struct harness {
    char dir[64];
    char path[128];
    struct cap cap;
    struct rules *r;
    char err[512];
};

static __attribute__((unused)) void h_write_rule(struct harness *h, const char *lua)
{
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", h->path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    assert_int_equal(fputs(lua, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, h->path), 0); /* atomic, as an editor would */
}

/* Write `lua` to <tmpdir>/rule.lua and open it; returns rules_open's code (err in h->err). */
static __attribute__((unused)) int h_open(struct harness *h, const char *lua, size_t mem_limit,
                                          uint64_t instr_limit)
{
    memset(h, 0, sizeof *h);
    snprintf(h->dir, sizeof h->dir, "/tmp/rules-test-XXXXXX");
    assert_non_null(mkdtemp(h->dir));
    snprintf(h->path, sizeof h->path, "%s/rule.lua", h->dir);
    h_write_rule(h, lua);
    /* A generous time limit: these tests are about the other limits, and a memory bomb on a
     * loaded, sanitized build can take longer than the default 1 s (the time limit itself is
     * tested in test_rules_limits.c). */
    struct rules_config cfg = {.path = h->path,
                               .prefix = NULL,
                               .mem_limit = mem_limit,
                               .instr_limit = instr_limit,
                               .time_limit = 30};
    struct rule_sink sink = {
        .ud = &h->cap, .publish = cap_publish, .write = cap_write, .log = cap_log};
    return rules_open(&h->r, &cfg, &sink, h->err, sizeof h->err);
}

/* Open a rule file as it is (e.g. rules/default.lua). */
static __attribute__((unused)) int h_open_file(struct harness *h, const char *path,
                                               const char *prefix)
{
    memset(h, 0, sizeof *h);
    struct rules_config cfg = {.path = path, .prefix = prefix};
    struct rule_sink sink = {
        .ud = &h->cap, .publish = cap_publish, .write = cap_write, .log = cap_log};
    return rules_open(&h->r, &cfg, &sink, h->err, sizeof h->err);
}

static __attribute__((unused)) int h_packet(struct harness *h, const char *json, int64_t rx_ns)
{
    struct packet p = {
        .source = "test", .line_no = 7, .rx_ns = rx_ns, .json = json, .json_len = strlen(json)};
    h->err[0] = '\0';
    return rules_packet(h->r, &p, h->err, sizeof h->err);
}

static __attribute__((unused)) int h_tick(struct harness *h, int64_t now_ns)
{
    h->err[0] = '\0';
    return rules_tick(h->r, now_ns, h->err, sizeof h->err);
}

static __attribute__((unused)) int h_reload(struct harness *h, const char *lua)
{
    h_write_rule(h, lua);
    h->err[0] = '\0';
    return rules_reload(h->r, h->err, sizeof h->err);
}

static __attribute__((unused)) void h_close(struct harness *h)
{
    rules_close(h->r);
    h->r = NULL;
    cap_clear(&h->cap);
    if (h->dir[0]) {
        unlink(h->path);
        rmdir(h->dir);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Real Lua bytecode, for the "binary chunks are refused" tests                          */
/* ------------------------------------------------------------------------------------ */

struct h_bytes {
    char *p;
    size_t len;
};

static __attribute__((unused)) int h_dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    struct h_bytes *b = ud;
    b->p = realloc(b->p, b->len + sz);
    assert_non_null(b->p);
    memcpy(b->p + b->len, p, sz);
    b->len += sz;
    return 0;
}

/* Compile `src` in a plain state and return its bytecode (malloc'd, caller frees). */
static __attribute__((unused)) char *h_bytecode(const char *src, size_t *len)
{
    lua_State *L = luaL_newstate();
    assert_int_equal(luaL_loadstring(L, src), LUA_OK);
    struct h_bytes b = {0};
    assert_int_equal(lua_dump(L, h_dump_writer, &b, 0), 0);
    lua_close(L);
    assert_int_equal(b.p[0], 27); /* ESC "Lua": really a binary chunk */
    *len = b.len;
    return b.p;
}

#endif
