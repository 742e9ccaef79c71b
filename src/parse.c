/*
 * Value parsers (pure): booleans, bounded integers, comma lists, host:port, CIDR
 * networks and matching an address against them, and formatting an address back.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parse.h"

int
parse_bool(const char *s, int *out)
{
	static const char *yes[] = { "yes", "true", "on", "1" };
	static const char *no[] = { "no", "false", "off", "0" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return (0);
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return (0);
		}
	}
	return (-1);
}

int
parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	unsigned long v;
	char *end;

	/* strtoul accepts "-1" and leading blanks; a config value should not. */
	if (!isdigit((unsigned char)s[0]))
		return (-1);
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return (-1);
	*out = v;
	return (0);
}

int
parse_list_next(const char **sp, char *item, size_t size)
{
	const char *s = *sp, *end, *rest;
	size_t n;

	while (isspace((unsigned char)*s))
		s++;
	if (*s == '\0')
		return (0);
	end = strchr(s, ',');
	if (end == NULL)
		end = s + strlen(s);
	*sp = *end == ',' ? end + 1 : end;
	if (*end == ',') {
		/* "a," has an empty last item: a typo worth refusing, like "a,,b". */
		for (rest = end + 1; isspace((unsigned char)*rest); rest++)
			;
		if (*rest == '\0')
			return (-1);
	}
	while (end > s && isspace((unsigned char)end[-1]))
		end--;
	n = (size_t)(end - s);
	if (n == 0 || n >= size)
		return (-1);
	memcpy(item, s, n);
	item[n] = '\0';
	return (1);
}

int
parse_hostport(const char *s, char *host, size_t hostsize, int *portp)
{
	const char *colon, *h = s;
	unsigned long port;
	size_t hl;

	if (*s == '[') {
		colon = strstr(s, "]:");
		if (colon == NULL)
			return (-1);
		h = s + 1;
		hl = (size_t)(colon - h);
		colon++;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
			return (-1);	/* a bare IPv6 address needs brackets */
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostsize)
		return (-1);
	if (parse_ulong(colon + 1, 0, 65535, &port) != 0)
		return (-1);
	memcpy(host, h, hl);
	host[hl] = '\0';
	*portp = (int)port;
	return (0);
}

/* Fold ::ffff:a.b.c.d to AF_INET so one rule covers both spellings of a client. */
static void
cidr_fold_mapped(struct cidr *c)
{
	static const uint8_t prefix[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };

	if (c->family != AF_INET6 || memcmp(c->addr, prefix, 12) != 0 || c->bits < 96)
		return;
	memmove(c->addr, c->addr + 12, 4);
	memset(c->addr + 4, 0, 12);
	c->family = AF_INET;
	c->bits -= 96;
}

static int
prefix_match(const uint8_t *a, const uint8_t *b, int bits)
{
	int full = bits / 8, rest = bits % 8;

	if (memcmp(a, b, (size_t)full) != 0)
		return (0);
	if (rest == 0)
		return (1);
	return (((a[full] ^ b[full]) & (0xff << (8 - rest))) == 0);
}

int
parse_cidr(const char *s, struct cidr *c)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	unsigned long bits;
	size_t n = slash ? (size_t)(slash - s) : strlen(s);

	if (n == 0 || n >= sizeof(addr))
		return (-1);
	memcpy(addr, s, n);
	addr[n] = '\0';
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, addr, c->addr) == 1) {
		c->family = AF_INET;
		c->bits = 32;
	} else if (inet_pton(AF_INET6, addr, c->addr) == 1) {
		c->family = AF_INET6;
		c->bits = 128;
	} else
		return (-1);
	if (slash != NULL) {
		if (parse_ulong(slash + 1, 0, (unsigned long)c->bits, &bits) != 0)
			return (-1);
		c->bits = (int)bits;
	}
	/* 10.1.2.3/8 is almost always a typo for 10.0.0.0/8 or 10.1.2.3/32: refuse it. */
	{
		uint8_t masked[16];
		int i;

		memcpy(masked, c->addr, 16);
		for (i = c->bits; i < 128; i++)
			masked[i / 8] &= (uint8_t)~(0x80 >> (i % 8));
		if (memcmp(masked, c->addr, 16) != 0)
			return (-1);
	}
	cidr_fold_mapped(c);
	return (0);
}

/* The address in ${sa} as a host network (/32, /128), v4-mapped folded; -1 if neither family. */
static int
sa_cidr(const struct sockaddr *sa, struct cidr *a)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET) {
		a->family = AF_INET;
		memcpy(a->addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		a->bits = 32;
	} else if (sa->sa_family == AF_INET6) {
		a->family = AF_INET6;
		memcpy(a->addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
		a->bits = 128;
		cidr_fold_mapped(a);
	} else
		return (-1);
	return (0);
}

int
cidr_best(const struct cidr *list, size_t n, const struct sockaddr *sa)
{
	struct cidr a;
	size_t i;
	int best = -1;

	if (sa_cidr(sa, &a) != 0)
		return (-1);
	for (i = 0; i < n; i++)
		if (list[i].family == a.family && list[i].bits > best &&
		    prefix_match(list[i].addr, a.addr, list[i].bits))
			best = list[i].bits;
	return (best);
}

int
cidr_within(const struct cidr *inner, const struct cidr *outer)
{
	return (inner->family == outer->family && inner->bits >= outer->bits &&
	    prefix_match(outer->addr, inner->addr, outer->bits));
}

int
cidr_match(const struct cidr *list, size_t n, const struct sockaddr *sa)
{
	return (cidr_best(list, n, sa) >= 0);
}

int
cidr_is_private(const struct cidr *c)
{
	static const char *private[] = {
		"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
		"100.64.0.0/10", "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10",
	};
	struct cidr p;
	size_t i;

	for (i = 0; i < sizeof(private) / sizeof(private[0]); i++) {
		if (parse_cidr(private[i], &p) != 0)
			continue;
		if (p.family == c->family && c->bits >= p.bits &&
		    prefix_match(p.addr, c->addr, p.bits))
			return (1);
	}
	return (0);
}

void
parse_addr_str(const struct sockaddr *sa, char *out, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(out, size, "[%s]:%d", host, ntohs(s6->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(out, size, "%s:%d", host, ntohs(s4->sin_port));
	} else
		snprintf(out, size, "unknown");
}
