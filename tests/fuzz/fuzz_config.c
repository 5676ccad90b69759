/*
 * fuzz_config.c — libFuzzer harness for the config file loader (config_load_file, src/config.c).
 *
 * The input is the text of a config file (Lua, evaluated by the loader in an empty sandbox
 * with a memory cap and an instruction budget). It is written to a memfd and loaded through
 * /proc/self/fd/N. The loader must return 0 or a negative errno with a message, never crash
 * or leak; on success config_finish() runs too, with the secret files and environment
 * variables cleared so no fuzzer-chosen path is opened. config_free() must release all.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

static int fc_fd = -1;
static char fc_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fc_fd = memfd_create("fuzz_config", 0);
    if (fc_fd < 0)
        abort();
    snprintf(fc_path, sizeof fc_path, "/proc/self/fd/%d", fc_fd);
    unsetenv("IIOTGW_INFLUX_TOKEN");
    unsetenv("IIOTGW_MQTT_PASSWORD");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(fc_fd, 0) != 0 || pwrite(fc_fd, data, size, 0) != (ssize_t)size)
        abort();
    struct config c;
    if (config_defaults(&c) != 0)
        abort();
    char err[512];
    err[0] = '\0';
    int rc = config_load_file(&c, fc_path, err, sizeof err);
    if (rc != 0) {
        if (rc != -EINVAL && rc != -ENOMEM)
            abort();
        if (!err[0] && rc == -EINVAL)
            abort(); /* an error must say what is wrong */
    } else {
        free(c.influx_token_file);
        c.influx_token_file = NULL;
        free(c.mqtt_password_file);
        c.mqtt_password_file = NULL;
        err[0] = '\0';
        rc = config_finish(&c, err, sizeof err);
        if (rc != 0 && (rc != -EINVAL || !err[0]) && rc != -ENOMEM)
            abort();
    }
    config_free(&c);
    return 0;
}
