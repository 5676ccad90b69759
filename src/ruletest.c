/*
 * ruletest.c — `iiotgw test FILE...`: parse rule test files, run each test through an
 * embedded gateway on a virtual clock, compare what it printed with the expectations.
 * See ruletest.h for the picture and docs/rules.md ("Rule tests") for the format.
 *
 * Why through the gateway and the --dry-run printer rather than a rule_sink of our own: the
 * test then runs the daemon's code from the framer to the sink seam (cleaning, extraction,
 * dead-letters, the rule engine, the line-protocol encoder, forward.c), and the expected lines
 * are exactly what `--dry-run` shows, so a rule author can paste them.
 *
 * Robustness: a test file is untrusted text. Every problem in it is a "FILE:LINE: message"
 * and exit code 2, never a crash; a rule that does not load fails its test with the loader's
 * message. Sizes are bounded (RT_MAX_FILE per test file and per capture).
 */
#include "ruletest.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <ev.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "alerts.h"
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "frame.h"
#include "gateway.h"
#include "log.h"
#include "params.h"
#include "replay.h"

#define RT_MAX_FILE     (64u << 20)  /* bytes: a test file or a capture */
#define RT_DEFAULT_T0   1767225600LL /* s: 2026-01-01T00:00:00Z, the default virtual start */
#define RT_DIFF_CONTEXT 3            /* matching lines shown around a difference */
#define RT_DIFF_MAX     80           /* diff lines printed per list, then "..." */
#define RT_LCS_MAX      (4u << 20)   /* cells of the diff table; beyond: line by line */
/* on_tick calls per test (11.6 days of 1 s ticks): a mistyped @advance must not hang CI. */
#define RT_MAX_TICKS 1000000u

static const char usage[] = "Usage: iiotgw test FILE...\n"
                            "Run rule test files (format: docs/rules.md, \"Rule tests\").\n"
                            "Prints one \"ok N - name\" or \"FAIL N - name\" line per test, a "
                            "diff for each failure,\n"
                            "and \"N passed, M failed\" last.\n"
                            "Exit status: 0 all passed; 1 a test failed; 2 usage error or a test "
                            "file that cannot be\n"
                            "read or parsed (FILE:LINE: message on stderr).\n";

/* ------------------------------------------------------------------------------------------
 * The parsed file
 * ---------------------------------------------------------------------------------------- */

enum rt_sect {
    RT_RULE,
    RT_CONFIG,
    RT_START,
    RT_INPUT,
    RT_PUBLISHES, /* first of the expectation lists */
    RT_POINTS,
    RT_DEADLETTERS,
    RT_ALERTS,
    RT_NSECT
};
#define RT_NOUT 4 /* expectation lists, RT_PUBLISHES .. RT_ALERTS */

static const char *const sect_names[RT_NSECT] = {"rule",      "config", "start",       "input",
                                                 "publishes", "points", "deadletters", "alerts"};

struct rt_line {
    char *text;
    int lineno;   /* in the test file */
    bool pattern; /* "~ PATTERN": text holds the pattern */
};

struct rt_list {
    struct rt_line *v;
    size_t n, cap;
};

struct rt_test {
    char *name;
    int lineno;
    bool has[RT_NSECT];
    char *value[RT_NSECT]; /* "--- name: value" (lists: "unordered" or "contains") */
    int value_line[RT_NSECT];
    struct rt_list body[RT_NSECT];
};

struct rt_file {
    const char *path;
    char *dir;               /* the test file's directory, for relative paths */
    struct rt_test defaults; /* sections before the first test */
    struct rt_test *tests;
    size_t ntests;
};

/* The runner's context: one per `iiotgw test` invocation. */
struct rt {
    lua_State *L; /* plain state with the string library, for "~ " patterns */
    struct ev_loop *loop;
    int num; /* tests run so far (the N of "ok N") */
    int passed, failed;
};

static int rt_list_add(struct rt_list *l, const char *text, size_t len, int lineno, bool pattern)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct rt_line *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    char *s = strndup(text, len);
    if (!s)
        return -ENOMEM;
    l->v[l->n++] = (struct rt_line){.text = s, .lineno = lineno, .pattern = pattern};
    return 0;
}

static void rt_list_free(struct rt_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].text);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static void rt_test_free(struct rt_test *t)
{
    free(t->name);
    for (int s = 0; s < RT_NSECT; s++) {
        free(t->value[s]);
        rt_list_free(&t->body[s]);
    }
    memset(t, 0, sizeof *t);
}

static void rt_file_free(struct rt_file *f)
{
    for (size_t i = 0; i < f->ntests; i++)
        rt_test_free(&f->tests[i]);
    free(f->tests);
    rt_test_free(&f->defaults);
    free(f->dir);
    memset(f, 0, sizeof *f);
}

/* The section a test uses: its own, else the file's default (NULL: neither has it). */
static const struct rt_test *rt_pick(const struct rt_file *f, const struct rt_test *t,
                                     enum rt_sect s)
{
    if (t->has[s])
        return t;
    return f->defaults.has[s] ? &f->defaults : NULL;
}

/* ------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------- */

static int rt_read_file(const char *path, char **out, size_t *outlen)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    if (!fp)
        return -errno;
    errno = 0;
    for (;;) {
        if (cap - len < 65536) {
            if (cap >= RT_MAX_FILE) {
                rc = -EFBIG;
                goto fail;
            }
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                rc = -ENOMEM;
                goto fail;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, fp);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(fp)) {
        rc = errno ? -errno : -EIO; /* a directory: EISDIR */
        goto fail;
    }
    fclose(fp);
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;
fail:
    fclose(fp);
    free(buf);
    return rc;
}

/* `rel` resolved against `dir` unless absolute; malloc'ed (NULL: out of memory). */
static char *rt_path(const char *dir, const char *rel)
{
    if (rel[0] == '/' || !dir[0])
        return strdup(rel);
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, rel);
    return p;
}

static char *rt_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Seconds (a finite number >= 0) from text. */
static bool rt_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (*end == ' ' || *end == '\t')
        end++;
    if (end == s || *end || errno || !isfinite(v) || v < 0 || v > 1e9)
        return false;
    *out = v;
    return true;
}

/* A start time: what clock_parse_time() takes (ISO-8601 with a zone, or @SECONDS), between
 * 1970 and 2096 so that the virtual clock's ns arithmetic has room. */
static bool rt_parse_start(const char *s, int64_t *out_ns)
{
    int64_t ns;
    if (clock_parse_time(s, &ns) || ns < 0 || ns > 4000000000LL * 1000000000LL)
        return false;
    *out_ns = ns;
    return true;
}

/*
 * Is `p` a well-formed Lua pattern? string.find reports a malformed pattern only when the
 * match reaches the bad spot, so the test file's patterns are checked here, by the rules of
 * lstrlib.c (sets, %b, %f, captures), and the error points at the file's line at parse time.
 */
static bool rt_pattern_ok(const char *p, char *err, size_t errlen)
{
    const char *why = NULL;
    int depth = 0;
    for (size_t i = 0; p[i] && !why;) {
        char c = p[i++];
        if (c == '%') {
            if (!p[i]) {
                why = "ends with '%'";
            } else if (p[i] == 'b') {
                if (!p[i + 1] || !p[i + 2])
                    why = "missing arguments to '%b'";
                else
                    i += 3;
            } else if (p[i] == 'f') {
                if (p[i + 1] != '[')
                    why = "missing '[' after '%f'";
                else
                    c = '[', i += 2;
            } else {
                i++;
            }
        } else if (c == '(') {
            depth++;
        } else if (c == ')') {
            if (--depth < 0)
                why = "')' without '('";
        }
        if (c == '[' && !why) {
            if (p[i] == '^')
                i++;
            do {
                if (!p[i]) {
                    why = "missing ']'";
                    break;
                }
                if (p[i++] == '%' && p[i])
                    i++;
            } while (p[i] != ']');
            if (!why)
                i++;
        }
    }
    if (!why && depth > 0)
        why = "unfinished capture";
    if (why)
        snprintf(err, errlen, "bad pattern \"%s\": %s", p, why);
    return why == NULL;
}

/* Does the whole of `s` match the Lua pattern `p` (anchored at both ends)? */
static bool rt_pattern_match(lua_State *L, const char *p, const char *s)
{
    size_t n = strlen(p);
    if (n && p[0] == '^')
        p++, n--;
    if (n && p[n - 1] == '$' && (n < 2 || p[n - 2] != '%'))
        n--;
    lua_getglobal(L, "string");
    lua_getfield(L, -1, "find");
    lua_pushstring(L, s);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '^');
    luaL_addlstring(&b, p, n);
    luaL_addchar(&b, '$');
    luaL_pushresult(&b);
    bool ok = lua_pcall(L, 2, 1, 0) == LUA_OK && !lua_isnil(L, -1);
    lua_pop(L, 2);
    return ok;
}

/*
 * "@param NAME [NODE] = VALUE" -> its parts, in place in `s` (a copy). NODE is NULL for a
 * global param. Returns false when the step is malformed.
 */
static bool rt_param_step(char *s, char **name, char **node, char **value)
{
    char *eq = strchr(s, '=');
    if (strncmp(s, "@param ", 7) || !eq)
        return false;
    *eq = '\0';
    *value = rt_trim(eq + 1);
    char *save = NULL;
    *name = strtok_r(s + 7, " \t", &save);
    *node = *name ? strtok_r(NULL, " \t", &save) : NULL;
    return *name && (*value)[0] && !strtok_r(NULL, " \t", &save);
}

/* ------------------------------------------------------------------------------------------
 * Parsing
 * ---------------------------------------------------------------------------------------- */

struct rt_parser {
    struct rt *rt;
    struct rt_file *f;
    int lineno;
    int errors;
};

static void rt_perr(struct rt_parser *p, int lineno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void rt_perr(struct rt_parser *p, int lineno, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: ", p->f->path, lineno);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    p->errors++;
}

/* Check what can be checked without running: sections, paths, directives, config keys. */
static void rt_validate(struct rt_parser *p, const struct rt_test *t)
{
    const struct rt_file *f = p->f;
    char err[512];
    if (t != &f->defaults && !rt_pick(f, t, RT_RULE))
        rt_perr(p, t->lineno, "test \"%s\" names no rule (add \"--- rule: FILE\")", t->name);
    if (t->has[RT_RULE]) {
        char *path = rt_path(f->dir, t->value[RT_RULE]);
        if (path && access(path, R_OK) != 0)
            rt_perr(p, t->value_line[RT_RULE], "rule file %s: %s", path, strerror(errno));
        free(path);
    }
    if (t->has[RT_START]) {
        int64_t s;
        if (!rt_parse_start(t->value[RT_START], &s))
            rt_perr(p, t->value_line[RT_START],
                    "start: \"%s\" is not a time between 1970 and 2096 "
                    "(YYYY-MM-DDTHH:MM:SSZ or @SECONDS)",
                    t->value[RT_START]);
    }
    if (t->has[RT_CONFIG]) {
        struct config cfg;
        if (config_defaults(&cfg) == 0) {
            for (size_t i = 0; i < t->body[RT_CONFIG].n; i++) {
                const struct rt_line *l = &t->body[RT_CONFIG].v[i];
                char *kv = strdup(l->text);
                char *eq = kv ? strchr(kv, '=') : NULL;
                if (!eq) {
                    rt_perr(p, l->lineno, "config: expected KEY = VALUE, got \"%s\"", l->text);
                } else {
                    *eq = '\0';
                    if (config_set(&cfg, rt_trim(kv), rt_trim(eq + 1), err, sizeof err))
                        rt_perr(p, l->lineno, "config: %s", err);
                }
                free(kv);
            }
            config_free(&cfg);
        }
    }
    const struct rt_list *in = &t->body[RT_INPUT];
    for (size_t i = 0; i < in->n; i++) {
        const char *s = in->v[i].text;
        if (s[0] != '@' || s[1] == '@')
            continue;
        double sec;
        if (strncmp(s, "@advance ", 9) == 0 || strncmp(s, "@every ", 7) == 0) {
            if (!rt_seconds(strchr(s, ' ') + 1, &sec))
                rt_perr(p, in->v[i].lineno, "%.*s: expected seconds (a number >= 0)",
                        (int)(strchr(s, ' ') - s), s);
        } else if (strcmp(s, "@tick") == 0) {
        } else if (strncmp(s, "@param ", 7) == 0) {
            char *c = strdup(s), *name, *node, *value;
            if (c && !rt_param_step(c, &name, &node, &value))
                rt_perr(p, in->v[i].lineno, "@param: expected @param NAME [NODE] = VALUE");
            free(c);
        } else if (strncmp(s, "@file ", 6) == 0) {
            char *path = rt_path(f->dir, rt_trim((char *)s + 6));
            if (path && access(path, R_OK) != 0)
                rt_perr(p, in->v[i].lineno, "@file %s: %s", path, strerror(errno));
            free(path);
        } else {
            rt_perr(p, in->v[i].lineno,
                    "unknown input step \"%s\" (expected @advance N, @every N, @tick, @file "
                    "PATH, @param NAME [NODE] = VALUE; a literal line starting with @ is "
                    "written @@)",
                    s);
        }
    }
    for (int s = RT_PUBLISHES; s < RT_NSECT; s++)
        for (size_t i = 0; i < t->body[s].n; i++)
            if (t->body[s].v[i].pattern && !rt_pattern_ok(t->body[s].v[i].text, err, sizeof err))
                rt_perr(p, t->body[s].v[i].lineno, "%s", err);
}

static int rt_parse(struct rt *rt, struct rt_file *f, char *text, size_t len, int *errors)
{
    struct rt_parser p = {.rt = rt, .f = f};
    struct rt_test *cur = &f->defaults; /* before the first "===": the defaults */
    int sect = -1; /* the section lines go to; -1: none yet; -2: a bad one (body ignored) */
    size_t cap = 0;
    char *line = text, *end = text + len;

    for (int lineno = 1; line < end; lineno++) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        char *next = nl ? nl + 1 : end;
        size_t n = (size_t)((nl ? nl : end) - line);
        if (n && line[n - 1] == '\r')
            n--;
        line[n] = '\0';
        if (memchr(line, '\0', n)) {
            rt_perr(&p, lineno, "NUL byte in the test file");
            line = next;
            continue;
        }

        if (strncmp(line, "===", 3) == 0) {
            rt_validate(&p, cur);
            if (f->ntests == cap) {
                cap = cap ? cap * 2 : 8;
                struct rt_test *v = realloc(f->tests, cap * sizeof *v);
                if (!v)
                    return -ENOMEM;
                f->tests = v;
            }
            cur = &f->tests[f->ntests++];
            memset(cur, 0, sizeof *cur);
            cur->lineno = lineno;
            char *name = rt_trim(line + 3);
            /* "TEST 3: name" -> "name": the runner numbers the tests itself. */
            if (strncmp(name, "TEST", 4) == 0) {
                char *q = name + 4;
                while (*q == ' ' || (*q >= '0' && *q <= '9'))
                    q++;
                if (*q == ':')
                    name = rt_trim(q + 1);
            }
            if (!(cur->name = strdup(name[0] ? name : "(unnamed)")))
                return -ENOMEM;
            sect = -1;
        } else if (strncmp(line, "---", 3) == 0 && (line[3] == ' ' || line[3] == '\0')) {
            char *h = rt_trim(line + 3);
            char *colon = strchr(h, ':');
            char *value = NULL;
            if (colon) {
                *colon = '\0';
                value = rt_trim(colon + 1);
                h = rt_trim(h);
            }
            sect = -1;
            for (int s = 0; s < RT_NSECT; s++)
                if (strcmp(h, sect_names[s]) == 0)
                    sect = s;
            if (sect < 0) {
                rt_perr(&p, lineno,
                        "unknown section \"--- %s\" (expected rule, config, start, input, "
                        "publishes, points, deadletters, alerts)",
                        h);
                sect = -2;
            } else if (cur->has[sect]) {
                rt_perr(&p, lineno, "section \"--- %s\" given twice", h);
                sect = -2;
            } else {
                bool wants_value = sect == RT_RULE || sect == RT_START;
                bool unordered =
                    sect >= RT_PUBLISHES && value &&
                    (strcmp(value, "unordered") == 0 || strcmp(value, "contains") == 0);
                if (unordered) {
                    cur->has[sect] = true;
                    cur->value_line[sect] = lineno;
                    if (!(cur->value[sect] = strdup(value)))
                        return -ENOMEM;
                } else if (wants_value && (!value || !value[0])) {
                    rt_perr(&p, lineno, "\"--- %s: VALUE\" needs its value on the same line", h);
                    sect = -2;
                } else if (!wants_value && value && value[0]) {
                    rt_perr(&p, lineno,
                            sect >= RT_PUBLISHES
                                ? "\"--- %s\" takes no value but \"unordered\" or \"contains\"; "
                                  "put its lines below it"
                                : "\"--- %s\" takes no value; put its lines below it",
                            h);
                    sect = -2;
                } else {
                    cur->has[sect] = true;
                    cur->value_line[sect] = lineno;
                    if (wants_value && !(cur->value[sect] = strdup(value)))
                        return -ENOMEM;
                    if (wants_value)
                        sect = -1; /* no body */
                }
            }
        } else {
            /* A body line, or a comment / blank line outside the input block. */
            bool blank = line[strspn(line, " \t")] == '\0'; /* input lines stay as written */
            if (sect == RT_INPUT) {
                /* Kept as written: "@@" is unescaped when fed; "@..." is a step (its trailing
                 * blanks are not part of it). */
                if (line[0] == '@' && line[1] != '@')
                    rt_trim(line);
                if (!blank && rt_list_add(&cur->body[sect], line, strlen(line), lineno, false))
                    return -ENOMEM;
            } else if (blank || line[0] == '#' || sect == -2) {
                /* comment, or the body of a section already reported as bad */
            } else if (sect < 0) {
                rt_perr(&p, lineno,
                        cur == &f->defaults ? "text before the first test (start a test with "
                                              "\"=== name\", a comment with #)"
                                            : "text outside a section (sections start with "
                                              "\"--- name\")");
            } else {
                bool pat = line[0] == '~' && line[1] == ' ';
                char *s = pat ? line + 2 : rt_trim(line);
                /* Lines pasted from --dry-run keep their keyword: drop it. */
                if ((sect == RT_PUBLISHES || sect == RT_ALERTS) && !strncmp(s, "PUBLISH ", 8))
                    s += 8;
                else if (sect == RT_POINTS && !strncmp(s, "WRITE ", 6))
                    s += 6;
                if (rt_list_add(&cur->body[sect], s, strlen(s), lineno, pat))
                    return -ENOMEM;
            }
        }
        line = next;
    }
    rt_validate(&p, cur);
    if (f->ntests == 0)
        rt_perr(&p, 1, "no tests (a test starts with a line \"=== name\")");
    *errors = p.errors;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Running one test: the embedded gateway on a virtual clock
 * ---------------------------------------------------------------------------------------- */

struct rt_run {
    struct gateway gw;
    int64_t now_ns;       /* the virtual clock */
    int64_t next_tick_ns; /* ticks at start + k * tick_interval */
    int64_t tick_ns;
    int64_t every_ns; /* @every: advance before each input line */
    uint64_t ticks;   /* on_tick calls so far, bounded by RT_MAX_TICKS */
    const char *source;
    /* clock.mode packet / log: each line's time from the capture, as a replay derives it
     * (replay_uptime + one clock_track per source, the first timed line at the start). */
    struct replay_config rc;
    struct clock_track *track; /* of the source being fed */
    int64_t start_ns;
    struct buf copy; /* the line, cleaned for replay_uptime */
};

/* Move the clock forward by dt_ns, calling on_tick at every tick boundary crossed. */
static void rt_advance(struct rt_run *r, int64_t dt_ns)
{
    int64_t target;
    if (__builtin_add_overflow(r->now_ns, dt_ns, &target))
        target = INT64_MAX; /* the tick bound below ends such a test */
    while (r->next_tick_ns <= target && r->ticks <= RT_MAX_TICKS) {
        if (++r->ticks > RT_MAX_TICKS)
            return; /* reported by rt_run_test */
        r->now_ns = r->next_tick_ns;
        if (__builtin_add_overflow(r->next_tick_ns, r->tick_ns, &r->next_tick_ns))
            r->next_tick_ns = INT64_MAX;
        clock_set(&r->gw.clock, r->now_ns);
        gateway_feed_tick(&r->gw);
    }
    r->now_ns = target;
}

static void rt_on_line(void *ud, char *line, size_t len, uint64_t line_no, unsigned flags)
{
    struct rt_run *r = ud;
    if (r->every_ns)
        rt_advance(r, r->every_ns);
    int64_t u;
    r->copy.len = 0;
    if (r->rc.mode != CLOCK_MODE_RECEIVE && !(flags & FRAME_OVERLONG) &&
        buf_append(&r->copy, line, len) == 0 && replay_uptime(&r->rc, r->copy.p, len, &u) == 0) {
        /* Never backwards (the replay's rule): a line timed before now is received now. */
        int64_t v = clock_track_map(r->track, r->start_ns, u);
        if (v > r->now_ns)
            rt_advance(r, v - r->now_ns);
    }
    clock_set(&r->gw.clock, r->now_ns);
    gateway_feed_line(&r->gw, r->source, line, len, line_no, flags);
}

/* The basename of `path` as a source name (the dead-letter's "source"). */
static const char *rt_basename(const char *path)
{
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

/* One got output, in the form the expectations are written in. */
struct rt_got {
    struct rt_list list[RT_NOUT];
};

/* One got line (no place in the test file: lineno 0). */
static int rt_got_add(struct rt_list *l, const char *s, size_t n)
{
    return rt_list_add(l, s, n, 0, false);
}

/*
 * Sort the printer's output into the four lists. The printer writes one line per output
 * (dryrun.h); a payload containing '\n' continues on the next lines, which are re-joined
 * here with a literal "\n".
 */
static int rt_collect(const char *out, size_t len, const struct alerts *al, struct rt_got *g)
{
    struct buf acc = {0};
    int kind = -1; /* list of the output being accumulated */
    const char *p = out, *end = out + len;
    int rc = 0;
    while (p < end || kind >= 0) {
        const char *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        int k = -2; /* -2: continuation of the previous output */
        const char *body = p;
        if (p >= end)
            k = -1; /* flush the last one */
        else if (n >= 8 && memcmp(p, "PUBLISH ", 8) == 0)
            k = RT_PUBLISHES, body = p + 8;
        else if (n >= 6 && memcmp(p, "WRITE ", 6) == 0)
            k = RT_POINTS, body = p + 6;
        else if (n >= 11 && memcmp(p, "DEADLETTER ", 11) == 0)
            k = RT_DEADLETTERS, body = p + 11;
        else if (n >= 1 && p[0] == '#')
            k = -1;
        if (k == -2 && kind >= 0) {
            if ((rc = buf_append(&acc, "\\n", 2)) || (rc = buf_append(&acc, p, n)))
                goto fail;
        } else if (k != -2) {
            if (kind >= 0) {
                const char *s = acc.p ? acc.p : "";
                int dest = kind;
                if (kind == RT_PUBLISHES) {
                    const char *sp = memchr(s, ' ', acc.len);
                    char topic[1024];
                    size_t tl = sp ? (size_t)(sp - s) : acc.len;
                    if (tl >= sizeof topic)
                        tl = sizeof topic - 1;
                    memcpy(topic, s, tl);
                    topic[tl] = '\0';
                    if (alerts_match(al, topic))
                        dest = RT_ALERTS;
                    rc = rt_got_add(&g->list[dest - RT_PUBLISHES], s, acc.len);
                } else if (kind == RT_DEADLETTERS) {
                    /* {"time":...,"source":..,"line":..,"reason":..,"error":..,"data":..}
                     * -> "REASON SOURCE:LINE ERROR" (the time is the wall clock: left out) */
                    cJSON *o = cJSON_ParseWithLength(s, acc.len);
                    const cJSON *src = cJSON_GetObjectItem(o, "source");
                    const cJSON *ln = cJSON_GetObjectItem(o, "line");
                    const cJSON *rs = cJSON_GetObjectItem(o, "reason");
                    const cJSON *er = cJSON_GetObjectItem(o, "error");
                    char *t = NULL;
                    int tn =
                        asprintf(&t, "%s %s:%.0f %s", cJSON_IsString(rs) ? rs->valuestring : "?",
                                 cJSON_IsString(src) ? src->valuestring : "?",
                                 cJSON_IsNumber(ln) ? ln->valuedouble : 0.0,
                                 cJSON_IsString(er) ? er->valuestring : "");
                    cJSON_Delete(o);
                    rc =
                        tn < 0 ? -ENOMEM : rt_got_add(&g->list[dest - RT_PUBLISHES], t, (size_t)tn);
                    free(t);
                } else {
                    rc = rt_got_add(&g->list[dest - RT_PUBLISHES], s, acc.len);
                }
                if (rc)
                    goto fail;
                acc.len = 0;
            }
            kind = k >= 0 ? k : -1;
            if (kind >= 0 && (rc = buf_append(&acc, body, (size_t)(le - body))))
                goto fail;
        }
        if (p >= end)
            break;
        p = nl ? nl + 1 : end;
    }
fail:
    buf_free(&acc);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Comparing: expected lines against got lines, a diff when they differ
 * ---------------------------------------------------------------------------------------- */

static bool rt_match(struct rt *rt, const struct rt_line *exp, const struct rt_line *got)
{
    return exp->pattern ? rt_pattern_match(rt->L, exp->text, got->text)
                        : strcmp(exp->text, got->text) == 0;
}

enum rt_op { OP_SAME, OP_EXP, OP_GOT };

struct rt_diff {
    enum rt_op *op;
    size_t *ei, *gi; /* index into expected / got for each op */
    size_t n;
};

/*
 * Longest common subsequence under rt_match, as a list of operations. Tables larger than
 * RT_LCS_MAX cells fall back to a position-by-position comparison (a long capture whose
 * output shifted is still shown, less neatly). Returns 0 or -ENOMEM.
 */
static int rt_diff(struct rt *rt, const struct rt_list *e, const struct rt_list *g,
                   struct rt_diff *d)
{
    size_t n = e->n, m = g->n, cap = n + m + 1;
    uint32_t *t = NULL;
    int rc = -ENOMEM;
    memset(d, 0, sizeof *d);
    d->op = malloc(cap * sizeof *d->op);
    d->ei = malloc(cap * sizeof *d->ei);
    d->gi = malloc(cap * sizeof *d->gi);
    if (!d->op || !d->ei || !d->gi)
        goto fail;
    if ((n + 1) * (m + 1) <= RT_LCS_MAX && (t = calloc((n + 1) * (m + 1), sizeof *t))) {
#define T(i, j) t[(i) * (m + 1) + (j)]
        for (size_t i = n; i-- > 0;)
            for (size_t j = m; j-- > 0;)
                T(i, j) = rt_match(rt, &e->v[i], &g->v[j])
                              ? T(i + 1, j + 1) + 1
                              : (T(i + 1, j) > T(i, j + 1) ? T(i + 1, j) : T(i, j + 1));
        size_t i = 0, j = 0;
        while (i < n || j < m) {
            if (i < n && j < m && rt_match(rt, &e->v[i], &g->v[j])) {
                d->op[d->n] = OP_SAME, d->ei[d->n] = i++, d->gi[d->n++] = j++;
            } else if (j < m && (i == n || T(i, j + 1) >= T(i + 1, j))) {
                d->op[d->n] = OP_GOT, d->ei[d->n] = i, d->gi[d->n++] = j++;
            } else {
                d->op[d->n] = OP_EXP, d->ei[d->n] = i++, d->gi[d->n++] = j;
            }
        }
#undef T
    } else {
        size_t i = 0;
        for (; i < n && i < m; i++) {
            if (rt_match(rt, &e->v[i], &g->v[i])) {
                d->op[d->n] = OP_SAME, d->ei[d->n] = i, d->gi[d->n++] = i;
            } else {
                d->op[d->n] = OP_EXP, d->ei[d->n] = i, d->gi[d->n++] = i;
                d->op[d->n] = OP_GOT, d->ei[d->n] = i, d->gi[d->n++] = i;
            }
        }
        for (size_t k = i; k < n; k++)
            d->op[d->n] = OP_EXP, d->ei[d->n] = k, d->gi[d->n++] = m;
        for (size_t k = i; k < m; k++)
            d->op[d->n] = OP_GOT, d->ei[d->n] = n, d->gi[d->n++] = k;
    }
    /* Within each run of changes, pair expected and got lines (- e1, + g1, - e2, + g2 ...):
     * a changed line then shows right above its replacement. */
    for (size_t a = 0; a < d->n;) {
        if (d->op[a] == OP_SAME) {
            a++;
            continue;
        }
        size_t b = a, ne = 0, ng = 0;
        for (; b < d->n && d->op[b] != OP_SAME; b++)
            d->op[b] == OP_EXP ? ne++ : ng++;
        size_t e0 = d->ei[a], g0 = d->gi[a], k = a;
        for (size_t q = 0; q < ne || q < ng; q++) {
            if (q < ne)
                d->op[k] = OP_EXP, d->ei[k] = e0 + q, d->gi[k++] = g0 + (q < ng ? q : ng);
            if (q < ng)
                d->op[k] = OP_GOT, d->ei[k] = e0 + (q < ne ? q : ne), d->gi[k++] = g0 + q;
        }
        a = b;
    }
    rc = 0;
fail:
    free(t);
    return rc;
}

static void rt_diff_free(struct rt_diff *d)
{
    free(d->op);
    free(d->ei);
    free(d->gi);
    memset(d, 0, sizeof *d);
}

/*
 * Print the difference of one list: a header naming the first differing line (expected line
 * with its place in the test file, got line by number), then the diff with RT_DIFF_CONTEXT
 * matching lines around each change: "  " same, "- " expected only, "+ " got only, and ">"
 * in the first column of the first differing line.
 */
static void rt_print_diff(const char *file, const char *what, const struct rt_list *e,
                          const struct rt_list *g, const struct rt_diff *d)
{
    size_t first = d->n;
    for (size_t k = 0; k < d->n; k++)
        if (d->op[k] != OP_SAME) {
            first = k;
            break;
        }
    if (first == d->n)
        return;
    printf("    %s: expected %zu, got %zu; first difference at ", what, e->n, g->n);
    if (d->ei[first] < e->n)
        printf("expected line %zu (%s:%d)", d->ei[first] + 1, file, e->v[d->ei[first]].lineno);
    else
        printf("the end of the expected lines");
    if (d->gi[first] < g->n)
        printf(", got line %zu\n", d->gi[first] + 1);
    else
        printf(", the end of the got lines\n");
    printf("    --- expected\n    +++ got\n");
    size_t printed = 0, elided = 0;
    for (size_t k = 0; k < d->n; k++) {
        bool near = false;
        for (size_t q = k >= RT_DIFF_CONTEXT ? k - RT_DIFF_CONTEXT : 0;
             q < d->n && q <= k + RT_DIFF_CONTEXT; q++)
            if (d->op[q] != OP_SAME)
                near = true;
        if (!near) {
            elided++;
            continue;
        }
        if (elided) {
            printf("      ... %zu matching line%s\n", elided, elided == 1 ? "" : "s");
            elided = 0;
        }
        if (printed++ == RT_DIFF_MAX) {
            printf("      ... (more differences not shown)\n");
            return;
        }
        const char *mark = k == first ? ">" : " ";
        if (d->op[k] == OP_SAME)
            printf("   %s  %s\n", mark, g->v[d->gi[k]].text);
        else if (d->op[k] == OP_EXP)
            printf("   %s- %s%s\n", mark, e->v[d->ei[k]].pattern ? "~ " : "", e->v[d->ei[k]].text);
        else
            printf("   %s+ %s\n", mark, g->v[d->gi[k]].text);
        /* A changed line right above its replacement: a caret under the first byte that
         * differs, for long payloads. */
        if (d->op[k] == OP_GOT && k > 0 && d->op[k - 1] == OP_EXP && !e->v[d->ei[k - 1]].pattern) {
            const char *a = e->v[d->ei[k - 1]].text, *b = g->v[d->gi[k]].text;
            size_t c = 0;
            while (a[c] && a[c] == b[c])
                c++;
            printf("      %*s^\n", (int)c, "");
        }
    }
    if (elided)
        printf("      ... %zu matching line%s\n", elided, elided == 1 ? "" : "s");
}

/*
 * "--- NAME: unordered": put the got lines in the order of the expected ones they match (each
 * expected line takes the first unused got line it matches), the unmatched got lines after
 * them in their own order, so the diff shows only what is really missing or extra. For
 * outputs whose order the rule does not fix (pairs() over a table).
 */
static int rt_unorder(struct rt *rt, const struct rt_list *e, struct rt_list *g)
{
    struct rt_line *v = malloc((g->n ? g->n : 1) * sizeof *v);
    bool *used = calloc(g->n ? g->n : 1, sizeof *used);
    size_t k = 0;
    if (!v || !used) {
        free(v);
        free(used);
        return -ENOMEM;
    }
    for (size_t i = 0; i < e->n; i++)
        for (size_t j = 0; j < g->n; j++)
            if (!used[j] && rt_match(rt, &e->v[i], &g->v[j])) {
                used[j] = true;
                v[k++] = g->v[j];
                break;
            }
    for (size_t j = 0; j < g->n; j++)
        if (!used[j])
            v[k++] = g->v[j];
    if (g->n)
        memcpy(g->v, v, g->n * sizeof *v);
    free(v);
    free(used);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * One test
 * ---------------------------------------------------------------------------------------- */

/* The config of a test: defaults, its config lines, its rule; `lua_path` relative to the file. */
static int rt_config(const struct rt_file *f, const struct rt_test *t, struct config *cfg,
                     char *err, size_t errlen)
{
    int rc = config_defaults(cfg);
    if (rc)
        return rc;
    const struct rt_test *c = rt_pick(f, t, RT_CONFIG);
    for (size_t i = 0; c && i < c->body[RT_CONFIG].n; i++) {
        char *kv = strdup(c->body[RT_CONFIG].v[i].text);
        char *eq = kv ? strchr(kv, '=') : NULL;
        if (!eq) {
            free(kv);
            return -ENOMEM; /* validated at parse time: only out of memory gets here */
        }
        *eq = '\0';
        char *key = rt_trim(kv), *val = rt_trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"')
            val[vl - 1] = '\0', val++;
        if (strcmp(key, "lua_path") == 0) {
            /* Each ';'-separated directory relative to the test file, like the rule. */
            struct buf b = BUF_INIT;
            for (char *save = NULL, *dir = strtok_r(val, ";", &save); dir;
                 dir = strtok_r(NULL, ";", &save)) {
                char *pth = rt_path(f->dir, dir);
                rc = pth ? buf_printf(&b, "%s%s", b.len ? ";" : "", pth) : -ENOMEM;
                free(pth);
                if (rc)
                    break;
            }
            if (!rc)
                rc = config_set(cfg, key, b.p ? b.p : "", err, errlen);
            buf_free(&b);
        } else {
            rc = config_set(cfg, key, val, err, errlen);
        }
        free(kv);
        if (rc)
            return rc;
    }
    const struct rt_test *r = rt_pick(f, t, RT_RULE);
    char *rule = rt_path(f->dir, r->value[RT_RULE]);
    if (!rule)
        return -ENOMEM;
    rc = config_set(cfg, "rules", rule, err, errlen);
    free(rule);
    if (rc)
        return rc;
    /* No network, no files: the embedded gateway prints into memory. */
    if ((rc = config_set(cfg, "mqtt.url", "none", err, errlen)) ||
        (rc = config_set(cfg, "influx.url", "none", err, errlen)))
        return rc;
    cfg->dry_run = true;
    return config_finish(cfg, err, errlen);
}

/* Feed the input block; false on an unreadable capture (err set). */
static bool rt_feed(struct rt_run *r, const struct rt_file *f, const struct rt_list *in,
                    size_t max_line, char *err, size_t errlen)
{
    struct framer fr;
    if (framer_init(&fr, max_line))
        return snprintf(err, errlen, "out of memory"), false;
    struct clock_track input_track = {0};
    r->source = "input";
    r->track = &input_track;
    bool ok = true;
    for (size_t i = 0; i < in->n && ok; i++) {
        const char *s = in->v[i].text;
        double sec;
        if (strncmp(s, "@advance ", 9) == 0) {
            rt_seconds(s + 9, &sec);
            rt_advance(r, (int64_t)llround(sec * 1e9));
        } else if (strncmp(s, "@every ", 7) == 0) {
            rt_seconds(s + 7, &sec);
            r->every_ns = (int64_t)llround(sec * 1e9);
        } else if (strcmp(s, "@tick") == 0) {
            clock_set(&r->gw.clock, r->now_ns);
            gateway_feed_tick(&r->gw);
        } else if (strncmp(s, "@param ", 7) == 0) {
            /* A tunable parameter changed as a technician would (params_set: validated, then
             * the live rule follows, its on_param hook included). A refusal fails the test. */
            char *c = strdup(s), *name = NULL, *node = NULL, *value = NULL, msg[256] = "";
            char who[64];
            snprintf(who, sizeof who, "line %d", in->v[i].lineno);
            struct param_origin origin = {.kind = "test", .who = who};
            clock_set(&r->gw.clock, r->now_ns);
            if (!c || !rt_param_step(c, &name, &node, &value) ||
                params_set(r->gw.params, name, node, value, &origin, msg, sizeof msg) < 0) {
                snprintf(err, errlen, "%s:%d: @param: %s", f->path, in->v[i].lineno,
                         msg[0] ? msg : "out of memory");
                ok = false;
            }
            free(c);
        } else if (strncmp(s, "@file ", 6) == 0) {
            char *rel = strdup(s + 6), *path = rel ? rt_path(f->dir, rt_trim(rel)) : NULL;
            char *data = NULL;
            size_t len = 0;
            int rc = path ? rt_read_file(path, &data, &len) : -ENOMEM;
            if (rc) {
                snprintf(err, errlen, "%s:%d: @file %s: %s", f->path, in->v[i].lineno,
                         path ? path : "", strerror(-rc));
                ok = false;
            } else {
                /* A capture is its own source (named after the file), with its own lines. */
                struct framer cf;
                struct clock_track file_track = {0};
                if (framer_init(&cf, max_line) == 0) {
                    r->source = rt_basename(path);
                    r->track = &file_track;
                    framer_feed(&cf, data, len, rt_on_line, r);
                    framer_finish(&cf, rt_on_line, r);
                    r->source = "input";
                    r->track = &input_track;
                }
                framer_free(&cf);
            }
            free(data);
            free(path);
            free(rel);
        } else {
            if (s[0] == '@')
                s++; /* "@@..." is a line starting with '@' */
            framer_feed(&fr, s, strlen(s), rt_on_line, r);
            framer_feed(&fr, "\n", 1, rt_on_line, r);
        }
    }
    framer_free(&fr);
    return ok;
}

static bool rt_run_test(struct rt *rt, const struct rt_file *f, const struct rt_test *t)
{
    char err[1024] = "";
    struct config cfg;
    struct rt_run *r = calloc(1, sizeof *r);
    struct rt_got got;
    char *out = NULL;
    size_t outlen = 0;
    FILE *mem = NULL;
    bool pass = false, gw_up = false, cfg_up = false;
    memset(&got, 0, sizeof got);
    if (!r) {
        snprintf(err, sizeof err, "out of memory");
        goto done;
    }
    int rc = rt_config(f, t, &cfg, err, sizeof err);
    cfg_up = true;
    if (rc) {
        if (rc == -ENOMEM)
            snprintf(err, sizeof err, "out of memory");
        goto done;
    }
    if (!(mem = open_memstream(&out, &outlen))) {
        snprintf(err, sizeof err, "open_memstream: %s", strerror(errno));
        goto done;
    }
    int64_t start = RT_DEFAULT_T0 * 1000000000LL;
    const struct rt_test *st = rt_pick(f, t, RT_START);
    if (st)
        rt_parse_start(st->value[RT_START], &start);
    r->now_ns = r->start_ns = start;
    /* config_finish() checked these: a bad mode or unit cannot get here. */
    int mode = clock_mode_parse(cfg.clock_mode);
    r->rc.mode = mode < 0 ? CLOCK_MODE_RECEIVE : (enum clock_mode)mode;
    r->rc.field = cfg.clock_field;
    r->rc.unit_ns = clock_unit_parse(cfg.clock_unit);
    /* config_finish() bounds tick_interval below (0.01 s); bound it above for the ns maths. */
    r->tick_ns = (int64_t)llround((cfg.tick_interval < 1e9 ? cfg.tick_interval : 1e9) * 1e9);
    r->next_tick_ns = r->now_ns + r->tick_ns;

    rc = gateway_init_embedded(&r->gw, rt->loop, &cfg, mem, r->now_ns, err, sizeof err);
    gw_up = true;
    if (rc) {
        char why[1024];
        snprintf(why, sizeof why, "the rule did not load: %s",
                 rc == -ENOMEM ? "out of memory" : err);
        snprintf(err, sizeof err, "%s", why);
        goto done;
    }
    const struct rt_test *in = rt_pick(f, t, RT_INPUT);
    if (in && !rt_feed(r, f, &in->body[RT_INPUT], (size_t)cfg.max_line, err, sizeof err))
        goto done;
    if (r->ticks > RT_MAX_TICKS) {
        snprintf(err, sizeof err,
                 "virtual time: more than %u ticks (tick_interval %g s); advance less or raise "
                 "tick_interval in --- config",
                 RT_MAX_TICKS, cfg.tick_interval);
        goto done;
    }
    struct alerts al;
    alerts_init(&al, cfg.prefix);
    gateway_free(&r->gw);
    gw_up = false;
    fclose(mem);
    mem = NULL;
    rc = rt_collect(out ? out : "", outlen, &al, &got);
    alerts_free(&al);
    if (rc) {
        snprintf(err, sizeof err, "out of memory");
        goto done;
    }
    pass = true;
    bool printed = false;
    for (int s = RT_PUBLISHES; s < RT_NSECT; s++) {
        const struct rt_test *e = rt_pick(f, t, (enum rt_sect)s);
        if (!e)
            continue; /* not given: not compared */
        struct rt_diff d = {0};
        const char *how = e->value[s] ? e->value[s] : "";
        if ((!strcmp(how, "unordered") &&
             rt_unorder(rt, &e->body[s], &got.list[s - RT_PUBLISHES])) ||
            rt_diff(rt, &e->body[s], &got.list[s - RT_PUBLISHES], &d)) {
            rt_diff_free(&d);
            snprintf(err, sizeof err, "out of memory");
            pass = false;
            goto done;
        }
        if (!strcmp(how, "contains")) {
            /* Only the expected lines count: outputs between them are neither an error nor
             * shown. */
            size_t k = 0;
            for (size_t q = 0; q < d.n; q++)
                if (d.op[q] != OP_GOT)
                    d.op[k] = d.op[q], d.ei[k] = d.ei[q], d.gi[k++] = d.gi[q];
            d.n = k;
        }
        bool same = true;
        for (size_t k = 0; k < d.n; k++)
            if (d.op[k] != OP_SAME)
                same = false;
        if (!same) {
            if (!printed)
                printf("FAIL %d - %s\n", rt->num, t->name);
            printed = true;
            pass = false;
            rt_print_diff(f->path, sect_names[s], &e->body[s], &got.list[s - RT_PUBLISHES], &d);
        }
        rt_diff_free(&d);
    }
    if (pass)
        printf("ok %d - %s\n", rt->num, t->name);
    err[0] = '\0';
done:
    if (!pass && err[0])
        printf("FAIL %d - %s\n    %s\n", rt->num, t->name, err);
    if (gw_up)
        gateway_free(&r->gw);
    if (mem)
        fclose(mem);
    free(out);
    for (int s = 0; s < RT_NOUT; s++)
        rt_list_free(&got.list[s]);
    if (cfg_up)
        config_free(&cfg);
    if (r)
        buf_free(&r->copy);
    free(r);
    fflush(stdout);
    return pass;
}

/* ------------------------------------------------------------------------------------------
 * The command
 * ---------------------------------------------------------------------------------------- */

/* Parse and run one file. Returns false when the file could not be read or parsed. */
static bool rt_run_file(struct rt *rt, const char *path)
{
    struct rt_file f = {.path = path};
    char *text = NULL;
    size_t len = 0;
    int errors = 0;
    int rc = rt_read_file(path, &text, &len);
    if (rc) {
        fprintf(stderr, "%s: %s\n", path, strerror(-rc));
        return false;
    }
    const char *slash = strrchr(path, '/');
    f.dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup("");
    if (!f.dir || rt_parse(rt, &f, text, len, &errors) < 0) {
        fprintf(stderr, "%s: out of memory\n", path);
        errors++;
    }
    free(text);
    if (errors) {
        fprintf(stderr, "%s: %d error%s, its tests were not run\n", path, errors,
                errors == 1 ? "" : "s");
        rt_file_free(&f);
        return false;
    }
    printf("# %s\n", path);
    for (size_t i = 0; i < f.ntests; i++) {
        rt->num++;
        if (rt_run_test(rt, &f, &f.tests[i]))
            rt->passed++;
        else
            rt->failed++;
    }
    rt_file_free(&f);
    return true;
}

int ruletest_main(int argc, char **argv)
{
    struct rt rt = {0};
    int code = RULETEST_USAGE;
    bool bad = false;
    if (argc < 2) {
        fputs(usage, stderr);
        return RULETEST_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, stdout);
        return RULETEST_OK;
    }
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-') {
            fprintf(stderr, "iiotgw test: unknown option \"%s\"\n%s", argv[i], usage);
            return RULETEST_USAGE;
        }
    /* The gateway's info and warning lines (rules_loaded per test, every dead-lettered line)
     * would drown the results, which show dead-letters anyway; errors still reach stderr. */
    log_set_level(LL_ERROR);
    if (!(rt.L = luaL_newstate()) || !(rt.loop = ev_loop_new(EVFLAG_AUTO))) {
        fprintf(stderr, "iiotgw test: out of memory\n");
        goto out;
    }
    luaL_requiref(rt.L, LUA_STRLIBNAME, luaopen_string, 1);
    lua_pop(rt.L, 1);
    for (int i = 1; i < argc; i++)
        if (!rt_run_file(&rt, argv[i]))
            bad = true;
    printf("%d passed, %d failed\n", rt.passed, rt.failed);
    code = bad ? RULETEST_USAGE : rt.failed ? RULETEST_FAIL : RULETEST_OK;
out:
    if (rt.loop)
        ev_loop_destroy(rt.loop);
    if (rt.L)
        lua_close(rt.L);
    return code;
}
