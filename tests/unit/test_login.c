/*
 * login: the proxy's own SASL login, without sockets: the mechanism chosen, each line
 * of the exchange, and what each reply means.
 */
#include "unit.h"

#include <openssl/evp.h>

#include "auth.h"
#include "capture.h"
#include "config.h"
#include "log.h"
#include "login.h"
#include "smtp.h"

/* An access token with every b64token character class (RFC 6750). */
#define TOKEN	"ya29.a0Af-H_9~x+y/Z0=="

static struct config *
creds(enum up_auth mech)
{
	struct config *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	strcpy(c->up.username, "device@example.test");
	strcpy(c->up.password, "s3cret");
	c->up.auth_mechanism = mech;
	return (c);
}

static void
caps_with(struct smtp_caps *caps, unsigned mask, const char *auth)
{
	memset(caps, 0, sizeof(*caps));
	caps->authmask = mask;
	caps->flags = auth[0] ? SMTP_CAP_AUTH : 0;
	strcpy(caps->auth, auth);
}

static void
test_login_plain_when_offered_in_one_line(void **state)
{
	struct config *c = creds(UP_AUTH_AUTO);
	struct smtp_caps caps;
	struct login lg;
	char line[1400], why[100];

	(void)state;
	caps_with(&caps, SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN, "PLAIN LOGIN");
	assert_int_equal(login_start(&lg, &c->up, &caps, line, sizeof(line), why, sizeof(why)), 0);
	/* base64("\0device@example.test\0s3cret") */
	assert_string_equal(line, "AUTH PLAIN AGRldmljZUBleGFtcGxlLnRlc3QAczNjcmV0\r\n");
	assert_string_equal(login_stage(&lg), "auth-plain");
	assert_int_equal(login_reply(&lg, &c->up, 235, LIT("235 ok\r\n"), line, sizeof(line)), LOGIN_OK);
	assert_int_equal(login_reply(&lg, &c->up, 535, LIT("535 no\r\n"), line, sizeof(line)), LOGIN_REFUSED);
	free(c);
}

static void
test_login_login_when_only_login_offered_three_steps(void **state)
{
	struct config *c = creds(UP_AUTH_AUTO);
	struct smtp_caps caps;
	struct login lg;
	char line[1400], why[100];

	(void)state;
	caps_with(&caps, SMTP_AUTH_LOGIN, "LOGIN");
	assert_int_equal(login_start(&lg, &c->up, &caps, line, sizeof(line), why, sizeof(why)), 0);
	assert_string_equal(line, "AUTH LOGIN\r\n");
	assert_int_equal(login_reply(&lg, &c->up, 334, LIT("334 VXNlcm5hbWU6\r\n"), line, sizeof(line)), LOGIN_NEXT);
	assert_string_equal(line, "ZGV2aWNlQGV4YW1wbGUudGVzdA==\r\n");
	assert_string_equal(login_stage(&lg), "auth-user");
	assert_int_equal(login_reply(&lg, &c->up, 334, LIT("334 VXNlcm5hbWU6\r\n"), line, sizeof(line)), LOGIN_NEXT);
	assert_string_equal(line, "czNjcmV0\r\n");
	assert_string_equal(login_stage(&lg), "auth-pass");
	assert_int_equal(login_reply(&lg, &c->up, 235, LIT("235 ok\r\n"), line, sizeof(line)), LOGIN_OK);
	free(c);
}

static void
test_login_anything_but_334_mid_login_is_a_refusal(void **state)
{
	struct config *c = creds(UP_AUTH_LOGIN);
	struct smtp_caps caps;
	struct login lg;
	char line[1400], why[100];

	(void)state;
	/* Forced LOGIN even where PLAIN is offered (Microsoft 365). */
	caps_with(&caps, SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN, "PLAIN LOGIN");
	assert_int_equal(login_start(&lg, &c->up, &caps, line, sizeof(line), why, sizeof(why)), 0);
	assert_string_equal(line, "AUTH LOGIN\r\n");
	assert_int_equal(login_reply(&lg, &c->up, 504, LIT("504 no\r\n"), line, sizeof(line)), LOGIN_REFUSED);
	assert_int_equal(login_start(&lg, &c->up, &caps, line, sizeof(line), why, sizeof(why)), 0);
	assert_int_equal(login_reply(&lg, &c->up, 334, LIT("334 VXNlcm5hbWU6\r\n"), line, sizeof(line)), LOGIN_NEXT);
	assert_int_equal(login_reply(&lg, &c->up, 235, LIT("235 ok\r\n"), line, sizeof(line)), LOGIN_REFUSED);
	free(c);
}

static void
test_login_without_a_usable_mechanism_says_what_was_offered(void **state)
{
	struct config *c = creds(UP_AUTH_AUTO);
	struct smtp_caps caps;
	struct login lg;
	char line[1400], why[100];

	(void)state;
	caps_with(&caps, 0, "CRAM-MD5 XOAUTH2");
	assert_int_equal(login_start(&lg, &c->up, &caps, line, sizeof(line), why, sizeof(why)), -1);
	assert_string_equal(why, "CRAM-MD5 XOAUTH2");
	caps_with(&caps, 0, "");
	assert_int_equal(login_start(&lg, &c->up, &caps, line, sizeof(line), why, sizeof(why)), -1);
	assert_string_equal(why, "no AUTH capability");
	free(c);
}

/* base64 of ${n} bytes at ${raw}, by OpenSSL directly: the expected value, not the code under test. */
static void
expect_b64(const char *raw, size_t n, char *dst, size_t size)
{
	assert_true((n + 2) / 3 * 4 + 1 <= size);
	EVP_EncodeBlock((unsigned char *)dst, (const unsigned char *)raw, (int)n);
}

static void
test_login_xoauth2_initial_response_exact_bytes(void **state)
{
	static const char raw[] = "user=device@example.test\x01" "auth=Bearer " TOKEN "\x01\x01";
	struct config *c = creds(UP_AUTH_AUTO);
	struct login lg;
	char line[1400], want[1400], why[200];

	(void)state;
	strcpy(want, "AUTH XOAUTH2 ");
	expect_b64(raw, sizeof(raw) - 1, want + 13, sizeof(want) - 15);
	strcat(want, "\r\n");
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_XOAUTH2, TOKEN, line, sizeof(line),
	    why, sizeof(why)), 0);
	assert_string_equal(line, want);
	assert_string_equal(login_stage(&lg), "auth-xoauth2");
	assert_string_equal(login_mech_str(lg.mech), "XOAUTH2");
	assert_int_equal(login_reply(&lg, &c->up, 235, LIT("235 2.7.0 Accepted\r\n"), line,
	    sizeof(line)), LOGIN_OK);
	assert_int_equal(login_token_refused(&lg), 0);
	free(c);
}

static void
test_login_oauthbearer_initial_response_exact_bytes(void **state)
{
	static const char raw[] = "n,a=device@example.test,\x01host=smtp.example.test\x01"
	    "port=587\x01" "auth=Bearer " TOKEN "\x01\x01";
	static const char raw_host[] = "n,a=device@example.test,\x01host=192.0.2.7\x01"
	    "port=465\x01" "auth=Bearer " TOKEN "\x01\x01";
	struct config *c = creds(UP_AUTH_AUTO);
	struct login lg;
	char line[1400], want[1400], why[200];

	(void)state;
	/* host= is the name the proxy checks in the certificate... */
	strcpy(c->up.host, "192.0.2.7");
	strcpy(c->up.server_name, "smtp.example.test");
	c->up.port = 587;
	strcpy(want, "AUTH OAUTHBEARER ");
	expect_b64(raw, sizeof(raw) - 1, want + 17, sizeof(want) - 19);
	strcat(want, "\r\n");
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_OAUTHBEARER, TOKEN, line,
	    sizeof(line), why, sizeof(why)), 0);
	assert_string_equal(line, want);
	assert_string_equal(login_stage(&lg), "auth-oauthbearer");
	assert_int_equal(login_reply(&lg, &c->up, 235, LIT("235 ok\r\n"), line, sizeof(line)),
	    LOGIN_OK);
	/* ...which is the host when no server_name is set. */
	c->up.server_name[0] = '\0';
	c->up.port = 465;
	strcpy(want, "AUTH OAUTHBEARER ");
	expect_b64(raw_host, sizeof(raw_host) - 1, want + 17, sizeof(want) - 19);
	strcat(want, "\r\n");
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_OAUTHBEARER, TOKEN, line,
	    sizeof(line), why, sizeof(why)), 0);
	assert_string_equal(line, want);
	free(c);
}

static void
test_login_oauthbearer_escapes_comma_and_equals_in_the_authzid(void **state)
{
	/* RFC 5801 saslname: ',' -> "=2C", '=' -> "=3D", each byte once (no double escape). */
	static const char raw[] = "n,a=a=2Cb=3Dc=3D=2Cd@example.test,\x01host=mx.example.test\x01"
	    "port=25\x01" "auth=Bearer t\x01\x01";
	struct config *c = creds(UP_AUTH_AUTO);
	struct login lg;
	char line[1400], want[1400], why[200];

	(void)state;
	strcpy(c->up.username, "a,b=c=,d@example.test");
	strcpy(c->up.host, "mx.example.test");
	c->up.port = 25;
	strcpy(want, "AUTH OAUTHBEARER ");
	expect_b64(raw, sizeof(raw) - 1, want + 17, sizeof(want) - 19);
	strcat(want, "\r\n");
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_OAUTHBEARER, "t", line,
	    sizeof(line), why, sizeof(why)), 0);
	assert_string_equal(line, want);
	free(c);
}

/* Google's error challenge, as its SMTP servers send it. */
#define CHALLENGE_JSON	"{\"status\":\"400\",\"schemes\":\"Bearer\",\"scope\":\"https://mail.google.com/\"}"

static void
challenge_reply(char *reply, size_t size)
{
	strcpy(reply, "334 ");
	expect_b64(LIT(CHALLENGE_JSON), reply + 4, size - 6);
	strcat(reply, "\r\n");
}

static void
test_login_xoauth2_error_challenge_gets_an_empty_line_then_the_refusal(void **state)
{
	struct config *c = creds(UP_AUTH_AUTO);
	struct login lg;
	char line[1400], reply[400], why[200];

	(void)state;
	challenge_reply(reply, sizeof(reply));
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_XOAUTH2, TOKEN, line, sizeof(line),
	    why, sizeof(why)), 0);
	assert_int_equal(login_reply(&lg, &c->up, 334, reply, strlen(reply), line, sizeof(line)),
	    LOGIN_NEXT);
	assert_string_equal(line, "\r\n");
	assert_int_equal(login_token_refused(&lg), 1);
	assert_string_equal(login_stage(&lg), "auth-token-error");
	assert_string_equal(lg.challenge, CHALLENGE_JSON);
	assert_int_equal(login_reply(&lg, &c->up, 535, LIT("535 5.7.8 Username and Password not "
	    "accepted.\r\n"), line, sizeof(line)), LOGIN_REFUSED);
	assert_int_equal(login_token_refused(&lg), 1);
	/* A new login starts with a clean slate. */
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_XOAUTH2, TOKEN, line, sizeof(line),
	    why, sizeof(why)), 0);
	assert_int_equal(login_token_refused(&lg), 0);
	assert_string_equal(lg.challenge, "");
	free(c);
}

static void
test_login_oauthbearer_error_challenge_gets_the_01_byte_then_the_refusal(void **state)
{
	struct config *c = creds(UP_AUTH_AUTO);
	struct login lg;
	char line[1400], reply[400], why[200], one[8];

	(void)state;
	challenge_reply(reply, sizeof(reply));
	expect_b64("\x01", 1, one, sizeof(one));
	strcat(one, "\r\n");
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_OAUTHBEARER, TOKEN, line,
	    sizeof(line), why, sizeof(why)), 0);
	assert_int_equal(login_reply(&lg, &c->up, 334, reply, strlen(reply), line, sizeof(line)),
	    LOGIN_NEXT);
	assert_string_equal(line, one);
	assert_int_equal(login_token_refused(&lg), 1);
	assert_string_equal(lg.challenge, CHALLENGE_JSON);
	/* After the abort even a 235 is no success: RFC 7628 3.2.3 allows only a failure. */
	assert_int_equal(login_reply(&lg, &c->up, 235, LIT("235 ok\r\n"), line, sizeof(line)),
	    LOGIN_REFUSED);
	free(c);
}

static void
test_login_token_refusals_without_a_challenge(void **state)
{
	struct config *c = creds(UP_AUTH_AUTO);
	struct login lg;
	char line[1400], why[200];

	(void)state;
	/* Microsoft 365 refuses an expired token with 535 5.7.3 straight away. */
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_XOAUTH2, TOKEN, line, sizeof(line),
	    why, sizeof(why)), 0);
	assert_int_equal(login_reply(&lg, &c->up, 535, LIT("535 5.7.3 Authentication "
	    "unsuccessful\r\n"), line, sizeof(line)), LOGIN_REFUSED);
	assert_int_equal(login_token_refused(&lg), 1);
	/* A temporary failure or an unknown mechanism says nothing about the token. */
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_XOAUTH2, TOKEN, line, sizeof(line),
	    why, sizeof(why)), 0);
	assert_int_equal(login_reply(&lg, &c->up, 454, LIT("454 4.7.0 try later\r\n"), line,
	    sizeof(line)), LOGIN_REFUSED);
	assert_int_equal(login_token_refused(&lg), 0);
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_OAUTHBEARER, TOKEN, line,
	    sizeof(line), why, sizeof(why)), 0);
	assert_int_equal(login_reply(&lg, &c->up, 504, LIT("504 5.5.4 unrecognized\r\n"), line,
	    sizeof(line)), LOGIN_REFUSED);
	assert_int_equal(login_token_refused(&lg), 0);
	/* A challenge that is not base64 is shown as such, and still aborted. */
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_XOAUTH2, TOKEN, line, sizeof(line),
	    why, sizeof(why)), 0);
	assert_int_equal(login_reply(&lg, &c->up, 334, LIT("334 !!!!\r\n"), line, sizeof(line)),
	    LOGIN_NEXT);
	assert_string_equal(lg.challenge, "(not base64)");
	free(c);
}

static void
test_login_token_that_does_not_fit_or_is_no_bearer_token_is_refused(void **state)
{
	static const char *const bad[] = { "", "tok en", "tok\x01", "tok\r\nQUIT", "=abc",
	    "ab=c", "t\xc3\xa9" };
	struct config *c = creds(UP_AUTH_AUTO);
	struct login lg;
	char line[200], why[200], big[AUTH_TOKEN_MAX + 2];
	size_t i, fit;

	(void)state;
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	/* "user=device@example.test\1auth=Bearer " is 37 bytes, plus \1\1 after the token. */
	fit = (sizeof(line) - strlen("AUTH XOAUTH2 \r\n") - 1) / 4 * 3 - 39;
	big[fit] = '\0';
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_XOAUTH2, big, line, sizeof(line),
	    why, sizeof(why)), 0);
	/* 13 + 4 * (37 + 99 + 2) / 3 + 2: the line fills all 200 bytes with its NUL... */
	assert_int_equal(strlen(line), sizeof(line) - 1);
	/* ...so one token byte more does not fit. */
	big[fit] = 'A';
	big[fit + 1] = '\0';
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_XOAUTH2, big, line, sizeof(line),
	    why, sizeof(why)), -1);
	memset(line, 'Z', sizeof(line));
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_XOAUTH2, big, line,
	    sizeof(line) - 8, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "does not fit"));
	/* Nothing written past the size given, and no half-built line left behind. */
	for (i = 0; i < sizeof(line); i++)
		assert_int_equal(line[i], i < sizeof(line) - 8 ? 0 : 'Z');
	/* A token over AUTH_TOKEN_MAX is refused however big the line. */
	big[fit + 1] = 'A';
	{
		char *huge = malloc(4 * AUTH_TOKEN_MAX);

		assert_non_null(huge);
		assert_int_equal(login_start_token(&lg, &c->up, LOGIN_OAUTHBEARER, big, huge,
		    4 * AUTH_TOKEN_MAX, why, sizeof(why)), -1);
		big[AUTH_TOKEN_MAX] = '\0';
		assert_int_equal(login_start_token(&lg, &c->up, LOGIN_OAUTHBEARER, big, huge,
		    4 * AUTH_TOKEN_MAX, why, sizeof(why)), 0);
		free(huge);
	}
	/* Bytes that would end the token's field or the SMTP line. */
	for (i = 0; i < NELEM(bad); i++) {
		assert_int_equal(login_start_token(&lg, &c->up, LOGIN_XOAUTH2, bad[i], line,
		    sizeof(line), why, sizeof(why)), -1);
		assert_int_equal(login_start_token(&lg, &c->up, LOGIN_OAUTHBEARER, bad[i], line,
		    sizeof(line), why, sizeof(why)), -1);
	}
	/* Nor may the user name break the frame. */
	strcpy(c->up.username, "dev\x01" "ice");
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_XOAUTH2, TOKEN, line, sizeof(line),
	    why, sizeof(why)), -1);
	assert_int_equal(login_start_token(&lg, &c->up, LOGIN_PLAIN, TOKEN, line, sizeof(line),
	    why, sizeof(why)), -1);
	assert_string_equal(why, "PLAIN is not a token mechanism");
	free(c);
}

/* The secret-only characters of base64(k filler bytes + secret + "!?"), as a window: 8 from the middle. */
static void
middle_window(const char *enc, size_t k, size_t sl, char *w)
{
	size_t mid = (8 * k / 6 + 8 * (k + sl) / 6) / 2;

	memcpy(w, enc + mid - 4, 8);
	w[8] = '\0';
}

static void
test_login_redact_finds_the_token_at_every_base64_alignment(void **state)
{
	static const char token[] = "ya29.SECRETsecretSECRETsecret.tok";
	struct config *c = creds(UP_AUTH_AUTO);
	char raw[64], enc[128], w[9], text[300];
	size_t k;

	(void)state;
	for (k = 0; k < 3; k++) {
		memcpy(raw, "\x80\x81", k);
		memcpy(raw + k, token, sizeof(token) - 1);
		memcpy(raw + k + sizeof(token) - 1, "!?", 2);
		expect_b64(raw, k + sizeof(token) - 1 + 2, enc, sizeof(enc));
		middle_window(enc, k, sizeof(token) - 1, w);
		snprintf(text, sizeof(text), "535 5.7.8 you sent %s, bad\r\n", enc);
		assert_non_null(strstr(text, w));
		login_redact(&c->up, token, text, strlen(text));
		assert_null(strstr(text, w));
		/* What is not the token stays readable. */
		assert_true(strncmp(text, "535 5.7.8 you sent ", 19) == 0);
		assert_non_null(strstr(text, ", bad\r\n"));
	}
	/* The token as it is, and the password in the same sweep. */
	snprintf(text, sizeof(text), "535 %s s3cret", token);
	login_redact(&c->up, token, text, strlen(text));
	assert_null(strstr(text, "SECRET"));
	assert_null(strstr(text, "s3cret"));
	/* Ordinary text is left alone. */
	snprintf(text, sizeof(text), "535 5.7.3 Authentication unsuccessful");
	login_redact(&c->up, token, text, strlen(text));
	assert_string_equal(text, "535 5.7.3 Authentication unsuccessful");
	free(c);
}

static void
test_login_report_names_the_mechanism_and_never_logs_the_token(void **state)
{
	static const enum login_mech m[] = { LOGIN_XOAUTH2, LOGIN_OAUTHBEARER };
	struct config *c = creds(UP_AUTH_AUTO);
	struct login lg;
	char line[1400], reply[2000], challenge[300], ch64[500], why[200];
	size_t i;

	(void)state;
	log_init(L_INFO, LOG_TEXT);
	for (i = 0; i < NELEM(m); i++) {
		assert_int_equal(login_start_token(&lg, &c->up, m[i], TOKEN, line, sizeof(line),
		    why, sizeof(why)), 0);
		/* A server that quotes the token in its challenge and the whole AUTH line in its refusal. */
		snprintf(challenge, sizeof(challenge), "{\"status\":\"401\",\"token\":\"%s\"}", TOKEN);
		strcpy(ch64, "334 ");
		expect_b64(challenge, strlen(challenge), ch64 + 4, sizeof(ch64) - 6);
		strcat(ch64, "\r\n");
		assert_int_equal(login_reply(&lg, &c->up, 334, ch64, strlen(ch64), reply,
		    sizeof(reply)), LOGIN_NEXT);
		line[strlen(line) - 2] = '\0';
		snprintf(reply, sizeof(reply), "535 5.7.8 refused %s (%s)\r\n", line + 5, TOKEN);
		capture_begin();
		login_report(&lg, &c->up, TOKEN, "sid1", reply, strlen(reply), 0);
		capture_end();
		assert_non_null(strstr(out, m[i] == LOGIN_XOAUTH2 ? "mechanism=XOAUTH2" :
		    "mechanism=OAUTHBEARER"));
		assert_non_null(strstr(out, "event=auth.fail"));
		assert_non_null(strstr(out, "status"));
		assert_non_null(strstr(out, "401"));
		assert_null(strstr(out, TOKEN));
		assert_null(strstr(out, "ya29"));
		assert_null(strstr(out, strchr(line + 5, ' ') + 1));
		capture_begin();
		login_report(&lg, &c->up, TOKEN, "sid1", LIT("235 2.7.0 Accepted\r\n"), 1);
		capture_end();
		assert_non_null(strstr(out, "event=auth.ok"));
		assert_non_null(strstr(out, m[i] == LOGIN_XOAUTH2 ? "mechanism=XOAUTH2" :
		    "mechanism=OAUTHBEARER"));
	}
	free(c);
}

static int
setup(void **state)
{
	(void)state;
	unsetenv("JOURNAL_STREAM");
	return (0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_login_plain_when_offered_in_one_line),
		cmocka_unit_test(test_login_login_when_only_login_offered_three_steps),
		cmocka_unit_test(test_login_anything_but_334_mid_login_is_a_refusal),
		cmocka_unit_test(test_login_without_a_usable_mechanism_says_what_was_offered),
		cmocka_unit_test(test_login_xoauth2_initial_response_exact_bytes),
		cmocka_unit_test(test_login_oauthbearer_initial_response_exact_bytes),
		cmocka_unit_test(test_login_oauthbearer_escapes_comma_and_equals_in_the_authzid),
		cmocka_unit_test(test_login_xoauth2_error_challenge_gets_an_empty_line_then_the_refusal),
		cmocka_unit_test(test_login_oauthbearer_error_challenge_gets_the_01_byte_then_the_refusal),
		cmocka_unit_test(test_login_token_refusals_without_a_challenge),
		cmocka_unit_test(test_login_token_that_does_not_fit_or_is_no_bearer_token_is_refused),
		cmocka_unit_test(test_login_redact_finds_the_token_at_every_base64_alignment),
		cmocka_unit_test(test_login_report_names_the_mechanism_and_never_logs_the_token),
	};

	return (cmocka_run_group_tests(tests, setup, NULL));
}
