/*
 * login: the proxy's own SASL login, without sockets: the mechanism chosen, each line
 * of the exchange, and what each reply means.
 */
#include "unit.h"

#include "config.h"
#include "login.h"
#include "smtp.h"

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
	assert_int_equal(login_reply(&lg, &c->up, 235, line, sizeof(line)), LOGIN_OK);
	assert_int_equal(login_reply(&lg, &c->up, 535, line, sizeof(line)), LOGIN_REFUSED);
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
	assert_int_equal(login_reply(&lg, &c->up, 334, line, sizeof(line)), LOGIN_NEXT);
	assert_string_equal(line, "ZGV2aWNlQGV4YW1wbGUudGVzdA==\r\n");
	assert_string_equal(login_stage(&lg), "auth-user");
	assert_int_equal(login_reply(&lg, &c->up, 334, line, sizeof(line)), LOGIN_NEXT);
	assert_string_equal(line, "czNjcmV0\r\n");
	assert_string_equal(login_stage(&lg), "auth-pass");
	assert_int_equal(login_reply(&lg, &c->up, 235, line, sizeof(line)), LOGIN_OK);
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
	assert_int_equal(login_reply(&lg, &c->up, 504, line, sizeof(line)), LOGIN_REFUSED);
	assert_int_equal(login_start(&lg, &c->up, &caps, line, sizeof(line), why, sizeof(why)), 0);
	assert_int_equal(login_reply(&lg, &c->up, 334, line, sizeof(line)), LOGIN_NEXT);
	assert_int_equal(login_reply(&lg, &c->up, 235, line, sizeof(line)), LOGIN_REFUSED);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_login_plain_when_offered_in_one_line),
		cmocka_unit_test(test_login_login_when_only_login_offered_three_steps),
		cmocka_unit_test(test_login_anything_but_334_mid_login_is_a_refusal),
		cmocka_unit_test(test_login_without_a_usable_mechanism_says_what_was_offered),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
