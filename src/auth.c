/*
 * AUTH PLAIN and LOGIN encoding of the proxy's stored credentials (pure). Owns the
 * base64 and the wiping of every intermediate copy of a secret.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth.h"

/* Credentials are at most this long each (RFC 4616 allows 255 octets per field). */
#define AUTH_FIELD_MAX 512

static int
b64(const unsigned char *in, size_t n, char *out, size_t size)
{
	if (((n + 2) / 3) * 4 + 1 > size)
		return (-1);
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return (0);
}

int
auth_plain(const char *user, const char *pass, char *out, size_t size)
{
	unsigned char raw[2 * AUTH_FIELD_MAX + 2];
	size_t ul = strlen(user), pl = strlen(pass);
	int rc;

	if (ul > AUTH_FIELD_MAX || pl > AUTH_FIELD_MAX)
		return (-1);
	raw[0] = '\0';
	memcpy(raw + 1, user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, pass, pl);
	rc = b64(raw, ul + pl + 2, out, size);
	OPENSSL_cleanse(raw, sizeof(raw));
	return (rc);
}

int
auth_b64(const char *s, char *out, size_t size)
{
	size_t n = strlen(s);

	if (n > AUTH_FIELD_MAX)
		return (-1);
	return (b64((const unsigned char *)s, n, out, size));
}
