/* log: one line per event, values escaped so no peer byte can forge a line or a field. */
#include "unit.h"

#include "capture.h"
#include "log.h"

static int
setup(void **state)
{
	(void)state;
	unsetenv("JOURNAL_STREAM");
	return (0);
}

/* The part of the captured line after the timestamp. */
static const char *
after_ts(void)
{
	const char *sp = strchr(out, ' ');

	assert_non_null(sp);
	/* 2024-01-02T03:04:05.678Z */
	assert_int_equal(sp - out, 24);
	assert_int_equal(out[10], 'T');
	assert_int_equal(out[23], 'Z');
	return (sp + 1);
}

static void
test_log_text_line_shape(void **state)
{
	struct logline l;

	(void)state;
	log_init(L_INFO, LOG_TEXT);
	capture_begin();
	log_begin(&l, L_INFO, "abc123", "session.open");
	log_str(&l, "client", "192.0.2.1");
	log_num(&l, "port", 2525);
	log_num(&l, "neg", -5);
	log_end(&l);
	capture_end();
	assert_string_equal(after_ts(),
	    "info sid=abc123 event=session.open client=192.0.2.1 port=2525 neg=-5\n");
}

static void
test_log_text_quotes_and_escapes_values(void **state)
{
	struct logline l;

	(void)state;
	log_init(L_DEBUG, LOG_TEXT);
	capture_begin();
	log_begin(&l, L_DEBUG, NULL, "x");
	log_str(&l, "a", "two words");
	log_str(&l, "b", "say \"hi\"");
	log_str(&l, "c", "back\\slash");
	log_str(&l, "d", "k=v");
	log_str(&l, "e", "");
	log_str(&l, "f", NULL);
	log_strn(&l, "g", LIT("line\r\nfake=1\0z\x01\t\x7f\xff"));
	log_end(&l);
	capture_end();
	assert_string_equal(after_ts(),
	    "debug event=x a=\"two words\" b=\"say \\\"hi\\\"\" c=\"back\\\\slash\" d=\"k=v\" "
	    "e=\"\" f=\"\" g=\"line\\r\\nfake=1\\x00z\\x01\\t\\x7f\\xff\"\n");
	/* One line, however hostile the values. */
	assert_int_equal(count_mem(out, outlen, "\n", 1), 1);
}

static void
test_log_json_escapes_values(void **state)
{
	struct logline l;
	const char *p;

	(void)state;
	log_init(L_INFO, LOG_JSON);
	capture_begin();
	log_begin(&l, L_WARN, "s1", "up.reply");
	log_str(&l, "text", "a\"b\\c\nd\re\tf\x01g\x7f");
	log_str(&l, "plain", "ok");
	log_num(&l, "code", 554);
	log_end(&l);
	capture_end();
	assert_true(strncmp(out, "{\"ts\":\"", 7) == 0);
	p = strstr(out, "\",\"level\":\"warn\"");
	assert_non_null(p);
	assert_string_equal(p, "\",\"level\":\"warn\",\"sid\":\"s1\",\"event\":\"up.reply\","
	    "\"text\":\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u007f\",\"plain\":\"ok\",\"code\":554}\n");
	assert_int_equal(count_mem(out, outlen, "\n", 1), 1);
}

static void
test_log_disabled_level_writes_nothing(void **state)
{
	struct logline l;

	(void)state;
	log_init(L_WARN, LOG_TEXT);
	assert_true(log_enabled(L_ERROR));
	assert_true(log_enabled(L_WARN));
	assert_false(log_enabled(L_INFO));
	assert_false(log_enabled(L_DEBUG));
	capture_begin();
	log_begin(&l, L_INFO, "s", "quiet");
	log_str(&l, "k", "v");
	log_num(&l, "n", 1);
	log_end(&l);
	log_simple(L_DEBUG, "quiet", "nothing");
	log_simple(L_ERROR, "loud", "something");
	capture_end();
	assert_string_equal(after_ts(), "error event=loud msg=something\n");
}

static void
test_log_journal_prefix_without_timestamp(void **state)
{
	(void)state;
	setenv("JOURNAL_STREAM", "8:1234", 1);
	log_init(L_INFO, LOG_TEXT);
	capture_begin();
	log_simple(L_WARN, "cfg.reload", "done");
	log_simple(L_ERROR, "x", "y");
	capture_end();
	unsetenv("JOURNAL_STREAM");
	log_init(L_INFO, LOG_TEXT);
	assert_string_equal(out, "<4>warn event=cfg.reload msg=done\n<3>error event=x msg=y\n");
}

static void
test_log_level_names_round_trip(void **state)
{
	enum log_level lv = L_ERROR;

	(void)state;
	assert_string_equal(log_level_str(L_ERROR), "error");
	assert_string_equal(log_level_str(L_DEBUG), "debug");
	assert_int_equal(log_level_parse("WARN", &lv), 0);
	assert_int_equal(lv, L_WARN);
	assert_int_equal(log_level_parse("info", &lv), 0);
	assert_int_equal(lv, L_INFO);
	assert_int_equal(log_level_parse("warning", &lv), -1);
	assert_int_equal(log_level_parse("", &lv), -1);
	assert_int_equal(lv, L_INFO);
}

static void
test_log_too_long_field_dropped_and_marked(void **state)
{
	static char big[6000];
	struct logline l;
	int fmt;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	for (fmt = 0; fmt < 2; fmt++) {
		log_init(L_INFO, fmt ? LOG_JSON : LOG_TEXT);
		capture_begin();
		log_begin(&l, L_INFO, NULL, "big");
		log_str(&l, "before", "1");
		log_str(&l, "huge", big);
		log_str(&l, "after", "2");
		log_end(&l);
		capture_end();
		assert_null(strstr(out, "huge"));
		assert_null(strstr(out, "xxx"));
		if (fmt) {
			assert_non_null(strstr(out, "\"before\":\"1\""));
			assert_non_null(strstr(out, "\"after\":\"2\""));
			assert_non_null(strstr(out, ",\"truncated\":true}\n"));
		} else {
			assert_non_null(strstr(out, " before=1 after=2 truncated=yes\n"));
		}
		assert_int_equal(count_mem(out, outlen, "\n", 1), 1);
	}
}

/* Pad a JSON line with one field to ${target} bytes; returns the length reached. */
static size_t
fill_to(struct logline *l, size_t target)
{
	static char pad[4096];

	/* No asserts here: stderr is captured, so cmocka could not report them. */
	memset(pad, 'p', sizeof(pad));
	/* ,"f":"...": 7 bytes of framing in JSON. */
	log_strn(l, "f", pad, target - l->len - 7);
	return (l->len);
}

static void
test_log_line_never_exceeds_buffer_and_stays_json(void **state)
{
	struct logline l;
	size_t target, reached;

	(void)state;
	log_init(L_INFO, LOG_JSON);
	/* Try every fill level near the end: each line must still be one valid-looking object. */
	for (target = sizeof(l.buf) - 60; target < sizeof(l.buf) - 24; target++) {
		capture_begin();
		log_begin(&l, L_INFO, NULL, "edge");
		reached = fill_to(&l, target);
		log_str(&l, "k", "value\"q");
		log_end(&l);
		capture_end();
		assert_int_equal(reached, target);
		assert_true(outlen <= sizeof(l.buf));
		assert_int_equal(out[outlen - 1], '\n');
		assert_int_equal(out[outlen - 2], '}');
		assert_int_equal(count_mem(out, outlen, "\n", 1), 1);
		/* Quotes balance: no string was cut open. */
		{
			size_t i, q = 0;

			for (i = 0; i < outlen; i++)
				if (out[i] == '"' && out[i - 1] != '\\')
					q++;
			assert_int_equal(q % 2, 0);
		}
	}
}

/* Fails: a number field that does not fit leaves `"key":}` (invalid JSON) behind. */
static void
test_log_num_that_does_not_fit_is_dropped_whole(void **state)
{
	struct logline l;
	size_t target, reached;

	(void)state;
	log_init(L_INFO, LOG_JSON);
	for (target = sizeof(l.buf) - 60; target < sizeof(l.buf) - 24; target++) {
		capture_begin();
		log_begin(&l, L_INFO, NULL, "edge");
		reached = fill_to(&l, target);
		log_num(&l, "bytes", 1234567890123LL);
		log_end(&l);
		capture_end();
		assert_int_equal(reached, target);
		if (strstr(out, "\":}") != NULL || strstr(out, "\"\":") != NULL)
			fail_msg("fill %zu: broken JSON: ...%s", target, out + outlen - 40);
		if (strstr(out, "bytes") == NULL)
			assert_non_null(strstr(out, "\"truncated\":true}"));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_text_line_shape),
		cmocka_unit_test(test_log_text_quotes_and_escapes_values),
		cmocka_unit_test(test_log_json_escapes_values),
		cmocka_unit_test(test_log_disabled_level_writes_nothing),
		cmocka_unit_test(test_log_journal_prefix_without_timestamp),
		cmocka_unit_test(test_log_level_names_round_trip),
		cmocka_unit_test(test_log_too_long_field_dropped_and_marked),
		cmocka_unit_test(test_log_line_never_exceeds_buffer_and_stays_json),
		cmocka_unit_test(test_log_num_that_does_not_fit_is_dropped_whole),
	};

	return (cmocka_run_group_tests(tests, setup, NULL));
}
