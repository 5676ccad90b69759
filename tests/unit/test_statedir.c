/*
 * test_statedir.c — the state directory resolver (src/statedir.c): every rule of the order in
 * statedir.h, each from a hand-made environment (the resolver is pure), and the refusals.
 * Creation and the lock run against a temporary directory.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "statedir.h"

static int resolve(const char *configured, const struct statedir_env *env, char *out, size_t n)
{
    char err[256];
    return statedir_resolve(configured, env, out, n, err, sizeof err);
}

static void test_order(void **state)
{
    (void)state;
    char out[256];
    struct statedir_env env = {.state_directory = "/run/sd/iiotgw:/var/lib/other",
                               .xdg_state_home = "/home/u/.state",
                               .home = "/home/u",
                               .euid = 1000};
    assert_int_equal(resolve("/srv/gw/", &env, out, sizeof out), 0);
    assert_string_equal(out, "/srv/gw");
    assert_int_equal(resolve(NULL, &env, out, sizeof out), 0);
    assert_string_equal(out, "/run/sd/iiotgw"); /* the first of systemd's list */
    env.state_directory = "";
    env.euid = 0;
    assert_int_equal(resolve("", &env, out, sizeof out), 0);
    assert_string_equal(out, "/var/lib/iiotgw");
    env.euid = 1000;
    assert_int_equal(resolve(NULL, &env, out, sizeof out), 0);
    assert_string_equal(out, "/home/u/.state/iiotgw");
    env.xdg_state_home = NULL;
    assert_int_equal(resolve(NULL, &env, out, sizeof out), 0);
    assert_string_equal(out, "/home/u/.local/state/iiotgw");
}

static void test_refusals(void **state)
{
    (void)state;
    char out[256], err[256];
    struct statedir_env env = {.home = "/home/u", .euid = 1000};
    /* Relative values would move with the working directory. */
    assert_int_equal(statedir_resolve("state", &env, out, sizeof out, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "not an absolute path"));
    env.state_directory = "relative:/abs";
    assert_int_equal(resolve(NULL, &env, out, sizeof out), -EINVAL);
    env.state_directory = NULL;
    env.xdg_state_home = "rel";
    assert_int_equal(resolve(NULL, &env, out, sizeof out), -EINVAL);
    env.xdg_state_home = NULL;
    env.home = NULL;
    assert_int_equal(statedir_resolve(NULL, &env, out, sizeof out, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "--state-dir"));
    char small[8];
    assert_int_equal(resolve("/a/long/path", &env, small, sizeof small), -ENAMETOOLONG);
}

/* The temporary directory of test_create_and_lock: removed by the teardown, so a failed
 * assertion (which leaves the test function at once) leaves nothing behind either. */
static char base[] = "/tmp/iiotgw-unit-statedir.XXXXXX";

static int make_base(void **state)
{
    (void)state;
    return mkdtemp(base) ? 0 : -1;
}

static int remove_base(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_create_and_lock(void **state)
{
    (void)state;
    char dir[512], err[512];
    snprintf(dir, sizeof dir, "%s/a/b/state", base);
    assert_int_equal(statedir_probe(dir, err, sizeof err), 0);
    assert_int_equal(access(dir, F_OK), -1); /* a probe creates nothing */
    assert_int_equal(statedir_create(dir, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, STATEDIR_MODE);

    struct statedir_lock *l = NULL;
    pid_t holder = -1;
    assert_int_equal(statedir_lock(&l, dir, &holder, err, sizeof err), 0);
    /* flock is per open file description: a second open in this process conflicts too. */
    struct statedir_lock *l2 = NULL;
    assert_int_equal(statedir_lock(&l2, dir, &holder, err, sizeof err), -EBUSY);
    assert_int_equal(holder, getpid());
    char pid[32];
    snprintf(pid, sizeof pid, "PID %ld", (long)getpid());
    assert_non_null(strstr(err, pid));
    assert_int_equal(statedir_lock_probe(dir, &holder), -EBUSY);
    statedir_unlock(l);
    assert_int_equal(statedir_lock_probe(dir, &holder), 0);
    assert_int_equal(statedir_lock(&l, dir, &holder, err, sizeof err), 0);
    statedir_unlock(l);

    /* A file where a directory is needed: probe and create both refuse, naming it. */
    char file[600];
    snprintf(file, sizeof file, "%s/plain", base);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(dir, sizeof dir, "%s/plain/state", base);
    assert_int_not_equal(statedir_probe(dir, err, sizeof err), 0);
    assert_int_not_equal(statedir_create(dir, err, sizeof err), 0);
    assert_non_null(strstr(err, "plain"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test_setup_teardown(test_create_and_lock, make_base, remove_base),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
