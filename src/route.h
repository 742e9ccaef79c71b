#ifndef ROUTE_H
#define ROUTE_H

/*
 * Who a client is and where its mail goes: the device profile its source address
 * selects (the most specific [device NAME] match; none = the [proxy] / [limits] defaults
 * and [upstream]), and that profile's upstreams in failover order. Pure: the config and
 * an address in, answers out.
 */
struct config;
struct device_conf;
struct limits;
struct sockaddr;
struct upstream_conf;

/**
 * route_device(c, sa):
 * The profile of the client at ${sa} (v4-mapped counts as IPv4), or NULL for none.
 * config_load() refused two profiles that could tie.
 */
const struct device_conf *route_device(const struct config *c, const struct sockaddr *sa);

/**
 * route_limits(c, dev):
 * The limits for clients of ${dev} (NULL: the global ones).
 */
const struct limits *route_limits(const struct config *c, const struct device_conf *dev);

/**
 * route_upstream(c, dev, i):
 * The ${i}th upstream (from 0) clients of ${dev} (NULL: no profile) fail over across, or
 * NULL past the last.
 */
struct upstream_conf *route_upstream(const struct config *c, const struct device_conf *dev,
    size_t i);

/**
 * route_name(dev):
 * The profile's name for logs; "-" for none.
 */
const char *route_name(const struct device_conf *dev);

/**
 * route_intercept(c, dst):
 * The [intercept NAME] rule for intercepted traffic to ${dst}: the most specific
 * network, then a rule with ${dst}'s port over one for every port. NULL: none.
 */
const struct intercept_conf *route_intercept(const struct config *c,
    const struct sockaddr *dst);

#endif
