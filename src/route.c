/*
 * Device profiles by source address (see route.h).
 */
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
