/*
 * TLS toward devices: server contexts per listener profile, the session-ticket keys all
 * workers share, and the device handshake's log line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "log.h"
#include "shared.h"
#include "tlsctx.h"
#include "tlsserver.h"

struct tlsserver {
	SSL_CTX		*ctx;
};

/*
 * Seal (enc = 1) or open a session ticket with the shared keys. Any worker can open what
 * another sealed, and a ticket under the previous key is accepted and renewed (2).
 */
static int
ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
    EVP_MAC_CTX *hctx, int enc)
{
	struct shared_ticket_key k;
	OSSL_PARAM params[3];
	int which;

	(void)ssl;
	if ((which = shared_ticket_get(enc ? NULL : name, &k)) == 0)
		return (0);	/* none yet, or too old: a full handshake */
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac,
	    sizeof(k.hmac));
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	if (enc) {
		memcpy(name, k.name, sizeof(k.name));
		if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1 ||
		    EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
		    EVP_MAC_CTX_set_params(hctx, params) != 1)
			which = -1;
	} else if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
	    EVP_MAC_CTX_set_params(hctx, params) != 1)
		which = -1;
	OPENSSL_cleanse(&k, sizeof(k));
	return (which);
}

int
tlsserver_rotate(long long now)
{
	struct shared_ticket_key k;
	long long born;

	if ((born = shared_ticket_born()) > 0 && now - born < TLSSERVER_TICKET_ROTATE)
		return (0);
	if (RAND_bytes(k.name, sizeof(k.name)) != 1 || RAND_bytes(k.aes, sizeof(k.aes)) != 1 ||
	    RAND_bytes(k.hmac, sizeof(k.hmac)) != 1) {
		OPENSSL_cleanse(&k, sizeof(k));
		return (-1);
	}
	shared_ticket_put(&k, now > 0 ? now : 1);
	OPENSSL_cleanse(&k, sizeof(k));
	return (0);
}

/* What each profile allows; the upstream side has its own minimum (min_tls). */
static int
set_profile(SSL_CTX *ctx, enum tls_profile profile)
{
	switch (profile) {
	case TLS_PROFILE_MODERN:
		return (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1 ? 0 : -1);
	case TLS_PROFILE_INTERMEDIATE:
		if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
		    SSL_CTX_set_cipher_list(ctx, TLSSERVER_INTERMEDIATE) != 1)
			return (-1);
		return (0);
	case TLS_PROFILE_LEGACY:
		/*
		 * OpenSSL 3 refuses TLS 1.0/1.1 (their MD5+SHA-1 signatures) and SHA-1
		 * certificates at level 1 and up: level 0 is what lets those devices in.
		 */
		SSL_CTX_set_security_level(ctx, 0);
		if (SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION) != 1 ||
		    SSL_CTX_set_cipher_list(ctx, TLSSERVER_LEGACY) != 1)
			return (-1);
		return (0);
	}
	return (-1);
}

struct tlsserver *
tlsserver_new(enum tls_profile profile, const char *cert_file, const char *key_file,
    time_t *not_after, char *err, size_t errsize)
{
	static const unsigned char sid_ctx[] = "smtp-tls-proxy";
	struct tlsserver *t;
	X509 *leaf;
	struct tm tm;
	char why[400];

	err[0] = '\0';
	*not_after = 0;
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(err, errsize, "out of memory");
		return (NULL);
	}
	ERR_clear_error();
	if ((t->ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		goto fail;
	if (set_profile(t->ctx, profile) != 0)
		goto fail;
	/* An encrypted key fails -t and the reload; a prompt would hang the start. */
	SSL_CTX_set_default_passwd_cb(t->ctx, tlsctx_no_passphrase);
	if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1) {
		tlsctx_errors(why, sizeof(why));
		snprintf(err, errsize, "cert_file %s: %s", cert_file, why);
		tlsserver_free(t);
		return (NULL);
	}
	if (SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		tlsctx_errors(why, sizeof(why));
		snprintf(err, errsize, "key_file %s: %s", key_file, why);
		tlsserver_free(t);
		return (NULL);
	}
	if (SSL_CTX_check_private_key(t->ctx) != 1) {
		ERR_clear_error();
		snprintf(err, errsize, "key_file %s does not match the certificate in cert_file %s",
		    key_file, cert_file);
		tlsserver_free(t);
		return (NULL);
	}
	if ((leaf = SSL_CTX_get0_certificate(t->ctx)) != NULL &&
	    ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm) == 1)
		*not_after = timegm(&tm);
	/* The server's order: a legacy device that also knows a strong suite gets it. */
	SSL_CTX_set_options(t->ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_dh_auto(t->ctx, 1);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	/* Tickets under the shared keys; each worker also keeps the sessions it made. */
	if (SSL_CTX_set_session_id_context(t->ctx, sid_ctx, sizeof(sid_ctx) - 1) != 1 ||
	    SSL_CTX_set_tlsext_ticket_key_evp_cb(t->ctx, ticket_cb) != 1)
		goto fail;
	SSL_CTX_set_timeout(t->ctx, TLSSERVER_TICKET_ROTATE);
	return (t);
fail:
	tlsctx_errors(why, sizeof(why));
	snprintf(err, errsize, "TLS context: %s", why[0] ? why : "failed");
	tlsserver_free(t);
	return (NULL);
}

void
tlsserver_free(struct tlsserver *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

SSL *
tlsserver_ssl(struct tlsserver *t)
{
	SSL *ssl;

	if ((ssl = SSL_new(t->ctx)) == NULL)
		return (NULL);
	SSL_set_accept_state(ssl);
	return (ssl);
}

void
tlsserver_log_handshake(SSL *ssl, const struct tlsserver_where *w)
{
	struct tls_report r;
	struct logline l;
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	tlsctx_report(ssl, &r);
	log_begin(&l, L_INFO, w->sid, "tls.client-handshake");
	log_str(&l, "client", w->client);
	log_str(&l, "listener", w->listener);
	log_str(&l, "version", r.version);
	log_str(&l, "cipher", r.cipher);
	log_str(&l, "group", r.group);
	log_str(&l, "sni", sni != NULL ? sni : "");
	log_num(&l, "ms", w->ms);
	log_str(&l, "resumed", SSL_session_reused(ssl) ? "yes" : "no");
	log_end(&l);
	shared_m_tls(SHARED_SIDE_DEVICE, -1, r.version, r.cipher, (long)w->ms, 0);
}

void
tlsserver_log_failure(const struct tlsserver_where *w, const char *error)
{
	struct logline l;

	log_begin(&l, L_WARN, w->sid, "tls.client-handshake-failed");
	log_str(&l, "client", w->client);
	log_str(&l, "listener", w->listener);
	log_str(&l, "error", error);
	log_num(&l, "ms", w->ms);
	log_end(&l);
}
