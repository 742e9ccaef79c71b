#ifndef PROXYPROTO_H
#define PROXYPROTO_H

#include <sys/socket.h>

#include <stddef.h>

/*
 * The PROXY protocol header a load balancer puts before a connection's first byte
 * (HAProxy's proxy-protocol.txt, versions 1 and 2). Pure: bytes in, result out.
 */

/* v1's longest line (TCP6, both ports) with its CRLF; v2: 16 bytes + what we accept. */
#define PROXYPROTO_V1_MAX	107
#define PROXYPROTO_V2_MAX	(16 + 1024)
/* Enough to decide any header we accept. */
#define PROXYPROTO_MAX		PROXYPROTO_V2_MAX

struct proxyproto {
	int		 version;	/* 1 or 2 */
	int		 local;		/* v2 LOCAL or v1 UNKNOWN: use the socket's own addresses */
	struct sockaddr_storage src, dst;	/* the client and what it connected to */
	size_t		 len;		/* bytes the header takes */
};

/**
 * proxyproto_parse(p, n, version, out, why, whysize):
 * Read the header of version ${version} (1 or 2) at the start of the ${n} bytes at ${p}.
 * 1 with ${out} filled when it is complete and valid (out->len bytes; what follows is
 * the client's); 0 when the bytes so far could still begin one; -1 with the reason in
 * ${why} when they cannot (another version, malformed, too long, an unsupported family
 * or command).
 */
int proxyproto_parse(const unsigned char *p, size_t n, int version, struct proxyproto *out,
    char *why, size_t whysize);

#endif
