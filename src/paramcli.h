/*
 * paramcli.h — the `iiotgw param` subcommand (client of the daemon's control socket,
 * paramsrv.h). main() hands it the arguments from "param" on.
 */
#ifndef IIOTGW_PARAMCLI_H
#define IIOTGW_PARAMCLI_H

/*
 * argv[0] is "param". Prints results on stdout, errors on stderr. Returns the exit status:
 * 0 done, 1 refused or bad usage, 2 no gateway answering on the socket.
 */
int paramcli_main(int argc, char **argv);

#endif
