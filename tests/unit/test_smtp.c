/* smtp: command lines, upstream replies, EHLO capabilities. */
#include <limits.h>

#include "unit.h"

#include "smtp.h"

static void
test_smtp_line_is_clean_refuses_cr_lf_nul(void **state)
{
	(void)state;
	assert_int_equal(smtp_line_is_clean(LIT("MAIL FROM:<a@b>")), 1);
	assert_int_equal(smtp_line_is_clean(LIT("")), 1);
	assert_int_equal(smtp_line_is_clean(LIT("tab\there ok")), 1);
	assert_int_equal(smtp_line_is_clean(LIT("RSET\rMAIL FROM:<x>")), 0);
	assert_int_equal(smtp_line_is_clean(LIT("RSET\nMAIL FROM:<x>")), 0);
	assert_int_equal(smtp_line_is_clean(LIT("RSET\0MAIL FROM:<x>")), 0);
	assert_int_equal(smtp_line_is_clean(LIT("\r")), 0);
	assert_int_equal(smtp_line_is_clean(LIT("x\n")), 0);
	/* Only the given length is looked at. */
	assert_int_equal(smtp_line_is_clean("NOOP\r\n", 4), 1);
}

static void
test_smtp_line_end_takes_crlf_or_bare_lf(void **state)
{
	size_t len = 99;

	(void)state;
	assert_int_equal(smtp_line_end(LIT("NOOP\r\nQUIT\r\n"), &len), 2);
	assert_int_equal(len, 4);
	assert_int_equal(smtp_line_end(LIT("HELO p.lan\nMAIL"), &len), 1);
	assert_int_equal(len, 10);
	assert_int_equal(smtp_line_end(LIT("\n"), &len), 1);
	assert_int_equal(len, 0);
	assert_int_equal(smtp_line_end(LIT("\r\n"), &len), 2);
	assert_int_equal(len, 0);
	/* A lone CR is not a line end; it stays in the line for the caller to refuse. */
	assert_int_equal(smtp_line_end(LIT("RSET\rMAIL\r\n"), &len), 2);
	assert_int_equal(len, 9);
	assert_int_equal(smtp_line_end(LIT("a\r\r\n"), &len), 2);
	assert_int_equal(len, 2);
	/* No LF yet: no line, whatever is buffered (a CR may be half of a CRLF). */
	len = 99;
	assert_int_equal(smtp_line_end(LIT("NOOP\r"), &len), 0);
	assert_int_equal(smtp_line_end(LIT(""), &len), 0);
	assert_int_equal(len, 99);
	/* Only the given length is looked at. */
	assert_int_equal(smtp_line_end("NOOP\r\n", 5, &len), 0);
}

static void
parse_str(const char *s, struct smtp_cmd *c)
{
	memset(c, 0x55, sizeof(*c));
	smtp_cmd_parse(s, strlen(s), c);
}

static void
assert_arg(const struct smtp_cmd *c, const char *want)
{
	assert_int_equal(c->arglen, strlen(want));
	assert_memory_equal(c->arg, want, c->arglen);
}

static void
test_smtp_cmd_parse_verbs_any_case(void **state)
{
	static const struct {
		const char	*line;
		enum smtp_verb	 verb;
	} t[] = {
		{ "HELO x", SMTP_HELO }, { "ehlo x", SMTP_EHLO }, { "EhLo x", SMTP_EHLO },
		{ "mail FROM:<>", SMTP_MAIL }, { "Rcpt TO:<a>", SMTP_RCPT }, { "data", SMTP_DATA },
		{ "RSET", SMTP_RSET }, { "noop", SMTP_NOOP }, { "QUIT", SMTP_QUIT },
		{ "vrfy a", SMTP_VRFY }, { "EXPN a", SMTP_EXPN }, { "help", SMTP_HELP },
		{ "AUTH PLAIN", SMTP_AUTH }, { "STARTTLS", SMTP_STARTTLS },
		{ "starttls", SMTP_STARTTLS }, { "BDAT 10 LAST", SMTP_BDAT },
	};
	struct smtp_cmd c;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(t); i++) {
		parse_str(t[i].line, &c);
		if (c.verb != t[i].verb)
			fail_msg("\"%s\": verb %d, want %d", t[i].line, c.verb, t[i].verb);
	}
}

static void
test_smtp_cmd_parse_unknown_verbs(void **state)
{
	static const char *t[] = { "MAILX", "MAILX FROM:<a>", "MAI", "", " MAIL FROM:<a>",
	    "STARTTLSX", "XCLIENT ADDR=1.2.3.4", "DATA\tx", "EHLO\tx" };
	struct smtp_cmd c;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(t); i++) {
		parse_str(t[i], &c);
		if (c.verb != SMTP_UNKNOWN)
			fail_msg("\"%s\": verb %d, want unknown", t[i], c.verb);
	}
}

static void
test_smtp_cmd_parse_argument_after_blanks(void **state)
{
	struct smtp_cmd c;

	(void)state;
	parse_str("MAIL FROM:<a>", &c);
	assert_int_equal(c.verb, SMTP_MAIL);
	assert_arg(&c, "FROM:<a>");
	parse_str("RCPT   TO:<b@c> NOTIFY=NEVER", &c);
	assert_int_equal(c.verb, SMTP_RCPT);
	assert_arg(&c, "TO:<b@c> NOTIFY=NEVER");
	parse_str("BDAT 10 LAST", &c);
	assert_int_equal(c.verb, SMTP_BDAT);
	assert_arg(&c, "10 LAST");
	parse_str("STARTTLS", &c);
	assert_int_equal(c.verb, SMTP_STARTTLS);
	assert_arg(&c, "");
	parse_str("QUIT ", &c);
	assert_int_equal(c.verb, SMTP_QUIT);
	assert_arg(&c, "");
}

static void
test_smtp_cmd_parse_respects_length(void **state)
{
	struct smtp_cmd c;

	(void)state;
	smtp_cmd_parse("DATAX", 4, &c);
	assert_int_equal(c.verb, SMTP_DATA);
	assert_int_equal(c.arglen, 0);
	smtp_cmd_parse("MAIL FROM:<a>junk", 13, &c);
	assert_int_equal(c.verb, SMTP_MAIL);
	assert_arg(&c, "FROM:<a>");
}

static void
test_smtp_verb_str_names(void **state)
{
	(void)state;
	assert_string_equal(smtp_verb_str(SMTP_MAIL), "MAIL");
	assert_string_equal(smtp_verb_str(SMTP_STARTTLS), "STARTTLS");
	assert_string_equal(smtp_verb_str(SMTP_BDAT), "BDAT");
	assert_string_equal(smtp_verb_str(SMTP_UNKNOWN), "UNKNOWN");
}

static void
test_smtp_path_extracts_between_brackets(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(smtp_path(LIT("FROM:<a@b.example>"), out, sizeof(out)), 0);
	assert_string_equal(out, "a@b.example");
	assert_int_equal(smtp_path(LIT("FROM:<>"), out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(smtp_path(LIT("TO:<x@y> NOTIFY=NEVER"), out, sizeof(out)), 0);
	assert_string_equal(out, "x@y");
	assert_int_equal(smtp_path(LIT("FROM: <sp@ce> SIZE=10"), out, sizeof(out)), 0);
	assert_string_equal(out, "sp@ce");
}

static void
test_smtp_path_cuts_to_size(void **state)
{
	char out[5];

	(void)state;
	memset(out, 'Z', sizeof(out));
	assert_int_equal(smtp_path(LIT("FROM:<abcdefgh>"), out, sizeof(out)), 0);
	assert_string_equal(out, "abcd");
}

static void
test_smtp_path_without_brackets_fails(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(smtp_path(LIT("FROM:a@b"), out, sizeof(out)), -1);
	assert_int_equal(smtp_path(LIT("FROM:<a@b"), out, sizeof(out)), -1);
	assert_int_equal(smtp_path(LIT("FROM:a@b>"), out, sizeof(out)), -1);
	assert_int_equal(smtp_path(LIT(""), out, sizeof(out)), -1);
	/* The '>' past the given length does not count. */
	assert_int_equal(smtp_path("FROM:<a@b>", 9, out, sizeof(out)), -1);
}

/* ---- smtp_reply_parse ---- */

static long
reply(const char *p, size_t n, struct smtp_reply *r)
{
	char *copy;
	long rc;

	/* An exact-size heap copy, so a read past ${n} is caught under ASan. */
	copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, p, n);
	memset(r, 0, sizeof(*r));
	rc = smtp_reply_parse(copy, n, r);
	free(copy);
	return (rc);
}

static void
test_smtp_reply_single_line(void **state)
{
	struct smtp_reply r;

	(void)state;
	assert_int_equal(reply(LIT("250 OK\r\n"), &r), 8);
	assert_int_equal(r.code, 250);
	assert_int_equal(r.nlines, 1);
	assert_int_equal(r.len, 8);
	assert_int_equal(reply(LIT("554 5.7.1 no\r\n"), &r), 14);
	assert_int_equal(r.code, 554);
	assert_int_equal(reply(LIT("220 \r\n"), &r), 6);
	assert_int_equal(r.code, 220);
	assert_int_equal(reply(LIT("250 tab\tand UTF-8 \xc3\xa9\r\n"), &r),
	    (long)strlen("250 tab\tand UTF-8 \xc3\xa9\r\n"));
}

static void
test_smtp_reply_code_without_text(void **state)
{
	struct smtp_reply r;

	(void)state;
	assert_int_equal(reply(LIT("250\r\n"), &r), 5);
	assert_int_equal(r.code, 250);
	assert_int_equal(r.nlines, 1);
	assert_int_equal(reply(LIT("250-first\r\n250\r\n"), &r), 16);
	assert_int_equal(r.nlines, 2);
}

static const char multi[] =
    "250-mx.example.org Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 CHUNKING\r\n";

static void
test_smtp_reply_multi_line(void **state)
{
	struct smtp_reply r;

	(void)state;
	assert_int_equal(reply(LIT(multi), &r), (long)(sizeof(multi) - 1));
	assert_int_equal(r.code, 250);
	assert_int_equal(r.nlines, 4);
	assert_int_equal(r.len, sizeof(multi) - 1);
}

static void
test_smtp_reply_incomplete_at_every_split_needs_more(void **state)
{
	static const char *valid[] = { multi, "250 OK\r\n", "250\r\n",
	    "221-a\r\n221-\r\n221 b\r\n" };
	struct smtp_reply r;
	size_t i, n, k;

	(void)state;
	for (i = 0; i < NELEM(valid); i++) {
		n = strlen(valid[i]);
		for (k = 0; k < n; k++) {
			long rc = reply(valid[i], k, &r);

			if (rc != 0)
				fail_msg("reply %zu cut at %zu/%zu: %ld, want 0", i, k, n, rc);
		}
		assert_int_equal(reply(valid[i], n, &r), (long)n);
	}
}

static void
test_smtp_reply_pipelined_returns_first_length(void **state)
{
	static const char two[] = "250 2.1.0 Ok\r\n250-2.1.5 Ok\r\n250 more\r\n354 go\r\n";
	struct smtp_reply r;
	long rc;

	(void)state;
	rc = reply(LIT(two), &r);
	assert_int_equal(rc, 14);
	assert_int_equal(r.code, 250);
	assert_int_equal(r.nlines, 1);
	rc = reply(two + 14, sizeof(two) - 1 - 14, &r);
	assert_int_equal(rc, 24);
	assert_int_equal(r.nlines, 2);
	rc = reply(two + 38, sizeof(two) - 1 - 38, &r);
	assert_int_equal(rc, 8);
	assert_int_equal(r.code, 354);
	/* The second reply may still be arriving: the first is complete regardless. */
	assert_int_equal(reply(two, 16, &r), 14);
}

static void
test_smtp_reply_malformed_is_refused(void **state)
{
	static const struct {
		const char	*p;
		size_t		 n;
		const char	*why;
	} bad[] = {
#define B(s, why) { s, sizeof(s) - 1, why }
		B("250-a\r\n251 b\r\n", "mixed codes"),
		B("250-a\r\n550 b\r\n", "mixed codes"),
		B("250_a\r\n", "bad separator"),
		B("250xa\r\n", "bad separator"),
		B("250\ta\r\n", "tab as separator"),
		B("199 x\r\n", "1xx code"),
		B("100 x\r\n", "1xx code"),
		B("600 x\r\n", "6xx code"),
		B("099 x\r\n", "0xx code"),
		B("2a0 x\r\n", "non-digit code"),
		B("25a x\r\n", "non-digit code"),
		B("25\r\n", "short code"),
		B("\r\n", "empty line"),
		B("abc\r\n", "no code"),
		B(" 250 x\r\n", "leading blank"),
		B("250 x\n", "bare LF"),
		B("250 x\n250 y\r\n", "bare LF"),
		B("250-a\r\n250 x\n", "bare LF on a later line"),
		B("250 x\rz\r\n", "CR not followed by LF"),
		B("250 x\r\r\n", "CR not followed by LF"),
		B("250 a\0b\r\n", "NUL"),
		B("250 a\x01" "b\r\n", "control byte"),
		B("250 a\x1b[31m\r\n", "escape"),
		B("250 a\x7f\r\n", "DEL"),
		B("250-a\r\n250 b\x08\r\n", "control byte on a later line"),
		B("250-a\r\n250 b\0", "NUL in an incomplete line"),
		B("250 x\n", "bare LF at the very end"),
#undef B
	};
	struct smtp_reply r;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bad); i++) {
		long rc = reply(bad[i].p, bad[i].n, &r);

		if (rc != -1)
			fail_msg("case %zu (%s): %ld, want -1", i, bad[i].why, rc);
	}
}

static void
test_smtp_reply_line_length_limit(void **state)
{
	char *p;
	size_t n;
	struct smtp_reply r;

	(void)state;
	p = malloc(SMTP_REPLY_LINE_MAX + 16);
	assert_non_null(p);
	/* A line of exactly SMTP_REPLY_LINE_MAX bytes before its CRLF is fine. */
	memset(p, 'x', SMTP_REPLY_LINE_MAX + 16);
	memcpy(p, "250 ", 4);
	memcpy(p + SMTP_REPLY_LINE_MAX, "\r\n", 2);
	n = SMTP_REPLY_LINE_MAX + 2;
	assert_int_equal(reply(p, n, &r), (long)n);
	/* One byte more is refused, whether or not its CRLF has arrived yet. */
	memset(p, 'x', SMTP_REPLY_LINE_MAX + 16);
	memcpy(p, "250 ", 4);
	memcpy(p + SMTP_REPLY_LINE_MAX + 1, "\r\n", 2);
	assert_int_equal(reply(p, SMTP_REPLY_LINE_MAX + 3, &r), -1);
	assert_int_equal(reply(p, SMTP_REPLY_LINE_MAX + 1, &r), -1);
	/* While it may still be short enough, it is incomplete. */
	assert_int_equal(reply(p, SMTP_REPLY_LINE_MAX, &r), 0);
	free(p);
}

static void
test_smtp_reply_total_length_limit(void **state)
{
	/* Many short continuation lines add up past SMTP_REPLY_MAX. */
	size_t cap = SMTP_REPLY_MAX + 4096, n = 0;
	struct smtp_reply r;
	char *p;

	(void)state;
	p = malloc(cap);
	assert_non_null(p);
	while (n + 102 <= SMTP_REPLY_MAX + 200) {
		memset(p + n, 'y', 100);
		memcpy(p + n, "250-", 4);
		memcpy(p + n + 98, "\r\n", 2);
		n += 100;
	}
	memcpy(p + n, "250 end\r\n", 9);
	n += 9;
	assert_true(n > SMTP_REPLY_MAX);
	assert_int_equal(reply(p, n, &r), -1);
	/* Incomplete but already too long: refused, not "need more". */
	assert_int_equal(reply(p, n - 9, &r), -1);
	/* Whole lines under the limit, then a partial one that crosses it. */
	n = 0;
	while (n + 100 <= SMTP_REPLY_MAX - 50) {
		memset(p + n, 'y', 100);
		memcpy(p + n, "250-", 4);
		memcpy(p + n + 98, "\r\n", 2);
		n += 100;
	}
	assert_int_equal(reply(p, n, &r), 0);
	memset(p + n, 'z', 200);
	memcpy(p + n, "250-", 4);
	assert_int_equal(reply(p, SMTP_REPLY_MAX - 1, &r), 0);
	assert_int_equal(reply(p, SMTP_REPLY_MAX + 1, &r), -1);
	free(p);
}

/* ---- capabilities ---- */

static int
caps_of(const char *ehlo, struct smtp_caps *caps)
{
	struct smtp_reply r;
	size_t n = strlen(ehlo);

	/* Only what smtp_reply_parse() accepted reaches smtp_caps_parse(). */
	assert_int_equal(smtp_reply_parse(ehlo, n, &r), (long)n);
	return (smtp_caps_parse(ehlo, n, caps));
}

static void
test_smtp_caps_flags(void **state)
{
	struct smtp_caps c;

	(void)state;
	assert_int_equal(caps_of("250-mx.example Hi\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
	    "250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n250-STARTTLS\r\n"
	    "250 CHUNKING\r\n", &c), 0);
	assert_int_equal(c.flags, SMTP_CAP_PIPELINING | SMTP_CAP_8BITMIME | SMTP_CAP_SMTPUTF8 |
	    SMTP_CAP_ENHANCED | SMTP_CAP_DSN | SMTP_CAP_STARTTLS | SMTP_CAP_CHUNKING);
	assert_int_equal(c.authmask, 0);
	assert_string_equal(c.auth, "");

	assert_int_equal(caps_of("250-mx\r\n250-starttls\r\n250 chunking\r\n", &c), 0);
	assert_int_equal(c.flags, SMTP_CAP_STARTTLS | SMTP_CAP_CHUNKING);

	assert_int_equal(caps_of("250-mx\r\n250 STARTTLS\r\n", &c), 0);
	assert_int_equal(c.flags, SMTP_CAP_STARTTLS);
}

static void
test_smtp_caps_greeting_line_is_not_a_capability(void **state)
{
	struct smtp_caps c;

	(void)state;
	assert_int_equal(caps_of("250 STARTTLS\r\n", &c), 0);
	assert_int_equal(c.flags, 0);
	assert_int_equal(caps_of("250-PIPELINING\r\n250 DSN\r\n", &c), 0);
	assert_int_equal(c.flags, SMTP_CAP_DSN);
}

static void
test_smtp_caps_unknown_keywords_ignored(void **state)
{
	struct smtp_caps c;

	(void)state;
	assert_int_equal(caps_of("250-mx\r\n250-XFOO bar baz\r\n250-X-Y=1\r\n250-ETRN\r\n"
	    "250 DSN\r\n", &c), 0);
	assert_int_equal(c.flags, SMTP_CAP_DSN);
	/* Not a keyword that merely starts like a known one. */
	assert_int_equal(caps_of("250-mx\r\n250-STARTTLSX\r\n250 SIZEX 5\r\n", &c), 0);
	assert_int_equal(c.flags, 0);
}

static void
test_smtp_caps_size_with_and_without_number(void **state)
{
	struct smtp_caps c;

	(void)state;
	assert_int_equal(caps_of("250-mx\r\n250 SIZE 35882577\r\n", &c), 0);
	assert_true(c.flags & SMTP_CAP_SIZE);
	assert_int_equal(c.size, 35882577);
	assert_int_equal(caps_of("250-mx\r\n250 SIZE\r\n", &c), 0);
	assert_true(c.flags & SMTP_CAP_SIZE);
	assert_int_equal(c.size, 0);
	assert_int_equal(caps_of("250-mx\r\n250 size 0\r\n", &c), 0);
	assert_true(c.flags & SMTP_CAP_SIZE);
	assert_int_equal(c.size, 0);
}

static void
test_smtp_caps_malformed_size_fails(void **state)
{
	static const char *bad[] = {
		"250-mx\r\n250 SIZE 10x\r\n",
		"250-mx\r\n250 SIZE -1\r\n",
		"250-mx\r\n250 SIZE abc\r\n",
		"250-mx\r\n250 SIZE 1 2\r\n",
		"250-mx\r\n250 SIZE 1000000000000000000000000000000\r\n",
	};
	struct smtp_caps c;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bad); i++)
		if (caps_of(bad[i], &c) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
}

/* Fails: a SIZE past ULONG_MAX (20-23 digits) wraps around instead of being refused. */
static void
test_smtp_caps_size_overflow_fails(void **state)
{
	struct smtp_caps c;

	(void)state;
	/* 2^64 wraps to 0, "no limit"; 2^64 + 1000 wraps to 1000. */
	assert_int_equal(caps_of("250-mx\r\n250 SIZE 18446744073709551616\r\n", &c), -1);
	assert_int_equal(caps_of("250-mx\r\n250 SIZE 18446744073709552616\r\n", &c), -1);
}

static void
test_smtp_caps_auth_merges_old_style_without_duplicates(void **state)
{
	struct smtp_caps c;

	(void)state;
	assert_int_equal(caps_of("250-mx\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=LOGIN\r\n"
	    "250 DSN\r\n", &c), 0);
	assert_true(c.flags & SMTP_CAP_AUTH);
	assert_int_equal(c.authmask, SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN);
	assert_string_equal(c.auth, "PLAIN LOGIN");

	assert_int_equal(caps_of("250-mx\r\n250-AUTH=LOGIN\r\n250 AUTH login CRAM-MD5 plain\r\n",
	    &c), 0);
	assert_int_equal(c.authmask, SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN);
	assert_string_equal(c.auth, "LOGIN CRAM-MD5 PLAIN");

	/* A mechanism whose name contains another one is not a duplicate of it. */
	assert_int_equal(caps_of("250-mx\r\n250-AUTH XPLAIN\r\n250 AUTH PLAIN\r\n", &c), 0);
	assert_int_equal(c.authmask, SMTP_AUTH_PLAIN);
	assert_string_equal(c.auth, "XPLAIN PLAIN");

	assert_int_equal(caps_of("250-mx\r\n250 AUTH  PLAIN   LOGIN\r\n", &c), 0);
	assert_string_equal(c.auth, "PLAIN LOGIN");

	assert_int_equal(caps_of("250-mx\r\n250 AUTH CRAM-MD5\r\n", &c), 0);
	assert_true(c.flags & SMTP_CAP_AUTH);
	assert_int_equal(c.authmask, 0);
	assert_string_equal(c.auth, "CRAM-MD5");
}

static void
test_smtp_caps_malformed_auth_fails(void **state)
{
	struct smtp_caps c;

	(void)state;
	assert_int_equal(caps_of("250-mx\r\n250 AUTH PL@IN\r\n", &c), -1);
	assert_int_equal(caps_of("250-mx\r\n250 AUTH "
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n", &c), -1);
}

/* ---- the EHLO reply the client sees ---- */

static size_t
ehlo(const struct smtp_caps *c, int show_auth, char *out, size_t size)
{
	size_t n = smtp_ehlo_reply(c, "proxy.test", show_auth, out, size);

	assert_true(n > 0);
	assert_true(n < size);
	return (n);
}

/* Every line begins "250-" except the last, which begins "250 "; all end in CRLF. */
static void
assert_ehlo_framing(const char *p, size_t n)
{
	struct smtp_reply r;
	size_t pos = 0, lines = 0;
	const char *crlf;

	assert_int_equal(smtp_reply_parse(p, n, &r), (long)n);
	assert_int_equal(r.code, 250);
	while (pos < n) {
		crlf = memmem(p + pos, n - pos, "\r\n", 2);
		assert_non_null(crlf);
		lines++;
		assert_memory_equal(p + pos, "250", 3);
		if ((size_t)(crlf + 2 - p) == n)
			assert_int_equal(p[pos + 3], ' ');
		else
			assert_int_equal(p[pos + 3], '-');
		pos = (size_t)(crlf + 2 - p);
	}
	assert_int_equal(lines, (size_t)r.nlines);
}

static void
test_smtp_ehlo_reply_never_offers_starttls_or_chunking(void **state)
{
	struct smtp_caps c;
	char out[1024];
	size_t n;

	(void)state;
	assert_int_equal(caps_of("250-mx\r\n250-PIPELINING\r\n250-STARTTLS\r\n250-CHUNKING\r\n"
	    "250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n"
	    "250-DSN\r\n250 AUTH PLAIN LOGIN\r\n", &c), 0);
	n = ehlo(&c, 1, out, sizeof(out));
	assert_ehlo_framing(out, n);
	assert_null(memmem(out, n, "STARTTLS", 8));
	assert_null(memmem(out, n, "CHUNKING", 8));
	assert_int_equal(n, strlen("250-proxy.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
	    "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n"
	    "250 AUTH PLAIN LOGIN\r\n"));
	assert_memory_equal(out, "250-proxy.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
	    "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-DSN\r\n"
	    "250 AUTH PLAIN LOGIN\r\n", n);

	/* Even if nothing else is offered. */
	assert_int_equal(caps_of("250-mx\r\n250-STARTTLS\r\n250 CHUNKING\r\n", &c), 0);
	n = ehlo(&c, 1, out, sizeof(out));
	assert_null(memmem(out, n, "STARTTLS", 8));
	assert_null(memmem(out, n, "CHUNKING", 8));
}

/* STARTTLS on a starttls listener: added as the last line, whatever was there before. */
static void
test_smtp_ehlo_add_appends_a_last_line(void **state)
{
	struct smtp_caps c;
	char out[1024], small[40];
	size_t n;

	(void)state;
	assert_int_equal(caps_of("250-mx\r\n250 PIPELINING\r\n", &c), 0);
	n = ehlo(&c, 1, out, sizeof(out));
	n = smtp_ehlo_add(out, n, sizeof(out), "STARTTLS");
	assert_ehlo_framing(out, n);
	assert_string_equal(out, "250-proxy.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n");

	/* A one-line reply becomes two. */
	memset(&c, 0, sizeof(c));
	n = ehlo(&c, 1, out, sizeof(out));
	n = smtp_ehlo_add(out, n, sizeof(out), "STARTTLS");
	assert_ehlo_framing(out, n);
	assert_string_equal(out, "250-proxy.test\r\n250 STARTTLS\r\n");

	/* No room: 0, nothing half-written past the size. */
	n = ehlo(&c, 1, small, sizeof(small));
	assert_int_equal(smtp_ehlo_add(small, n, n + 8, "STARTTLS"), 0);
	/* Not an EHLO reply. */
	snprintf(out, sizeof(out), "garbage");
	assert_int_equal(smtp_ehlo_add(out, 7, sizeof(out), "STARTTLS"), 0);
}

static void
test_smtp_ehlo_reply_auth_only_when_asked(void **state)
{
	struct smtp_caps c;
	char out[1024];
	size_t n;

	(void)state;
	assert_int_equal(caps_of("250-mx\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n", &c), 0);
	n = ehlo(&c, 0, out, sizeof(out));
	assert_ehlo_framing(out, n);
	assert_null(memmem(out, n, "AUTH", 4));
	assert_int_equal(n, strlen("250-proxy.test\r\n250 PIPELINING\r\n"));
	assert_memory_equal(out, "250-proxy.test\r\n250 PIPELINING\r\n", n);

	n = ehlo(&c, 1, out, sizeof(out));
	assert_ehlo_framing(out, n);
	assert_non_null(memmem(out, n, "250 AUTH PLAIN\r\n", 16));
}

static void
test_smtp_ehlo_reply_old_auth_line_follows_auth(void **state)
{
	static const char want[] = "250-proxy.test\r\n250-PIPELINING\r\n"
	    "250-AUTH PLAIN LOGIN\r\n250 AUTH=PLAIN LOGIN\r\n";
	struct smtp_caps c;
	char out[1024];
	size_t n;

	(void)state;
	assert_int_equal(caps_of("250-mx\r\n250 PIPELINING\r\n", &c), 0);
	c.flags |= SMTP_CAP_AUTH | SMTP_CAP_AUTH_OLD;
	snprintf(c.auth, sizeof(c.auth), "PLAIN LOGIN");
	n = ehlo(&c, 1, out, sizeof(out));
	assert_ehlo_framing(out, n);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(out, want, n);
	/* Never without the AUTH line itself. */
	n = ehlo(&c, 0, out, sizeof(out));
	assert_null(memmem(out, n, "AUTH", 4));
}

static void
test_smtp_ehlo_reply_without_capabilities_is_one_line(void **state)
{
	struct smtp_caps c;
	char out[256];
	size_t n;

	(void)state;
	memset(&c, 0, sizeof(c));
	n = ehlo(&c, 1, out, sizeof(out));
	assert_int_equal(n, strlen("250 proxy.test\r\n"));
	assert_memory_equal(out, "250 proxy.test\r\n", n);
}

static void
test_smtp_ehlo_reply_size_without_limit_and_too_small_buffer(void **state)
{
	struct smtp_caps c;
	char out[256];
	size_t n, need;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.flags = SMTP_CAP_SIZE | SMTP_CAP_STARTTLS;
	n = ehlo(&c, 0, out, sizeof(out));
	assert_int_equal(n, strlen("250-proxy.test\r\n250 SIZE\r\n"));
	assert_memory_equal(out, "250-proxy.test\r\n250 SIZE\r\n", n);
	need = n;
	assert_int_equal(smtp_ehlo_reply(&c, "proxy.test", 0, out, need), 0);
	assert_int_equal(smtp_ehlo_reply(&c, "proxy.test", 0, out, need + 1), need);
	assert_int_equal(smtp_ehlo_reply(&c, "proxy.test", 0, out, 5), 0);
}

static void
test_smtp_mail_size_reads_the_size_parameter_only(void **state)
{
	const char *a = "FROM:<a@b> SIZE=12345 BODY=8BITMIME";
	const char *b = "FROM:<SIZE=99@b> BODY=8BITMIME";
	const char *c = "FROM:<a@b> size=7";
	const char *d = "FROM:<a@b> SIZE=99999999999999999999999";
	const char *e = "FROM:<a@b>";

	(void)state;
	assert_true(smtp_mail_size(a, strlen(a)) == 12345ULL);
	assert_true(smtp_mail_size(b, strlen(b)) == 0ULL);	/* inside the path */
	assert_true(smtp_mail_size(c, strlen(c)) == 7ULL);
	assert_true(smtp_mail_size(d, strlen(d)) == ULLONG_MAX);
	assert_true(smtp_mail_size(e, strlen(e)) == 0ULL);
	assert_true(smtp_mail_size("", 0) == 0ULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_smtp_mail_size_reads_the_size_parameter_only),
		cmocka_unit_test(test_smtp_line_is_clean_refuses_cr_lf_nul),
		cmocka_unit_test(test_smtp_line_end_takes_crlf_or_bare_lf),
		cmocka_unit_test(test_smtp_cmd_parse_verbs_any_case),
		cmocka_unit_test(test_smtp_cmd_parse_unknown_verbs),
		cmocka_unit_test(test_smtp_cmd_parse_argument_after_blanks),
		cmocka_unit_test(test_smtp_cmd_parse_respects_length),
		cmocka_unit_test(test_smtp_verb_str_names),
		cmocka_unit_test(test_smtp_path_extracts_between_brackets),
		cmocka_unit_test(test_smtp_path_cuts_to_size),
		cmocka_unit_test(test_smtp_path_without_brackets_fails),
		cmocka_unit_test(test_smtp_reply_single_line),
		cmocka_unit_test(test_smtp_reply_code_without_text),
		cmocka_unit_test(test_smtp_reply_multi_line),
		cmocka_unit_test(test_smtp_reply_incomplete_at_every_split_needs_more),
		cmocka_unit_test(test_smtp_reply_pipelined_returns_first_length),
		cmocka_unit_test(test_smtp_reply_malformed_is_refused),
		cmocka_unit_test(test_smtp_reply_line_length_limit),
		cmocka_unit_test(test_smtp_reply_total_length_limit),
		cmocka_unit_test(test_smtp_caps_flags),
		cmocka_unit_test(test_smtp_caps_greeting_line_is_not_a_capability),
		cmocka_unit_test(test_smtp_caps_unknown_keywords_ignored),
		cmocka_unit_test(test_smtp_caps_size_with_and_without_number),
		cmocka_unit_test(test_smtp_caps_malformed_size_fails),
		cmocka_unit_test(test_smtp_caps_size_overflow_fails),
		cmocka_unit_test(test_smtp_caps_auth_merges_old_style_without_duplicates),
		cmocka_unit_test(test_smtp_caps_malformed_auth_fails),
		cmocka_unit_test(test_smtp_ehlo_reply_never_offers_starttls_or_chunking),
		cmocka_unit_test(test_smtp_ehlo_reply_auth_only_when_asked),
		cmocka_unit_test(test_smtp_ehlo_add_appends_a_last_line),
		cmocka_unit_test(test_smtp_ehlo_reply_old_auth_line_follows_auth),
		cmocka_unit_test(test_smtp_ehlo_reply_without_capabilities_is_one_line),
		cmocka_unit_test(test_smtp_ehlo_reply_size_without_limit_and_too_small_buffer),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
