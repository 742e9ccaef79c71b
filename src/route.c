/*
 * Device profiles by source address (see route.h).
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stddef.h>

#include "config.h"
#include "route.h"

const struct device_conf *
route_device(const struct config *c, const struct sockaddr *sa)
{
	const struct device_conf *best = NULL;
	int bits, bestbits = -1;
	size_t i;

	for (i = 0; i < c->ndevs; i++) {
		bits = cidr_best(c->devs[i]->match, c->devs[i]->nmatch, sa);
		if (bits > bestbits) {
			bestbits = bits;
			best = c->devs[i];
		}
	}
	return (best);
}

const struct limits *
route_limits(const struct config *c, const struct device_conf *dev)
{
	return (dev != NULL ? &dev->lim : &c->lim);
}

struct upstream_conf *
route_upstream(const struct config *c, const struct device_conf *dev, size_t i)
{
	if (dev == NULL)
		return (i == 0 ? c->ups[0] : NULL);
	return (i < dev->nroute ? c->ups[dev->route[i]] : NULL);
}

const char *
route_name(const struct device_conf *dev)
{
	return (dev != NULL ? dev->name : "-");
}

const struct intercept_conf *
route_intercept(const struct config *c, const struct sockaddr *dst)
{
	const struct intercept_conf *best = NULL, *ic;
	int port, bits, best_bits = -1;
	size_t i;

	if (dst->sa_family == AF_INET)
		port = ntohs(((const struct sockaddr_in *)(const void *)dst)->sin_port);
	else if (dst->sa_family == AF_INET6)
		port = ntohs(((const struct sockaddr_in6 *)(const void *)dst)->sin6_port);
	else
		return (NULL);
	for (i = 0; i < c->nicps; i++) {
		ic = c->icps[i];
		if ((ic->port != 0 && ic->port != port) ||
		    (bits = cidr_best(&ic->net, 1, dst)) < 0)
			continue;
		if (bits > best_bits || (bits == best_bits && ic->port != 0 && best->port == 0)) {
			best = ic;
			best_bits = bits;
		}
	}
	return (best);
}
