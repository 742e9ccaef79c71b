/*
 * The device's side of AUTH PLAIN and AUTH LOGIN, when the proxy itself checks it
 * (client_auth = required; pure). Owns the parsing of the AUTH command and the decoding
 * of the responses; every decoded copy of a password is wiped here or by the caller.
 */
#include <strings.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "sasl.h"

/* Decoded bytes of one response: two fields, two NULs, an authzid as long as a field. */
#define SASL_RAW_MAX	(3 * SASL_FIELD_MAX + 2)

const char *
sasl_mech_str(enum sasl_mech m)
{
	switch (m) {
	case SASL_PLAIN:
		return ("PLAIN");
	case SASL_LOGIN:
		return ("LOGIN");
	default:
		return ("unknown");
	}
}

static int
is_blank(char c)
{
	return (c == ' ' || c == '\t');
}

int
sasl_auth_parse(const char *arg, size_t len, enum sasl_mech *mechp, const char **irp,
    size_t *irlenp)
{
	size_t i = 0, m, r;

	*mechp = SASL_UNKNOWN;
	*irp = NULL;
	*irlenp = 0;
	while (i < len && is_blank(arg[i]))
		i++;
	for (m = i; i < len && !is_blank(arg[i]); i++)
		;
	if (i == m)
		return (-1);
	if (i - m == 5 && strncasecmp(arg + m, "PLAIN", 5) == 0)
		*mechp = SASL_PLAIN;
	else if (i - m == 5 && strncasecmp(arg + m, "LOGIN", 5) == 0)
		*mechp = SASL_LOGIN;
	while (i < len && is_blank(arg[i]))
		i++;
	if (i == len)
		return (0);
	for (r = i; i < len && !is_blank(arg[i]); i++)
		;
	*irp = arg + r;
	*irlenp = i - r;
	while (i < len && is_blank(arg[i]))
		i++;
	if (i != len) {
		*irp = NULL;
		*irlenp = 0;
		return (-1);
	}
	/* RFC 4954 section 4: "=" is an initial response of zero length. */
	if (*irlenp == 1 && **irp == '=')
		*irlenp = 0;
	return (0);
}

int
sasl_is_cancel(const char *line, size_t len)
{
	while (len > 0 && is_blank(line[len - 1]))
		len--;
	return (len == 1 && line[0] == '*');
}

/* Decode into ${raw}; its length, or -1. */
static long
decode(const char *b64, size_t n, unsigned char *raw, size_t size)
{
	size_t len, i, pad;

	while (n > 0 && is_blank(b64[n - 1]))
		n--;
	/* Padding only at the end: OpenSSL's decoder would take "ab=c" too. */
	for (pad = 0; pad < 2 && pad < n && b64[n - 1 - pad] == '='; pad++)
		;
	for (i = 0; i < n - pad; i++)
		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
		    b64[i]) == NULL || b64[i] == '\0')
			return (-1);
	if (n == 0 || auth_unb64(b64, n, raw, size, &len) != 0)
		return (-1);
	return ((long)len);
}

int
sasl_plain(const char *b64, size_t n, char *user, size_t usize, char *pass, size_t psize)
{
	unsigned char raw[SASL_RAW_MAX + 3];
	const unsigned char *z1, *z2;
	size_t zl, ul, pl;
	long len;
	int rc = -1;

	if ((len = decode(b64, n, raw, sizeof(raw))) < 0)
		goto out;
	if ((z1 = memchr(raw, '\0', (size_t)len)) == NULL)
		goto out;
	zl = (size_t)(z1 - raw);
	if ((z2 = memchr(z1 + 1, '\0', (size_t)len - zl - 1)) == NULL)
		goto out;
	ul = (size_t)(z2 - z1 - 1);
	pl = (size_t)len - zl - ul - 2;
	if (memchr(z2 + 1, '\0', pl) != NULL || ul == 0 || ul > SASL_FIELD_MAX ||
	    pl > SASL_FIELD_MAX || ul >= usize || pl >= psize)
		goto out;
	if (zl != 0 && (zl != ul || memcmp(raw, z1 + 1, ul) != 0))
		goto out;
	memcpy(user, z1 + 1, ul);
	user[ul] = '\0';
	memcpy(pass, z2 + 1, pl);
	pass[pl] = '\0';
	rc = 0;
out:
	OPENSSL_cleanse(raw, sizeof(raw));
	return (rc);
}

int
sasl_login(const char *b64, size_t n, char *out, size_t size)
{
	unsigned char raw[SASL_FIELD_MAX + 3];
	long len;
	int rc = -1;

	if ((len = decode(b64, n, raw, sizeof(raw))) < 0 || len > SASL_FIELD_MAX ||
	    (size_t)len >= size || memchr(raw, '\0', (size_t)len) != NULL)
		goto out;
	memcpy(out, raw, (size_t)len);
	out[len] = '\0';
	rc = 0;
out:
	OPENSSL_cleanse(raw, sizeof(raw));
	return (rc);
}
