#ifndef PROBE_H
#define PROBE_H

/*
 * `smtp-tls-proxy probe [-c FILE] [--json] [-v] [UPSTREAM]`: prepare an upstream the way
 * a session does (upstream.c, with a report attached), log in when the proxy would,
 * then QUIT: no mail is sent. One upstream at a time, no failover; with no UPSTREAM,
 * every upstream of the configuration in file order.
 */

/**
 * probe_main(argc, argv):
 * Run the command with ${argv}[0] == "probe"; print the report on stdout. Return the
 * exit code: 0 when a session would succeed on every upstream probed, 1 when one would
 * not (or the configuration does not load), 2 on a usage error.
 */
int probe_main(int argc, char **argv);

#endif
