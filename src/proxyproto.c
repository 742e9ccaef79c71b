/*
 * The PROXY protocol header, versions 1 (text) and 2 (binary), strictly: a balancer
 * that sends something else is misconfigured, and a client that sends a header of its
 * own is not one of the balancers (proxy_from decides that before this runs).
 */
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <string.h>

#include "proxyproto.h"

static const unsigned char v2sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static int
fail(char *why, size_t size, const char *what)
{
	snprintf(why, size, "%s", what);
	return (-1);
}

/* A port: 1 to 5 digits, no leading zero (but "0"), at most 65535. -1 if not. */
static long
v1_port(const char *s, size_t n)
{
	long v = 0;
	size_t i;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return (-1);
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return (-1);
		v = v * 10 + (s[i] - '0');
	}
	return (v <= 65535 ? v : -1);
}

static int
v1_addr(const char *s, size_t n, int family, struct sockaddr_storage *ss, long port)
{
	char a[64];

	if (n == 0 || n >= sizeof(a))
		return (-1);
	memcpy(a, s, n);
	a[n] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons((unsigned short)port);
		return (inet_pton(AF_INET, a, &in->sin_addr) == 1 ? 0 : -1);
	}
	{
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((unsigned short)port);
		return (inet_pton(AF_INET6, a, &in6->sin6_addr) == 1 ? 0 : -1);
	}
}

/* "PROXY TCP4 src dst sport dport\r\n", or "PROXY UNKNOWN...\r\n". */
static int
parse_v1(const unsigned char *p, size_t n, struct proxyproto *out, char *why, size_t size)
{
	static const char pfx[] = "PROXY ";
	const char *line = (const char *)p, *f[6];
	size_t flen[6], i, end, nf = 0, k, lim = n < PROXYPROTO_V1_MAX ? n : PROXYPROTO_V1_MAX;
	long sport, dport;
	int family, found = 0;

	k = n < sizeof(pfx) - 1 ? n : sizeof(pfx) - 1;
	if (memcmp(p, pfx, k) != 0)
		return (fail(why, size, "not a PROXY v1 header"));
	/* The CRLF must end within the first 107 bytes. */
	for (end = 0; end + 1 < lim && !found; end++)
		found = p[end] == '\r' && p[end + 1] == '\n';
	if (found)
		end--;
	else if (n >= PROXYPROTO_V1_MAX)
		return (fail(why, size, "v1 header longer than 107 bytes"));
	/* Printable ASCII up to the CRLF (or so far), so a prefix and the whole agree. */
	for (i = 0; i < (found ? end : n); i++)
		if ((p[i] < 0x20 || p[i] > 0x7e) && !(p[i] == '\r' && i + 1 == n))
			return (fail(why, size, "malformed v1 header"));
	if (!found)
		return (0);
	/* Fields separated by single spaces, nothing else. */
	for (i = 0; i <= end && nf < 6;) {
		size_t j = i;

		while (j < end && line[j] != ' ')
			j++;
		f[nf] = line + i;
		flen[nf++] = j - i;
		i = j + 1;
		if (j == end)
			break;
	}
	out->version = 1;
	out->len = end + 2;
	if (nf >= 2 && flen[1] == 7 && memcmp(f[1], "UNKNOWN", 7) == 0) {
		out->local = 1;
		return (1);
	}
	if (nf != 6 || i <= end)
		return (fail(why, size, "malformed v1 header"));
	if (flen[1] == 4 && memcmp(f[1], "TCP4", 4) == 0)
		family = AF_INET;
	else if (flen[1] == 4 && memcmp(f[1], "TCP6", 4) == 0)
		family = AF_INET6;
	else
		return (fail(why, size, "v1: unsupported protocol (TCP4, TCP6, UNKNOWN)"));
	if ((sport = v1_port(f[4], flen[4])) < 0 || (dport = v1_port(f[5], flen[5])) < 0)
		return (fail(why, size, "v1: bad port"));
	if (v1_addr(f[2], flen[2], family, &out->src, sport) != 0 ||
	    v1_addr(f[3], flen[3], family, &out->dst, dport) != 0)
		return (fail(why, size, "v1: bad address"));
	out->local = 0;
	return (1);
}

static int
parse_v2(const unsigned char *p, size_t n, struct proxyproto *out, char *why, size_t size)
{
	size_t k = n < sizeof(v2sig) ? n : sizeof(v2sig), len;
	unsigned cmd, fam;

	if (memcmp(p, v2sig, k) != 0)
		return (fail(why, size, "not a PROXY v2 header"));
	if (n >= 13 && (p[12] >> 4) != 2)
		return (fail(why, size, "v2: unknown version"));
	if (n < 16)
		return (0);
	len = ((size_t)p[14] << 8) | p[15];
	if (16 + len > PROXYPROTO_V2_MAX)
		return (fail(why, size, "v2 header longer than 1040 bytes"));
	if (n < 16 + len)
		return (0);
	cmd = p[12] & 0x0f;
	fam = p[13];
	out->version = 2;
	out->len = 16 + len;
	if (cmd == 0) {
		/* LOCAL: the balancer's own connection (a health check): its addresses count. */
		out->local = 1;
		return (1);
	}
	if (cmd != 1)
		return (fail(why, size, "v2: unknown command"));
	memset(&out->src, 0, sizeof(out->src));
	memset(&out->dst, 0, sizeof(out->dst));
	out->local = 0;
	if (fam == 0x11) {
		struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;

		if (len < 12)
			return (fail(why, size, "v2: TCP4 addresses truncated"));
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, p + 16, 4);
		memcpy(&d->sin_addr, p + 20, 4);
		memcpy(&s->sin_port, p + 24, 2);
		memcpy(&d->sin_port, p + 26, 2);
		return (1);
	}
	if (fam == 0x21) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;

		if (len < 36)
			return (fail(why, size, "v2: TCP6 addresses truncated"));
		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, p + 16, 16);
		memcpy(&d->sin6_addr, p + 32, 16);
		memcpy(&s->sin6_port, p + 48, 2);
		memcpy(&d->sin6_port, p + 50, 2);
		return (1);
	}
	if (fam == 0x00) {
		/* UNSPEC with PROXY: the spec says use the connection's own addresses. */
		out->local = 1;
		return (1);
	}
	return (fail(why, size, "v2: unsupported address family (TCP4, TCP6 only)"));
}

int
proxyproto_parse(const unsigned char *p, size_t n, int version, struct proxyproto *out,
    char *why, size_t whysize)
{
	why[0] = '\0';
	memset(out, 0, sizeof(*out));
	if (n == 0)
		return (0);
	return (version == 1 ? parse_v1(p, n, out, why, whysize) :
	    parse_v2(p, n, out, why, whysize));
}
