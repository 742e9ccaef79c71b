/* proxyproto: the PROXY protocol v1/v2 header a load balancer sends first. */
#include "unit.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "proxyproto.h"

static const unsigned char SIG[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static int
parse(const void *p, size_t n, int version, struct proxyproto *pp)
{
	char why[128];
	int r = proxyproto_parse(p, n, version, pp, why, sizeof(why));

	/* A refusal always says why; an answer never does. */
	if (r < 0)
		assert_true(why[0] != '\0');
	else
		assert_string_equal(why, "");
	return (r);
}

static void
assert_v4(const struct sockaddr_storage *ss, const char *addr, int port)
{
	const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
	char a[INET_ADDRSTRLEN];

	assert_int_equal(in->sin_family, AF_INET);
	assert_non_null(inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a)));
	assert_string_equal(a, addr);
	assert_int_equal(ntohs(in->sin_port), port);
}

static void
assert_v6(const struct sockaddr_storage *ss, const char *addr, int port)
{
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
	char a[INET6_ADDRSTRLEN];

	assert_int_equal(in6->sin6_family, AF_INET6);
	assert_non_null(inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a)));
	assert_string_equal(a, addr);
	assert_int_equal(ntohs(in6->sin6_port), port);
}

static void
test_proxyproto_v1_tcp4_and_tcp6(void **state)
{
	struct proxyproto pp;
	static const char h4[] = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\nEHLO x\r\n";
	static const char h6[] = "PROXY TCP6 2001:db8::7 2001:db8::1 65535 587\r\n";

	(void)state;
	assert_int_equal(parse(h4, sizeof(h4) - 1, 1, &pp), 1);
	assert_int_equal(pp.version, 1);
	assert_int_equal(pp.local, 0);
	/* What follows the CRLF is the client's: not part of the header. */
	assert_int_equal(pp.len, strlen("PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\n"));
	assert_v4(&pp.src, "192.0.2.7", 56324);
	assert_v4(&pp.dst, "198.51.100.1", 25);
	assert_int_equal(parse(h6, sizeof(h6) - 1, 1, &pp), 1);
	assert_v6(&pp.src, "2001:db8::7", 65535);
	assert_v6(&pp.dst, "2001:db8::1", 587);
	assert_int_equal(parse(LIT("PROXY UNKNOWN\r\n"), 1, &pp), 1);
	assert_int_equal(pp.local, 1);
	assert_int_equal(pp.len, 15);
	assert_int_equal(parse(LIT("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), 1, &pp), 1);
	assert_int_equal(pp.local, 1);
}

/* Every proper prefix of a good header asks for more; none is taken as complete. */
static void
test_proxyproto_v1_prefixes_wait(void **state)
{
	static const char h[] = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\n";
	struct proxyproto pp;
	size_t n;

	(void)state;
	for (n = 0; n < sizeof(h) - 1; n++)
		assert_int_equal(parse(h, n, 1, &pp), 0);
	assert_int_equal(parse(h, sizeof(h) - 1, 1, &pp), 1);
}

static void
test_proxyproto_v1_refusals(void **state)
{
	static const char *bad[] = {
		"EHLO printer.lan\r\n",				/* no header at all */
		"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",		/* case */
		"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",		/* a field short */
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",		/* one too many */
		"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",		/* two spaces */
		"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",	/* port range */
		"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",		/* leading zero */
		"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
		"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",		/* family mismatch */
		"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
		"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
		"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",		/* not TCP */
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",		/* bare LF */
		"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",		/* lone CR */
	};
	struct proxyproto pp;
	char big[200];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bad); i++)
		assert_int_equal(parse(bad[i], strlen(bad[i]), 1, &pp), -1);
	/* No CRLF within 107 bytes: refused, not waited for. */
	memset(big, 'A', sizeof(big));
	memcpy(big, "PROXY TCP4 ", 11);
	assert_int_equal(parse(big, 107, 1, &pp), -1);
	assert_int_equal(parse(big, 106, 1, &pp), 0);
	/* A NUL inside: never a header. */
	assert_int_equal(parse("PROXY \0", 7, 1, &pp), -1);
	/* A v2 header where v1 is configured, and the other way round. */
	assert_int_equal(parse(SIG, sizeof(SIG), 1, &pp), -1);
	assert_int_equal(parse(LIT("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), 2, &pp), -1);
}

/* A v2 header: signature, ver/cmd, family, length, then ${body}. */
static size_t
v2(unsigned char *out, unsigned vercmd, unsigned fam, const void *body, size_t len)
{
	memcpy(out, SIG, 12);
	out[12] = (unsigned char)vercmd;
	out[13] = (unsigned char)fam;
	out[14] = (unsigned char)(len >> 8);
	out[15] = (unsigned char)len;
	memcpy(out + 16, body, len);
	return (16 + len);
}

static void
test_proxyproto_v2_proxy_local_and_tlvs(void **state)
{
	static const unsigned char a4[12 + 7] = {
		192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 0x04, 0x00, 25,
		/* a TLV after the addresses (PP2_TYPE_NOOP): skipped with the length */
		0x04, 0x00, 0x04, 'a', 'b', 'c', 'd'
	};
	unsigned char a6[36], h[PROXYPROTO_V2_MAX + 16];
	struct proxyproto pp;
	size_t n, k;

	(void)state;
	n = v2(h, 0x21, 0x11, a4, sizeof(a4));
	assert_int_equal(parse(h, n, 2, &pp), 1);
	assert_int_equal(pp.version, 2);
	assert_int_equal(pp.local, 0);
	assert_int_equal(pp.len, n);
	assert_v4(&pp.src, "192.0.2.7", 56324);
	assert_v4(&pp.dst, "198.51.100.1", 25);
	/* Every shorter prefix waits. */
	for (k = 0; k < n; k++)
		assert_int_equal(parse(h, k, 2, &pp), 0);

	memset(a6, 0, sizeof(a6));
	a6[0] = 0x20; a6[1] = 0x01; a6[2] = 0x0d; a6[3] = 0xb8; a6[15] = 7;
	a6[16] = 0x20; a6[17] = 0x01; a6[18] = 0x0d; a6[19] = 0xb8; a6[31] = 1;
	a6[32] = 0x01; a6[33] = 0x00; a6[34] = 0x02; a6[35] = 0x4b;
	n = v2(h, 0x21, 0x21, a6, sizeof(a6));
	assert_int_equal(parse(h, n, 2, &pp), 1);
	assert_v6(&pp.src, "2001:db8::7", 256);
	assert_v6(&pp.dst, "2001:db8::1", 587);

	/* LOCAL (a balancer's health check): the socket's addresses count. */
	n = v2(h, 0x20, 0x00, "", 0);
	assert_int_equal(parse(h, n, 2, &pp), 1);
	assert_int_equal(pp.local, 1);
	assert_int_equal(pp.len, 16);
	/* LOCAL may carry addresses; they are skipped. */
	n = v2(h, 0x20, 0x11, a4, 12);
	assert_int_equal(parse(h, n, 2, &pp), 1);
	assert_int_equal(pp.local, 1);
	/* PROXY with UNSPEC: the spec says use the real addresses. */
	n = v2(h, 0x21, 0x00, "", 0);
	assert_int_equal(parse(h, n, 2, &pp), 1);
	assert_int_equal(pp.local, 1);
}

static void
test_proxyproto_v2_refusals(void **state)
{
	static const unsigned char a4[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2 };
	unsigned char h[2048], body[1100];
	struct proxyproto pp;
	size_t n;

	(void)state;
	memset(body, 0, sizeof(body));
	n = v2(h, 0x11, 0x11, a4, sizeof(a4));		/* version 1 in the v2 format */
	assert_int_equal(parse(h, n, 2, &pp), -1);
	assert_int_equal(parse(h, 13, 2, &pp), -1);	/* known as soon as byte 12 is in */
	n = v2(h, 0x22, 0x11, a4, sizeof(a4));		/* command 2 */
	assert_int_equal(parse(h, n, 2, &pp), -1);
	n = v2(h, 0x21, 0x11, a4, 11);			/* TCP4 but 11 bytes */
	assert_int_equal(parse(h, n, 2, &pp), -1);
	n = v2(h, 0x21, 0x21, body, 35);		/* TCP6 but 35 bytes */
	assert_int_equal(parse(h, n, 2, &pp), -1);
	n = v2(h, 0x21, 0x12, a4, sizeof(a4));		/* UDP4 */
	assert_int_equal(parse(h, n, 2, &pp), -1);
	n = v2(h, 0x21, 0x31, body, 216);		/* UNIX */
	assert_int_equal(parse(h, n, 2, &pp), -1);
	/* Oversized: refused from the length alone, without waiting for the bytes. */
	n = v2(h, 0x21, 0x11, body, 1025);
	assert_int_equal(parse(h, 16, 2, &pp), -1);
	n = v2(h, 0x21, 0x11, body, 1024);
	assert_int_equal(parse(h, n, 2, &pp), 1);
	/* Not the signature. */
	memcpy(h, SIG, 12);
	h[11] = 0x0b;
	assert_int_equal(parse(h, 12, 2, &pp), -1);
	assert_int_equal(parse(LIT("EHLO x\r\n"), 2, &pp), -1);
	assert_int_equal(parse("", 0, 2, &pp), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_proxyproto_v1_tcp4_and_tcp6),
		cmocka_unit_test(test_proxyproto_v1_prefixes_wait),
		cmocka_unit_test(test_proxyproto_v1_refusals),
		cmocka_unit_test(test_proxyproto_v2_proxy_local_and_tlvs),
		cmocka_unit_test(test_proxyproto_v2_refusals),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
