/*
 * bench_idle_ref.c — the reference for the idle-memory benchmark: a process that loads and
 * initialises the same libraries as iiotgw (libcurl, libmosquitto, Lua, libev) and then
 * sleeps. iiotgw's RssAnon/VmRSS minus this is what the gateway itself costs.
 */
#include <curl/curl.h>
#include <ev.h>
#include <lauxlib.h>
#include <lualib.h>
#include <mosquitto.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    mosquitto_lib_init();
    lua_State *L = luaL_newstate();
    struct ev_loop *loop = EV_DEFAULT;
    (void)loop;
    printf("ready\n");
    fflush(stdout);
    pause();
    lua_close(L);
    return 0;
}
