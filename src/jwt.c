/*
 * The signed JWT assertion for OAuth2's jwt_bearer flow (Google service accounts,
 * RFC 7523) (pure): the header and claims as JSON text, base64url, and the RS256
 * signature with OpenSSL. Owns the escaping of the claim strings; it writes JSON and
 * never reads any.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "jwt.h"
#include "tlsctx.h"

/* A growing text with a hard end: once something does not fit, ${full} stays set. */
struct text {
	char	*p;
	size_t	 n, size;
	int	 full;
};

static void
text_add(struct text *t, const char *s, size_t n)
{
	if (t->full || n >= t->size - t->n) {
		t->full = 1;
		return;
	}
	memcpy(t->p + t->n, s, n);
	t->n += n;
	t->p[t->n] = '\0';
}

static void
text_str(struct text *t, const char *s)
{
	text_add(t, s, strlen(s));
}

/*
 * ${s} as a JSON string (RFC 8259 section 7): '"' and '\' escaped, control bytes as
 * \u00XX; other bytes, UTF-8 included, as they are.
 */
static void
text_json(struct text *t, const char *s)
{
	char esc[8];

	text_str(t, "\"");
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\') {
			esc[0] = '\\';
			esc[1] = *s;
			text_add(t, esc, 2);
		} else if ((unsigned char)*s < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)(unsigned char)*s);
			text_str(t, esc);
		} else
			text_add(t, s, 1);
	}
	text_str(t, "\"");
}

/* base64url of ${n} bytes, no padding (RFC 7515 section 2), appended to ${t}. */
static void
text_b64url(struct text *t, const unsigned char *in, size_t n)
{
	size_t el, i;
	char *e;

	/* Encoded with its padding aside first, so an exact fit without it fits. */
	if (t->full || n > (size_t)INT_MAX / 2 || (e = malloc((n + 2) / 3 * 4 + 1)) == NULL) {
		t->full = 1;
		return;
	}
	EVP_EncodeBlock((unsigned char *)e, in, (int)n);
	for (el = strlen(e); el > 0 && e[el - 1] == '='; el--)
		;
	for (i = 0; i < el; i++)
		if (e[i] == '+')
			e[i] = '-';
		else if (e[i] == '/')
			e[i] = '_';
	text_add(t, e, el);
	OPENSSL_cleanse(e, el);
	free(e);
}

/* ${what}, with OpenSSL's first queued reason when there is one, into ${err}. */
static void
fail(char *err, size_t errsize, const char *what)
{
	unsigned long e = ERR_peek_error();
	char reason[200];

	if (e != 0) {
		ERR_error_string_n(e, reason, sizeof(reason));
		snprintf(err, errsize, "%s (%s)", what, reason);
	} else
		snprintf(err, errsize, "%s", what);
	ERR_clear_error();
}

/* The RSA private key in ${pem}, or NULL with the reason in ${err}. */
static EVP_PKEY *
load_key(const char *pem, char *err, size_t errsize)
{
	EVP_PKEY *pkey;
	BIO *bio;

	ERR_clear_error();
	if ((bio = BIO_new_mem_buf(pem, -1)) == NULL) {
		fail(err, errsize, "out of memory");
		return (NULL);
	}
	/* A service-account key is never encrypted: no passphrase is ever asked for. */
	pkey = PEM_read_bio_PrivateKey(bio, NULL, tlsctx_no_passphrase, NULL);
	BIO_free(bio);
	if (pkey == NULL) {
		fail(err, errsize, "private_key is not an unencrypted PEM private key");
		return (NULL);
	}
	if (!EVP_PKEY_is_a(pkey, "RSA")) {
		snprintf(err, errsize, "private_key is a %s key, RS256 needs RSA",
		    EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "non-RSA");
		EVP_PKEY_free(pkey);
		return (NULL);
	}
	return (pkey);
}

/* The RS256 signature of ${in} into ${sig} (room for the key's size); its length, or 0. */
static size_t
sign(EVP_PKEY *pkey, const char *in, size_t n, unsigned char *sig, size_t sigsize)
{
	EVP_MD_CTX *ctx;
	size_t sl = sigsize;

	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return (0);
	if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1 ||
	    EVP_DigestSign(ctx, sig, &sl, (const unsigned char *)in, n) != 1)
		sl = 0;
	EVP_MD_CTX_free(ctx);
	return (sl);
}

int
jwt_rs256(const char *key_pem, const char *iss, const char *sub, const char *scope,
    const char *aud, long long now, long lifetime, char *out, size_t size, char *err,
    size_t errsize)
{
	static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
	struct text claims = { NULL, 0, 0, 0 }, jwt = { out, 0, size, 0 };
	unsigned char *sig = NULL;
	EVP_PKEY *pkey = NULL;
	char num[64];
	size_t sl;
	int rc = -1;

	if (size > 0)
		out[0] = '\0';
	if (lifetime <= 0 || now < 0 || now > LLONG_MAX - lifetime) {
		snprintf(err, errsize, "lifetime %ld s from %lld is not a valid expiry", lifetime,
		    now);
		return (-1);
	}
	if ((pkey = load_key(key_pem, err, errsize)) == NULL)
		return (-1);
	/* Every byte of a claim string takes at most 6 in JSON ("\u00XX"). */
	claims.size = 6 * (strlen(iss) + (sub ? strlen(sub) : 0) + strlen(scope) +
	    strlen(aud)) + 128;
	if ((claims.p = malloc(claims.size)) == NULL ||
	    (sig = malloc((size_t)EVP_PKEY_get_size(pkey))) == NULL) {
		snprintf(err, errsize, "out of memory");
		goto done;
	}
	text_str(&claims, "{\"iss\":");
	text_json(&claims, iss);
	if (sub != NULL && sub[0] != '\0') {
		text_str(&claims, ",\"sub\":");
		text_json(&claims, sub);
	}
	text_str(&claims, ",\"scope\":");
	text_json(&claims, scope);
	text_str(&claims, ",\"aud\":");
	text_json(&claims, aud);
	snprintf(num, sizeof(num), ",\"iat\":%lld,\"exp\":%lld}", now, now + lifetime);
	text_str(&claims, num);
	if (size > 0) {
		text_b64url(&jwt, (const unsigned char *)header, sizeof(header) - 1);
		text_str(&jwt, ".");
		text_b64url(&jwt, (const unsigned char *)claims.p, claims.n);
	}
	if (claims.full || size == 0 || jwt.full) {
		snprintf(err, errsize, "the JWT does not fit %zu bytes", size);
		goto done;
	}
	/* The signing input is the two encoded parts and the dot, as they stand in ${out}. */
	if ((sl = sign(pkey, out, jwt.n, sig, (size_t)EVP_PKEY_get_size(pkey))) == 0) {
		fail(err, errsize, "RS256 signature failed");
		goto done;
	}
	text_str(&jwt, ".");
	text_b64url(&jwt, sig, sl);
	if (jwt.full) {
		snprintf(err, errsize, "the JWT does not fit %zu bytes", size);
		goto done;
	}
	rc = 0;
done:
	/* No half-built assertion is left behind (OPENSSL_cleanse writes zeros). */
	if (rc != 0 && size > 0)
		OPENSSL_cleanse(out, size);
	if (claims.p != NULL)
		OPENSSL_cleanse(claims.p, claims.size);
	free(claims.p);
	free(sig);
	EVP_PKEY_free(pkey);
	return (rc);
}
