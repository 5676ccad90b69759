/*
 * main.c — iiotgw entry point (placeholder until the daemon wiring lands).
 */
#include <stdio.h>

int main(void)
{
    puts("iiotgw " IIOTGW_VERSION);
    return 0;
}
