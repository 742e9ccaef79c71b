/*
 * AUTH PLAIN, LOGIN, XOAUTH2 and OAUTHBEARER encoding of the proxy's credentials
 * (pure). Owns the base64 and the wiping of every intermediate copy of a secret.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth.h"


/* Credentials are at most this long each (RFC 4616 allows 255 octets per field). */
#define AUTH_FIELD_MAX 512

/*
 * The longest XOAUTH2 / OAUTHBEARER text: a user written as a saslname (3 bytes a
 * byte at worst), a host, a token and the frame around them.
 */
#define AUTH_BEARER_RAW	(3 * AUTH_FIELD_MAX + AUTH_FIELD_MAX + AUTH_TOKEN_MAX + 64)

/* Bytes appended so far to a bounded raw buffer; ${full} once something did not fit. */
struct raw {
	unsigned char	 b[AUTH_BEARER_RAW];
	size_t		 n;
	int		 full;
};

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

static void
raw_add(struct raw *r, const char *s, size_t n)
{
	if (r->full || n > sizeof(r->b) - r->n) {
		r->full = 1;
		return;
	}
	memcpy(r->b + r->n, s, n);
	r->n += n;
}

static void
raw_str(struct raw *r, const char *s)
{
	raw_add(r, s, strlen(s));
}

/* 1 if ${s} fits a field (at most AUTH_FIELD_MAX bytes) and holds no control byte. */
static int
is_field(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || i >= AUTH_FIELD_MAX)
			return (0);
	return (1);
}

/* Anything but a b64token (a \1, a CR, a space) would let a token end the frame it sits in. */
int
auth_is_b64token(const char *t)
{
	size_t i, n = strlen(t);

	if (n == 0 || n > AUTH_TOKEN_MAX)
		return (0);
	for (i = 0; i < n && t[i] != '='; i++)
		if (!(t[i] >= 'a' && t[i] <= 'z') && !(t[i] >= 'A' && t[i] <= 'Z') &&
		    !(t[i] >= '0' && t[i] <= '9') && strchr("-._~+/", t[i]) == NULL)
			return (0);
	if (i == 0)
		return (0);
	for (; i < n; i++)
		if (t[i] != '=')
			return (0);
	return (1);
}

/* base64 of ${r} into ${out}, then wipe ${r}. */
static int
raw_b64(struct raw *r, char *out, size_t size)
{
	int rc = r->full ? -1 : b64(r->b, r->n, out, size);

	OPENSSL_cleanse(r, sizeof(*r));
	return (rc);
}

int
auth_xoauth2(const char *user, const char *token, char *out, size_t size)
{
	struct raw r;

	if (!is_field(user) || !auth_is_b64token(token))
		return (-1);
	r.n = 0;
	r.full = 0;
	raw_str(&r, "user=");
	raw_str(&r, user);
	raw_str(&r, "\1auth=Bearer ");
	raw_str(&r, token);
	raw_str(&r, "\1\1");
	return (raw_b64(&r, out, size));
}

int
auth_oauthbearer(const char *user, const char *host, int port, const char *token,
    char *out, size_t size)
{
	char num[16];
	struct raw r;
	size_t i;

	if (!is_field(user) || !is_field(host) || !auth_is_b64token(token) || port < 0 ||
	    port > 65535)
		return (-1);
	r.n = 0;
	r.full = 0;
	/* gs2-header: no channel binding, the mailbox as authzid (RFC 5801 saslname). */
	raw_str(&r, "n,a=");
	for (i = 0; user[i] != '\0'; i++) {
		if (user[i] == ',')
			raw_str(&r, "=2C");
		else if (user[i] == '=')
			raw_str(&r, "=3D");
		else
			raw_add(&r, user + i, 1);
	}
	raw_str(&r, ",\1host=");
	raw_str(&r, host);
	snprintf(num, sizeof(num), "\1port=%d", port);
	raw_str(&r, num);
	raw_str(&r, "\1auth=Bearer ");
	raw_str(&r, token);
	raw_str(&r, "\1\1");
	return (raw_b64(&r, out, size));
}

int
auth_unb64(const char *s, size_t n, unsigned char *out, size_t size, size_t *lenp)
{
	int r;

	if (n % 4 != 0 || n / 4 * 3 > size || n > (size_t)INT_MAX)
		return (-1);
	*lenp = 0;
	if (n == 0)
		return (0);
	if ((r = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n)) < 0)
		return (-1);
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if (s[n - 1] == '=')
		r--;
	if (s[n - 2] == '=')
		r--;
	*lenp = (size_t)r;
	return (0);
}
