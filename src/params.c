/*
 * params.c — the tunable-parameter registry: declarations, validation (type, bounds, step,
 * constraints), the overrides and their file, the audit, the retained JSON document.
 * See params.h for the contract and docs/tuning.md for the technician's view.
 *
 * The overrides (p->ov) are the source of truth for what is persisted: a list of
 * (name, node, text, origin, time), read from the file at open, edited by params_set() and
 * params_reload_file(), and resolved against the declarations at every commit. The live
 * entries (p->live) are what the rule, the routes and the listeners see: one per declared
 * param, in declaration order, then one per orphaned name.
 */
#include "params.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"
#include "util.h"

#define MAX_LISTENERS          4
#define PARAM_LINE_MAX         1024
#define INT_LIMIT              9007199254740992.0 /* 2^53: integers stay exact in a double */
#define PARAM_MAX_OVERRIDES    4096               /* values read from one file */
#define PARAM_BAD_LINES_LOGGED 10 /* per file read: a garbage file must not flood the log */

struct pentry {
    struct param_decl d; /* every string and array owned */
    struct param_slot *slots;
    size_t nslots;
    bool orphaned;
    struct param_info info;
};

struct override {
    char name[PARAM_NAME_MAX];
    char node[PARAM_NAME_MAX]; /* "" for a global param */
    char text[PARAM_TEXT_MAX];
    char origin[PARAM_ORIGIN_MAX];
    int64_t ns;
    int line; /* line in the file it was read from (for refusals), 0 when set at run time */
};

struct params {
    char *file;
    struct pentry *live;
    size_t nlive;
    struct pentry *cand;
    size_t ncand;
    bool building;
    struct override *ov;
    size_t nov;
    bool batch; /* params_reload_file: one write at the end */
    struct params_listener ls[MAX_LISTENERS];
    size_t nls;
};

/* ------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------- */

static bool params_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= PARAM_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

const char *params_type_name(enum param_type t)
{
    switch (t) {
    case PARAM_NUMBER:
        return "number";
    case PARAM_INTEGER:
        return "integer";
    case PARAM_BOOLEAN:
        return "boolean";
    case PARAM_ENUM:
        return "enum";
    }
    return "?";
}

size_t params_format(const struct param_decl *d, double v, char *out, size_t n)
{
    int len;
    switch (d->type) {
    case PARAM_BOOLEAN:
        len = snprintf(out, n, "%s", v != 0 ? "true" : "false");
        break;
    case PARAM_ENUM: {
        size_t i = (size_t)v;
        len = snprintf(out, n, "%s", v >= 0 && i < d->nvalues ? d->values[i] : "?");
        break;
    }
    case PARAM_INTEGER:
        len = snprintf(out, n, "%.0f", v);
        break;
    default:
        /* Shortest of %.15g / %.17g that reads back the same double. */
        len = snprintf(out, n, "%.15g", v);
        if (len > 0 && (size_t)len < n && strtod(out, NULL) != v)
            len = snprintf(out, n, "%.17g", v);
        break;
    }
    if (len < 0)
        len = 0;
    return (size_t)len < n ? (size_t)len : n - 1;
}

static void params_iso(int64_t ns, char *out, size_t n)
{
    time_t t = (time_t)(ns / 1000000000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
        util_strlcpy(out, "?", n);
}

static int64_t params_parse_iso(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end)
        return 0;
    time_t t = timegm(&tm);
    return t < 0 ? 0 : (int64_t)t * 1000000000;
}

static void params_origin_text(const struct param_origin *o, char *out, size_t n)
{
    if (!o || !o->kind)
        util_strlcpy(out, "unknown", n);
    else if (o->who && *o->who)
        snprintf(out, n, "%s:%s", o->kind, o->who);
    else
        util_strlcpy(out, o->kind, n);
}

/* ------------------------------------------------------------------------------------------
 * Values: parse and check
 * ---------------------------------------------------------------------------------------- */

/* Parse text as a value of d. Returns 0 or -EINVAL (why set). */
static int params_parse_value(const struct param_decl *d, const char *text, double *out, char *why,
                              size_t whylen)
{
    switch (d->type) {
    case PARAM_BOOLEAN:
        if (!strcmp(text, "true") || !strcmp(text, "1") || !strcmp(text, "on") ||
            !strcmp(text, "ON")) {
            *out = 1;
            return 0;
        }
        if (!strcmp(text, "false") || !strcmp(text, "0") || !strcmp(text, "off") ||
            !strcmp(text, "OFF")) {
            *out = 0;
            return 0;
        }
        util_set_err(why, whylen, "not a boolean (true or false)");
        return -EINVAL;
    case PARAM_ENUM:
        for (size_t i = 0; i < d->nvalues; i++)
            if (!strcmp(text, d->values[i])) {
                *out = (double)i;
                return 0;
            }
        {
            char list[256] = "";
            for (size_t i = 0; i < d->nvalues; i++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", d->values[i]);
            }
            util_set_err(why, whylen, "not one of %s", list);
        }
        return -EINVAL;
    default: {
        char *end;
        errno = 0;
        while (*text == ' ' || *text == '\t')
            text++;
        double v = strtod(text, &end);
        while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')
            end++;
        if (end == text || *end || errno == ERANGE || !isfinite(v)) {
            util_set_err(why, whylen, "not a number");
            return -EINVAL;
        }
        if (d->type == PARAM_INTEGER && (v != floor(v) || fabs(v) > INT_LIMIT)) {
            util_set_err(why, whylen, "not a whole number");
            return -EINVAL;
        }
        *out = v == 0 ? 0 : v; /* no "-0" */
        return 0;
    }
    }
}

/* Bounds and step of one value (not the constraints). Returns 0 or -ERANGE (why set). */
static int params_check_bounds(const struct param_decl *d, double v, char *why, size_t whylen)
{
    char a[PARAM_TEXT_MAX];
    if (d->type == PARAM_BOOLEAN || d->type == PARAM_ENUM)
        return 0;
    if (d->has_min && v < d->min) {
        params_format(d, d->min, a, sizeof a);
        util_set_err(why, whylen, "below the minimum %s", a);
        return -ERANGE;
    }
    if (d->has_max && v > d->max) {
        params_format(d, d->max, a, sizeof a);
        util_set_err(why, whylen, "above the maximum %s", a);
        return -ERANGE;
    }
    if (d->step > 0) {
        double base = d->has_min ? d->min : 0;
        double k = (v - base) / d->step;
        if (fabs(k - nearbyint(k)) > 1e-9 * fmax(1.0, fabs(k))) {
            char s[PARAM_TEXT_MAX], b[PARAM_TEXT_MAX];
            params_format(&(struct param_decl){.type = PARAM_NUMBER}, d->step, s, sizeof s);
            params_format(d, base, b, sizeof b);
            util_set_err(why, whylen, "not a multiple of the step %s (counted from %s)", s, b);
            return -ERANGE;
        }
    }
    return 0;
}

int params_decl_check(const struct param_decl *d, char *err, size_t errlen)
{
    char why[256];
    const char *nm = d->name ? d->name : "?";
    if (!params_name_ok(d->name)) {
        util_set_err(err, errlen, "param name \"%s\": 1..%d characters of A-Z a-z 0-9 _ -", nm,
                     PARAM_NAME_MAX - 1);
        return -EINVAL;
    }
    if (!strcmp(d->name, "response")) {
        util_set_err(err, errlen, "param name \"response\" is reserved");
        return -EINVAL;
    }
    if (d->type < PARAM_NUMBER || d->type > PARAM_ENUM) {
        util_set_err(err, errlen, "%s: unknown type", nm);
        return -EINVAL;
    }
    if (d->type == PARAM_BOOLEAN || d->type == PARAM_ENUM) {
        if (d->has_min || d->has_max || d->step > 0) {
            util_set_err(err, errlen, "%s: min, max and step apply to numbers only", nm);
            return -EINVAL;
        }
    }
    if (d->type == PARAM_ENUM) {
        if (d->nvalues == 0 || d->nvalues > PARAM_MAX_VALUES) {
            util_set_err(err, errlen, "%s: an enum needs 1..%d values", nm, PARAM_MAX_VALUES);
            return -EINVAL;
        }
        for (size_t i = 0; i < d->nvalues; i++) {
            size_t l = d->values[i] ? strlen(d->values[i]) : 0;
            if (l == 0 || l >= PARAM_TEXT_MAX || strpbrk(d->values[i], " \t\n#=") ||
                !strcmp(d->values[i], "default")) {
                util_set_err(err, errlen,
                             "%s: enum value %zu must be 1..%d characters without spaces, '#' or "
                             "'=', and not \"default\"",
                             nm, i + 1, PARAM_TEXT_MAX - 1);
                return -EINVAL;
            }
            for (size_t j = 0; j < i; j++)
                if (!strcmp(d->values[i], d->values[j])) {
                    util_set_err(err, errlen, "%s: enum value \"%s\" given twice", nm,
                                 d->values[i]);
                    return -EINVAL;
                }
        }
        if (d->def < 0 || d->def >= (double)d->nvalues || d->def != floor(d->def)) {
            util_set_err(err, errlen, "%s: default is not one of the values", nm);
            return -EINVAL;
        }
    } else if (d->nvalues) {
        util_set_err(err, errlen, "%s: values apply to enums only", nm);
        return -EINVAL;
    }
    if (d->type == PARAM_BOOLEAN && d->def != 0 && d->def != 1) {
        util_set_err(err, errlen, "%s: default must be true or false", nm);
        return -EINVAL;
    }
    if (!isfinite(d->def) || (d->has_min && !isfinite(d->min)) ||
        (d->has_max && !isfinite(d->max)) || !isfinite(d->step) || d->step < 0) {
        util_set_err(err, errlen, "%s: default, min, max and step must be finite (step >= 0)", nm);
        return -EINVAL;
    }
    if (d->has_min && d->has_max && d->min > d->max) {
        util_set_err(err, errlen, "%s: min is above max", nm);
        return -EINVAL;
    }
    if (d->type == PARAM_INTEGER) {
        if (d->def != floor(d->def) || (d->has_min && d->min != floor(d->min)) ||
            (d->has_max && d->max != floor(d->max)) || d->step != floor(d->step)) {
            util_set_err(err, errlen, "%s: an integer's default, min, max and step are whole", nm);
            return -EINVAL;
        }
    }
    if (d->type == PARAM_NUMBER || d->type == PARAM_INTEGER) {
        if (params_check_bounds(d, d->def, why, sizeof why)) {
            char t[PARAM_TEXT_MAX];
            params_format(d, d->def, t, sizeof t);
            util_set_err(err, errlen, "%s: default %s is %s", nm, t, why);
            return -EINVAL;
        }
    }
    if (d->nnodes > PARAM_MAX_NODES) {
        util_set_err(err, errlen, "%s: at most %d nodes", nm, PARAM_MAX_NODES);
        return -EINVAL;
    }
    for (size_t i = 0; i < d->nnodes; i++) {
        if (!params_name_ok(d->nodes[i]) || !strcmp(d->nodes[i], "set")) {
            util_set_err(err, errlen,
                         "%s: node %zu: 1..%d characters of A-Z a-z 0-9 _ - (\"set\" is reserved)",
                         nm, i + 1, PARAM_NAME_MAX - 1);
            return -EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(d->nodes[i], d->nodes[j])) {
                util_set_err(err, errlen, "%s: node \"%s\" given twice", nm, d->nodes[i]);
                return -EINVAL;
            }
    }
    const char *other[2] = {d->below, d->above};
    for (int i = 0; i < 2; i++) {
        if (!other[i])
            continue;
        if (!params_name_ok(other[i]) || !strcmp(other[i], d->name)) {
            util_set_err(err, errlen, "%s: %s must name another param", nm, i ? "above" : "below");
            return -EINVAL;
        }
        if (d->type != PARAM_NUMBER && d->type != PARAM_INTEGER) {
            util_set_err(err, errlen, "%s: below/above apply to numbers only", nm);
            return -EINVAL;
        }
    }
    if ((d->unit && strlen(d->unit) >= 64) || (d->description && strlen(d->description) >= 1024)) {
        util_set_err(err, errlen, "%s: unit (< 64 bytes) or description (< 1024) too long", nm);
        return -EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Entries
 * ---------------------------------------------------------------------------------------- */

static void params_entry_free(struct pentry *e)
{
    free((char *)e->d.name);
    free((char *)e->d.unit);
    free((char *)e->d.description);
    free((char *)e->d.below);
    free((char *)e->d.above);
    for (size_t i = 0; i < e->d.nvalues; i++)
        free((char *)e->d.values[i]);
    free((void *)e->d.values);
    for (size_t i = 0; i < e->d.nnodes; i++)
        free((char *)e->d.nodes[i]);
    free((void *)e->d.nodes);
    free(e->slots);
    memset(e, 0, sizeof *e);
}

static void params_entries_free(struct pentry *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        params_entry_free(&v[i]);
    free(v);
}

static char *params_dup(const char *s, bool *bad)
{
    if (!s)
        return NULL;
    char *c = strdup(s);
    if (!c)
        *bad = true;
    return c;
}

static char **params_dup_list(const char *const *v, size_t n, bool *bad)
{
    if (!n)
        return NULL;
    char **c = calloc(n, sizeof *c);
    if (!c) {
        *bad = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        c[i] = params_dup(v[i], bad);
    return c;
}

/* Deep copy of d into e (slots allocated, values = default). Returns 0 or -ENOMEM. */
static int params_entry_init(struct pentry *e, const struct param_decl *d)
{
    bool bad = false;
    memset(e, 0, sizeof *e);
    e->d = *d;
    e->d.name = params_dup(d->name, &bad);
    e->d.unit = params_dup(d->unit, &bad);
    e->d.description = params_dup(d->description, &bad);
    e->d.below = params_dup(d->below, &bad);
    e->d.above = params_dup(d->above, &bad);
    e->d.values = (const char *const *)params_dup_list(d->values, d->nvalues, &bad);
    e->d.nodes = (const char *const *)params_dup_list(d->nodes, d->nnodes, &bad);
    e->nslots = d->nnodes ? d->nnodes : 1;
    e->slots = calloc(e->nslots, sizeof *e->slots);
    if (bad || !e->slots) {
        params_entry_free(e);
        return -ENOMEM;
    }
    for (size_t i = 0; i < e->nslots; i++) {
        e->slots[i].node = d->nnodes ? e->d.nodes[i] : NULL;
        e->slots[i].value = d->def;
        util_strlcpy(e->slots[i].origin, "default", sizeof e->slots[i].origin);
    }
    return 0;
}

static void params_entry_link(struct pentry *e)
{
    e->info.decl = &e->d;
    e->info.orphaned = e->orphaned;
    e->info.nslots = e->nslots;
    e->info.slots = e->slots;
}

static struct pentry *params_entry_find(struct pentry *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].d.name, name))
            return &v[i];
    return NULL;
}

int params_slot_index(const struct param_info *pi, const char *node)
{
    if (!pi->decl->nnodes)
        return node && *node ? -1 : 0;
    if (!node)
        return -1;
    for (size_t i = 0; i < pi->nslots; i++)
        if (pi->slots[i].node && !strcmp(pi->slots[i].node, node))
            return (int)i;
    return -1;
}

static int params_entry_slot(const struct pentry *e, const char *node)
{
    return params_slot_index(
        &(struct param_info){.decl = &e->d, .nslots = e->nslots, .slots = e->slots}, node);
}

/* ------------------------------------------------------------------------------------------
 * Overrides
 * ---------------------------------------------------------------------------------------- */

static struct override *params_ov_find(struct params *p, const char *name, const char *node)
{
    for (size_t i = 0; i < p->nov; i++)
        if (!strcmp(p->ov[i].name, name) && !strcmp(p->ov[i].node, node ? node : ""))
            return &p->ov[i];
    return NULL;
}

static void params_ov_remove(struct params *p, struct override *o)
{
    size_t i = (size_t)(o - p->ov);
    memmove(&p->ov[i], &p->ov[i + 1], (p->nov - i - 1) * sizeof *p->ov);
    p->nov--;
}

static struct override *params_ov_put(struct params *p, const char *name, const char *node)
{
    struct override *o = params_ov_find(p, name, node);
    if (o)
        return o;
    struct override *n = realloc(p->ov, (p->nov + 1) * sizeof *p->ov);
    if (!n)
        return NULL;
    p->ov = n;
    o = &p->ov[p->nov++];
    memset(o, 0, sizeof *o);
    util_strlcpy(o->name, name, sizeof o->name);
    util_strlcpy(o->node, node ? node : "", sizeof o->node);
    return o;
}

/* ------------------------------------------------------------------------------------------
 * The file
 * ---------------------------------------------------------------------------------------- */

static char *params_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/*
 * Parse one line into *o. Returns 1 (an override), 0 (blank or comment) or -EINVAL (why set).
 */
static int params_parse_line(char *line, struct override *o, char *why, size_t whylen)
{
    memset(o, 0, sizeof *o);
    char *comment = strchr(line, '#');
    if (comment)
        *comment++ = '\0';
    char *s = params_trim(line);
    if (!*s)
        return 0;
    char *eq = strchr(s, '=');
    if (!eq) {
        util_set_err(why, whylen, "expected NAME [NODE] = VALUE");
        return -EINVAL;
    }
    *eq = '\0';
    char *value = params_trim(eq + 1);
    char *lhs = params_trim(s);
    char *name = strtok(lhs, " \t");
    char *node = name ? strtok(NULL, " \t") : NULL;
    char *extra = node ? strtok(NULL, " \t") : NULL;
    if (!name || extra || !params_name_ok(name) || (node && !params_name_ok(node))) {
        util_set_err(why, whylen, "expected NAME [NODE] = VALUE (names: A-Z a-z 0-9 _ -)");
        return -EINVAL;
    }
    if (!*value || strlen(value) >= PARAM_TEXT_MAX) {
        util_set_err(why, whylen, "missing or too long value");
        return -EINVAL;
    }
    util_strlcpy(o->name, name, sizeof o->name);
    util_strlcpy(o->node, node ? node : "", sizeof o->node);
    util_strlcpy(o->text, value, sizeof o->text);
    util_strlcpy(o->origin, "file", sizeof o->origin);
    /* The writer's own trailer "set <time> by <origin>" gives the audit back after a restart. */
    if (comment) {
        char *c = params_trim(comment);
        if (!strncmp(c, "set ", 4)) {
            char *by = strstr(c, " by ");
            if (by) {
                *by = '\0';
                o->ns = params_parse_iso(c + 4);
                util_strlcpy(o->origin, params_trim(by + 4), sizeof o->origin);
            }
        }
    }
    return 1;
}

/* Read the file into a new override list. Bad lines are logged and skipped (*bad counts
 * them). A missing file is an empty list. Returns 0 or -errno / -ENOMEM (err set). */
static int params_read_file(const char *file, struct override **out, size_t *nout, int *bad,
                            char *err, size_t errlen)
{
    *out = NULL;
    *nout = 0;
    *bad = 0;
    FILE *f = fopen(file, "re");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        int rc = -errno;
        util_set_err(err, errlen, "%s: %s", file, strerror(errno));
        return rc;
    }
    char line[PARAM_LINE_MAX];
    int lineno = 0, rc = 0;
    struct override *v = NULL;
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t l = strlen(line);
        if (l == sizeof line - 1 && line[l - 1] != '\n') {
            int c;
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
            if ((*bad)++ < PARAM_BAD_LINES_LOGGED)
                log_warn("param_file_bad_line", "file=%s line=%d why=\"longer than %d bytes\"",
                         file, lineno, PARAM_LINE_MAX - 2);
            continue;
        }
        struct override o;
        char why[128];
        int r = params_parse_line(line, &o, why, sizeof why);
        if (r < 0) {
            if ((*bad)++ < PARAM_BAD_LINES_LOGGED)
                log_warn("param_file_bad_line", "file=%s line=%d why=\"%s\"", file, lineno, why);
            continue;
        }
        if (r == 0)
            continue;
        o.line = lineno;
        bool dup = false;
        for (size_t i = 0; i < n; i++)
            if (!strcmp(v[i].name, o.name) && !strcmp(v[i].node, o.node)) {
                v[i] = o; /* the last line wins, as in any config file */
                dup = true;
            }
        if (dup)
            continue;
        if (n == PARAM_MAX_OVERRIDES) {
            if ((*bad)++ < PARAM_BAD_LINES_LOGGED)
                log_warn("param_file_bad_line", "file=%s line=%d why=\"more than %d values\"", file,
                         lineno, PARAM_MAX_OVERRIDES);
            continue;
        }
        struct override *nv = realloc(v, (n + 1) * sizeof *v);
        if (!nv) {
            rc = -ENOMEM;
            util_set_err(err, errlen, "%s: out of memory", file);
            break;
        }
        v = nv;
        v[n++] = o;
    }
    fclose(f);
    if (*bad > PARAM_BAD_LINES_LOGGED)
        log_warn("param_file_bad_lines", "file=%s bad_lines=%d logged=%d", file, *bad,
                 PARAM_BAD_LINES_LOGGED);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *nout = n;
    return 0;
}

static int params_write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static void params_append(char **buf, size_t *len, size_t *cap, bool *bad, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void params_append(char **buf, size_t *len, size_t *cap, bool *bad, const char *fmt, ...)
{
    if (*bad)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf ? *buf + *len : NULL, *buf ? *cap - *len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            *bad = true;
            return;
        }
        if (*buf && *len + (size_t)n < *cap) {
            *len += (size_t)n;
            return;
        }
        size_t ncap = (*cap ? *cap * 2 : 4096) + (size_t)n;
        char *nb = realloc(*buf, ncap);
        if (!nb) {
            *bad = true;
            return;
        }
        *buf = nb;
        *cap = ncap;
    }
}

/* One override line with its audit trailer. */
static void params_append_ov(char **b, size_t *l, size_t *c, bool *bad, const struct override *o,
                             const char *note)
{
    char iso[32] = "";
    if (o->ns)
        params_iso(o->ns, iso, sizeof iso);
    char lhs[2 * PARAM_NAME_MAX + 2];
    snprintf(lhs, sizeof lhs, "%s%s%s", o->name, *o->node ? " " : "", o->node);
    params_append(b, l, c, bad, "%s = %s", lhs, o->text);
    if (o->ns || *o->origin)
        params_append(b, l, c, bad, "    # set %s by %s%s", o->ns ? iso : "?", o->origin, note);
    else if (*note)
        params_append(b, l, c, bad, "    #%s", note);
    params_append(b, l, c, bad, "\n");
}

/* Rewrite the file from the overrides and the live declarations (tmp + fsync + rename). */
static int params_persist(struct params *p)
{
    if (!p->file || p->batch)
        return 0;
    char *b = NULL;
    size_t l = 0, c = 0;
    bool bad = false;
    params_append(&b, &l, &c, &bad,
                  "# iiotgw tunable parameters: overrides of the rule's defaults.\n"
                  "# Change a line (NAME [NODE] = VALUE), delete it to go back to the default,\n"
                  "# then send SIGHUP (systemctl reload iiotgw). '#' starts a comment.\n"
                  "# Written by the gateway after every change; see docs/tuning.md.\n");
    for (size_t i = 0; i < p->nlive; i++) {
        const struct pentry *e = &p->live[i];
        for (size_t s = 0; s < e->nslots; s++) {
            const char *node = e->slots[s].node;
            const struct override *o = params_ov_find(p, e->d.name, node);
            if (o) {
                params_append_ov(&b, &l, &c, &bad, o,
                                 e->orphaned ? " (orphaned: not declared)" : "");
            } else if (!e->orphaned) {
                char t[PARAM_TEXT_MAX], lhs[2 * PARAM_NAME_MAX + 2];
                params_format(&e->d, e->d.def, t, sizeof t);
                snprintf(lhs, sizeof lhs, "%s%s%s", e->d.name, node ? " " : "", node ? node : "");
                params_append(&b, &l, &c, &bad, "# %s = %s    (default; %s", lhs, t,
                              params_type_name(e->d.type));
                if (e->d.has_min || e->d.has_max) {
                    char a[PARAM_TEXT_MAX] = "", z[PARAM_TEXT_MAX] = "";
                    if (e->d.has_min)
                        params_format(&e->d, e->d.min, a, sizeof a);
                    if (e->d.has_max)
                        params_format(&e->d, e->d.max, z, sizeof z);
                    params_append(&b, &l, &c, &bad, " %s..%s", a, z);
                }
                if (e->d.step > 0)
                    params_append(&b, &l, &c, &bad, " step %g", e->d.step);
                if (e->d.unit)
                    params_append(&b, &l, &c, &bad, " %s", e->d.unit);
                params_append(&b, &l, &c, &bad, ")\n");
            }
        }
    }
    /* Overrides nothing knows yet (before the first commit): kept verbatim. */
    for (size_t i = 0; i < p->nov; i++)
        if (!params_entry_find(p->live, p->nlive, p->ov[i].name))
            params_append_ov(&b, &l, &c, &bad, &p->ov[i], "");
    if (bad) {
        free(b);
        log_error("param_file_write_failed", "file=%s error=\"out of memory\"", p->file);
        return -ENOMEM;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", p->file);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = params_write_all(fd, b, l)) || (fsync(fd) < 0 && (rc = -errno))) {
        close(fd);
        unlink(tmp);
        goto fail;
    }
    close(fd);
    if (rename(tmp, p->file) < 0) {
        rc = -errno;
        unlink(tmp);
        goto fail;
    }
    /* The rename itself must survive a power cut: fsync the directory. */
    char dir[4096];
    util_strlcpy(dir, p->file, sizeof dir);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    else
        util_strlcpy(dir, ".", sizeof dir);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(b);
    return 0;
fail:
    free(b);
    log_error("param_file_write_failed", "file=%s error=\"%s\"", p->file, strerror(-rc));
    return -EIO;
}

/* ------------------------------------------------------------------------------------------
 * Lifecycle
 * ---------------------------------------------------------------------------------------- */

int params_open(struct params **out, const char *file, char *err, size_t errlen)
{
    *out = NULL;
    struct params *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    int rc = -ENOMEM;
    if (file && !(p->file = strdup(file)))
        goto fail;
    if (p->file) {
        int bad;
        rc = params_read_file(p->file, &p->ov, &p->nov, &bad, err, errlen);
        if (rc)
            goto fail;
        log_info("params_file_read", "file=%s overrides=%zu bad_lines=%d", p->file, p->nov, bad);
    }
    *out = p;
    return 0;
fail:
    params_close(p);
    return rc;
}

void params_close(struct params *p)
{
    if (!p)
        return;
    params_entries_free(p->live, p->nlive);
    params_entries_free(p->cand, p->ncand);
    free(p->ov);
    free(p->file);
    free(p);
}

int params_listen(struct params *p, const struct params_listener *l)
{
    if (p->nls == MAX_LISTENERS)
        return -ENOSPC;
    p->ls[p->nls++] = *l;
    return 0;
}

void params_unlisten(struct params *p, void *ud)
{
    size_t k = 0;
    for (size_t i = 0; i < p->nls; i++)
        if (p->ls[i].ud != ud)
            p->ls[k++] = p->ls[i];
    p->nls = k;
}

/* ------------------------------------------------------------------------------------------
 * Declarations
 * ---------------------------------------------------------------------------------------- */

void params_begin(struct params *p)
{
    params_abort(p);
    p->building = true;
}

void params_abort(struct params *p)
{
    params_entries_free(p->cand, p->ncand);
    p->cand = NULL;
    p->ncand = 0;
    p->building = false;
}

/* Value of the stored override for (e, slot) if e accepts it (bounds, not constraints). */
static bool params_ov_value(struct params *p, const struct pentry *e, size_t s, double *v,
                            char *why, size_t whylen)
{
    const struct override *o = params_ov_find(p, e->d.name, e->slots[s].node);
    if (!o)
        return false;
    if (params_parse_value(&e->d, o->text, v, why, whylen) ||
        params_check_bounds(&e->d, *v, why, whylen))
        return false;
    return true;
}

int params_declare(struct params *p, const struct param_decl *d, double *values, char *err,
                   size_t errlen)
{
    int rc = params_decl_check(d, err, errlen);
    if (rc)
        return rc;
    if (!p->building)
        params_begin(p);
    if (params_entry_find(p->cand, p->ncand, d->name)) {
        util_set_err(err, errlen, "%s: declared twice", d->name);
        return -EEXIST;
    }
    struct pentry *nv = realloc(p->cand, (p->ncand + 1) * sizeof *nv);
    if (!nv)
        return -ENOMEM;
    p->cand = nv;
    struct pentry *e = &p->cand[p->ncand];
    if ((rc = params_entry_init(e, d)))
        return rc;
    p->ncand++;
    for (size_t s = 0; s < e->nslots; s++) {
        double v;
        char why[128];
        if (params_ov_value(p, e, s, &v, why, sizeof why))
            e->slots[s].value = v;
        values[s] = e->slots[s].value;
    }
    return 0;
}

/*
 * The constraint between (a, slot sa) taking value va and param b: va must stay below b
 * (a_below_b) or above it, node by node. Returns 0 or -ERANGE with why.
 */
static int params_check_pair(const struct pentry *a, size_t sa, double va, const struct pentry *b,
                             bool a_below_b, char *why, size_t whylen)
{
    /* Slots of b to compare with: the same node, b's single slot, or every slot of b when a
     * is global and b per node. */
    for (size_t sb = 0; sb < b->nslots; sb++) {
        if (a->d.nnodes && b->d.nnodes) {
            if (!a->slots[sa].node || !b->slots[sb].node ||
                strcmp(a->slots[sa].node, b->slots[sb].node))
                continue;
        }
        double vb = b->slots[sb].value;
        bool ok = a_below_b ? va < vb : va > vb;
        if (!ok) {
            char t[PARAM_TEXT_MAX];
            params_format(&b->d, vb, t, sizeof t);
            const char *bn = b->slots[sb].node;
            util_set_err(why, whylen, "must stay %s %s%s%s (%s)", a_below_b ? "below" : "above",
                         b->d.name, bn && !a->d.nnodes ? " " : "", bn && !a->d.nnodes ? bn : "", t);
            return -ERANGE;
        }
    }
    return 0;
}

/* Every constraint that involves (e, slot s) taking value v, against the entries set[n]. */
static int params_check_constraints(const struct pentry *set, size_t n, const struct pentry *e,
                                    size_t s, double v, char *why, size_t whylen)
{
    const char *mine[2] = {e->d.below, e->d.above};
    for (int k = 0; k < 2; k++) {
        if (!mine[k])
            continue;
        const struct pentry *o = params_entry_find((struct pentry *)set, n, mine[k]);
        if (o && !o->orphaned && params_check_pair(e, s, v, o, k == 0, why, whylen))
            return -ERANGE;
    }
    /* The other direction: params whose constraint names e. */
    for (size_t i = 0; i < n; i++) {
        const struct pentry *o = &set[i];
        if (o == e || o->orphaned)
            continue;
        bool o_below = o->d.below && !strcmp(o->d.below, e->d.name);
        bool o_above = o->d.above && !strcmp(o->d.above, e->d.name);
        if (!o_below && !o_above)
            continue;
        /* o < e (o_below): e must stay above o. */
        if (params_check_pair(e, s, v, o, !o_below, why, whylen))
            return -ERANGE;
    }
    return 0;
}

int params_commit(struct params *p, char *err, size_t errlen)
{
    char why[256];
    /* Constraints must name declared params and hold between the defaults. */
    for (size_t i = 0; i < p->ncand; i++) {
        struct pentry *e = &p->cand[i];
        const char *mine[2] = {e->d.below, e->d.above};
        for (int k = 0; k < 2; k++) {
            if (!mine[k])
                continue;
            struct pentry *o = params_entry_find(p->cand, p->ncand, mine[k]);
            if (!o || (o->d.type != PARAM_NUMBER && o->d.type != PARAM_INTEGER)) {
                util_set_err(err, errlen, "%s: %s names \"%s\", which is not a declared number",
                             e->d.name, k ? "above" : "below", mine[k]);
                return -EINVAL;
            }
        }
    }
    /* Defaults: check on a copy of the values set to defaults. */
    {
        double *keep = NULL;
        size_t total = 0;
        for (size_t i = 0; i < p->ncand; i++)
            total += p->cand[i].nslots;
        keep = malloc((total ? total : 1) * sizeof *keep);
        if (!keep)
            return -ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < p->ncand; i++)
            for (size_t s = 0; s < p->cand[i].nslots; s++) {
                keep[k++] = p->cand[i].slots[s].value;
                p->cand[i].slots[s].value = p->cand[i].d.def;
            }
        int bad = 0;
        for (size_t i = 0; i < p->ncand && !bad; i++)
            for (size_t s = 0; s < p->cand[i].nslots && !bad; s++)
                if (params_check_constraints(p->cand, p->ncand, &p->cand[i], s, p->cand[i].d.def,
                                             why, sizeof why)) {
                    util_set_err(err, errlen, "%s: default %s", p->cand[i].d.name, why);
                    bad = 1;
                }
        k = 0;
        for (size_t i = 0; i < p->ncand; i++)
            for (size_t s = 0; s < p->cand[i].nslots; s++)
                p->cand[i].slots[s].value = keep[k++];
        free(keep);
        if (bad)
            return -EINVAL;
    }
    /* Overrides: accepted by the new declaration (bounds, then constraints), or dropped. */
    for (size_t i = 0; i < p->ncand; i++) {
        struct pentry *e = &p->cand[i];
        for (size_t s = 0; s < e->nslots; s++) {
            struct override *o = params_ov_find(p, e->d.name, e->slots[s].node);
            if (!o)
                continue;
            double v;
            bool ok = params_ov_value(p, e, s, &v, why, sizeof why);
            if (ok) {
                e->slots[s].value = v;
                if (params_check_constraints(p->cand, p->ncand, e, s, v, why, sizeof why))
                    ok = false;
            }
            if (!ok) {
                char d[PARAM_TEXT_MAX];
                params_format(&e->d, e->d.def, d, sizeof d);
                log_warn("param_override_dropped",
                         "param=%s node=%s value=\"%s\" why=\"%s\" now=%s (default)", e->d.name,
                         e->slots[s].node ? e->slots[s].node : "-", o->text, why, d);
                e->slots[s].value = e->d.def;
                params_ov_remove(p, o);
                continue;
            }
            e->slots[s].overridden = true;
            util_strlcpy(e->slots[s].origin, o->origin, sizeof e->slots[s].origin);
            e->slots[s].changed_ns = o->ns;
        }
    }
    /* Orphans: overrides of names the new set does not declare. */
    for (size_t i = 0; i < p->nov; i++) {
        struct override *o = &p->ov[i];
        if (params_entry_find(p->cand, p->ncand, o->name))
            continue;
        struct pentry *e = params_entry_find(p->cand, p->ncand, o->name);
        if (!e) {
            /* The last known declaration (when the live set had it), else a bare number. */
            const struct pentry *old = params_entry_find(p->live, p->nlive, o->name);
            struct param_decl bare = {.name = o->name, .type = PARAM_NUMBER};
            const char *node1[1] = {o->node};
            if (!old && *o->node) {
                bare.nodes = node1;
                bare.nnodes = 1;
            }
            struct pentry *nv = realloc(p->cand, (p->ncand + 1) * sizeof *nv);
            if (!nv)
                return -ENOMEM;
            p->cand = nv;
            e = &p->cand[p->ncand];
            if (params_entry_init(e, old ? &old->d : &bare))
                return -ENOMEM;
            p->ncand++;
            e->orphaned = true;
            log_warn("param_orphaned",
                     "param=%s why=\"not declared by the rule; kept, reset it to "
                     "remove\"",
                     o->name);
        }
    }
    /* Slots of orphans: from their overrides (a node the last declaration lacked is added). */
    for (size_t i = 0; i < p->ncand; i++) {
        struct pentry *e = &p->cand[i];
        if (!e->orphaned)
            continue;
        for (size_t k = 0; k < p->nov; k++) {
            struct override *o = &p->ov[k];
            if (strcmp(o->name, e->d.name))
                continue;
            int s = params_entry_slot(e, o->node);
            if (s < 0 && *o->node && e->d.nnodes < PARAM_MAX_NODES) {
                char **nodes = realloc((void *)e->d.nodes, (e->d.nnodes + 1) * sizeof *nodes);
                struct param_slot *slots = realloc(e->slots, (e->nslots + 1) * sizeof *slots);
                if (nodes)
                    e->d.nodes = (const char *const *)nodes;
                if (slots)
                    e->slots = slots;
                char *nn = strdup(o->node);
                if (!nodes || !slots || !nn) {
                    free(nn);
                    return -ENOMEM;
                }
                nodes[e->d.nnodes++] = nn;
                if (e->d.nnodes == 1) {
                    /* it was global: its one slot becomes this node */
                    e->slots[0].node = nn;
                    s = 0;
                } else {
                    memset(&e->slots[e->nslots], 0, sizeof *e->slots);
                    e->slots[e->nslots].node = nn;
                    s = (int)e->nslots++;
                }
                for (size_t z = 0; z < e->nslots; z++)
                    e->slots[z].node = e->d.nnodes ? e->d.nodes[z] : NULL;
            }
            if (s < 0)
                continue;
            double v = strtod(o->text, NULL);
            (void)params_parse_value(&e->d, o->text, &v, NULL, 0);
            e->slots[s].value = v;
            e->slots[s].overridden = true;
            util_strlcpy(e->slots[s].origin, o->origin, sizeof e->slots[s].origin);
            e->slots[s].changed_ns = o->ns;
        }
    }
    params_entries_free(p->live, p->nlive);
    p->live = p->cand;
    p->nlive = p->ncand;
    p->cand = NULL;
    p->ncand = 0;
    p->building = false;
    for (size_t i = 0; i < p->nlive; i++)
        params_entry_link(&p->live[i]);
    (void)params_persist(p);
    for (size_t i = 0; i < p->nls; i++)
        if (p->ls[i].declared)
            p->ls[i].declared(p->ls[i].ud);
    return 0;
}

int params_value(const struct params *p, const char *name, const char *node, double *out)
{
    const struct pentry *e = params_entry_find(p->live, p->nlive, name);
    if (!e)
        return -ENOENT;
    int s = params_entry_slot(e, node);
    if (s < 0)
        return -ENOENT;
    *out = e->slots[s].value;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Changes
 * ---------------------------------------------------------------------------------------- */

static void params_refused(const char *name, const char *node, const char *text,
                           const struct param_origin *origin, const char *msg)
{
    char qv[96], qm[512], qo[PARAM_ORIGIN_MAX + 8];
    char ot[PARAM_ORIGIN_MAX];
    params_origin_text(origin, ot, sizeof ot);
    log_warn("param_refused", "param=%s node=%s value=%s origin=%s message=%s", name,
             node && *node ? node : "-", log_quote(qv, sizeof qv, text, (size_t)-1),
             log_quote(qo, sizeof qo, ot, (size_t)-1), log_quote(qm, sizeof qm, msg, (size_t)-1));
}

int params_set(struct params *p, const char *name, const char *node, const char *text,
               const struct param_origin *origin, char *msg, size_t msglen)
{
    char why[256], who[2 * PARAM_NAME_MAX + 2];
    int rc;
    if (node && !*node)
        node = NULL;
    const char *nm = name ? name : "";
    snprintf(who, sizeof who, "%s%s%s", nm, node ? " " : "", node ? node : "");
    if (!text)
        text = "";
    struct pentry *e = name ? params_entry_find(p->live, p->nlive, name) : NULL;
    if (!e) {
        char list[512] = "";
        for (size_t i = 0; i < p->nlive; i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", p->live[i].d.name);
        }
        util_set_err(msg, msglen, "%s: unknown param (known: %s)", who, *list ? list : "none");
        rc = -ENOENT;
        goto refused;
    }
    int s = params_entry_slot(e, node);
    if (s < 0) {
        if (e->d.nnodes && !node) {
            char list[512] = "";
            for (size_t i = 0; i < e->d.nnodes; i++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", e->d.nodes[i]);
            }
            util_set_err(msg, msglen, "%s: a per-node param: give the node (%s)", who, list);
        } else if (!e->d.nnodes) {
            util_set_err(msg, msglen, "%s: %s is not per node: give no node", who, nm);
        } else {
            util_set_err(msg, msglen, "%s: unknown node for %s", who, nm);
        }
        rc = -ENOENT;
        goto refused;
    }
    struct param_slot *sl = &e->slots[s];
    double old = sl->value, v;
    bool reset = !strcmp(text, "default");
    if (e->orphaned && !reset) {
        util_set_err(msg, msglen,
                     "%s: not declared by the rule any more (orphaned): only "
                     "\"default\" is accepted, to remove it",
                     who);
        rc = -EPERM;
        goto refused;
    }
    if (reset) {
        v = e->d.def;
    } else {
        if ((rc = params_parse_value(&e->d, text, &v, why, sizeof why)) ||
            (rc = params_check_bounds(&e->d, v, why, sizeof why)))
            goto bad_value;
    }
    if (!e->orphaned &&
        (rc = params_check_constraints(p->live, p->nlive, e, (size_t)s, v, why, sizeof why)))
        goto bad_value;

    char ot[PARAM_ORIGIN_MAX], to[PARAM_TEXT_MAX], from[PARAM_TEXT_MAX];
    params_origin_text(origin, ot, sizeof ot);
    params_format(&e->d, old, from, sizeof from);
    params_format(&e->d, v, to, sizeof to);
    struct override *o = params_ov_find(p, e->d.name, node);
    if (v == old && (reset ? !o : o != NULL)) {
        util_set_err(msg, msglen, "%s: %s (unchanged)", who, to);
        return 0;
    }
    int64_t now = util_now_ns();
    if (reset) {
        if (o)
            params_ov_remove(p, o);
    } else {
        if (!(o = params_ov_put(p, e->d.name, node))) {
            util_set_err(msg, msglen, "%s: out of memory", who);
            return -ENOMEM;
        }
        util_strlcpy(o->text, to, sizeof o->text);
        util_strlcpy(o->origin, ot, sizeof o->origin);
        o->ns = now;
        o->line = 0;
    }
    sl->value = v;
    sl->overridden = !reset;
    util_strlcpy(sl->origin, ot, sizeof sl->origin);
    sl->changed_ns = now;
    {
        char qo[PARAM_ORIGIN_MAX + 8], qw[PARAM_ORIGIN_MAX + 8];
        log_info(
            "param_changed", "param=%s node=%s old=%s new=%s%s origin=%s who=%s", e->d.name,
            node ? node : "-", from, to, reset ? " reset=1" : "",
            log_quote(qo, sizeof qo, origin && origin->kind ? origin->kind : "unknown", (size_t)-1),
            log_quote(qw, sizeof qw, origin && origin->who ? origin->who : "", (size_t)-1));
    }
    util_set_err(msg, msglen, "%s: %s -> %s%s", who, from, to, reset ? " (default)" : "");
    /* An orphan reset to nothing disappears from the list. */
    bool gone = false;
    if (e->orphaned) {
        gone = true;
        for (size_t i = 0; i < e->nslots; i++)
            if (e->slots[i].overridden)
                gone = false;
    }
    rc = params_persist(p);
    if (!gone) {
        for (size_t i = 0; i < p->nls; i++)
            if (p->ls[i].changed)
                p->ls[i].changed(p->ls[i].ud, &e->info, (size_t)s, old, origin);
    } else {
        size_t i = (size_t)(e - p->live);
        params_entry_free(e);
        memmove(&p->live[i], &p->live[i + 1], (p->nlive - i - 1) * sizeof *p->live);
        p->nlive--;
        for (size_t k = 0; k < p->nlive; k++)
            params_entry_link(&p->live[k]);
        for (size_t k = 0; k < p->nls; k++)
            if (p->ls[k].declared)
                p->ls[k].declared(p->ls[k].ud);
    }
    return rc;

bad_value:
    util_set_err(msg, msglen, "%s: %s refused: %s", who, text, why);
refused:
    params_refused(nm, node, text, origin, msg ? msg : "");
    return rc;
}

int params_reload_file(struct params *p, char *err, size_t errlen)
{
    if (!p->file)
        return 0;
    struct override *nv;
    size_t n;
    int bad;
    int rc = params_read_file(p->file, &nv, &n, &bad, err, errlen);
    if (rc)
        return rc;
    struct param_origin o = {.kind = "file", .who = p->file};
    int refused = bad;
    p->batch = true;
    char msg[512];
    /* Removed lines first: back to the default. */
    for (size_t i = 0; i < p->nov;) {
        bool found = false;
        for (size_t k = 0; k < n; k++)
            if (!strcmp(nv[k].name, p->ov[i].name) && !strcmp(nv[k].node, p->ov[i].node))
                found = true;
        if (found || !params_entry_find(p->live, p->nlive, p->ov[i].name)) {
            i++;
            continue;
        }
        size_t before = p->nov;
        char name[PARAM_NAME_MAX], node[PARAM_NAME_MAX];
        util_strlcpy(name, p->ov[i].name, sizeof name);
        util_strlcpy(node, p->ov[i].node, sizeof node);
        if (params_set(p, name, node, "default", &o, msg, sizeof msg) < 0 || p->nov == before)
            i++;
    }
    for (size_t k = 0; k < n; k++) {
        struct override *cur = params_ov_find(p, nv[k].name, nv[k].node);
        if (cur && !strcmp(cur->text, nv[k].text))
            continue;
        rc = params_set(p, nv[k].name, nv[k].node, nv[k].text, &o, msg, sizeof msg);
        if (rc < 0 && rc != -EIO) {
            log_warn("param_file_refused", "file=%s line=%d message=\"%s\"", p->file, nv[k].line,
                     msg);
            refused++;
        }
    }
    free(nv);
    p->batch = false;
    (void)params_persist(p);
    log_info("params_file_reloaded", "file=%s refused=%d", p->file, refused);
    return refused;
}

/* ------------------------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------------------------- */

size_t params_count(const struct params *p)
{
    return p ? p->nlive : 0;
}

const struct param_info *params_at(const struct params *p, size_t i)
{
    return p && i < p->nlive ? &p->live[i].info : NULL;
}

const struct param_info *params_find(const struct params *p, const char *name)
{
    if (!p || !name)
        return NULL;
    const struct pentry *e = params_entry_find(p->live, p->nlive, name);
    return e ? &e->info : NULL;
}

static cJSON *params_json_value(const struct param_decl *d, double v)
{
    if (d->type == PARAM_BOOLEAN)
        return cJSON_CreateBool(v != 0);
    if (d->type == PARAM_ENUM) {
        char t[PARAM_TEXT_MAX];
        params_format(d, v, t, sizeof t);
        return cJSON_CreateString(t);
    }
    return cJSON_CreateNumber(v);
}

static void params_json_slot(cJSON *o, const struct param_decl *d, const struct param_slot *s)
{
    cJSON_AddItemToObject(o, "value", params_json_value(d, s->value));
    cJSON_AddBoolToObject(o, "overridden", s->overridden);
    cJSON_AddStringToObject(o, "origin", s->origin);
    if (s->changed_ns) {
        char iso[32];
        params_iso(s->changed_ns, iso, sizeof iso);
        cJSON_AddStringToObject(o, "changed", iso);
    } else {
        cJSON_AddNullToObject(o, "changed");
    }
}

static void params_json_opt_str(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

char *params_json(const struct params *p)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = root ? cJSON_AddArrayToObject(root, "params") : NULL;
    if (!arr) {
        cJSON_Delete(root);
        return NULL;
    }
    for (size_t i = 0; p && i < p->nlive; i++) {
        const struct pentry *e = &p->live[i];
        const struct param_decl *d = &e->d;
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "name", d->name);
        cJSON_AddStringToObject(o, "type", params_type_name(d->type));
        cJSON_AddItemToObject(o, "default", params_json_value(d, d->def));
        if (d->has_min)
            cJSON_AddNumberToObject(o, "min", d->min);
        else
            cJSON_AddNullToObject(o, "min");
        if (d->has_max)
            cJSON_AddNumberToObject(o, "max", d->max);
        else
            cJSON_AddNullToObject(o, "max");
        if (d->step > 0)
            cJSON_AddNumberToObject(o, "step", d->step);
        else
            cJSON_AddNullToObject(o, "step");
        params_json_opt_str(o, "unit", d->unit);
        params_json_opt_str(o, "description", d->description);
        params_json_opt_str(o, "below", d->below);
        params_json_opt_str(o, "above", d->above);
        if (d->type == PARAM_ENUM) {
            cJSON *vals = cJSON_AddArrayToObject(o, "values");
            for (size_t k = 0; vals && k < d->nvalues; k++)
                cJSON_AddItemToArray(vals, cJSON_CreateString(d->values[k]));
        }
        cJSON_AddBoolToObject(o, "orphaned", e->orphaned);
        if (d->nnodes) {
            cJSON *nodes = cJSON_AddObjectToObject(o, "nodes");
            for (size_t s = 0; nodes && s < e->nslots; s++) {
                cJSON *so = cJSON_CreateObject();
                if (!so)
                    break;
                cJSON_AddItemToObject(nodes, e->slots[s].node, so);
                params_json_slot(so, d, &e->slots[s]);
            }
        } else {
            cJSON_AddNullToObject(o, "node");
            params_json_slot(o, d, &e->slots[0]);
        }
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* ------------------------------------------------------------------------------------------
 * Topics
 * ---------------------------------------------------------------------------------------- */

int params_topic(char *out, size_t n, const char *prefix, const char *name, const char *node,
                 bool set)
{
    int len = snprintf(out, n, "%s/gateway/param/%s%s%s%s", prefix, name, node && *node ? "/" : "",
                       node && *node ? node : "", set ? "/set" : "");
    return len < 0 || (size_t)len >= n ? -ENOSPC : 0;
}

int params_parse_topic(const char *prefix, const char *topic, char *name, char *node)
{
    size_t pl = strlen(prefix);
    static const char mid[] = "/gateway/param/";
    if (strncmp(topic, prefix, pl) || strncmp(topic + pl, mid, sizeof mid - 1))
        return -EINVAL;
    const char *rest = topic + pl + sizeof mid - 1;
    size_t rl = strlen(rest);
    if (rl < 5 || strcmp(rest + rl - 4, "/set"))
        return -EINVAL;
    rl -= 4;
    const char *slash = memchr(rest, '/', rl);
    size_t nl = slash ? (size_t)(slash - rest) : rl;
    size_t dl = slash ? rl - nl - 1 : 0;
    if (nl == 0 || nl >= PARAM_NAME_MAX || dl >= PARAM_NAME_MAX || (slash && dl == 0) ||
        (slash && memchr(slash + 1, '/', dl)))
        return -EINVAL;
    memcpy(name, rest, nl);
    name[nl] = '\0';
    if (slash)
        memcpy(node, slash + 1, dl);
    node[dl] = '\0';
    return 0;
}
