/* pin: sha256//BASE64 public key pins, parsed, matched against a chain, written back. */
#include "unit.h"

#include "pin.h"

/* SHA-256 of "" and of "a", and their base64 (openssl dgst -sha256 -binary | base64). */
static const unsigned char H_EMPTY[PIN_HASH_LEN] = {
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
	0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
	0x78, 0x52, 0xb8, 0x55,
};
static const unsigned char H_A[PIN_HASH_LEN] = {
	0xca, 0x97, 0x81, 0x12, 0xca, 0x1b, 0xbd, 0xca, 0xfa, 0xc2, 0x31, 0xb3, 0x9a, 0x23,
	0xdc, 0x4d, 0xa7, 0x86, 0xef, 0xf8, 0x14, 0x7c, 0x4e, 0x72, 0xb9, 0x80, 0x77, 0x85,
	0xaf, 0xee, 0x48, 0xbb,
};
#define P_EMPTY	"sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
#define P_A	"sha256//ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs="

static void
test_pin_parse_reads_curl_format(void **state)
{
	unsigned char h[PIN_HASH_LEN];
	char why[200] = "";

	(void)state;
	assert_int_equal(pin_parse(P_EMPTY, h, why, sizeof(why)), 0);
	assert_memory_equal(h, H_EMPTY, PIN_HASH_LEN);
	assert_int_equal(pin_parse(P_A, h, why, sizeof(why)), 0);
	assert_memory_equal(h, H_A, PIN_HASH_LEN);
}

static void
test_pin_format_writes_what_parse_reads(void **state)
{
	unsigned char h[PIN_HASH_LEN], back[PIN_HASH_LEN];
	char out[PIN_STR_LEN], why[200];
	int i, b;

	(void)state;
	pin_format(H_EMPTY, out);
	assert_string_equal(out, P_EMPTY);
	pin_format(H_A, out);
	assert_string_equal(out, P_A);
	/* Every byte value in every position survives the round trip. */
	for (b = 0; b < 256; b++) {
		for (i = 0; i < PIN_HASH_LEN; i++)
			h[i] = (unsigned char)(b + i * 7);
		pin_format(h, out);
		assert_int_equal(strlen(out), PIN_STR_LEN - 1);
		assert_int_equal(pin_parse(out, back, why, sizeof(why)), 0);
		assert_memory_equal(h, back, PIN_HASH_LEN);
	}
}

static void
test_pin_parse_refuses_malformed_with_reason(void **state)
{
	static const struct {
		const char	*pin, *why;
	} bad[] = {
		{ "", "is not sha256//" },
		{ "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "is not sha256//" },
		{ "SHA256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "is not sha256//" },
		{ "sha1//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "is not sha256//" },
		{ "sha256:E3:B0:C4", "is not sha256//" },
		{ "sha256//", "not base64" },
		/* base64url, missing padding, padding inside, bad characters */
		{ "sha256//47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=", "not base64" },
		{ "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", "not base64" },
		{ "sha256//47DEQpj8HBSa+/TI=W+5JCeuQeRkm5NMpJWZG3hSuFU=", "not base64" },
		{ "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSu FU=", "not base64" },
		/* not canonical: the last digit carries bits a 32-byte value has not */
		{ "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=", "not base64" },
		/* wrong lengths: SHA-1 (20 bytes), 33 bytes, 31 bytes */
		{ "sha256//2jmj7l5rSw0yVb/vlWAYkK/YBwk=", "20 bytes, a SHA-256 is 32" },
		{ "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFUA", "33 bytes" },
		{ "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuA==", "31 bytes" },
	};
	unsigned char h[PIN_HASH_LEN];
	char why[200];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bad); i++) {
		why[0] = '\0';
		if (pin_parse(bad[i].pin, h, why, sizeof(why)) != -1)
			fail_msg("accepted '%s'", bad[i].pin);
		if (strstr(why, bad[i].why) == NULL)
			fail_msg("'%s': reason '%s' lacks '%s'", bad[i].pin, why, bad[i].why);
	}
}

static void
test_pin_parse_list_reads_every_pin(void **state)
{
	struct pinset ps;
	char why[200];

	(void)state;
	assert_int_equal(pin_parse_list("", &ps, why, sizeof(why)), 0);
	assert_int_equal(ps.n, 0);
	assert_int_equal(pin_parse_list(P_A, &ps, why, sizeof(why)), 0);
	assert_int_equal(ps.n, 1);
	assert_memory_equal(ps.hash[0], H_A, PIN_HASH_LEN);
	assert_int_equal(pin_parse_list(" " P_EMPTY " ,\t" P_A " ", &ps, why, sizeof(why)), 0);
	assert_int_equal(ps.n, 2);
	assert_memory_equal(ps.hash[0], H_EMPTY, PIN_HASH_LEN);
	assert_memory_equal(ps.hash[1], H_A, PIN_HASH_LEN);
}

static void
test_pin_parse_list_names_the_bad_pin(void **state)
{
	struct pinset ps;
	char why[200];

	(void)state;
	assert_int_equal(pin_parse_list(P_A ", sha256//abc", &ps, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "'sha256//abc'"));
	assert_int_equal(pin_parse_list(P_A ",," P_EMPTY, &ps, why, sizeof(why)), -1);
	assert_int_equal(pin_parse_list(P_A ",", &ps, why, sizeof(why)), -1);
	assert_int_equal(pin_parse_list(P_A ", " P_A, &ps, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "listed twice"));
}

static void
test_pin_parse_list_bounds_the_count(void **state)
{
	char v[(PIN_STR_LEN + 2) * (PIN_MAX + 1)], one[PIN_STR_LEN], why[200];
	unsigned char h[PIN_HASH_LEN];
	struct pinset ps;
	size_t i, len = 0;

	(void)state;
	memset(h, 0, sizeof(h));
	for (i = 0; i < PIN_MAX + 1; i++) {
		h[0] = (unsigned char)i;
		pin_format(h, one);
		len += (size_t)snprintf(v + len, sizeof(v) - len, "%s%s", i ? "," : "", one);
		if (i + 1 == PIN_MAX) {
			assert_int_equal(pin_parse_list(v, &ps, why, sizeof(why)), 0);
			assert_int_equal(ps.n, PIN_MAX);
		}
	}
	assert_int_equal(pin_parse_list(v, &ps, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "more than"));
}

static void
test_pin_match_finds_leaf_intermediate_or_nothing(void **state)
{
	unsigned char chain[3][PIN_HASH_LEN];
	struct pinset ps;
	size_t cert = 99;
	char why[200];

	(void)state;
	memset(chain, 0x11, sizeof(chain));
	chain[1][0] = 0x22;
	chain[2][0] = 0x33;
	/* Pins: H_A, then the intermediate's. */
	assert_int_equal(pin_parse_list(P_A, &ps, why, sizeof(why)), 0);
	memcpy(ps.hash[1], chain[1], PIN_HASH_LEN);
	ps.n = 2;
	assert_int_equal(pin_match(&ps, (const unsigned char (*)[PIN_HASH_LEN])chain, 3, &cert), 1);
	assert_int_equal(cert, 1);
	/* The leaf matching the first pin: found at the leaf, before the intermediate. */
	memcpy(chain[0], H_A, PIN_HASH_LEN);
	assert_int_equal(pin_match(&ps, (const unsigned char (*)[PIN_HASH_LEN])chain, 3, &cert), 0);
	assert_int_equal(cert, 0);
	/* Only the leaf looked at: the intermediate beyond nchain does not count. */
	memset(chain[0], 0x44, PIN_HASH_LEN);
	assert_int_equal(pin_match(&ps, (const unsigned char (*)[PIN_HASH_LEN])chain, 1, NULL), -1);
	/* One bit off is no match. */
	chain[1][PIN_HASH_LEN - 1] ^= 1;
	assert_int_equal(pin_match(&ps, (const unsigned char (*)[PIN_HASH_LEN])chain, 3, NULL), -1);
	/* No pins, or no chain: no match. */
	ps.n = 0;
	assert_int_equal(pin_match(&ps, (const unsigned char (*)[PIN_HASH_LEN])chain, 3, NULL), -1);
	ps.n = 2;
	assert_int_equal(pin_match(&ps, NULL, 0, NULL), -1);
}

static void
test_pin_list_str_joins_and_cuts_at_whole_pins(void **state)
{
	unsigned char hs[3][PIN_HASH_LEN];
	char out[200], small[70];

	(void)state;
	memcpy(hs[0], H_EMPTY, PIN_HASH_LEN);
	memcpy(hs[1], H_A, PIN_HASH_LEN);
	memcpy(hs[2], H_EMPTY, PIN_HASH_LEN);
	pin_list_str((const unsigned char (*)[PIN_HASH_LEN])hs, 0, out, sizeof(out));
	assert_string_equal(out, "");
	pin_list_str((const unsigned char (*)[PIN_HASH_LEN])hs, 2, out, sizeof(out));
	assert_string_equal(out, P_EMPTY ", " P_A);
	pin_list_str((const unsigned char (*)[PIN_HASH_LEN])hs, 3, small, sizeof(small));
	assert_string_equal(small, P_EMPTY ", ...");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pin_parse_reads_curl_format),
		cmocka_unit_test(test_pin_format_writes_what_parse_reads),
		cmocka_unit_test(test_pin_parse_refuses_malformed_with_reason),
		cmocka_unit_test(test_pin_parse_list_reads_every_pin),
		cmocka_unit_test(test_pin_parse_list_names_the_bad_pin),
		cmocka_unit_test(test_pin_parse_list_bounds_the_count),
		cmocka_unit_test(test_pin_match_finds_leaf_intermediate_or_nothing),
		cmocka_unit_test(test_pin_list_str_joins_and_cuts_at_whole_pins),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
