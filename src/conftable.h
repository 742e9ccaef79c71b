#ifndef CONFTABLE_H
#define CONFTABLE_H

#include <stdio.h>

struct config;

/**
 * conftable_print(f, c):
 * Write to ${f} who goes where under ${c}, for `smtp-tls-proxy -t -v`: each [device NAME]
 * (its match networks, its upstreams in failover order, force_sender, client_auth and the
 * limits it sets apart from the global ones), then the clients of no profile, then each
 * upstream (host, port, TLS, login). Secrets are never printed.
 */
void conftable_print(FILE *f, const struct config *c);

#endif
