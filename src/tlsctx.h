#ifndef TLSCTX_H
#define TLSCTX_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "pin.h"

struct tlsctx;

/* What the handshake log line says about one upstream TLS connection. */
struct tls_report {
	char	 version[16];
	char	 cipher[64];
	char	 group[32];
	char	 subject[256];
	char	 issuer[256];
	char	 not_after[32];		/* ISO 8601, UTC */
	char	 sans[320];		/* "DNS:a, IP:b", bounded: "..., N more" */
	char	 fingerprint[7 + 32 * 3];	/* "sha256:" + hex pairs joined by ':' */
	char	 verify[128];		/* "ok" or OpenSSL's verify error string */
	char	 pin[PIN_STR_LEN];	/* the pin that matched; "" when none is configured */
	int	 verified;
	int	 resumed;
};

/*
 * TLS 1.2 suites offered when tls_ciphers is empty: Mozilla's intermediate
 * profile cut to ECDHE key exchange with AEAD ciphers. No static RSA (no forward
 * secrecy), no CBC with SHA-1 MACs (Lucky13-style padding oracles), and no
 * finite-field DHE (weak or slow groups on old servers).
 */
#define TLSCTX_CIPHERS "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* What a client context is made from (tlsctx_new_client). */
struct tlsctx_opts {
	const char	*key;		/* names the upstream, for the session cache */
	const char	*ca_file;	/* "" or NULL: the system store */
	int		 verify;
	int		 min_tls;	/* e.g. TLS1_2_VERSION */
	const char	*ciphers;	/* TLS 1.2 list; "" or NULL: TLSCTX_CIPHERS */
	const struct pinset *pins;	/* NULL or empty: no pinning */
	const char	*cert_file;	/* client certificate (and chain), PEM; "" or NULL: none */
	const char	*key_file;	/* its private key, PEM, not encrypted */
};

/* Which setting tlsctx_new_client() failed on. */
enum tlsctx_bad { TLSCTX_BAD_CA, TLSCTX_BAD_CIPHERS, TLSCTX_BAD_CERT, TLSCTX_BAD_KEY };

/**
 * tlsctx_new_client(o, bad, err, errsize):
 * A client context: chain checked against ${o}->ca_file, peer verification when
 * ${o}->verify, at least ${o}->min_tls, the TLS 1.2 cipher list ${o}->ciphers (OpenSSL
 * syntax; every TLS 1.3 suite is offered either way), the pins ${o}->pins checked on
 * every full handshake (on top of verification; alone with verify off), the client
 * certificate and key presented when the server asks, and a one-entry session cache for
 * resumption, shared between workers through the shared memory (shared.c) under
 * ${o}->key, the cipher list, the pins and the client certificate (a session is only
 * offered to the server it came from, and only under the settings it was made with; an
 * empty ${o}->key: no resumption, for a context whose servers differ per connection).
 * The files are read now: a context made at config load sees a renewed certificate
 * after the next reload. NULL with a reason in ${err} on failure, and in *${bad} the
 * setting that failed.
 */
struct tlsctx *tlsctx_new_client(const struct tlsctx_opts *o, enum tlsctx_bad *bad, char *err,
    size_t errsize);

/**
 * tlsctx_spki_hash(cert, hash):
 * The SHA-256 of ${cert}'s DER SubjectPublicKeyInfo (what a pin names) into ${hash};
 * 0, or -1 on failure.
 */
int tlsctx_spki_hash(X509 *cert, unsigned char hash[PIN_HASH_LEN]);

/**
 * tlsctx_pin_failed(ssl, detail, size):
 * 1 if the handshake of ${ssl} failed because no certificate of the chain matched a pin,
 * with the pins expected and the chain's own (leaf first) in ${detail}; else 0.
 */
int tlsctx_pin_failed(SSL *ssl, char *detail, size_t size);

/**
 * tlsctx_hint(ssl):
 * What to change when the connection ${ssl} failed and the server had asked for a
 * client certificate we do not have; NULL otherwise.
 */
const char *tlsctx_hint(SSL *ssl);

/**
 * tlsctx_forward_secret(ssl):
 * 1 if the negotiated suite of ${ssl} has an ephemeral key exchange (ECDHE, DHE,
 * or any TLS 1.3 suite), 0 if not (static RSA: whoever later holds the server's
 * key can decrypt a recorded session).
 */
int tlsctx_forward_secret(const SSL *ssl);

/**
 * tlsctx_free(t):
 * Free ${t}; NULL is a no-op.
 */
void tlsctx_free(struct tlsctx *t);

/**
 * tlsctx_ssl(t, server_name, err, errsize):
 * A new client SSL for a connection to ${server_name}: SNI (for a DNS name), the
 * name or IP address to check in the certificate (no partial wildcards, no CN
 * fallback), and the cached session to resume. NULL with a reason on failure.
 */
SSL *tlsctx_ssl(struct tlsctx *t, const char *server_name, char *err, size_t errsize);

/**
 * tlsctx_report(ssl, r):
 * Fill ${r} from a connection whose handshake finished, or failed: then the
 * certificate fields describe the certificate the server sent (empty if it sent
 * none) and verify says why it was refused.
 */
void tlsctx_report(SSL *ssl, struct tls_report *r);

/**
 * tlsctx_name_str(n, out, size), tlsctx_sans_str(cert, out, size):
 * ${n} as RFC 2253 text; the DNS and IP subject alternative names of ${cert} as
 * "DNS:a, IP:b" ("..., N more" when they do not fit). Bounded by ${size}; "" on failure.
 */
void tlsctx_name_str(X509_NAME *n, char *out, size_t size);
void tlsctx_sans_str(X509 *cert, char *out, size_t size);

/* Where a handshake happened, for its log line. */
struct tls_where {
	const char	*sid, *client;
	const char	*upstream;	/* its name: "default" for [upstream] */
	const char	*device;	/* the device profile's name, "-" for none */
	const char	*host;		/* as configured */
	const char	*addr;		/* the address connected to */
	const char	*mode;		/* starttls | implicit */
	const char	*sni;
	int		 verify;	/* verification was on */
	int		 opportunistic;	/* off because tls_policy = opportunistic (intercept) */
	int		 slot;		/* the upstream's shared slot, for the metrics */
	long long	 ms;		/* how long the handshake took */
};

/**
 * tlsctx_log_handshake(ssl, w):
 * Log the tls.handshake line for a finished handshake (with pin= when pins are
 * configured: the one that matched), and at warn
 * tls.no-forward-secrecy (a static RSA suite) and tls.unverified (verify = no).
 */
void tlsctx_log_handshake(SSL *ssl, const struct tls_where *w);

/**
 * tlsctx_peer_sent_text(ssl):
 * 1 if the first bytes the server sent on ${ssl} (made by tlsctx_ssl) were text
 * rather than a TLS record, as when an SMTP greeting answers the ClientHello
 * because the port speaks plaintext first; else 0.
 */
int tlsctx_peer_sent_text(SSL *ssl);

/**
 * tlsctx_no_passphrase(buf, size, rwflag, u):
 * An OpenSSL pem_password_cb that never asks: loading an encrypted key fails (an error
 * for -t and the log) instead of prompting on a terminal the daemon may not have.
 */
int tlsctx_no_passphrase(char *buf, int size, int rwflag, void *u);

/**
 * tlsctx_errors(buf, size):
 * Drain OpenSSL's error queue into one "; "-separated string in ${buf}.
 */
void tlsctx_errors(char *buf, size_t size);

#endif
