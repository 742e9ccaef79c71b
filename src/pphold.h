#ifndef PPHOLD_H
#define PPHOLD_H

#include <sys/socket.h>

#include <stddef.h>

#include <ev.h>

/*
 * A connection on a proxy_protocol listener, held until its PROXY header is in: only
 * from the balancers allowed to send it, within 5 s, exactly the header's bytes taken
 * from the socket (what the client sent behind it stays there for its session).
 */
struct cidr;
struct pphold;

/* The header was good: ${client} per the header (the balancer's own for LOCAL). */
typedef void pphold_cb(void *arg, int fd, const struct sockaddr_storage *client,
    const struct sockaddr_storage *balancer);

/**
 * pphold_start(loop, head, fd, peer, version, from, nfrom, listener, cb, arg):
 * Hold the accepted ${fd} from ${peer} (ownership taken) on the list at ${head} until
 * a PROXY header of ${version} is in, then ${cb}(arg, fd, ...) takes over. A sender
 * outside the ${nfrom} networks ${from}, or a bad, slow or cut header, is closed before a
 * word of SMTP and logged as proxy.header for listener ${listener}.
 */
void pphold_start(struct ev_loop *loop, struct pphold **head, int fd,
    const struct sockaddr_storage *peer, int version, const struct cidr *from, size_t nfrom,
    const char *listener, pphold_cb *cb, void *arg);

/**
 * pphold_close_all(head):
 * Close every connection still held on the list at ${head}.
 */
void pphold_close_all(struct pphold **head);

#endif
