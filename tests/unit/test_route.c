/* route: which [intercept NAME] rule an intercepted destination falls under. */
#include "unit.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "config.h"
#include "route.h"

static struct intercept_conf rules[6];
static struct config cfg;

static void
rule(size_t i, const char *name, const char *net, int port)
{
	snprintf(rules[i].name, sizeof(rules[i].name), "%s", name);
	assert_int_equal(parse_cidr(net, &rules[i].net), 0);
	rules[i].has_net = 1;
	rules[i].port = port;
	cfg.icps[i] = &rules[i];
	cfg.nicps = i + 1;
}

static const char *
which(const char *addr, int port)
{
	struct sockaddr_storage ss;
	const struct intercept_conf *ic;

	memset(&ss, 0, sizeof(ss));
	if (strchr(addr, ':') != NULL) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((unsigned short)port);
		assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		in->sin_family = AF_INET;
		in->sin_port = htons((unsigned short)port);
		assert_int_equal(inet_pton(AF_INET, addr, &in->sin_addr), 1);
	}
	ic = route_intercept(&cfg, (struct sockaddr *)&ss);
	return (ic != NULL ? ic->name : "-");
}

static void
test_route_intercept_most_specific_network_then_port(void **state)
{
	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	rule(0, "isp-any", "203.0.113.0/24", 0);
	rule(1, "isp-25", "203.0.113.0/24", 25);
	rule(2, "host", "203.0.113.7", 0);
	rule(3, "everything", "0.0.0.0/0", 0);
	rule(4, "v6", "2001:db8::/32", 587);

	/* A longer prefix wins over a port. */
	assert_string_equal(which("203.0.113.7", 25), "host");
	/* Same network: the rule naming the port wins, whichever comes first in the file. */
	assert_string_equal(which("203.0.113.8", 25), "isp-25");
	assert_string_equal(which("203.0.113.8", 587), "isp-any");
	assert_string_equal(which("198.51.100.1", 25), "everything");
	/* A port rule only matches its port; families never cross. */
	assert_string_equal(which("2001:db8::1", 587), "v6");
	assert_string_equal(which("2001:db8::1", 25), "-");
	assert_string_equal(which("::ffff:198.51.100.1", 25), "everything");
}

static void
test_route_intercept_order_does_not_matter(void **state)
{
	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	rule(0, "isp-25", "203.0.113.0/24", 25);
	rule(1, "isp-any", "203.0.113.0/24", 0);
	assert_string_equal(which("203.0.113.8", 25), "isp-25");
	assert_string_equal(which("203.0.113.8", 2525), "isp-any");
	memset(&cfg, 0, sizeof(cfg));
	assert_string_equal(which("203.0.113.8", 25), "-");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_intercept_most_specific_network_then_port),
		cmocka_unit_test(test_route_intercept_order_does_not_matter),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
