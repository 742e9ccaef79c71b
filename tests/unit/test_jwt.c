/*
 * jwt: the RS256 assertion of the jwt_bearer flow, taken apart again with OpenSSL
 * alone: each part decoded, the JSON text compared byte for byte, the signature
 * verified with the public half of a key made for the run.
 */
#include "unit.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "jwt.h"

#define NOW		1700000000LL
#define ISS		"mailer@proj.iam.gserviceaccount.com"
#define SCOPE		"https://mail.google.com/"
#define AUD		"https://oauth2.googleapis.com/token"
#define HEADER		"{\"alg\":\"RS256\",\"typ\":\"JWT\"}"

static EVP_PKEY *rsa, *ec;
static char *rsa_pem, *ec_pem, *enc_pem;

/* ${k} as PEM text (encrypted with "pw" when ${encrypt}); the caller frees it. */
static char *
to_pem(EVP_PKEY *k, int encrypt)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p, *s;
	long n;

	assert_non_null(b);
	assert_int_equal(PEM_write_bio_PrivateKey(b, k, encrypt ? EVP_aes_256_cbc() : NULL,
	    encrypt ? (unsigned char *)"pw" : NULL, encrypt ? 2 : 0, NULL, NULL), 1);
	n = BIO_get_mem_data(b, &p);
	assert_true(n > 0);
	s = malloc((size_t)n + 1);
	assert_non_null(s);
	memcpy(s, p, (size_t)n);
	s[n] = '\0';
	BIO_free(b);
	return (s);
}

static int
setup(void **state)
{
	(void)state;
	if ((rsa = EVP_RSA_gen(2048)) == NULL || (ec = EVP_EC_gen("P-256")) == NULL)
		return (-1);
	rsa_pem = to_pem(rsa, 0);
	ec_pem = to_pem(ec, 0);
	enc_pem = to_pem(rsa, 1);
	return (0);
}

static int
teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	free(rsa_pem);
	free(ec_pem);
	free(enc_pem);
	return (0);
}

/* base64url (no padding) of ${n} chars at ${s} into ${out}; the byte count, or -1. */
static long
unb64url(const char *s, size_t n, unsigned char *out, size_t size)
{
	char tmp[4096];
	size_t i, pad = (4 - n % 4) % 4;
	int r;

	if (n + pad + 1 > sizeof(tmp) || pad == 3 || (n + pad) / 4 * 3 > size)
		return (-1);
	for (i = 0; i < n; i++) {
		if (s[i] == '+' || s[i] == '/' || s[i] == '=')
			return (-1);	/* not base64url */
		tmp[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	}
	memset(tmp + n, '=', pad);
	if ((r = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)(n + pad))) < 0)
		return (-1);
	return (r - (long)pad);
}

struct parts {
	char	 header[512], claims[2048];
	unsigned char sig[512];
	size_t	 siglen;
	size_t	 signed_len;	/* header "." claims, as sent */
};

/* Split ${jwt} on its two dots and decode each part. */
static void
split(const char *jwt, struct parts *p)
{
	const char *d1 = strchr(jwt, '.'), *d2;
	long n;

	assert_non_null(d1);
	d2 = strchr(d1 + 1, '.');
	assert_non_null(d2);
	assert_null(strchr(d2 + 1, '.'));
	n = unb64url(jwt, (size_t)(d1 - jwt), (unsigned char *)p->header, sizeof(p->header) - 1);
	assert_true(n > 0);
	p->header[n] = '\0';
	n = unb64url(d1 + 1, (size_t)(d2 - d1 - 1), (unsigned char *)p->claims,
	    sizeof(p->claims) - 1);
	assert_true(n > 0);
	p->claims[n] = '\0';
	n = unb64url(d2 + 1, strlen(d2 + 1), p->sig, sizeof(p->sig));
	assert_true(n > 0);
	p->siglen = (size_t)n;
	p->signed_len = (size_t)(d2 - jwt);
}

/* 1 if ${sig} is ${key}'s RS256 signature of ${n} bytes at ${in}. */
static int
verifies(EVP_PKEY *key, const char *in, size_t n, const unsigned char *sig, size_t sl)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx;
	int ok;

	assert_non_null(ctx);
	assert_int_equal(EVP_DigestVerifyInit(ctx, &pctx, EVP_sha256(), NULL, key), 1);
	/* RS256 is PKCS#1 v1.5 (RFC 7518 3.3), not PSS. */
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING), 1);
	ok = EVP_DigestVerify(ctx, sig, sl, (const unsigned char *)in, n) == 1;
	EVP_MD_CTX_free(ctx);
	return (ok);
}

static void
test_jwt_parts_are_exact_and_the_signature_verifies(void **state)
{
	char jwt[2048], err[200];
	struct parts p;

	(void)state;
	assert_int_equal(jwt_rs256(rsa_pem, ISS, "mailbox@example.com", SCOPE, AUD, NOW, 3600,
	    jwt, sizeof(jwt), err, sizeof(err)), 0);
	/* base64url without padding: none of '+', '/', '='. */
	assert_null(strpbrk(jwt, "+/= \r\n"));
	split(jwt, &p);
	assert_string_equal(p.header, HEADER);
	assert_string_equal(p.claims, "{\"iss\":\"" ISS "\",\"sub\":\"mailbox@example.com\","
	    "\"scope\":\"" SCOPE "\",\"aud\":\"" AUD "\",\"iat\":1700000000,\"exp\":1700003600}");
	assert_int_equal(p.siglen, 256);
	assert_true(verifies(rsa, jwt, p.signed_len, p.sig, p.siglen));
	/* The check is real: one changed byte of the signed text fails it. */
	jwt[p.signed_len - 1] ^= 1;
	assert_false(verifies(rsa, jwt, p.signed_len, p.sig, p.siglen));
}

static void
test_jwt_without_subject_has_no_sub_claim(void **state)
{
	char jwt[2048], err[200];
	struct parts p;
	size_t i;
	static const char *const none[] = { NULL, "" };

	(void)state;
	for (i = 0; i < NELEM(none); i++) {
		assert_int_equal(jwt_rs256(rsa_pem, ISS, none[i], SCOPE, AUD, NOW, 600, jwt,
		    sizeof(jwt), err, sizeof(err)), 0);
		split(jwt, &p);
		assert_string_equal(p.claims, "{\"iss\":\"" ISS "\",\"scope\":\"" SCOPE "\","
		    "\"aud\":\"" AUD "\",\"iat\":1700000000,\"exp\":1700000600}");
		assert_true(verifies(rsa, jwt, p.signed_len, p.sig, p.siglen));
	}
}

static void
test_jwt_claim_strings_are_json_escaped(void **state)
{
	char jwt[2048], err[200];
	struct parts p;

	(void)state;
	assert_int_equal(jwt_rs256(rsa_pem, "i\x7f\xc3\xa9", "a\"b\\c", "s\"\\\x01\n\x1f", AUD,
	    NOW, 3600, jwt, sizeof(jwt), err, sizeof(err)), 0);
	split(jwt, &p);
	/* DEL and UTF-8 pass as they are; quote, backslash and controls are escaped. */
	assert_string_equal(p.claims, "{\"iss\":\"i\x7f\xc3\xa9\",\"sub\":\"a\\\"b\\\\c\","
	    "\"scope\":\"s\\\"\\\\\\u0001\\u000a\\u001f\",\"aud\":\"" AUD "\","
	    "\"iat\":1700000000,\"exp\":1700003600}");
	assert_true(verifies(rsa, jwt, p.signed_len, p.sig, p.siglen));
}

static void
test_jwt_key_not_pem_or_not_rsa_is_refused_with_a_reason(void **state)
{
	char jwt[2048], err[300];

	(void)state;
	memset(jwt, 'Z', sizeof(jwt));
	assert_int_equal(jwt_rs256("not a key", ISS, NULL, SCOPE, AUD, NOW, 3600, jwt,
	    sizeof(jwt), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not an unencrypted PEM private key"));
	assert_string_equal(jwt, "");
	/* The key file's private_key with its newlines lost (escaped "\n" left as text). */
	assert_int_equal(jwt_rs256("-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE "
	    "KEY-----\\n", ISS, NULL, SCOPE, AUD, NOW, 3600, jwt, sizeof(jwt), err, sizeof(err)),
	    -1);
	assert_non_null(strstr(err, "not an unencrypted PEM private key"));
	assert_int_equal(jwt_rs256(ec_pem, ISS, NULL, SCOPE, AUD, NOW, 3600, jwt, sizeof(jwt),
	    err, sizeof(err)), -1);
	assert_string_equal(err, "private_key is a EC key, RS256 needs RSA");
	/* An encrypted key is refused, never a passphrase prompt. */
	assert_int_equal(jwt_rs256(enc_pem, ISS, NULL, SCOPE, AUD, NOW, 3600, jwt, sizeof(jwt),
	    err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not an unencrypted PEM private key"));
	assert_int_equal(jwt_rs256(rsa_pem, ISS, NULL, SCOPE, AUD, NOW, 0, jwt, sizeof(jwt),
	    err, sizeof(err)), -1);
	assert_non_null(strstr(err, "lifetime"));
}

static void
test_jwt_small_buffer_is_refused_without_overrun(void **state)
{
	char full[2048], jwt[2048], err[200];
	size_t len, sizes[8], i, j;

	(void)state;
	assert_int_equal(jwt_rs256(rsa_pem, ISS, "m@example.com", SCOPE, AUD, NOW, 3600, full,
	    sizeof(full), err, sizeof(err)), 0);
	len = strlen(full);
	/* Nothing, inside the header, at the first dot, in the claims, in the signature, one short. */
	sizes[0] = 0;
	sizes[1] = 1;
	sizes[2] = 36;
	sizes[3] = 37;
	sizes[4] = 100;
	sizes[5] = strrchr(full, '.') - full + 1;
	sizes[6] = len - 10;
	sizes[7] = len;
	for (i = 0; i < NELEM(sizes); i++) {
		memset(jwt, 'Z', sizeof(jwt));
		assert_int_equal(jwt_rs256(rsa_pem, ISS, "m@example.com", SCOPE, AUD, NOW, 3600,
		    jwt, sizes[i], err, sizeof(err)), -1);
		assert_non_null(strstr(err, "does not fit"));
		for (j = sizes[i]; j < sizeof(jwt); j++)
			assert_int_equal(jwt[j], 'Z');
		/* No partial assertion is left in what was written. */
		for (j = 0; j < sizes[i]; j++)
			assert_int_equal(jwt[j], '\0');
	}
	/* Exactly its length and the NUL fits. */
	memset(jwt, 'Z', sizeof(jwt));
	assert_int_equal(jwt_rs256(rsa_pem, ISS, "m@example.com", SCOPE, AUD, NOW, 3600, jwt,
	    len + 1, err, sizeof(err)), 0);
	assert_int_equal(strlen(jwt), len);
	assert_int_equal(jwt[len + 1], 'Z');
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jwt_parts_are_exact_and_the_signature_verifies),
		cmocka_unit_test(test_jwt_without_subject_has_no_sub_claim),
		cmocka_unit_test(test_jwt_claim_strings_are_json_escaped),
		cmocka_unit_test(test_jwt_key_not_pem_or_not_rsa_is_refused_with_a_reason),
		cmocka_unit_test(test_jwt_small_buffer_is_refused_without_overrun),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
