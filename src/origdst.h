#ifndef ORIGDST_H
#define ORIGDST_H

#include <sys/socket.h>

/**
 * origdst_get(fd, dst):
 * Where the device on the accepted socket ${fd} was going: the destination before
 * nftables' redirect or DNAT (conntrack's SO_ORIGINAL_DST), else the socket's own
 * address (TPROXY, or no interception at all). 0, or -1 if the socket has no address.
 */
int origdst_get(int fd, struct sockaddr_storage *dst);

/**
 * origdst_is_local(a):
 * 1 if the address of ${a} (its port aside) is one of this machine's interfaces' (read
 * once per process).
 */
int origdst_is_local(const struct sockaddr *a);

#endif
