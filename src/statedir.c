/*
 * statedir.c — state directory resolution, creation and the instance lock. See statedir.h.
 */
#include "statedir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

struct statedir_lock {
    int fd;
};

void statedir_env_get(struct statedir_env *env)
{
    env->state_directory = getenv("STATE_DIRECTORY");
    env->xdg_state_home = getenv("XDG_STATE_HOME");
    env->home = getenv("HOME");
    env->euid = geteuid();
}

static bool set(const char *s)
{
    return s && *s;
}

/* Copy `n` bytes of `s` then `suffix` into out, refusing relative paths. */
static int put(char *out, size_t outlen, const char *s, size_t n, const char *suffix,
               const char *what, char *err, size_t errlen)
{
    if (s[0] != '/') {
        snprintf(err, errlen, "state directory from %s: \"%.*s\" is not an absolute path", what,
                 (int)n, s);
        return -EINVAL;
    }
    int w = snprintf(out, outlen, "%.*s%s", (int)n, s, suffix);
    if (w < 0 || (size_t)w >= outlen) {
        snprintf(err, errlen, "state directory from %s: path too long", what);
        return -ENAMETOOLONG;
    }
    /* "/var/lib/iiotgw/" and "/var/lib/iiotgw" are the same directory: one spelling. */
    size_t len = (size_t)w;
    while (len > 1 && out[len - 1] == '/')
        out[--len] = '\0';
    return 0;
}

int statedir_resolve(const char *configured, const struct statedir_env *env, char *out,
                     size_t outlen, char *err, size_t errlen)
{
    if (set(configured))
        return put(out, outlen, configured, strlen(configured), "", "state_dir", err, errlen);
    if (set(env->state_directory)) {
        const char *s = env->state_directory;
        size_t n = strcspn(s, ":");
        return put(out, outlen, s, n, "", "$STATE_DIRECTORY", err, errlen);
    }
    if (env->euid == 0)
        return put(out, outlen, STATEDIR_SYSTEM, strlen(STATEDIR_SYSTEM), "", "the system default",
                   err, errlen);
    if (set(env->xdg_state_home))
        return put(out, outlen, env->xdg_state_home, strlen(env->xdg_state_home), "/" STATEDIR_NAME,
                   "$XDG_STATE_HOME", err, errlen);
    if (set(env->home))
        return put(out, outlen, env->home, strlen(env->home), "/.local/state/" STATEDIR_NAME,
                   "$HOME", err, errlen);
    snprintf(err, errlen,
             "no state directory: set state_dir (--state-dir), $STATE_DIRECTORY, "
             "$XDG_STATE_HOME or $HOME");
    return -EINVAL;
}

int statedir_file(const char *dir, const char *name, char *out, size_t outlen)
{
    int w = snprintf(out, outlen, "%s/%s", dir, name);
    return w < 0 || (size_t)w >= outlen ? -ENAMETOOLONG : 0;
}

int statedir_create(const char *dir, char *err, size_t errlen)
{
    char p[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof p) {
        snprintf(err, errlen, "state directory \"%s\": bad path", dir);
        return -EINVAL;
    }
    memcpy(p, dir, n + 1);
    /* Each prefix ending before a '/', then the whole path: mkdir, EEXIST is fine. */
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, STATEDIR_MODE) < 0 && errno != EEXIST) {
            int e = errno;
            snprintf(err, errlen, "state directory %s: cannot create %s: %s", dir, p, strerror(e));
            return -e;
        }
        p[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) < 0) {
        int e = errno;
        snprintf(err, errlen, "state directory %s: %s", dir, strerror(e));
        return -e;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "state directory %s: not a directory", dir);
        return -ENOTDIR;
    }
    if (access(dir, W_OK | X_OK) < 0) {
        int e = errno;
        snprintf(err, errlen, "state directory %s: not writable: %s", dir, strerror(e));
        return -e;
    }
    return 0;
}

int statedir_probe(const char *dir, char *err, size_t errlen)
{
    char p[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof p) {
        snprintf(err, errlen, "\"%s\": bad path", dir);
        return -EINVAL;
    }
    memcpy(p, dir, n + 1);
    /* Walk up to the nearest existing ancestor: creating works when it is a writable
     * directory (each directory we would create below it is ours, so writable too). */
    for (;;) {
        struct stat st;
        if (stat(p, &st) == 0) {
            if (!S_ISDIR(st.st_mode)) {
                snprintf(err, errlen, "%s: %s is not a directory", dir, p);
                return -ENOTDIR;
            }
            /* access() lets root through anything but a read-only mount: ask statvfs too
             * (e.g. /var outside the unit's StateDirectory= under ProtectSystem=strict). */
            struct statvfs vfs;
            int e = access(p, W_OK | X_OK) < 0 ? errno : 0;
            if (!e && statvfs(p, &vfs) == 0 && (vfs.f_flag & ST_RDONLY))
                e = EROFS;
            if (e) {
                snprintf(err, errlen, "%s: %s %s: %s", dir,
                         strcmp(p, dir) ? "cannot be created in" : "is not writable", p,
                         strerror(e));
                return -e;
            }
            return 0;
        }
        if (errno != ENOENT) {
            int e = errno;
            snprintf(err, errlen, "%s: %s: %s", dir, p, strerror(e));
            return -e;
        }
        char *slash = strrchr(p, '/');
        if (!slash && strcmp(p, ".") != 0) {
            /* A relative name (a configured spool.dir): its parent is the working directory. */
            strcpy(p, ".");
            continue;
        }
        if (!slash) {
            snprintf(err, errlen, "%s: no existing parent", dir);
            return -ENOENT;
        }
        *(slash == p ? slash + 1 : slash) = '\0';
    }
}

/* The PID written in an open lock file, 0 when unreadable or empty. */
static pid_t lock_holder(int fd)
{
    char b[32];
    ssize_t r = pread(fd, b, sizeof b - 1, 0);
    if (r <= 0)
        return 0;
    b[r] = '\0';
    long v = strtol(b, NULL, 10);
    return v > 0 ? (pid_t)v : 0;
}

int statedir_lock(struct statedir_lock **out, const char *dir, pid_t *holder, char *err,
                  size_t errlen)
{
    char path[4096];
    int rc;
    int fd = -1;
    struct statedir_lock *l = NULL;
    *holder = 0;
    if (statedir_file(dir, STATEDIR_LOCK_NAME, path, sizeof path)) {
        snprintf(err, errlen, "state directory %s: path too long", dir);
        return -ENAMETOOLONG;
    }
    /* O_CLOEXEC: exec: sources must not inherit (and so keep) the lock. */
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "lock file %s: %s", path, strerror(-rc));
        goto fail;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        rc = -errno;
        if (rc == -EWOULDBLOCK) {
            *holder = lock_holder(fd);
            rc = -EBUSY;
            if (*holder)
                snprintf(err, errlen,
                         "state directory %s is in use by another iiotgw (PID %ld holds %s); "
                         "give each instance its own --state-dir",
                         dir, (long)*holder, path);
            else
                snprintf(err, errlen,
                         "state directory %s is in use by another iiotgw (it holds %s); give "
                         "each instance its own --state-dir",
                         dir, path);
        } else {
            snprintf(err, errlen, "lock file %s: %s", path, strerror(-rc));
        }
        goto fail;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        rc = errno ? -errno : -EIO;
        snprintf(err, errlen, "lock file %s: cannot write the PID: %s", path, strerror(-rc));
        goto fail;
    }
    if (!(l = malloc(sizeof *l))) {
        rc = -ENOMEM;
        goto fail;
    }
    l->fd = fd;
    *out = l;
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    return rc;
}

int statedir_lock_probe(const char *dir, pid_t *holder)
{
    char path[4096];
    *holder = 0;
    if (statedir_file(dir, STATEDIR_LOCK_NAME, path, sizeof path))
        return -ENAMETOOLONG;
    /* Read-only and no O_CREAT: a probe leaves no file behind. flock works on any mode. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        if (rc == -EBUSY)
            *holder = lock_holder(fd);
    }
    close(fd); /* releases our lock if we got it */
    return rc;
}

void statedir_unlock(struct statedir_lock *l)
{
    if (!l)
        return;
    /* An empty file says "nobody": the next holder writes its own PID anyway. */
    if (ftruncate(l->fd, 0) < 0) {
        /* nothing to do: closing releases the lock all the same */
    }
    close(l->fd);
    free(l);
}
