/* auth: the AUTH PLAIN and AUTH LOGIN encodings sent upstream. */
#include "unit.h"

#include "auth.h"

static void
test_auth_plain_is_base64_of_nul_user_nul_pass(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(auth_plain("user", "pass", out, sizeof(out)), 0);
	assert_string_equal(out, "AHVzZXIAcGFzcw==");
	/* RFC 4616 section 4 example, with an empty authorization identity. */
	assert_int_equal(auth_plain("tim", "tanstaaftanstaaf", out, sizeof(out)), 0);
	assert_string_equal(out, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
	assert_int_equal(auth_plain("", "", out, sizeof(out)), 0);
	assert_string_equal(out, "AAA=");
}

static void
test_auth_b64_known_vectors(void **state)
{
	static const struct {
		const char *in, *out;
	} t[] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
		{ "user@example.org", "dXNlckBleGFtcGxlLm9yZw==" },
	};
	char out[64];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(t); i++) {
		memset(out, 'Z', sizeof(out));
		assert_int_equal(auth_b64(t[i].in, out, sizeof(out)), 0);
		assert_string_equal(out, t[i].out);
	}
}

static void
test_auth_output_size_limit_is_exact(void **state)
{
	char out[32];

	(void)state;
	/* "AHVzZXIAcGFzcw==" is 16 characters: 17 bytes with its NUL. */
	assert_int_equal(auth_plain("user", "pass", out, 17), 0);
	assert_string_equal(out, "AHVzZXIAcGFzcw==");
	memset(out, 'Z', sizeof(out));
	assert_int_equal(auth_plain("user", "pass", out, 16), -1);
	/* Nothing is written past the size it was given. */
	assert_int_equal(out[16], 'Z');
	assert_int_equal(auth_b64("foobar", out, 9), 0);
	assert_string_equal(out, "Zm9vYmFy");
	assert_int_equal(auth_b64("foobar", out, 8), -1);
	assert_int_equal(auth_b64("", out, 1), 0);
	assert_string_equal(out, "");
}

static void
test_auth_too_long_inputs_are_refused(void **state)
{
	char big[2000], out[4096];

	(void)state;
	/* Far more than any credential; the output buffer would hold it, the field limit not. */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(auth_b64(big, out, sizeof(out)), -1);
	assert_int_equal(auth_plain(big, "p", out, sizeof(out)), -1);
	assert_int_equal(auth_plain("u", big, out, sizeof(out)), -1);
	/* 255 octets per field (RFC 4616) must fit. */
	big[255] = '\0';
	assert_int_equal(auth_b64(big, out, sizeof(out)), 0);
	assert_int_equal(strlen(out), 340);
	assert_int_equal(auth_plain(big, big, out, sizeof(out)), 0);
	assert_int_equal(strlen(out), ((2 * 255 + 2 + 2) / 3) * 4);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auth_plain_is_base64_of_nul_user_nul_pass),
		cmocka_unit_test(test_auth_b64_known_vectors),
		cmocka_unit_test(test_auth_output_size_limit_is_exact),
		cmocka_unit_test(test_auth_too_long_inputs_are_refused),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
