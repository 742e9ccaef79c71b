/*
 * OpenSSL contexts towards the upstream: protocol and cipher policy, verification
 * (chain, name, no CN fallback), public key pins, the client certificate, the session
 * cache shared by the workers, and the handshake report that the tls.handshake line and
 * upstream.fail print.
 */
#include <arpa/inet.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "shared.h"
#include "tlsctx.h"

struct tlsctx {
	SSL_CTX		*ctx;
	SSL_SESSION	*session;	/* the newest session the upstream gave us */
	unsigned long	 share_gen;	/* of the shared copy t->session came from */
	char		 key[SHARED_TLS_KEY];	/* which upstream: sessions never cross to another */
	int		 verify;
	struct pinset	 pins;
	int		 session_pin;	/* PIN_STATE of t->session's full handshake */
};

/*
 * A connection's pin check, in its SSL (pin_index): none yet, the pin that matched
 * (PIN_STATE_MATCH + its index), or no match. A resumed session carries the state of
 * the full handshake it came from, which the cache keeps beside it.
 */
#define PIN_STATE_NONE		0
#define PIN_STATE_MATCH		1
#define PIN_STATE_MISMATCH	0xff
#define TLSCTX_CHAIN_MAX	16	/* certificates of a chain hashed for the pins */

/*
 * Publish ${sess} to the other workers (a few hundred bytes, under a spin lock), after
 * one byte: the pin state of the handshake it came from, for their tls.handshake lines.
 */
static void
share_put(struct tlsctx *t, SSL_SESSION *sess)
{
	unsigned char der[SHARED_TLS_DER], *p = der + 1;
	int n = i2d_SSL_SESSION(sess, NULL);

	if (n <= 0 || (size_t)n + 1 > sizeof(der) || i2d_SSL_SESSION(sess, &p) != n)
		return;
	der[0] = (unsigned char)t->session_pin;
	shared_tls_put(t->key, der, (unsigned)n + 1, &t->share_gen);
	OPENSSL_cleanse(der, (size_t)n + 1);
}

/* Take a newer session another worker published for the same upstream. */
static void
share_get(struct tlsctx *t)
{
	unsigned char der[SHARED_TLS_DER];
	const unsigned char *p = der + 1;
	SSL_SESSION *sess;
	unsigned len;

	if ((len = shared_tls_get(t->key, &t->share_gen, der, sizeof(der))) < 2)
		return;
	sess = d2i_SSL_SESSION(NULL, &p, (long)len - 1);
	OPENSSL_cleanse(der + 1, len - 1);
	if (sess == NULL)
		return;
	SSL_SESSION_free(t->session);
	t->session = sess;
	t->session_pin = der[0];
}

static int tlsctx_index = -1;
static int first_index = -1;	/* SSL ex_data: the first bytes the server sent */
static int pin_index = -1;	/* SSL ex_data: PIN_STATE_* */
static int asked_index = -1;	/* SSL ex_data: the server asked for a client certificate */

static int
pin_state(SSL *ssl)
{
	return (pin_index < 0 ? PIN_STATE_NONE : (int)(uintptr_t)SSL_get_ex_data(ssl, pin_index));
}

static void
set_pin_state(SSL *ssl, int state)
{
	SSL_set_ex_data(ssl, pin_index, (void *)(uintptr_t)state);
}

/* Keep the newest session (TLS 1.3 sends tickets after the handshake, so a callback). */
static int
new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct tlsctx *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tlsctx_index);

	/* No key: connections go to many servers (intercepted, "original"): keep nothing. */
	if (t == NULL || t->key[0] == '\0' || !SSL_SESSION_is_resumable(sess))
		return (0);
	SSL_SESSION *copy;

	/* Only sessions whose handshake matched a pin: resuming one skips the check. */
	if (t->pins.n > 0 && (pin_state(ssl) < PIN_STATE_MATCH ||
	    pin_state(ssl) == PIN_STATE_MISMATCH))
		return (0);
	/* A copy, for the same reason as in tlsctx_ssl(). */
	if ((copy = SSL_SESSION_dup(sess)) == NULL)
		return (0);
	SSL_SESSION_free(t->session);
	t->session = copy;
	t->session_pin = pin_state(ssl);
	share_put(t, copy);
	return (0);
}

int
tlsctx_spki_hash(X509 *cert, unsigned char hash[PIN_HASH_LEN])
{
	unsigned char *der = NULL;
	unsigned int mdlen = 0;
	int n, ok;

	/* The SPKI as the certificate encodes it, as curl hashes it for --pinnedpubkey. */
	if ((n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der)) <= 0)
		return (-1);
	ok = EVP_Digest(der, (size_t)n, hash, &mdlen, EVP_sha256(), NULL) == 1 &&
	    mdlen == PIN_HASH_LEN;
	OPENSSL_free(der);
	return (ok ? 0 : -1);
}

/* The SPKI hashes of ${chain} (leaf first) into ${out}; how many. */
static size_t
chain_hashes(STACK_OF(X509) *chain, unsigned char (*out)[PIN_HASH_LEN])
{
	size_t n = 0;
	int i;

	for (i = 0; chain != NULL && i < sk_X509_num(chain) && n < TLSCTX_CHAIN_MAX; i++)
		if (tlsctx_spki_hash(sk_X509_value(chain, i), out[n]) == 0)
			n++;
	return (n);
}

/*
 * Verification with pins: OpenSSL's own first (chain, name); then, when it passed or
 * verify = no, some certificate of the chain must match a pin: the verified chain, up
 * to the trust anchor, or with verify = no the chain the server sent. A mismatch fails
 * the handshake as a verification failure would, before any session is made.
 */
static int
verify_pins_cb(X509_STORE_CTX *xs, void *arg)
{
	struct tlsctx *t = arg;
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	unsigned char hashes[TLSCTX_CHAIN_MAX][PIN_HASH_LEN];
	STACK_OF(X509) *chain;
	size_t n;
	int ok, p;

	ok = X509_verify_cert(xs);
	if (ok <= 0 && t->verify)
		return (ok);
	chain = t->verify ? X509_STORE_CTX_get0_chain(xs) : X509_STORE_CTX_get0_untrusted(xs);
	n = chain_hashes(chain, hashes);
	/*
	 * The verify result stays what OpenSSL found (the logs and the probe show it); the
	 * pin's verdict is kept in the SSL, and returning 0 is enough to fail the handshake.
	 */
	if ((p = pin_match(&t->pins, (const unsigned char (*)[PIN_HASH_LEN])hashes, n,
	    NULL)) < 0) {
		if (ssl != NULL)
			set_pin_state(ssl, PIN_STATE_MISMATCH);
		return (0);
	}
	if (ssl != NULL)
		set_pin_state(ssl, PIN_STATE_MATCH + p);
	return (1);
}

int
tlsctx_pin_failed(SSL *ssl, char *detail, size_t size)
{
	struct tlsctx *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tlsctx_index);
	unsigned char hashes[TLSCTX_CHAIN_MAX][PIN_HASH_LEN];
	char want[PIN_MAX * (PIN_STR_LEN + 2)], have[TLSCTX_CHAIN_MAX * (PIN_STR_LEN + 2)];
	size_t n;

	if (t == NULL || t->pins.n == 0 || pin_state(ssl) != PIN_STATE_MISMATCH)
		return (0);
	n = chain_hashes(t->verify ? SSL_get0_verified_chain(ssl) : SSL_get_peer_cert_chain(ssl),
	    hashes);
	pin_list_str((const unsigned char (*)[PIN_HASH_LEN])t->pins.hash, t->pins.n, want,
	    sizeof(want));
	pin_list_str((const unsigned char (*)[PIN_HASH_LEN])hashes, n, have, sizeof(have));
	snprintf(detail, size, "no certificate of the %s chain matches a pin: expected %s; "
	    "the chain has %s", t->verify ? "verified" : "sent", want, n ? have : "none");
	return (1);
}

/* The server asks for a client certificate and none is configured: note it, send none. */
static int
client_cert_cb(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
	(void)x509;
	(void)pkey;
	SSL_set_ex_data(ssl, asked_index, (void *)(uintptr_t)1);
	return (0);
}

const char *
tlsctx_hint(SSL *ssl)
{
	if (asked_index < 0 || SSL_get_ex_data(ssl, asked_index) == NULL)
		return (NULL);
	return ("the server asked for a client certificate and none is configured: set "
	    "client_cert_file and client_key_file (the certificate this relay accepts)");
}

int
tlsctx_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return (-1);
}

/*
 * What else a session belongs to, as hex in ${out} (65 bytes): the SHA-256 of the pins
 * and of the client certificate, so a session made under other pins (or as another
 * client) is never resumed under these. "" when neither is configured.
 */
static void
settings_digest(struct tlsctx *t, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE], *der = NULL;
	unsigned int mdlen = 0, i;
	X509 *cert = SSL_CTX_get0_certificate(t->ctx);
	EVP_MD_CTX *m;
	int n = 0;

	out[0] = '\0';
	if (t->pins.n == 0 && cert == NULL)
		return;
	if ((m = EVP_MD_CTX_new()) == NULL)
		return;
	if (cert != NULL)
		n = i2d_X509(cert, &der);
	if (EVP_DigestInit_ex(m, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(m, t->pins.hash, t->pins.n * PIN_HASH_LEN) == 1 &&
	    (n <= 0 || EVP_DigestUpdate(m, der, (size_t)n) == 1) &&
	    EVP_DigestFinal_ex(m, md, &mdlen) == 1)
		for (i = 0; i < mdlen && i < 32; i++)
			snprintf(out + 2 * i, 3, "%02x", md[i]);
	OPENSSL_free(der);
	EVP_MD_CTX_free(m);
}

/* The client certificate and key of ${o} into ${t}; 0, or -1 with *${bad} set. */
static int
load_client_cert(struct tlsctx *t, const struct tlsctx_opts *o, enum tlsctx_bad *bad)
{
	*bad = TLSCTX_BAD_CERT;
	if (SSL_CTX_use_certificate_chain_file(t->ctx, o->cert_file) != 1)
		return (-1);
	*bad = TLSCTX_BAD_KEY;
	SSL_CTX_set_default_passwd_cb(t->ctx, tlsctx_no_passphrase);
	if (SSL_CTX_use_PrivateKey_file(t->ctx, o->key_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(t->ctx) != 1)
		return (-1);
	return (0);
}

void
tlsctx_errors(char *buf, size_t size)
{
	unsigned long e;
	size_t len = 0;
	char one[256];

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, one, sizeof(one));
		if (len < size)
			len += (size_t)snprintf(buf + len, size - len, "%s%s",
			    len ? "; " : "", one);
	}
}

struct tlsctx *
tlsctx_new_client(const struct tlsctx_opts *o, enum tlsctx_bad *bad, char *err, size_t errsize)
{
	const char *ciphers = o->ciphers;
	struct tlsctx *t;
	char why[512], digest[65];

	*bad = TLSCTX_BAD_CA;
	if (ciphers == NULL || ciphers[0] == '\0')
		ciphers = TLSCTX_CIPHERS;
	if (tlsctx_index < 0)
		tlsctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (first_index < 0)
		first_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (pin_index < 0)
		pin_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (asked_index < 0)
		asked_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(err, errsize, "out of memory");
		return (NULL);
	}
	t->verify = o->verify;
	if (o->pins != NULL)
		t->pins = *o->pins;
	ERR_clear_error();
	if ((t->ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		goto fail;
	if (SSL_CTX_set_min_proto_version(t->ctx, o->min_tls) != 1)
		goto fail;
	/* The TLS 1.2 list only; OpenSSL's TLS 1.3 default (all three AEAD suites) stays. */
	if (SSL_CTX_set_cipher_list(t->ctx, ciphers) != 1) {
		*bad = TLSCTX_BAD_CIPHERS;
		goto fail;
	}
	if (o->ca_file != NULL && o->ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL) != 1)
			goto fail;
	} else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1)
		goto fail;
	if (o->cert_file != NULL && o->cert_file[0] != '\0') {
		if (load_client_cert(t, o, bad) != 0)
			goto fail;
	} else
		SSL_CTX_set_client_cert_cb(t->ctx, client_cert_cb);
	/*
	 * With verify = no the chain is still checked and its result logged on every
	 * handshake; only the failure is not fatal. Pins make the check fatal again, for
	 * their own verdict (verify_pins_cb).
	 */
	SSL_CTX_set_verify(t->ctx, o->verify || t->pins.n > 0 ? SSL_VERIFY_PEER :
	    SSL_VERIFY_NONE, NULL);
	if (t->pins.n > 0)
		SSL_CTX_set_cert_verify_callback(t->ctx, verify_pins_cb, t);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(t->ctx, new_session_cb);
	SSL_CTX_set_ex_data(t->ctx, tlsctx_index, t);
	/* A session made under other suites, pins or certificate must not be offered here. */
	settings_digest(t, digest);
	/* No key, no cache: the servers of such a context differ per connection. */
	if (o->key[0] != '\0')
		snprintf(t->key, sizeof(t->key), "%s|%s|%s", o->key, digest, ciphers);
	return (t);
fail:
	tlsctx_errors(why, sizeof(why));
	snprintf(err, errsize, "%s", why[0] ? why : "TLS setup failed");
	tlsctx_free(t);
	return (NULL);
}

int
tlsctx_forward_secret(const SSL *ssl)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);

	if (c == NULL)
		return (0);
	switch (SSL_CIPHER_get_kx_nid(c)) {
	case NID_kx_ecdhe:
	case NID_kx_dhe:
	case NID_kx_ecdhe_psk:
	case NID_kx_dhe_psk:
	/* TLS 1.3: always (EC)DHE, also on resumption (we never allow psk_ke alone). */
	case NID_kx_any:
		return (1);
	default:
		return (0);
	}
}

void
tlsctx_free(struct tlsctx *t)
{
	if (t == NULL)
		return;
	SSL_SESSION_free(t->session);
	SSL_CTX_free(t->ctx);
	free(t);
}

/*
 * Keep the first three bytes of the first record header the server sends, in the
 * SSL itself (no pointer that could outlive its owner), for tlsctx_peer_sent_text().
 */
static void
first_record_cb(int write_p, int version, int content_type, const void *buf, size_t len,
    SSL *ssl, void *arg)
{
	const unsigned char *p = buf;
	uintptr_t v;

	(void)version;
	(void)arg;
	if (write_p || content_type != SSL3_RT_HEADER || len < 3)
		return;
	v = (uintptr_t)1 << 24 | (uintptr_t)p[0] << 16 | (uintptr_t)p[1] << 8 | p[2];
	SSL_set_ex_data(ssl, first_index, (void *)v);
	/* One look is all it takes: keep the callback off the data path. */
	SSL_set_msg_callback(ssl, NULL);
}

int
tlsctx_peer_sent_text(SSL *ssl)
{
	uintptr_t v;
	int i, ch;

	if (first_index < 0 || (v = (uintptr_t)SSL_get_ex_data(ssl, first_index)) == 0)
		return (0);
	/* A record starts with its content type (20..24), never a printable byte. */
	for (i = 0; i < 3; i++) {
		ch = (int)(v >> (16 - 8 * i) & 0xff);
		if (ch < 0x20 || ch > 0x7e)
			return (0);
	}
	return (1);
}

SSL *
tlsctx_ssl(struct tlsctx *t, const char *server_name, char *err, size_t errsize)
{
	unsigned char ip[16];
	X509_VERIFY_PARAM *vp;
	SSL *ssl;
	int is_ip;

	ERR_clear_error();
	if ((ssl = SSL_new(t->ctx)) == NULL)
		goto fail;
	is_ip = inet_pton(AF_INET, server_name, ip) == 1 ||
	    inet_pton(AF_INET6, server_name, ip) == 1;
	vp = SSL_get0_param(ssl);
	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
	    X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
	if (is_ip) {
		/* SNI carries names only (RFC 6066); an address is checked against IP SANs. */
		if (X509_VERIFY_PARAM_set1_ip_asc(vp, server_name) != 1)
			goto fail;
	} else {
		if (SSL_set_tlsext_host_name(ssl, server_name) != 1 ||
		    SSL_set1_host(ssl, server_name) != 1)
			goto fail;
	}
	if (t->key[0] != '\0')
		share_get(t);
	if (t->session != NULL) {
		/*
		 * Resume from a private copy: OpenSSL marks the session of a connection
		 * that dies with a fatal alert unresumable, and that must not spoil the
		 * cached one for every later connection.
		 */
		SSL_SESSION *copy = SSL_SESSION_dup(t->session);

		if (copy != NULL) {
			SSL_set_session(ssl, copy);
			SSL_SESSION_free(copy);
			/* What a resumed handshake reports; a full one checks anew. */
			set_pin_state(ssl, t->session_pin);
		}
	}
	SSL_set_msg_callback(ssl, first_record_cb);
	SSL_set_connect_state(ssl);
	return (ssl);
fail:
	tlsctx_errors(err, errsize);
	SSL_free(ssl);
	return (NULL);
}

void
tlsctx_name_str(X509_NAME *n, char *out, size_t size)
{
	BIO *b = BIO_new(BIO_s_mem());
	long len;
	char *p;

	out[0] = '\0';
	if (b == NULL)
		return;
	X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
	len = BIO_get_mem_data(b, &p);
	if (len > 0) {
		if ((size_t)len >= size)
			len = (long)size - 1;
		memcpy(out, p, (size_t)len);
		out[len] = '\0';
	}
	BIO_free(b);
}

void
tlsctx_sans_str(X509 *cert, char *out, size_t size)
{
	GENERAL_NAMES *gens;
	const GENERAL_NAME *g;
	const unsigned char *d;
	char one[300], ip[INET6_ADDRSTRLEN];
	size_t len = 0, ol;
	int i, n, more = 0, type;
	ASN1_STRING *v;

	out[0] = '\0';
	if ((gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL)) == NULL)
		return;
	n = sk_GENERAL_NAME_num(gens);
	for (i = 0; i < n; i++) {
		g = sk_GENERAL_NAME_value(gens, i);
		v = GENERAL_NAME_get0_value(g, &type);
		d = ASN1_STRING_get0_data(v);
		if (type == GEN_DNS)
			snprintf(one, sizeof(one), "DNS:%.*s", ASN1_STRING_length(v), d);
		else if (type == GEN_IPADD && (ASN1_STRING_length(v) == 4 ||
		    ASN1_STRING_length(v) == 16)) {
			inet_ntop(ASN1_STRING_length(v) == 4 ? AF_INET : AF_INET6, d, ip,
			    sizeof(ip));
			snprintf(one, sizeof(one), "IP:%s", ip);
		} else
			continue;	/* mail addresses, URIs: not what a server is checked by */
		ol = strlen(one);
		/* Keep room for ", N more" so the line says when names were left out. */
		if (more > 0 || len + 2 + ol + 16 > size) {
			more++;
			continue;
		}
		len += (size_t)snprintf(out + len, size - len, "%s%s", len ? ", " : "", one);
	}
	if (more > 0)
		snprintf(out + len, size - len, "%s%d more", len ? ", " : "", more);
	GENERAL_NAMES_free(gens);
}

void
tlsctx_report(SSL *ssl, struct tls_report *r)
{
	const unsigned char hex[] = "0123456789ABCDEF";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	struct tlsctx *t;
	const char *g;
	struct tm tm;
	long vr;
	X509 *cert;
	int nid, st;

	memset(r, 0, sizeof(*r));
	t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tlsctx_index);
	st = pin_state(ssl);
	if (t != NULL && t->pins.n > 0 && st >= PIN_STATE_MATCH &&
	    (size_t)(st - PIN_STATE_MATCH) < t->pins.n)
		pin_format(t->pins.hash[st - PIN_STATE_MATCH], r->pin);
	snprintf(r->version, sizeof(r->version), "%s", SSL_get_version(ssl));
	snprintf(r->cipher, sizeof(r->cipher), "%s", SSL_get_cipher_name(ssl));
	nid = SSL_get_negotiated_group(ssl);
	g = nid > 0 ? SSL_group_to_name(ssl, nid) : NULL;
	snprintf(r->group, sizeof(r->group), "%s", g ? g : "none");
	r->resumed = SSL_session_reused(ssl);
	vr = SSL_get_verify_result(ssl);
	/*
	 * A client that refused the certificate has no peer certificate, but the chain
	 * the server sent is kept: its first entry is the certificate that was refused.
	 */
	if ((cert = SSL_get1_peer_certificate(ssl)) == NULL) {
		STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);

		if (chain != NULL && sk_X509_num(chain) > 0 &&
		    (cert = sk_X509_value(chain, 0)) != NULL)
			X509_up_ref(cert);
	}
	if (cert == NULL) {
		snprintf(r->verify, sizeof(r->verify), "%s",
		    vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "no certificate");
		return;
	}
	r->verified = vr == X509_V_OK;
	snprintf(r->verify, sizeof(r->verify), "%s",
	    r->verified ? "ok" : X509_verify_cert_error_string(vr));
	tlsctx_name_str(X509_get_subject_name(cert), r->subject, sizeof(r->subject));
	tlsctx_name_str(X509_get_issuer_name(cert), r->issuer, sizeof(r->issuer));
	tlsctx_sans_str(cert, r->sans, sizeof(r->sans));
	if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
		strftime(r->not_after, sizeof(r->not_after), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (X509_digest(cert, EVP_sha256(), md, &mdlen) == 1) {
		char *p = r->fingerprint;

		memcpy(p, "sha256:", 7);
		p += 7;
		for (i = 0; i < mdlen; i++) {
			if (i > 0)
				*p++ = ':';
			*p++ = (char)hex[md[i] >> 4];
			*p++ = (char)hex[md[i] & 15];
		}
		*p = '\0';
	}
	X509_free(cert);
}

/* The peer certificate's notAfter as Unix time; 0 when there is none. */
static long
not_after_unix(SSL *ssl)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	struct tm tm;

	if (cert == NULL || ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1)
		return (0);
	return ((long)timegm(&tm));
}

void
tlsctx_log_handshake(SSL *ssl, const struct tls_where *w)
{
	struct tls_report r;
	struct logline l;
	int fs = tlsctx_forward_secret(ssl);

	tlsctx_report(ssl, &r);
	log_begin(&l, L_INFO, w->sid, "tls.handshake");
	log_str(&l, "client", w->client);
	log_str(&l, "device", w->device);
	log_str(&l, "upstream", w->upstream);
	log_str(&l, "host", w->host);
	log_str(&l, "addr", w->addr);
	log_str(&l, "mode", w->mode);
	log_str(&l, "version", r.version);
	log_str(&l, "cipher", r.cipher);
	log_str(&l, "group", r.group);
	log_str(&l, "subject", r.subject);
	log_str(&l, "issuer", r.issuer);
	log_str(&l, "not_after", r.not_after);
	log_str(&l, "fingerprint", r.fingerprint);
	log_str(&l, "verify", r.verify);
	if (r.pin[0] != '\0')
		log_str(&l, "pin", r.pin);
	log_str(&l, "sni", w->sni);
	log_str(&l, "resumed", r.resumed ? "yes" : "no");
	log_str(&l, "fs", fs ? "yes" : "no");
	log_num(&l, "ms", w->ms);
	log_end(&l);
	shared_m_tls(SHARED_SIDE_UPSTREAM, w->slot, r.version, r.cipher, (long)w->ms,
	    not_after_unix(ssl));
	if (!fs) {
		log_begin(&l, L_WARN, w->sid, "tls.no-forward-secrecy");
		log_str(&l, "upstream", w->upstream);
		log_str(&l, "host", w->host);
		log_str(&l, "cipher", r.cipher);
		log_str(&l, "msg", "static RSA key exchange: whoever gets the server's key can "
		    "decrypt recorded sessions; only tls_ciphers allows such suites");
		log_end(&l);
	}
	if (!w->verify) {
		log_begin(&l, L_WARN, w->sid, "tls.unverified");
		log_str(&l, "upstream", w->upstream);
		log_str(&l, "host", w->host);
		log_str(&l, "verify", r.verify);
		log_str(&l, "msg", w->opportunistic ? "tls_policy = opportunistic: encrypted, but "
		    "a certificate that does not verify is logged, not refused" :
		    r.pin[0] != '\0' ? "verify = no: the chain and name are not "
		    "checked; only the pin vouches for the upstream's key" :
		    "verify = no: the upstream's identity is not checked");
		log_end(&l);
	}
}
