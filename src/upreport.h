#ifndef UPREPORT_H
#define UPREPORT_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "pin.h"

/*
 * What one upstream preparation saw, step by step, for the probe command: upstream.c
 * fills it through the upreport_* calls below when a report is attached to the
 * preparation (upstream_observe), and probefmt.c turns it into text or JSON. Every
 * upreport_* call is a no-op on a NULL report, so upstream.c calls them unconditionally.
 */

#define UPREPORT_ADDRS	8	/* addresses tried, kept in full; more are counted */
#define UPREPORT_CHAIN	8	/* certificates of the chain kept */
#define UPREPORT_STEPS	24	/* step changes kept (a refused token retries AUTH) */

/* One certificate of the chain the server sent (or the one that was verified). */
struct upreport_cert {
	char		 subject[256];
	char		 issuer[256];
	char		 sans[320];		/* "DNS:a, IP:b", bounded: "..., N more" */
	char		 not_after[32];		/* ISO 8601, UTC */
	long		 days_left;		/* whole days from the probe to notAfter */
	char		 pin[PIN_STR_LEN];	/* "sha256//" + base64 of the SPKI's SHA-256 */
};

struct upreport_addr {
	char		 addr[64];		/* "ip:port" */
	char		 error[128];		/* why the connect failed; "" = connected */
};

struct upreport_step {
	char		 name[16];		/* upstream.c's state names, and "quit" */
	double		 at;			/* seconds since the report began */
};

struct upstream_report {
	/* What is probed: set by the caller (upreport_init). */
	char		 name[64];
	char		 host[256];
	int		 port;
	char		 mode[16];		/* starttls | implicit */
	char		 server_name[256];
	int		 verify;		/* verify = yes */
	char		 username[256];		/* "" = the proxy does not log in */
	char		 auth_kind[16];		/* "none", "password" or "oauth2" */

	struct upreport_addr addrs[UPREPORT_ADDRS];
	size_t		 naddrs;
	size_t		 addrs_more;		/* tried but not kept */

	char		 greeting[512];		/* the 220, CRLFs as '\n' */
	char		 ehlo_plain[2048];	/* the EHLO reply before TLS; "" = none */
	char		 ehlo_tls[2048];	/* and under TLS */

	int		 tls;			/* a handshake finished or failed with a peer */
	char		 version[16];
	char		 cipher[64];
	char		 group[32];
	int		 resumed;
	long		 verify_code;		/* SSL_get_verify_result */
	char		 verify_str[128];	/* "ok" or X509_verify_cert_error_string */
	int		 chain_verified;	/* chain[] is the verified chain (up to the anchor) */
	char		 pins[PIN_MAX * (PIN_STR_LEN + 2)];	/* pin = as configured; "" = none */
	char		 pin_matched[PIN_STR_LEN];	/* the pin the chain matched; "" = none */
	struct upreport_cert chain[UPREPORT_CHAIN];
	size_t		 nchain;
	size_t		 chain_more;

	char		 auth_mech[16];		/* "" = no AUTH sent */
	int		 auth_code;		/* the last reply's code; 0 = none */
	char		 auth_reply[300];	/* the last final reply (a 334 challenge is not kept) */

	struct upreport_step steps[UPREPORT_STEPS];
	size_t		 nsteps;
	double		 start;			/* absolute, for upreport_step */
	double		 total;			/* seconds from start to the end */

	char		 quit_reply[300];	/* the answer to our QUIT */

	/* The outcome. */
	int		 done;
	int		 ok;
	char		 fail_stage[32];
	char		 fail_reason[32];
	char		 fail_detail[512];
	char		 fail_hint[256];	/* upstream.c's own hint; "" = none */
};

struct upstream_conf;

/**
 * upreport_init(rep, up, now):
 * Empty ${rep} and describe the upstream ${up} it is about, its clock starting at ${now}
 * (seconds, any epoch: ev_time()).
 */
void upreport_init(struct upstream_report *rep, const struct upstream_conf *up, double now);

/**
 * upreport_step(rep, name, now):
 * The preparation enters step ${name} at ${now}.
 */
void upreport_step(struct upstream_report *rep, const char *name, double now);

/**
 * upreport_addr(rep, addr, why):
 * Connecting to ${addr} begins (${why} NULL), or that attempt failed with ${why}.
 */
void upreport_addr(struct upstream_report *rep, const char *addr, const char *why);

/**
 * upreport_reply(rep, stage, p, len):
 * The complete reply ${p} (${len} bytes, CRLF-terminated lines) the server gave in
 * ${stage}: the greeting, and the EHLO replies before ("ehlo") and under TLS
 * ("ehlo-tls") are kept; other stages are ignored.
 */
void upreport_reply(struct upstream_report *rep, const char *stage, const char *p, size_t len);

/**
 * upreport_tls(rep, ssl):
 * Take the version, cipher, group, verification result and certificate chain of
 * ${ssl}, after its handshake finished or failed. NULL ${ssl} is a no-op.
 */
void upreport_tls(struct upstream_report *rep, SSL *ssl);

/**
 * upreport_auth(rep, mech, code, p, len):
 * The server answered ${code} (the whole reply ${p}, ${len} bytes) to an AUTH ${mech}
 * step; a final reply (not 334) is kept as the login's outcome.
 */
void upreport_auth(struct upstream_report *rep, const char *mech, int code, const char *p,
    size_t len);

/**
 * upreport_fail(rep, stage, reason, detail, hint):
 * The preparation failed at ${stage} for ${reason} (upstream.fail's fields; ${hint} may
 * be NULL). Only the first failure is kept.
 */
void upreport_fail(struct upstream_report *rep, const char *stage, const char *reason,
    const char *detail, const char *hint);

/**
 * upreport_end(rep, ok, now):
 * The probe of this upstream ended at ${now}: ${ok} 1 if a session would have
 * succeeded.
 */
void upreport_end(struct upstream_report *rep, int ok, double now);

#endif
