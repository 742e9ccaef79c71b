/* sasl: the device's AUTH PLAIN and AUTH LOGIN, parsed and decoded by the proxy. */
#include "unit.h"

#include "sasl.h"

static void
test_sasl_auth_parse_mechanisms_any_case(void **state)
{
	static const struct {
		const char *arg;
		enum sasl_mech mech;
		const char *ir;		/* NULL: none */
	} t[] = {
		{ "PLAIN", SASL_PLAIN, NULL }, { "plain", SASL_PLAIN, NULL },
		{ "Login", SASL_LOGIN, NULL }, { "LOGIN dGlt", SASL_LOGIN, "dGlt" },
		{ "  PlAiN   AHRpbQB0aW0=  ", SASL_PLAIN, "AHRpbQB0aW0=" },
		{ "PLAIN =", SASL_PLAIN, "" }, { "CRAM-MD5", SASL_UNKNOWN, NULL },
		{ "PLAINX", SASL_UNKNOWN, NULL }, { "PLAI", SASL_UNKNOWN, NULL },
		{ "XOAUTH2 abc", SASL_UNKNOWN, "abc" },
	};
	enum sasl_mech m;
	const char *ir;
	size_t i, irlen;

	(void)state;
	for (i = 0; i < NELEM(t); i++) {
		assert_int_equal(sasl_auth_parse(t[i].arg, strlen(t[i].arg), &m, &ir, &irlen), 0);
		assert_int_equal(m, t[i].mech);
		if (t[i].ir == NULL)
			assert_null(ir);
		else {
			assert_non_null(ir);
			assert_int_equal(irlen, strlen(t[i].ir));
			assert_memory_equal(ir, t[i].ir, irlen);
		}
	}
}

static void
test_sasl_auth_parse_refuses_no_mechanism_or_extra_words(void **state)
{
	static const char *const bad[] = { "", "   ", "PLAIN a b", "LOGIN a =" };
	enum sasl_mech m;
	const char *ir;
	size_t i, irlen;

	(void)state;
	for (i = 0; i < NELEM(bad); i++) {
		assert_int_equal(sasl_auth_parse(bad[i], strlen(bad[i]), &m, &ir, &irlen), -1);
		assert_null(ir);
	}
	/* The argument is not NUL-terminated: its length bounds the parse. */
	assert_int_equal(sasl_auth_parse("PLAINxyz", 5, &m, &ir, &irlen), 0);
	assert_int_equal(m, SASL_PLAIN);
}

static void
test_sasl_cancel_is_a_lone_star(void **state)
{
	(void)state;
	assert_int_equal(sasl_is_cancel(LIT("*")), 1);
	assert_int_equal(sasl_is_cancel(LIT("* ")), 1);
	assert_int_equal(sasl_is_cancel(LIT("**")), 0);
	assert_int_equal(sasl_is_cancel(LIT("")), 0);
	assert_int_equal(sasl_is_cancel(LIT("*a")), 0);
}

static void
test_sasl_plain_decodes_rfc4616_example(void **state)
{
	char user[256], pass[256];

	(void)state;
	/* RFC 4616 section 4: "\0tim\0tanstaaftanstaaf". */
	assert_int_equal(sasl_plain(LIT("AHRpbQB0YW5zdGFhZnRhbnN0YWFm"), user, sizeof(user),
	    pass, sizeof(pass)), 0);
	assert_string_equal(user, "tim");
	assert_string_equal(pass, "tanstaaftanstaaf");
	/* "tim\0tim\0pw": an authzid equal to the authcid; a trailing blank is ignored. */
	assert_int_equal(sasl_plain(LIT("dGltAHRpbQBwdw== "), user, sizeof(user), pass,
	    sizeof(pass)), 0);
	assert_string_equal(user, "tim");
	assert_string_equal(pass, "pw");
	/* An empty password decodes; it will not match any hash. */
	assert_int_equal(sasl_plain(LIT("AHRpbQA="), user, sizeof(user), pass, sizeof(pass)), 0);
	assert_string_equal(pass, "");
}

static void
test_sasl_plain_refuses_malformed(void **state)
{
	static const char *const bad[] = {
		"",				/* nothing */
		"dGlt",				/* "tim": no NUL */
		"AHRpbQ==",			/* "\0tim": one NUL */
		"AAB0aW0=",			/* "\0\0tim": empty authcid */
		"AHRpbQBwdwB4",			/* "\0tim\0pw\0x": three NULs */
		"Ym9iAHRpbQBwdw==",		/* "bob\0tim\0pw": acting as another user */
		"AHRpbQBwdw",			/* not padded */
		"AHRpbQB!dw==",			/* not base64 */
		"AHRp bQBwdw==",		/* a blank inside */
		"AARp=QBh",			/* padding inside (OpenSSL alone decodes it) */
	};
	char user[256] = "x", pass[256] = "y";
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bad); i++)
		assert_int_equal(sasl_plain(bad[i], strlen(bad[i]), user, sizeof(user), pass,
		    sizeof(pass)), -1);
}

/* base64 of "\0" + user + "\0" + pass, each ${ul} / ${pl} bytes of 'a'. */
static void
plain_of(size_t ul, size_t pl, char *out)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789+/";
	unsigned char raw[1024];
	size_t n = 0, i, o = 0;

	raw[n++] = 0;
	memset(raw + n, 'a', ul);
	n += ul;
	raw[n++] = 0;
	memset(raw + n, 'a', pl);
	n += pl;
	for (i = 0; i < n; i += 3) {
		unsigned v = (unsigned)raw[i] << 16 | (i + 1 < n ? (unsigned)raw[i + 1] << 8 : 0) |
		    (i + 2 < n ? raw[i + 2] : 0);

		out[o++] = tbl[v >> 18 & 63];
		out[o++] = tbl[v >> 12 & 63];
		out[o++] = i + 1 < n ? tbl[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? tbl[v & 63] : '=';
	}
	out[o] = '\0';
}

static void
test_sasl_plain_field_limits(void **state)
{
	char b64[1400], user[300], pass[300];

	(void)state;
	plain_of(255, 255, b64);
	assert_int_equal(sasl_plain(b64, strlen(b64), user, sizeof(user), pass, sizeof(pass)), 0);
	assert_int_equal(strlen(user), 255);
	assert_int_equal(strlen(pass), 255);
	plain_of(256, 1, b64);
	assert_int_equal(sasl_plain(b64, strlen(b64), user, sizeof(user), pass, sizeof(pass)), -1);
	plain_of(1, 256, b64);
	assert_int_equal(sasl_plain(b64, strlen(b64), user, sizeof(user), pass, sizeof(pass)), -1);
	/* The caller's buffers bound it too. */
	plain_of(10, 10, b64);
	assert_int_equal(sasl_plain(b64, strlen(b64), user, 10, pass, sizeof(pass)), -1);
	assert_int_equal(sasl_plain(b64, strlen(b64), user, 11, pass, 11), 0);
}

static void
test_sasl_login_decodes_one_step(void **state)
{
	char out[300], b64[1400];

	(void)state;
	assert_int_equal(sasl_login(LIT("dGlt"), out, sizeof(out)), 0);
	assert_string_equal(out, "tim");
	assert_int_equal(sasl_login(LIT("c2VjcmV0\t"), out, sizeof(out)), 0);
	assert_string_equal(out, "secret");
	assert_int_equal(sasl_login(LIT(""), out, sizeof(out)), -1);
	assert_int_equal(sasl_login(LIT("dA=="), out, 1), -1);	/* no room for "t" */
	assert_int_equal(sasl_login(LIT("dABt"), out, sizeof(out)), -1);	/* "t\0m" */
	assert_int_equal(sasl_login(LIT("d?=="), out, sizeof(out)), -1);
	/* A PLAIN response given where LOGIN expects a name: it holds NULs, refused. */
	plain_of(3, 3, b64);
	assert_int_equal(sasl_login(b64, strlen(b64), out, sizeof(out)), -1);
}

static void
test_sasl_login_length_limit(void **state)
{
	char b64[600], out[300];
	size_t i;

	(void)state;
	/* "aaa" encodes as "YWFh": 255 bytes are 85 groups. */
	for (i = 0; i < 85; i++)
		memcpy(b64 + 4 * i, "YWFh", 4);
	b64[4 * 85] = '\0';
	assert_int_equal(sasl_login(b64, strlen(b64), out, sizeof(out)), 0);
	assert_int_equal(strlen(out), 255);
	memcpy(b64 + 4 * 85, "YQ==", 5);	/* 256 bytes */
	assert_int_equal(sasl_login(b64, strlen(b64), out, sizeof(out)), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sasl_auth_parse_mechanisms_any_case),
		cmocka_unit_test(test_sasl_auth_parse_refuses_no_mechanism_or_extra_words),
		cmocka_unit_test(test_sasl_cancel_is_a_lone_star),
		cmocka_unit_test(test_sasl_plain_decodes_rfc4616_example),
		cmocka_unit_test(test_sasl_plain_refuses_malformed),
		cmocka_unit_test(test_sasl_plain_field_limits),
		cmocka_unit_test(test_sasl_login_decodes_one_step),
		cmocka_unit_test(test_sasl_login_length_limit),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
