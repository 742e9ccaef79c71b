#ifndef TLSSERVER_H
#define TLSSERVER_H

#include <stddef.h>
#include <time.h>

#include <openssl/ssl.h>

#include "config.h"

/*
 * TLS toward devices: one server context per [listener NAME] with tls = starttls or
 * implicit, its certificate, its profile, and session tickets under keys every worker
 * shares (shared.c), so a printer that reconnects for every page resumes on any worker.
 */
struct tlsserver;

/* Mozilla's intermediate TLS 1.2 suites: ECDHE or DHE, AEAD only. */
#define TLSSERVER_INTERMEDIATE "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:" \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

/*
 * Mozilla's "old" suites: the intermediate ones first (the server's order wins, so a
 * device that can do better does), then CBC with SHA-1/SHA-2, static RSA and 3DES,
 * which is all many devices of 2010 know.
 */
#define TLSSERVER_LEGACY TLSSERVER_INTERMEDIATE ":" \
	"ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:" \
	"ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:" \
	"ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA256:" \
	"DHE-RSA-AES256-SHA256:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:" \
	"AES256-SHA256:AES128-SHA:AES256-SHA:DES-CBC3-SHA"

/* Ticket keys: a new one every hour; a ticket lives as long, so the previous key still
 * opens every ticket that has not expired. */
#define TLSSERVER_TICKET_ROTATE	3600

/**
 * tlsserver_new(profile, cert_file, key_file, not_after, err, errsize):
 * A server context for ${profile} with the certificate chain in ${cert_file} and its key
 * in ${key_file} (checked to match). The leaf's notAfter goes to ${not_after}. NULL with
 * OpenSSL's reason in ${err} on failure.
 */
struct tlsserver *tlsserver_new(enum tls_profile profile, const char *cert_file,
    const char *key_file, time_t *not_after, char *err, size_t errsize);

/**
 * tlsserver_free(t):
 * Free ${t}; NULL is a no-op.
 */
void tlsserver_free(struct tlsserver *t);

/**
 * tlsserver_ssl(t):
 * A new SSL in server mode for one device connection; NULL when out of memory.
 */
SSL *tlsserver_ssl(struct tlsserver *t);

/**
 * tlsserver_rotate(now):
 * In the main process: make the first ticket key, or a new one when the current one is
 * TLSSERVER_TICKET_ROTATE seconds old at ${now} (monotonic seconds). 0, or -1 when no
 * random key could be had (tickets then stay off until a later call succeeds).
 */
int tlsserver_rotate(long long now);

/* Where a device handshake happened, for its log line. */
struct tlsserver_where {
	const char	*sid, *client, *listener;
	long long	 ms;
};

/**
 * tlsserver_log_handshake(ssl, w):
 * The tls.client-handshake line of a finished device handshake, and its metrics.
 */
void tlsserver_log_handshake(SSL *ssl, const struct tlsserver_where *w);

/**
 * tlsserver_log_failure(w, error):
 * The tls.client-handshake-failed line: ${error} is the conn's reason (OpenSSL's).
 */
void tlsserver_log_failure(const struct tlsserver_where *w, const char *error);

#endif
