/* httpreq: the one request of the metrics endpoint, judged from the bytes read so far. */
#include "unit.h"

#include "httpreq.h"

static enum httpreq_result
judge(const char *s)
{
	return (httpreq_parse(s, strlen(s)));
}

static void
test_httpreq_get_metrics_ok(void **state)
{
	(void)state;
	assert_int_equal(judge("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"),
	    HTTPREQ_OK);
	assert_int_equal(judge("GET /metrics HTTP/1.0\r\n\r\n"), HTTPREQ_OK);
	assert_int_equal(judge("GET /metrics?name[]=x HTTP/1.0\n\n"), HTTPREQ_OK);
}

static void
test_httpreq_waits_for_the_end_of_the_headers_at_every_split(void **state)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(req) - 1; i++)
		assert_int_equal(httpreq_parse(req, i), HTTPREQ_MORE);
	assert_int_equal(httpreq_parse(req, sizeof(req) - 1), HTTPREQ_OK);
}

static void
test_httpreq_other_paths_are_404(void **state)
{
	(void)state;
	assert_int_equal(judge("GET / HTTP/1.0\r\n\r\n"), HTTPREQ_NOT_FOUND);
	assert_int_equal(judge("GET /metricsx HTTP/1.0\r\n\r\n"), HTTPREQ_NOT_FOUND);
	assert_int_equal(judge("GET /metric HTTP/1.0\r\n\r\n"), HTTPREQ_NOT_FOUND);
	assert_int_equal(judge("GET /metrics/ HTTP/1.0\r\n\r\n"), HTTPREQ_NOT_FOUND);
}

static void
test_httpreq_other_methods_are_405(void **state)
{
	(void)state;
	assert_int_equal(judge("POST /metrics HTTP/1.1\r\n\r\n"), HTTPREQ_METHOD);
	assert_int_equal(judge("HEAD /metrics HTTP/1.1\r\n\r\n"), HTTPREQ_METHOD);
	assert_int_equal(judge("GETX /metrics HTTP/1.1\r\n\r\n"), HTTPREQ_METHOD);
}

static void
test_httpreq_malformed_is_400(void **state)
{
	static const char *const bad[] = {
		"\r\n\r\n",
		"GET\r\n\r\n",
		"GET /metrics\r\n\r\n",
		"GET /metrics HTTP/2.0\r\n\r\n",
		"GET /metrics HTTP/1.1 x\r\n\r\n",
		"GET  /metrics HTTP/1.1\r\n\r\n",
		"get /metrics HTTP/1.1\r\n\r\n",
		"GET metrics HTTP/1.1\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
		"GET /metrics HTTP/1.1\r\n: no name\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET /metrics HTTP/1.1\rX\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost: a\x01\r\n\r\n",
	};
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bad); i++)
		assert_int_equal(judge(bad[i]), HTTPREQ_BAD);
	/* A NUL is judged even before the headers end. */
	assert_int_equal(httpreq_parse(LIT("GET /\0")), HTTPREQ_BAD);
}

static void
test_httpreq_oversized_is_400(void **state)
{
	char big[HTTPREQ_MAX + 64];

	(void)state;
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	assert_int_equal(httpreq_parse(big, HTTPREQ_MAX - 1), HTTPREQ_MORE);
	assert_int_equal(httpreq_parse(big, HTTPREQ_MAX), HTTPREQ_BAD);
	/* Headers that end, but past the bound. */
	memcpy(big + HTTPREQ_MAX + 10, "\r\n\r\n", 4);
	assert_int_equal(httpreq_parse(big, HTTPREQ_MAX + 14), HTTPREQ_BAD);
}

static void
test_httpreq_status_lines(void **state)
{
	(void)state;
	assert_string_equal(httpreq_status(HTTPREQ_OK), "200 OK");
	assert_string_equal(httpreq_status(HTTPREQ_NOT_FOUND), "404 Not Found");
	assert_string_equal(httpreq_status(HTTPREQ_METHOD), "405 Method Not Allowed");
	assert_string_equal(httpreq_status(HTTPREQ_BAD), "400 Bad Request");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_httpreq_get_metrics_ok),
		cmocka_unit_test(test_httpreq_waits_for_the_end_of_the_headers_at_every_split),
		cmocka_unit_test(test_httpreq_other_paths_are_404),
		cmocka_unit_test(test_httpreq_other_methods_are_405),
		cmocka_unit_test(test_httpreq_malformed_is_400),
		cmocka_unit_test(test_httpreq_oversized_is_400),
		cmocka_unit_test(test_httpreq_status_lines),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
