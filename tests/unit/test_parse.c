/* parse: config value parsers and the allow-list CIDR matcher. */
#include "unit.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "parse.h"

static void
test_parse_bool_accepts_every_spelling_any_case(void **state)
{
	static const char *yes[] = { "yes", "YES", "Yes", "true", "TRUE", "on", "On", "1" };
	static const char *no[] = { "no", "NO", "false", "False", "off", "OFF", "0" };
	size_t i;
	int v;

	(void)state;
	for (i = 0; i < NELEM(yes); i++) {
		v = -7;
		assert_int_equal(parse_bool(yes[i], &v), 0);
		assert_int_equal(v, 1);
	}
	for (i = 0; i < NELEM(no); i++) {
		v = -7;
		assert_int_equal(parse_bool(no[i], &v), 0);
		assert_int_equal(v, 0);
	}
}

static void
test_parse_bool_refuses_anything_else(void **state)
{
	static const char *bad[] = { "", "y", "n", "2", "yes ", " yes", "yess", "enable",
	    "tru", "-1", "01" };
	size_t i;
	int v;

	(void)state;
	for (i = 0; i < NELEM(bad); i++) {
		v = -7;
		assert_int_equal(parse_bool(bad[i], &v), -1);
		assert_int_equal(v, -7);
	}
}

static void
test_parse_ulong_accepts_in_range_including_bounds(void **state)
{
	unsigned long v;

	(void)state;
	assert_int_equal(parse_ulong("5", 0, 10, &v), 0);
	assert_int_equal(v, 5);
	assert_int_equal(parse_ulong("0", 0, 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_ulong("10", 0, 10, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(parse_ulong("1", 1, 1, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(parse_ulong("65535", 0, 65535, &v), 0);
	assert_int_equal(v, 65535);
}

static void
test_parse_ulong_refuses_out_of_range(void **state)
{
	unsigned long v = 42;

	(void)state;
	assert_int_equal(parse_ulong("11", 0, 10, &v), -1);
	assert_int_equal(parse_ulong("0", 1, 10, &v), -1);
	assert_int_equal(parse_ulong("65536", 0, 65535, &v), -1);
	assert_int_equal(v, 42);
}

static void
test_parse_ulong_refuses_junk_sign_blanks_and_overflow(void **state)
{
	static const char *bad[] = { "", "-1", "-0", "+5", " 5", "5 ", "5x", "x5", "0x10",
	    "1e3", "5.0", "99999999999999999999999999", "18446744073709551616" };
	unsigned long v = 42;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bad); i++) {
		assert_int_equal(parse_ulong(bad[i], 0, (unsigned long)-1, &v), -1);
		assert_int_equal(v, 42);
	}
}

static void
test_parse_list_splits_and_trims(void **state)
{
	const char *s = "  a ,b,\tc c  , d";
	char item[16];

	(void)state;
	assert_int_equal(parse_list_next(&s, item, sizeof(item)), 1);
	assert_string_equal(item, "a");
	assert_int_equal(parse_list_next(&s, item, sizeof(item)), 1);
	assert_string_equal(item, "b");
	assert_int_equal(parse_list_next(&s, item, sizeof(item)), 1);
	assert_string_equal(item, "c c");
	assert_int_equal(parse_list_next(&s, item, sizeof(item)), 1);
	assert_string_equal(item, "d");
	assert_int_equal(parse_list_next(&s, item, sizeof(item)), 0);
	assert_int_equal(parse_list_next(&s, item, sizeof(item)), 0);
}

static void
test_parse_list_empty_string_has_no_items(void **state)
{
	const char *s = "";
	const char *t = "   ";
	char item[16];

	(void)state;
	assert_int_equal(parse_list_next(&s, item, sizeof(item)), 0);
	assert_int_equal(parse_list_next(&t, item, sizeof(item)), 0);
}

static void
test_parse_list_empty_item_is_an_error(void **state)
{
	const char *s = "a,,b";
	const char *t = " , a";
	const char *u = "a, ,b";
	char item[16];

	(void)state;
	assert_int_equal(parse_list_next(&s, item, sizeof(item)), 1);
	assert_string_equal(item, "a");
	assert_int_equal(parse_list_next(&s, item, sizeof(item)), -1);
	assert_int_equal(parse_list_next(&t, item, sizeof(item)), -1);
	assert_int_equal(parse_list_next(&u, item, sizeof(item)), 1);
	assert_int_equal(parse_list_next(&u, item, sizeof(item)), -1);
}

static void
test_parse_list_trailing_comma_is_an_error(void **state)
{
	const char *s = "a, b, ";
	char item[16];

	(void)state;
	assert_int_equal(parse_list_next(&s, item, sizeof(item)), 1);
	assert_string_equal(item, "a");
	assert_int_equal(parse_list_next(&s, item, sizeof(item)), -1);
}

static void
test_parse_list_item_too_long_is_an_error(void **state)
{
	const char *s = "abcd,abcde";
	char item[5];

	(void)state;
	assert_int_equal(parse_list_next(&s, item, sizeof(item)), 1);
	assert_string_equal(item, "abcd");
	assert_int_equal(parse_list_next(&s, item, sizeof(item)), -1);
}

static void
test_parse_hostport_accepts_v4_name_and_bracketed_v6(void **state)
{
	char host[64];
	int port = -1;

	(void)state;
	assert_int_equal(parse_hostport("1.2.3.4:25", host, sizeof(host), &port), 0);
	assert_string_equal(host, "1.2.3.4");
	assert_int_equal(port, 25);
	assert_int_equal(parse_hostport("[::1]:2525", host, sizeof(host), &port), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 2525);
	assert_int_equal(parse_hostport("[2001:db8::5]:65535", host, sizeof(host), &port), 0);
	assert_string_equal(host, "2001:db8::5");
	assert_int_equal(port, 65535);
	assert_int_equal(parse_hostport("host:0", host, sizeof(host), &port), 0);
	assert_string_equal(host, "host");
	assert_int_equal(port, 0);
	assert_int_equal(parse_hostport("mail.example.org:587", host, sizeof(host), &port), 0);
	assert_string_equal(host, "mail.example.org");
	assert_int_equal(port, 587);
}

static void
test_parse_hostport_refuses_malformed(void **state)
{
	static const char *bad[] = {
		"1.2.3.4",		/* no port */
		"1.2.3.4:",		/* empty port */
		":25",			/* empty host */
		"[]:25",		/* empty v6 host */
		"host:65536",		/* port out of range */
		"host:-1",
		"host:25x",
		"host: 25",
		"::1:25",		/* bare v6 without brackets */
		"2001:db8::1",
		"[::1]",		/* bracketed, no port */
		"[::1]25",
		"[::1:25",
		"",
	};
	char host[64];
	size_t i;
	int port;

	(void)state;
	for (i = 0; i < NELEM(bad); i++) {
		port = -7;
		if (parse_hostport(bad[i], host, sizeof(host), &port) != -1)
			fail_msg("parse_hostport accepted \"%s\"", bad[i]);
		assert_int_equal(port, -7);
	}
}

static void
test_parse_hostport_refuses_host_too_long_for_buffer(void **state)
{
	char host[8];
	int port;

	(void)state;
	assert_int_equal(parse_hostport("1234567:25", host, sizeof(host), &port), 0);
	assert_string_equal(host, "1234567");
	assert_int_equal(parse_hostport("12345678:25", host, sizeof(host), &port), -1);
	assert_int_equal(parse_hostport("[1:2:3:4::]:25", host, sizeof(host), &port), -1);
}

static void
test_parse_cidr_v4_and_v6_with_and_without_prefix(void **state)
{
	struct cidr c;
	uint8_t a[16];

	(void)state;
	assert_int_equal(parse_cidr("10.0.0.0/8", &c), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.bits, 8);
	assert_memory_equal(c.addr, "\x0a\0\0\0", 4);

	assert_int_equal(parse_cidr("192.0.2.7", &c), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.bits, 32);
	assert_memory_equal(c.addr, "\xc0\x00\x02\x07", 4);

	assert_int_equal(parse_cidr("0.0.0.0/0", &c), 0);
	assert_int_equal(c.bits, 0);

	assert_int_equal(parse_cidr("2001:db8::/32", &c), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.bits, 32);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::", a), 1);
	assert_memory_equal(c.addr, a, 16);

	assert_int_equal(parse_cidr("::1", &c), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.bits, 128);

	assert_int_equal(parse_cidr("::/0", &c), 0);
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.bits, 0);
}

static void
test_parse_cidr_folds_v4_mapped_rule_to_v4(void **state)
{
	struct cidr c;

	(void)state;
	assert_int_equal(parse_cidr("::ffff:10.0.0.0/104", &c), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.bits, 8);
	assert_memory_equal(c.addr, "\x0a\0\0\0", 4);
	assert_int_equal(parse_cidr("::ffff:192.0.2.1", &c), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.bits, 32);
}

static void
test_parse_cidr_refuses_host_bits_bad_prefix_and_junk(void **state)
{
	static const char *bad[] = {
		"10.1.2.3/8",		/* host bits set */
		"10.0.0.1/31",
		"2001:db8::1/64",
		"::1/0",
		"1.2.3.4/33",		/* prefix too long for v4 */
		"::/129",
		"1.2.3.4/",
		"1.2.3.4/-1",
		"1.2.3.4/ 8",
		"1.2.3.4/8x",
		"/8",
		"",
		"1.2.3",
		"1.2.3.256",
		"example.org",
		"10.0.0.0/8/8",
		"[::1]",
	};
	struct cidr c;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bad); i++)
		if (parse_cidr(bad[i], &c) != -1)
			fail_msg("parse_cidr accepted \"%s\"", bad[i]);
}

static struct sockaddr_storage
sa_of(const char *addr)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(addr, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)&ss;

		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&ss;

		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
	}
	return (ss);
}

/* Does ${client} match the single rule ${rule}? */
static int
match1(const char *rule, const char *client)
{
	struct sockaddr_storage ss = sa_of(client);
	struct cidr c;

	if (parse_cidr(rule, &c) != 0)
		fail_msg("rule \"%s\" did not parse", rule);
	return (cidr_match(&c, 1, (const struct sockaddr *)&ss));
}

static void
test_cidr_match_v4(void **state)
{
	(void)state;
	assert_int_equal(match1("10.0.0.0/8", "10.0.0.1"), 1);
	assert_int_equal(match1("10.0.0.0/8", "10.255.255.255"), 1);
	assert_int_equal(match1("10.0.0.0/8", "11.0.0.0"), 0);
	assert_int_equal(match1("10.0.0.0/8", "9.255.255.255"), 0);
	assert_int_equal(match1("192.168.1.0/25", "192.168.1.127"), 1);
	assert_int_equal(match1("192.168.1.0/25", "192.168.1.128"), 0);
	assert_int_equal(match1("192.0.2.7", "192.0.2.7"), 1);
	assert_int_equal(match1("192.0.2.7", "192.0.2.6"), 0);
	assert_int_equal(match1("0.0.0.0/0", "203.0.113.9"), 1);
	/* A v4 rule never matches a native v6 client. */
	assert_int_equal(match1("0.0.0.0/0", "2001:db8::1"), 0);
}

static void
test_cidr_match_v6(void **state)
{
	(void)state;
	assert_int_equal(match1("::1", "::1"), 1);
	assert_int_equal(match1("::1/128", "::2"), 0);
	assert_int_equal(match1("2001:db8::/32", "2001:db8:ffff::1"), 1);
	assert_int_equal(match1("2001:db8::/32", "2001:db9::1"), 0);
	assert_int_equal(match1("fe80::/10", "febf::1"), 1);
	assert_int_equal(match1("fe80::/10", "fec0::1"), 0);
	assert_int_equal(match1("::/0", "2001:db8::1"), 1);
	/* A v6 rule never matches a v4 client. */
	assert_int_equal(match1("::/0", "10.0.0.1"), 0);
}

static void
test_cidr_match_v4_mapped_client_against_v4_rule(void **state)
{
	(void)state;
	assert_int_equal(match1("127.0.0.0/8", "::ffff:127.0.0.1"), 1);
	assert_int_equal(match1("10.0.0.0/8", "::ffff:10.9.8.7"), 1);
	assert_int_equal(match1("10.0.0.0/8", "::ffff:11.0.0.1"), 0);
	assert_int_equal(match1("192.0.2.7", "::ffff:192.0.2.7"), 1);
}

static void
test_cidr_match_v4_mapped_rule_matches_both_spellings(void **state)
{
	(void)state;
	assert_int_equal(match1("::ffff:10.0.0.0/104", "10.1.2.3"), 1);
	assert_int_equal(match1("::ffff:10.0.0.0/104", "::ffff:10.1.2.3"), 1);
	assert_int_equal(match1("::ffff:10.0.0.0/104", "::ffff:11.1.2.3"), 0);
	assert_int_equal(match1("::ffff:10.0.0.0/104", "11.1.2.3"), 0);
}

static void
test_cidr_match_any_of_list(void **state)
{
	struct cidr list[3];
	struct sockaddr_storage a = sa_of("192.168.5.5"), b = sa_of("::1"),
	    c = sa_of("8.8.8.8"), d = sa_of("::ffff:172.16.0.1");

	(void)state;
	assert_int_equal(parse_cidr("127.0.0.0/8", &list[0]), 0);
	assert_int_equal(parse_cidr("::1", &list[1]), 0);
	assert_int_equal(parse_cidr("192.168.0.0/16", &list[2]), 0);
	assert_int_equal(cidr_match(list, 3, (struct sockaddr *)&a), 1);
	assert_int_equal(cidr_match(list, 3, (struct sockaddr *)&b), 1);
	assert_int_equal(cidr_match(list, 3, (struct sockaddr *)&c), 0);
	assert_int_equal(cidr_match(list, 3, (struct sockaddr *)&d), 0);
	/* An empty list matches nothing. */
	assert_int_equal(cidr_match(list, 0, (struct sockaddr *)&a), 0);
}

static void
test_cidr_match_unknown_family_is_no_match(void **state)
{
	struct sockaddr_storage ss;
	struct cidr c;

	(void)state;
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	assert_int_equal(parse_cidr("0.0.0.0/0", &c), 0);
	assert_int_equal(cidr_match(&c, 1, (struct sockaddr *)&ss), 0);
}

static int
private1(const char *s)
{
	struct cidr c;

	if (parse_cidr(s, &c) != 0)
		fail_msg("\"%s\" did not parse", s);
	return (cidr_is_private(&c));
}

static void
test_cidr_is_private_for_private_ranges(void **state)
{
	static const char *yes[] = { "10.0.0.0/8", "10.1.0.0/16", "10.2.3.4", "127.0.0.0/8",
	    "127.0.0.1", "172.16.0.0/12", "172.31.255.0/24", "192.168.0.0/16", "100.64.0.0/10",
	    "169.254.0.0/16", "::1/128", "fc00::/7", "fd12:3456::/32", "fe80::/10",
	    "::ffff:10.0.0.0/104" };
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(yes); i++)
		if (private1(yes[i]) != 1)
			fail_msg("\"%s\" should be private", yes[i]);
}

static void
test_cidr_is_private_refuses_public_or_wider_ranges(void **state)
{
	static const char *no[] = { "0.0.0.0/0", "8.8.8.0/24", "8.8.8.8", "10.0.0.0/7",
	    "172.32.0.0/16", "172.0.0.0/8", "192.169.0.0/16", "128.0.0.0/1", "100.128.0.0/10",
	    "::/0", "2001:db8::/32", "fc00::/6", "::/1", "::ffff:0:0/96", "::", "::2" };
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(no); i++)
		if (private1(no[i]) != 0)
			fail_msg("\"%s\" should not be private", no[i]);
}

static void
test_parse_addr_str_formats_v4_v6_and_unknown(void **state)
{
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;
	struct sockaddr sa;
	char out[64], small[8];

	(void)state;
	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	s4.sin_port = htons(2525);
	inet_pton(AF_INET, "192.0.2.7", &s4.sin_addr);
	parse_addr_str((struct sockaddr *)&s4, out, sizeof(out));
	assert_string_equal(out, "192.0.2.7:2525");
	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	s6.sin6_port = htons(25);
	inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr);
	parse_addr_str((struct sockaddr *)&s6, out, sizeof(out));
	assert_string_equal(out, "[2001:db8::1]:25");
	memset(&sa, 0, sizeof(sa));
	sa.sa_family = AF_UNIX;
	parse_addr_str(&sa, out, sizeof(out));
	assert_string_equal(out, "unknown");
	/* Cut, never overrun. */
	parse_addr_str((struct sockaddr *)&s6, small, sizeof(small));
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_bool_accepts_every_spelling_any_case),
		cmocka_unit_test(test_parse_bool_refuses_anything_else),
		cmocka_unit_test(test_parse_ulong_accepts_in_range_including_bounds),
		cmocka_unit_test(test_parse_ulong_refuses_out_of_range),
		cmocka_unit_test(test_parse_ulong_refuses_junk_sign_blanks_and_overflow),
		cmocka_unit_test(test_parse_list_splits_and_trims),
		cmocka_unit_test(test_parse_list_empty_string_has_no_items),
		cmocka_unit_test(test_parse_list_empty_item_is_an_error),
		cmocka_unit_test(test_parse_list_trailing_comma_is_an_error),
		cmocka_unit_test(test_parse_list_item_too_long_is_an_error),
		cmocka_unit_test(test_parse_hostport_accepts_v4_name_and_bracketed_v6),
		cmocka_unit_test(test_parse_hostport_refuses_malformed),
		cmocka_unit_test(test_parse_hostport_refuses_host_too_long_for_buffer),
		cmocka_unit_test(test_parse_cidr_v4_and_v6_with_and_without_prefix),
		cmocka_unit_test(test_parse_cidr_folds_v4_mapped_rule_to_v4),
		cmocka_unit_test(test_parse_cidr_refuses_host_bits_bad_prefix_and_junk),
		cmocka_unit_test(test_cidr_match_v4),
		cmocka_unit_test(test_cidr_match_v6),
		cmocka_unit_test(test_cidr_match_v4_mapped_client_against_v4_rule),
		cmocka_unit_test(test_cidr_match_v4_mapped_rule_matches_both_spellings),
		cmocka_unit_test(test_cidr_match_any_of_list),
		cmocka_unit_test(test_cidr_match_unknown_family_is_no_match),
		cmocka_unit_test(test_cidr_is_private_for_private_ranges),
		cmocka_unit_test(test_cidr_is_private_refuses_public_or_wider_ranges),
		cmocka_unit_test(test_parse_addr_str_formats_v4_v6_and_unknown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
