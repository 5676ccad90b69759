/*
 * bench_idle_ref.c — the reference for the idle-memory benchmark: a process that loads and
 * initialises the same libraries as iiotgw (libcurl, libmosquitto, Lua, libev, libsystemd,
 * libmicrohttpd) and then sleeps. The last two are referenced by one cheap call each, so the
 * linker keeps them (as-needed) and the process maps them as the daemon does. Like the idle
 * daemon (gateway.c trims the heap once it goes quiet) it hands the heap's free pages back
 * before it reports ready, so the garbage of the libraries' initialisation counts on neither
 * side. iiotgw's RssAnon/VmRSS minus this is what the gateway itself costs.
 */
#include <curl/curl.h>
#include <ev.h>
#include <lauxlib.h>
#include <lualib.h>
#include <malloc.h>
#include <microhttpd.h>
#include <mosquitto.h>
#include <systemd/sd-daemon.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    mosquitto_lib_init();
    lua_State *L = luaL_newstate();
    struct ev_loop *loop = EV_DEFAULT;
    (void)loop;
    sd_notify(0, "STATUS=reference"); /* a no-op without $NOTIFY_SOCKET */
    (void)MHD_is_feature_supported(MHD_FEATURE_EPOLL);
    malloc_trim(0);
    printf("ready\n");
    fflush(stdout);
    pause();
    lua_close(L);
    return 0;
}
