#ifndef PARSE_H
#define PARSE_H

#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* One network in an allow list; IPv4 is kept as IPv4, v4-mapped IPv6 is folded to it. */
struct cidr {
	int	 family;	/* AF_INET or AF_INET6 */
	uint8_t	 addr[16];
	int	 bits;
};

/**
 * parse_bool(s, out):
 * yes/no, true/false, on/off, 1/0 (any case) into ${out}; 0, or -1 if ${s} is none of them.
 */
int parse_bool(const char *s, int *out);

/**
 * parse_ulong(s, min, max, out):
 * A decimal integer in [${min}, ${max}] into ${out}; 0, or -1 on anything else.
 */
int parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out);

/**
 * parse_list_next(sp, item, size):
 * Copy the next comma-separated, whitespace-trimmed item of *${sp} into ${item}
 * and advance *${sp}; 1 when an item was found, 0 at the end, -1 if an item is
 * empty or longer than ${size} - 1.
 */
int parse_list_next(const char **sp, char *item, size_t size);

/**
 * parse_hostport(s, host, hostsize, portp):
 * Split "host:port", "a.b.c.d:port" or "[v6]:port" into ${host} and *${portp}
 * (0..65535); 0, or -1 if malformed.
 */
int parse_hostport(const char *s, char *host, size_t hostsize, int *portp);

/**
 * parse_addr_str(sa, out, size):
 * The other way round, for logs: "a.b.c.d:port" or "[v6]:port" from a socket address
 * (IPv4 or IPv6; anything else gives "unknown").
 */
void parse_addr_str(const struct sockaddr *sa, char *out, size_t size);

/**
 * parse_cidr(s, c):
 * "addr" or "addr/bits" (IPv4 or IPv6) into ${c}; bits past the prefix must be zero.
 * 0, or -1 if malformed.
 */
int parse_cidr(const char *s, struct cidr *c);

/**
 * cidr_match(list, n, sa):
 * 1 if the address in ${sa} (AF_INET or AF_INET6, v4-mapped handled) is inside
 * one of the ${n} networks of ${list}, else 0.
 */
int cidr_match(const struct cidr *list, size_t n, const struct sockaddr *sa);

/**
 * cidr_best(list, n, sa):
 * The prefix length of the most specific network of ${list} (${n} networks) holding the
 * address in ${sa} (v4-mapped counts as IPv4), or -1 when none does.
 */
int cidr_best(const struct cidr *list, size_t n, const struct sockaddr *sa);

/**
 * cidr_within(inner, outer):
 * 1 if every address of ${inner} is inside ${outer}, else 0.
 */
int cidr_within(const struct cidr *inner, const struct cidr *outer);

/**
 * cidr_is_private(c):
 * 1 if every address of ${c} is loopback, RFC 1918, CGNAT, link-local or ULA
 * (so an allow list made of such networks cannot make an open relay), else 0.
 */
int cidr_is_private(const struct cidr *c);

#endif
