/*
 * fuzz_cidr: the config value parsers (parse_list_next, parse_hostport, parse_cidr,
 * parse_bool, parse_ulong) and cidr_match() against an address built from the input.
 *
 * Input: byte 0 = flags (address family, buffer sizes); bytes 1..16 = the client
 * address; the rest is a config value, e.g. "10.0.0.0/8, ::1".
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXNETS	64

/* Bit-by-bit prefix test, independent of parse.c's. */
static int
in_net(const struct cidr *c, int family, const uint8_t *a)
{
	int i;

	if (c->family != family)
		return (0);
	for (i = 0; i < c->bits; i++)
		if (((c->addr[i / 8] ^ a[i / 8]) >> (7 - i % 8)) & 1)
			return (0);
	return (1);
}

static void
check_cidr(const struct cidr *c)
{
	struct cidr again;
	char text[INET6_ADDRSTRLEN + 8], a[INET6_ADDRSTRLEN];
	int i;

	if (c->family == AF_INET) {
		if (c->bits < 0 || c->bits > 32)
			abort();
		for (i = 4; i < 16; i++)
			if (c->addr[i] != 0)
				abort();
	} else if (c->family == AF_INET6) {
		static const uint8_t mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };

		if (c->bits < 0 || c->bits > 128)
			abort();
		/* v4-mapped networks of /96 or longer are folded to IPv4. */
		if (c->bits >= 96 && memcmp(c->addr, mapped, 12) == 0)
			abort();
	} else
		abort();
	/* No bit set past the prefix. */
	for (i = c->bits; i < (c->family == AF_INET ? 32 : 128); i++)
		if ((c->addr[i / 8] >> (7 - i % 8)) & 1)
			abort();
	/* Printed back, it parses to the same network. */
	if (inet_ntop(c->family, c->addr, a, sizeof(a)) == NULL)
		abort();
	snprintf(text, sizeof(text), "%s/%d", a, c->bits);
	if (parse_cidr(text, &again) != 0 || again.family != c->family ||
	    again.bits != c->bits || memcmp(again.addr, c->addr, 16) != 0)
		abort();
	(void)cidr_is_private(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cidr nets[MAXNETS], one;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	const struct sockaddr *sa;
	uint8_t addr[16], mapped[16];
	char *s, *item, *host;
	const char *sp, *prev;
	size_t n, nnets = 0, itemsize, hostsize, i;
	unsigned flags;
	int r, v6, want, port, b;
	unsigned long ul;

	if (size < 17)
		return (0);
	flags = data[0];
	memcpy(addr, data + 1, 16);
	n = size - 17;
	/* The value as a C string, in an exact-size buffer. */
	if ((s = malloc(n + 1)) == NULL)
		abort();
	memcpy(s, data + 17, n);
	s[n] = '\0';
	itemsize = 1 + (flags & 0x7f);			/* 1..128 */
	hostsize = 1 + ((flags >> 1) & 0x3f) * 4;	/* 1..253 */
	v6 = flags & 0x80;

	/* parse_cidr and parse_hostport on the whole value. */
	if (parse_cidr(s, &one) == 0)
		check_cidr(&one);
	if ((host = malloc(hostsize)) == NULL)
		abort();
	port = -1;
	if (parse_hostport(s, host, hostsize, &port) == 0) {
		if (port < 0 || port > 65535 || strnlen(host, hostsize) == hostsize ||
		    host[0] == '\0' || strstr(s, host) == NULL)
			abort();
	}
	free(host);
	if (parse_bool(s, &b) == 0 && b != 0 && b != 1)
		abort();
	if (parse_ulong(s, 0, 65535, &ul) == 0 && (ul > 65535 || !isdigit((unsigned char)s[0])))
		abort();

	/* The value as a list of networks, as set_allow reads it. */
	if ((item = malloc(itemsize)) == NULL)
		abort();
	sp = s;
	for (i = 0; i <= n; i++) {
		prev = sp;
		memset(item, 0xA5, itemsize);
		r = parse_list_next(&sp, item, itemsize);
		if (r < -1 || r > 1)
			abort();
		if (sp < s || sp > s + n || sp < prev)
			abort();
		if (r != 1)
			break;
		if (sp == prev)
			abort();	/* an item found and no progress: an endless loop */
		if (strnlen(item, itemsize) == itemsize || item[0] == '\0' ||
		    isspace((unsigned char)item[0]) ||
		    isspace((unsigned char)item[strlen(item) - 1]) || strchr(item, ',') != NULL)
			abort();
		if (nnets < MAXNETS && parse_cidr(item, &nets[nnets]) == 0) {
			check_cidr(&nets[nnets]);
			nnets++;
		}
		port = -1;
		{
			char h[64];

			if (parse_hostport(item, h, sizeof(h), &port) == 0 &&
			    (port < 0 || port > 65535 || strlen(h) >= sizeof(h)))
				abort();
		}
	}
	if (i > n)
		abort();	/* more items than bytes */
	free(item);

	/* The client address against the networks, compared with the model. */
	if (v6) {
		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		memcpy(&sin6.sin6_addr, addr, 16);
		sa = (const struct sockaddr *)&sin6;
	} else {
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		memcpy(&sin.sin_addr, addr, 4);
		sa = (const struct sockaddr *)&sin;
	}
	want = 0;
	{
		static const uint8_t pre[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
		int fam = v6 ? AF_INET6 : AF_INET;
		const uint8_t *a = addr;

		/* A v4-mapped client is an IPv4 client. */
		if (v6 && memcmp(addr, pre, 12) == 0) {
			fam = AF_INET;
			a = addr + 12;
		}
		for (i = 0; i < nnets; i++)
			if (in_net(&nets[i], fam, a))
				want = 1;
	}
	if (cidr_match(nets, nnets, sa) != want)
		abort();
	/* The same IPv4 client seen through an IPv6 socket matches the same way. */
	if (!v6) {
		memset(mapped, 0, 10);
		mapped[10] = mapped[11] = 0xff;
		memcpy(mapped + 12, addr, 4);
		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		memcpy(&sin6.sin6_addr, mapped, 16);
		if (cidr_match(nets, nnets, (const struct sockaddr *)&sin6) != want)
			abort();
	}
	/* Each network holds its own first address. */
	for (i = 0; i < nnets; i++) {
		struct sockaddr_in6 x6;
		struct sockaddr_in x4;

		if (nets[i].family == AF_INET) {
			memset(&x4, 0, sizeof(x4));
			x4.sin_family = AF_INET;
			memcpy(&x4.sin_addr, nets[i].addr, 4);
			if (cidr_match(&nets[i], 1, (const struct sockaddr *)&x4) != 1)
				abort();
		} else {
			static const uint8_t pre[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };

			/* ::ffff:0:0/95 and shorter stay IPv6 but their first address folds. */
			if (memcmp(nets[i].addr, pre, 12) == 0)
				continue;
			memset(&x6, 0, sizeof(x6));
			x6.sin6_family = AF_INET6;
			memcpy(&x6.sin6_addr, nets[i].addr, 16);
			if (cidr_match(&nets[i], 1, (const struct sockaddr *)&x6) != 1)
				abort();
		}
	}
	free(s);
	return (0);
}
