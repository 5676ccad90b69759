/*
 * statedir.h — the state directory: where the daemon keeps what must survive it (the spool,
 * the dead-letter file, the instance lock, and whatever other subsystems persist).
 *
 * Why one directory: defaults must not depend on the working directory, a system service has
 * exactly one place it may write (systemd's StateDirectory=, read-only everywhere else under
 * ProtectSystem=strict), and two daemons sharing that place would corrupt each other's spool,
 * so the directory is also the unit of mutual exclusion.
 *
 * Resolution (statedir_resolve, pure: the environment comes in as a struct):
 *   1. the configured value (`--state-dir DIR`, config key `state_dir`);
 *   2. $STATE_DIRECTORY (systemd sets it; with several StateDirectory= entries it is a
 *      colon-separated list and the first entry is ours);
 *   3. /var/lib/iiotgw when the effective uid is 0;
 *   4. $XDG_STATE_HOME/iiotgw;
 *   5. $HOME/.local/state/iiotgw.
 * Relative values (a relative --state-dir, or an environment variable that is not absolute)
 * are refused: a daemon's state must not move with its working directory.
 *
 * The resolved path is kept in struct config (config.h, `state_dir`, filled by
 * config_finish()); other subsystems name their files with statedir_file().
 *
 * Lock (statedir_lock): `<dir>/iiotgw.lock`, an exclusive flock(2) held for the daemon's
 * lifetime, with the holder's PID written into the file. The kernel drops the lock when the
 * process dies, however it dies, so a stale file never blocks a restart.
 */
#ifndef IIOTGW_STATEDIR_H
#define IIOTGW_STATEDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define STATEDIR_SYSTEM    "/var/lib/iiotgw"
#define STATEDIR_NAME      "iiotgw"
#define STATEDIR_LOCK_NAME "iiotgw.lock"
#define STATEDIR_MODE      0750

/* The inputs of the resolution; NULL or "" = unset. */
struct statedir_env {
    const char *state_directory; /* $STATE_DIRECTORY */
    const char *xdg_state_home;  /* $XDG_STATE_HOME */
    const char *home;            /* $HOME */
    uid_t euid;
};

/* Fill `env` from the process environment and geteuid(). Pointers into environ. */
void statedir_env_get(struct statedir_env *env);

/*
 * Resolve the state directory into out[outlen] (see the order above). `configured` may be
 * NULL/"" (unset). Returns 0; -EINVAL when the chosen value is relative or no rule applies
 * (no HOME), -ENAMETOOLONG; err says which input was used and why it was refused. Pure.
 */
int statedir_resolve(const char *configured, const struct statedir_env *env, char *out,
                     size_t outlen, char *err, size_t errlen);

/* "<dir>/<name>" into out[outlen]. Returns 0 or -ENAMETOOLONG. */
int statedir_file(const char *dir, const char *name, char *out, size_t outlen);

/*
 * Create `dir` with mode 0750 and any missing parents (existing directories are left as they
 * are). Returns 0 or a negative errno with err naming the directory that failed.
 */
int statedir_create(const char *dir, char *err, size_t errlen);

/*
 * Would statedir_create() succeed? Without creating anything: `dir` is a writable directory,
 * or its nearest existing ancestor is a writable directory (a relative `dir` is resolved
 * against the working directory). For --check, for any directory the daemon would create.
 * Returns 0 or a negative errno with err set ("<dir>: why").
 */
int statedir_probe(const char *dir, char *err, size_t errlen);

struct statedir_lock;

/*
 * Take the instance lock in `dir` (which must exist) and write our PID into it. Returns 0;
 * -EBUSY when another process holds it (err names its PID, *holder set when known, else 0);
 * another negative errno when the file cannot be opened or locked (err set). The lock is held
 * until statedir_unlock() or process exit. Ownership: *out belongs to the caller.
 */
int statedir_lock(struct statedir_lock **out, const char *dir, pid_t *holder, char *err,
                  size_t errlen);

/*
 * Is the lock in `dir` held by another process? Takes and releases it at once (a --check
 * probe). Returns 0 (free, or no lock file/directory yet), -EBUSY with *holder set (0 when
 * unknown), or another negative errno.
 */
int statedir_lock_probe(const char *dir, pid_t *holder);

/* Release the lock (truncating the PID first) and free. NULL is a no-op. */
void statedir_unlock(struct statedir_lock *l);

#endif
