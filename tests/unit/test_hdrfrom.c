/*
 * hdrfrom: rewrite_header_from's header block, and sender: force_sender's MAIL FROM.
 *
 * Every header case is fed whole, split in two at every point, and byte by byte; the
 * block and where the body starts must not depend on how the input was cut.
 */
#include "unit.h"

#include "hdrfrom.h"
#include "sender.h"

#define SENDER	"scanner@example.com"
#define NEWFROM	"From: " SENDER "\r\n"

/*
 * Feed ${in} to a rewriter in chunks ending at the ${ncuts} offsets in ${cuts} (then at
 * ${n}); what it did not take is body, appended as the session would send it. Return the
 * message as the upstream gets it (malloc'ed, length in ${outlen}); NULL when over
 * HDRFROM_MAX.
 */
static char *
feed_cuts(const char *in, size_t n, const size_t *cuts, size_t ncuts, size_t *outlen)
{
	struct hdrfrom h;
	size_t a = 0, b, k, used, blen;
	char *chunk, *block, *out;

	hdrfrom_init(&h, SENDER);
	for (k = 0; k <= ncuts && !h.done; k++) {
		b = k < ncuts ? cuts[k] : n;
		chunk = malloc(b - a ? b - a : 1);
		assert_non_null(chunk);
		memcpy(chunk, in + a, b - a);
		if (hdrfrom_feed(&h, chunk, b - a, &used) != 0) {
			assert_true(h.toobig);
			free(chunk);
			hdrfrom_free(&h);
			return (NULL);
		}
		assert_true(used <= b - a);
		if (used < b - a)
			assert_true(h.done);
		free(chunk);
		a += used;
	}
	block = hdrfrom_block(&h, &blen);
	assert_non_null(block);
	assert_true(blen <= HDRFROM_OUT_MAX);
	out = malloc(blen + (n - a) + 1);
	assert_non_null(out);
	memcpy(out, block, blen);
	memcpy(out + blen, in + a, n - a);
	*outlen = blen + (n - a);
	out[*outlen] = '\0';
	free(block);
	hdrfrom_free(&h);
	return (out);
}

/* ${in} rewritten must be ${want}, however it is cut. */
static void
assert_rewrite(const char *in, const char *want)
{
	size_t n = strlen(in), cut, i, len, *cuts;
	char *out;

	out = feed_cuts(in, n, NULL, 0, &len);
	assert_non_null(out);
	assert_string_equal(out, want);
	free(out);
	for (cut = 0; cut <= n; cut++) {
		out = feed_cuts(in, n, &cut, 1, &len);
		assert_non_null(out);
		if (strcmp(out, want) != 0)
			fail_msg("cut at %zu:\n%s\nwant:\n%s", cut, out, want);
		free(out);
	}
	cuts = malloc((n + 1) * sizeof(*cuts));
	assert_non_null(cuts);
	for (i = 0; i < n; i++)
		cuts[i] = i + 1;
	out = feed_cuts(in, n, cuts, n, &len);
	assert_non_null(out);
	assert_string_equal(out, want);
	free(out);
	free(cuts);
}

static void
test_hdrfrom_replaces_from_and_keeps_it_as_reply_to(void **state)
{
	(void)state;
	assert_rewrite("Subject: scan\r\nFrom: \"Scanner 3rd floor\" <scan@lan>\r\nTo: a@b\r\n"
	    "\r\nbody\r\n",
	    "Subject: scan\r\n" NEWFROM "Reply-To: \"Scanner 3rd floor\" <scan@lan>\r\n"
	    "To: a@b\r\n\r\nbody\r\n");
}

static void
test_hdrfrom_keeps_an_existing_reply_to(void **state)
{
	(void)state;
	assert_rewrite("From: scan@lan\r\nreply-to: admin@lan\r\n\r\nx\r\n",
	    NEWFROM "reply-to: admin@lan\r\n\r\nx\r\n");
	/* A Reply-To after the From counts too. */
	assert_rewrite("Reply-To: admin@lan\r\nFrom: scan@lan\r\n\r\n",
	    "Reply-To: admin@lan\r\n" NEWFROM "\r\n");
}

static void
test_hdrfrom_name_is_case_insensitive_and_may_have_blanks_before_colon(void **state)
{
	(void)state;
	assert_rewrite("fROM: a@lan\r\n\r\n", NEWFROM "Reply-To: a@lan\r\n\r\n");
	assert_rewrite("From : a@lan\r\n\r\n", NEWFROM "Reply-To: a@lan\r\n\r\n");
	/* Not From: fields whose names begin with it. */
	assert_rewrite("From-X: a\r\nFromage: b\r\n\r\n", NEWFROM "From-X: a\r\nFromage: b\r\n\r\n");
}

static void
test_hdrfrom_folded_from_moves_whole(void **state)
{
	(void)state;
	assert_rewrite("From: \"Scanner\"\r\n\t<scan@lan>\r\nSubject: x\r\n  y\r\n\r\nb\r\n",
	    NEWFROM "Reply-To: \"Scanner\"\r\n\t<scan@lan>\r\nSubject: x\r\n  y\r\n\r\nb\r\n");
}

static void
test_hdrfrom_encoded_words_kept_intact(void **state)
{
	(void)state;
	assert_rewrite("From: =?utf-8?q?Scanner_=C3=A9tage_3?= <scan@lan>\r\n\r\n",
	    NEWFROM "Reply-To: =?utf-8?q?Scanner_=C3=A9tage_3?= <scan@lan>\r\n\r\n");
	assert_rewrite("From: =?UTF-8?B?U2Nhbm5lcg==?=\r\n =?UTF-8?B?w6k=?= <s@lan>\r\n\r\n",
	    NEWFROM "Reply-To: =?UTF-8?B?U2Nhbm5lcg==?=\r\n =?UTF-8?B?w6k=?= <s@lan>\r\n\r\n");
}

static void
test_hdrfrom_message_without_from_gets_one(void **state)
{
	(void)state;
	assert_rewrite("Subject: x\r\n\r\nbody\r\n", NEWFROM "Subject: x\r\n\r\nbody\r\n");
	/* Nothing at all (the end of data right after the 354). */
	assert_rewrite("", NEWFROM);
	/* Only fields, no empty line, then the end of data. */
	assert_rewrite("Subject: x\r\n", NEWFROM "Subject: x\r\n");
}

static void
test_hdrfrom_second_from_is_dropped(void **state)
{
	(void)state;
	assert_rewrite("From: a@lan\r\nTo: t@x\r\nFROM: ceo@bank\r\n (folded)\r\n\r\n",
	    NEWFROM "Reply-To: a@lan\r\nTo: t@x\r\n\r\n");
}

static void
test_hdrfrom_judges_lines_as_the_upstream_unstuffs_them(void **state)
{
	(void)state;
	/* A device's unstuffed ".From:" reaches the upstream as "From:". */
	assert_rewrite("From: a@lan\r\n.From: ceo@bank\r\n\r\n", NEWFROM "Reply-To: a@lan\r\n\r\n");
	/* ". x" is read " x": a continuation of the From, which goes with it. */
	assert_rewrite("From: a@lan\r\n. <ceo@bank>\r\n\r\n",
	    NEWFROM "Reply-To: a@lan\r\n. <ceo@bank>\r\n\r\n");
	/* A stuffed "..From:" is ".From:", another field. */
	assert_rewrite("..From: x\r\n\r\n", NEWFROM "..From: x\r\n\r\n");
}

static void
test_hdrfrom_body_line_ends_the_block(void **state)
{
	(void)state;
	/* A line that is no field is the body's first: an empty line goes before it. */
	assert_rewrite("From: a@lan\r\nhello world\r\nFrom: not a header\r\n",
	    NEWFROM "Reply-To: a@lan\r\n\r\nhello world\r\nFrom: not a header\r\n");
	assert_rewrite("no header at all\r\n", NEWFROM "\r\nno header at all\r\n");
	/* mbox's "From " line is not a field. */
	assert_rewrite("From scan@lan Mon\r\nSubject: x\r\n\r\n",
	    NEWFROM "\r\nFrom scan@lan Mon\r\nSubject: x\r\n\r\n");
	/* A continuation with nothing to continue is body too. */
	assert_rewrite(" x\r\n", NEWFROM "\r\n x\r\n");
}

static void
test_hdrfrom_reply_to_skipped_when_blank_or_the_sender(void **state)
{
	(void)state;
	assert_rewrite("From:  \r\n\r\n", NEWFROM "\r\n");
	assert_rewrite("From: <Scanner@Example.com>\r\n\r\n", NEWFROM "\r\n");
	assert_rewrite("From: scanner@example.com\r\n\r\n", NEWFROM "\r\n");
}

static void
test_hdrfrom_only_the_header_is_held(void **state)
{
	struct hdrfrom h;
	const char *in = "From: a@lan\r\n\r\nbody line\r\nmore\r\n";
	size_t used;

	(void)state;
	hdrfrom_init(&h, SENDER);
	assert_int_equal(hdrfrom_feed(&h, in, strlen(in), &used), 0);
	assert_true(h.done);
	assert_int_equal(used, strlen("From: a@lan\r\n\r\n"));
	hdrfrom_free(&h);
	/* A body line is known by its first bytes: the rest of it is not taken. */
	hdrfrom_init(&h, SENDER);
	assert_int_equal(hdrfrom_feed(&h, "Subject: x\r\nhello wo", 20, &used), 0);
	assert_true(h.done);
	assert_int_equal(used, 20);
	assert_int_equal(h.hdrlen, 12);
	hdrfrom_free(&h);
}

/* A header block of ${n} bytes (fields, then the empty line) in ${in}. */
static void
make_block(char *in, size_t n)
{
	size_t i, first = (n - 2) % 100 + 100;

	/* One field of ${first} bytes, then fields of 100, then the empty line. */
	for (i = 0; i + 2 < n; i += i == 0 ? first : 100) {
		memset(in + i, 'a', (i == 0 ? first : 100) - 2);
		memcpy(in + i, "X-Pad: ", 7);
		memcpy(in + i + (i == 0 ? first : 100) - 2, "\r\n", 2);
	}
	memcpy(in + n - 2, "\r\n", 2);
	in[n] = '\0';
}

static void
test_hdrfrom_block_over_the_limit_refused(void **state)
{
	size_t len, cut = 40000;
	char *in, *out;

	(void)state;
	in = malloc(HDRFROM_MAX + 2);
	assert_non_null(in);
	make_block(in, HDRFROM_MAX + 1);
	assert_null(feed_cuts(in, HDRFROM_MAX + 1, NULL, 0, &len));
	assert_null(feed_cuts(in, HDRFROM_MAX + 1, &cut, 1, &len));
	/* Exactly the limit: taken. */
	make_block(in, HDRFROM_MAX);
	out = feed_cuts(in, HDRFROM_MAX, &cut, 1, &len);
	assert_non_null(out);
	assert_int_equal(len, HDRFROM_MAX + strlen(NEWFROM));
	assert_memory_equal(out, NEWFROM, strlen(NEWFROM));
	free(out);
	free(in);
}

static void
test_hdrfrom_long_body_line_is_body_however_cut(void **state)
{
	size_t n = HDRFROM_MAX + 5000, len, cut = 10, want = strlen(NEWFROM "\r\n") + n;
	char *in, *out;

	(void)state;
	/* Whole or cut, a line known as body by its first bytes is never "too big". */
	in = malloc(n + 1);
	assert_non_null(in);
	memset(in, 'x', n);
	memcpy(in, "hello world", 11);
	in[n] = '\0';
	out = feed_cuts(in, n, NULL, 0, &len);
	assert_non_null(out);
	assert_int_equal(len, want);
	free(out);
	out = feed_cuts(in, n, &cut, 1, &len);
	assert_non_null(out);
	assert_int_equal(len, want);
	assert_memory_equal(out + strlen(NEWFROM "\r\n"), in, n);
	free(out);
	free(in);
}

static void
test_hdrfrom_output_has_only_crlf_lines(void **state)
{
	static const char *const cases[] = {
		"From: a\r\n\r\n", "Subject: x\r\n", "", "x\r\n", "From: a\r\n b\r\nc: d\r\n\r\n",
		"A: b\r\nFrom: c\r\nFrom: d\r\nReply-To: e\r\n\r\n.\r\n",
	};
	size_t i, len;
	char *out;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		out = feed_cuts(cases[i], strlen(cases[i]), NULL, 0, &len);
		assert_non_null(out);
		assert_false(has_bare_crlf(out, len));
		assert_int_equal(count_mem(out, len, "From:", 5), 1);
		free(out);
	}
}

/* ---- sender_mail: MAIL FROM ---------------------------------------------------------- */

static void
assert_mail(const char *arg, int want_rc, const char *want)
{
	char out[600];
	int rc;

	rc = sender_mail(arg, strlen(arg), SENDER, out, sizeof(out));
	if (want_rc > 0) {
		assert_true(rc > 0);
		assert_int_equal((size_t)rc, strlen(out));
		assert_string_equal(out, want);
	} else
		assert_int_equal(rc, want_rc);
}

static void
test_sender_mail_replaces_the_path_and_keeps_parameters(void **state)
{
	(void)state;
	assert_mail("FROM:<scan@lan>", 1, "MAIL FROM:<" SENDER ">");
	assert_mail("FROM:<scan@lan> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159 "
	    "X-FOO=bar", 1, "MAIL FROM:<" SENDER "> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS "
	    "ENVID=QQ314159 X-FOO=bar");
}

static void
test_sender_mail_reads_device_quirks(void **state)
{
	(void)state;
	assert_mail("from:<scan@lan> SIZE=5", 1, "MAIL FROM:<" SENDER "> SIZE=5");
	assert_mail("FROM: <scan@lan> SIZE=5", 1, "MAIL FROM:<" SENDER "> SIZE=5");
	assert_mail("FROM:scan@lan", 1, "MAIL FROM:<" SENDER ">");
	assert_mail("FROM:scan@lan  BODY=7BIT", 1, "MAIL FROM:<" SENDER "> BODY=7BIT");
	assert_mail("FROM:<scan@lan>SIZE=5", 1, "MAIL FROM:<" SENDER "> SIZE=5");
	/* A quoted local part may hold '>' and blanks. */
	assert_mail("FROM:<\"a> b\"@lan> SIZE=5", 1, "MAIL FROM:<" SENDER "> SIZE=5");
	assert_mail("FROM:<@relay.lan:scan@lan>", 1, "MAIL FROM:<" SENDER ">");
}

static void
test_sender_mail_keeps_the_null_path(void **state)
{
	(void)state;
	assert_mail("FROM:<>", 0, NULL);
	assert_mail("FROM: <> SIZE=10", 0, NULL);
}

static void
test_sender_mail_refuses_what_is_no_mail_from(void **state)
{
	char out[20];

	(void)state;
	assert_mail("", -1, NULL);
	assert_mail("FROM:", -1, NULL);
	assert_mail("FROM:   ", -1, NULL);
	assert_mail("TO:<a@b>", -1, NULL);
	assert_mail("FROM:<unclosed", -1, NULL);
	assert_int_equal(sender_mail(LIT("FROM:<a@b>"), SENDER, out, sizeof(out)), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdrfrom_replaces_from_and_keeps_it_as_reply_to),
		cmocka_unit_test(test_hdrfrom_keeps_an_existing_reply_to),
		cmocka_unit_test(test_hdrfrom_name_is_case_insensitive_and_may_have_blanks_before_colon),
		cmocka_unit_test(test_hdrfrom_folded_from_moves_whole),
		cmocka_unit_test(test_hdrfrom_encoded_words_kept_intact),
		cmocka_unit_test(test_hdrfrom_message_without_from_gets_one),
		cmocka_unit_test(test_hdrfrom_second_from_is_dropped),
		cmocka_unit_test(test_hdrfrom_judges_lines_as_the_upstream_unstuffs_them),
		cmocka_unit_test(test_hdrfrom_body_line_ends_the_block),
		cmocka_unit_test(test_hdrfrom_reply_to_skipped_when_blank_or_the_sender),
		cmocka_unit_test(test_hdrfrom_only_the_header_is_held),
		cmocka_unit_test(test_hdrfrom_block_over_the_limit_refused),
		cmocka_unit_test(test_hdrfrom_long_body_line_is_body_however_cut),
		cmocka_unit_test(test_hdrfrom_output_has_only_crlf_lines),
		cmocka_unit_test(test_sender_mail_replaces_the_path_and_keeps_parameters),
		cmocka_unit_test(test_sender_mail_reads_device_quirks),
		cmocka_unit_test(test_sender_mail_keeps_the_null_path),
		cmocka_unit_test(test_sender_mail_refuses_what_is_no_mail_from),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
