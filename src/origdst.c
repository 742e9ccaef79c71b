/*
 * Where an intercepted device was going (transparent listeners), and whether an address
 * is this machine's: the facts the loop check and the intercept rules need.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <ifaddrs.h>

#include <string.h>

#include "origdst.h"

/* getsockopt() names for the destination before NAT (linux/netfilter_ipv4.h, ip6_tables.h). */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST		80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST	80
#endif

/*
 * Where an intercepted device was going: before nftables' redirect or DNAT (conntrack
 * remembers it), or, for a TPROXY'd connection, the accepted socket's own address.
 */
int
origdst_get(int fd, struct sockaddr_storage *dst)
{
	socklen_t sl = sizeof(*dst);
	struct sockaddr_storage local;
	socklen_t ll = sizeof(local);

	if (getsockname(fd, (struct sockaddr *)&local, &ll) != 0)
		return (-1);
	memset(dst, 0, sizeof(*dst));
	if (local.ss_family == AF_INET &&
	    getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, dst, &sl) == 0)
		return (0);
	sl = sizeof(*dst);
	if (local.ss_family == AF_INET6 &&
	    getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, dst, &sl) == 0)
		return (0);
	*dst = local;
	return (0);
}

/* Its address (the port aside) one of this machine's? The list is read once per process. */
int
origdst_is_local(const struct sockaddr *a)
{
	static struct ifaddrs *ifs;
	static int loaded;
	const struct ifaddrs *i;

	if (!loaded) {
		loaded = 1;
		if (getifaddrs(&ifs) != 0)
			ifs = NULL;
	}
	for (i = ifs; i != NULL; i = i->ifa_next) {
		if (i->ifa_addr == NULL || i->ifa_addr->sa_family != a->sa_family)
			continue;
		if (a->sa_family == AF_INET &&
		    ((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)(const void *)a)->sin_addr.s_addr)
			return (1);
		if (a->sa_family == AF_INET6 &&
		    memcmp(&((const struct sockaddr_in6 *)(const void *)i->ifa_addr)->sin6_addr,
		    &((const struct sockaddr_in6 *)(const void *)a)->sin6_addr, 16) == 0)
			return (1);
	}
	return (0);
}

