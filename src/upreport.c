/*
 * The probe's record of one upstream preparation (see upreport.h). upstream.c calls in
 * at each step; nothing here talks to the network or logs.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>

#include "config.h"
#include "tlsctx.h"
#include "upreport.h"

void
upreport_init(struct upstream_report *rep, const struct upstream_conf *up, double now)
{
	memset(rep, 0, sizeof(*rep));
	snprintf(rep->name, sizeof(rep->name), "%s", up->name);
	snprintf(rep->host, sizeof(rep->host), "%s", up->host);
	rep->port = up->port;
	snprintf(rep->mode, sizeof(rep->mode), "%s", config_tls_str(up->tls));
	snprintf(rep->server_name, sizeof(rep->server_name), "%s", up->server_name);
	rep->verify = up->verify;
	snprintf(rep->username, sizeof(rep->username), "%s", up->username);
	snprintf(rep->auth_kind, sizeof(rep->auth_kind), "%s", up->username[0] == '\0' ?
	    "none" : UPSTREAM_OAUTH2(up) ? "oauth2" : "password");
	pin_list_str((const unsigned char (*)[PIN_HASH_LEN])up->pins.hash, up->pins.n, rep->pins,
	    sizeof(rep->pins));
	rep->start = now;
}

void
upreport_step(struct upstream_report *rep, const char *name, double now)
{
	struct upreport_step *s;

	if (rep == NULL || rep->nsteps == UPREPORT_STEPS)
		return;
	s = &rep->steps[rep->nsteps++];
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->at = now - rep->start;
}

void
upreport_addr(struct upstream_report *rep, const char *addr, const char *why)
{
	struct upreport_addr *a;

	if (rep == NULL)
		return;
	if (why == NULL) {
		if (rep->naddrs == UPREPORT_ADDRS) {
			rep->addrs_more++;
			return;
		}
		a = &rep->addrs[rep->naddrs++];
		snprintf(a->addr, sizeof(a->addr), "%s", addr);
		a->error[0] = '\0';
		return;
	}
	/* The failure belongs to the last address begun, if it was kept. */
	if (rep->naddrs == 0 || rep->addrs_more > 0)
		return;
	a = &rep->addrs[rep->naddrs - 1];
	if (strcmp(a->addr, addr) == 0)
		snprintf(a->error, sizeof(a->error), "%s", why);
}

/* ${p} (${len} bytes of CRLF lines) into ${out} with '\n' between lines, bounded. */
static void
keep_lines(char *out, size_t size, const char *p, size_t len)
{
	size_t i, o = 0;

	for (i = 0; i < len && o + 1 < size; i++) {
		if (p[i] == '\r')
			continue;
		out[o++] = p[i];
	}
	while (o > 0 && out[o - 1] == '\n')
		o--;
	out[o] = '\0';
}

void
upreport_reply(struct upstream_report *rep, const char *stage, const char *p, size_t len)
{
	if (rep == NULL)
		return;
	if (strcmp(stage, "greeting") == 0)
		keep_lines(rep->greeting, sizeof(rep->greeting), p, len);
	else if (strcmp(stage, "ehlo") == 0)
		keep_lines(rep->ehlo_plain, sizeof(rep->ehlo_plain), p, len);
	else if (strcmp(stage, "ehlo-tls") == 0)
		keep_lines(rep->ehlo_tls, sizeof(rep->ehlo_tls), p, len);
}

/* The curl-style pin of ${cert}: "sha256//" + base64 of the SHA-256 of its SPKI (DER). */
static void
spki_pin(X509 *cert, char *out)
{
	unsigned char hash[PIN_HASH_LEN];

	out[0] = '\0';
	if (tlsctx_spki_hash(cert, hash) == 0)
		pin_format(hash, out);
}

static void
take_cert(struct upreport_cert *c, X509 *cert)
{
	const ASN1_TIME *na = X509_get0_notAfter(cert);
	struct tm tm;
	int days = 0, secs = 0;

	tlsctx_name_str(X509_get_subject_name(cert), c->subject, sizeof(c->subject));
	tlsctx_name_str(X509_get_issuer_name(cert), c->issuer, sizeof(c->issuer));
	tlsctx_sans_str(cert, c->sans, sizeof(c->sans));
	if (ASN1_TIME_to_tm(na, &tm) == 1)
		strftime(c->not_after, sizeof(c->not_after), "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* From now: negative once expired, so the report can say "expired N days ago". */
	if (ASN1_TIME_diff(&days, &secs, NULL, na) == 1)
		c->days_left = days;
	spki_pin(cert, c->pin);
}

void
upreport_tls(struct upstream_report *rep, SSL *ssl)
{
	STACK_OF(X509) *chain;
	struct tls_report r;
	int i, n;

	if (rep == NULL || ssl == NULL)
		return;
	tlsctx_report(ssl, &r);
	rep->tls = 1;
	snprintf(rep->version, sizeof(rep->version), "%s", r.version);
	snprintf(rep->cipher, sizeof(rep->cipher), "%s", r.cipher);
	snprintf(rep->group, sizeof(rep->group), "%s", r.group);
	rep->resumed = r.resumed;
	snprintf(rep->pin_matched, sizeof(rep->pin_matched), "%s", r.pin);
	rep->verify_code = SSL_get_verify_result(ssl);
	snprintf(rep->verify_str, sizeof(rep->verify_str), "%s", rep->verify_code == X509_V_OK ?
	    "ok" : X509_verify_cert_error_string(rep->verify_code));
	/*
	 * A verified chain runs up to the trust anchor in ca_file; after a failure it is
	 * partial, and what the server sent is what the admin needs to see (leaf first).
	 */
	rep->chain_verified = 0;
	chain = NULL;
	if (rep->verify_code == X509_V_OK && (chain = SSL_get0_verified_chain(ssl)) != NULL &&
	    sk_X509_num(chain) > 0)
		rep->chain_verified = 1;
	else
		chain = SSL_get_peer_cert_chain(ssl);
	rep->nchain = rep->chain_more = 0;
	n = chain != NULL ? sk_X509_num(chain) : 0;
	for (i = 0; i < n; i++) {
		if (rep->nchain == UPREPORT_CHAIN) {
			rep->chain_more++;
			continue;
		}
		memset(&rep->chain[rep->nchain], 0, sizeof(rep->chain[0]));
		take_cert(&rep->chain[rep->nchain++], sk_X509_value(chain, i));
	}
}

void
upreport_auth(struct upstream_report *rep, const char *mech, int code, const char *p,
    size_t len)
{
	if (rep == NULL)
		return;
	snprintf(rep->auth_mech, sizeof(rep->auth_mech), "%s", mech);
	rep->auth_code = code;
	if (code != 334)
		keep_lines(rep->auth_reply, sizeof(rep->auth_reply), p, len);
}

void
upreport_fail(struct upstream_report *rep, const char *stage, const char *reason,
    const char *detail, const char *hint)
{
	if (rep == NULL || rep->fail_stage[0] != '\0')
		return;
	snprintf(rep->fail_stage, sizeof(rep->fail_stage), "%s", stage);
	snprintf(rep->fail_reason, sizeof(rep->fail_reason), "%s", reason);
	snprintf(rep->fail_detail, sizeof(rep->fail_detail), "%s", detail);
	snprintf(rep->fail_hint, sizeof(rep->fail_hint), "%s", hint != NULL ? hint : "");
}

void
upreport_end(struct upstream_report *rep, int ok, double now)
{
	if (rep == NULL || rep->done)
		return;
	rep->done = 1;
	rep->ok = ok && rep->fail_stage[0] == '\0';
	rep->total = now - rep->start;
}
