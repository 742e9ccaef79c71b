/*
 * fuzz_auth: the AUTH PLAIN and AUTH LOGIN encoders, decoded back with OpenSSL.
 *
 * Input: byte 0 sizes the output buffer; the rest is "user\0pass".
 */
#include <stdint.h>
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

	free(out);
	free(raw);
	free(pass);
	free(user);
	return (0);
}
