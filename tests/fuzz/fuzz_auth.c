/*
 * fuzz_auth: the AUTH PLAIN, LOGIN, XOAUTH2 and OAUTHBEARER encoders, decoded back with
 * OpenSSL, and auth_unb64 against OpenSSL's decoder.
 *
 * Input: byte 0 sizes the output buffer; the rest is "user\0pass" (pass doubles as the
 * token and, for OAUTHBEARER, the host).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decode ${s} into ${out} (room for strlen(s) bytes); its length, or -1. */
static long
unb64(const char *s, unsigned char *out)
{
	size_t n = strlen(s);
	int r;

	if (n % 4 != 0)
		return (-1);
	if (n == 0)
		return (0);
	if ((r = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n)) < 0)
		return (-1);
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if (s[n - 1] == '=')
		r--;
	if (s[n - 2] == '=')
		r--;
	return (r);
}

static void
check(const char *what, int rc, const char *out, size_t outsize, const unsigned char *raw,
    size_t rawlen, size_t fieldmax)
{
	unsigned char *dec;
	size_t need = (rawlen + 2) / 3 * 4 + 1;
	long dl;

	(void)what;
	if (rc != 0 && rc != -1)
		abort();
	if (rc == -1) {
		/* Refused only when it does not fit, or a field is over the limit. */
		if (outsize >= need && rawlen <= fieldmax)
			abort();
		return;
	}
	if (rawlen > fieldmax || outsize < need || strnlen(out, outsize) != need - 1)
		abort();
	if ((dec = malloc(need)) == NULL)
		abort();
	dl = unb64(out, dec);
	if (dl < 0 || (size_t)dl != rawlen || memcmp(dec, raw, rawlen) != 0)
		abort();
	free(dec);
}

/* No control byte in ${s}: what keeps a field from breaking the \1 framing. */
static int
clean(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return (0);
	return (1);
}

/*
 * XOAUTH2 and OAUTHBEARER: when accepted, the output decodes to exactly the framed string
 * (with OAUTHBEARER's ',' and '=' escaped in the user); a user with a control byte is
 * never accepted; auth_unb64 agrees with OpenSSL on the output.
 */
static void
token_checks(const char *user, const char *token, char *out, size_t outsize)
{
	unsigned char dec[12 * 1024], dec2[12 * 1024];
	char want[12 * 1024], esc[3 * 600];
	size_t i, e = 0, dl2;
	long dl;
	int n;

	memset(out, 0xA5, outsize);
	if (auth_xoauth2(user, token, out, outsize) == 0) {
		if (!clean(user) || strlen(out) >= outsize)
			abort();
		n = snprintf(want, sizeof(want), "user=%s\001auth=Bearer %s\001\001", user, token);
		dl = strlen(out) < sizeof(dec) ? unb64(out, dec) : -1;
		if (n < 0 || dl != n || memcmp(dec, want, (size_t)n) != 0)
			abort();
		if (auth_unb64(out, strlen(out), dec2, sizeof(dec2), &dl2) != 0 ||
		    dl2 != (size_t)dl || memcmp(dec, dec2, dl2) != 0)
			abort();
	}
	memset(out, 0xA5, outsize);
	if (auth_oauthbearer(user, "mail.test", 587, token, out, outsize) == 0) {
		if (!clean(user) || strlen(out) >= outsize || strlen(user) > 512)
			abort();
		for (i = 0; user[i] != '\0'; i++) {
			if (user[i] == ',' || user[i] == '=') {
				memcpy(esc + e, user[i] == ',' ? "=2C" : "=3D", 3);
				e += 3;
			} else
				esc[e++] = user[i];
		}
		esc[e] = '\0';
		n = snprintf(want, sizeof(want), "n,a=%s,\001host=mail.test\001port=587\001"
		    "auth=Bearer %s\001\001", esc, token);
		dl = strlen(out) < sizeof(dec) ? unb64(out, dec) : -1;
		if (n < 0 || dl != n || memcmp(dec, want, (size_t)n) != 0)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *user, *pass, *out;
	unsigned char *raw;
	size_t outsize, ul, pl, n;
	const uint8_t *z;
	int rc;

	if (size < 1)
		return (0);
	outsize = 1 + (size_t)data[0] * 8;		/* 1..2041 */
	n = size - 1;
	z = memchr(data + 1, '\0', n);
	ul = z ? (size_t)(z - (data + 1)) : n;
	pl = z ? n - ul - 1 : 0;
	user = malloc(ul + 1);
	pass = malloc(pl + 1);
	raw = malloc(ul + pl + 2);
	out = malloc(outsize);
	if (user == NULL || pass == NULL || raw == NULL || out == NULL)
		abort();
	memcpy(user, data + 1, ul);
	user[ul] = '\0';
	memcpy(pass, data + 1 + ul + (z ? 1 : 0), pl);
	pass[pl] = '\0';
	pl = strlen(pass);			/* a second NUL ends the password */

	memset(out, 0xA5, outsize);
	rc = auth_b64(user, out, outsize);
	check("login", rc, out, outsize, (const unsigned char *)user, ul, 512);

	raw[0] = '\0';
	memcpy(raw + 1, user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, pass, pl);
	memset(out, 0xA5, outsize);
	rc = auth_plain(user, pass, out, outsize);
	check("plain", rc, out, outsize, raw, ul + pl + 2,
	    ul > 512 || pl > 512 ? 0 : (size_t)-1);

	token_checks(user, pass, out, outsize);
	free(out);
	free(raw);
	free(pass);
	free(user);
	return (0);
}
