/*
 * The probe's report as text and JSON (see probefmt.h).
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "probefmt.h"
#include "upreport.h"

/* What to change, by upstream.fail's reason (and for verify, OpenSSL's words). */
static const struct {
	const char	*reason;
	const char	*detail;	/* a substring of the detail; NULL = any */
	const char	*hint;
} hints[] = {
	{ "verify", "hostname mismatch", "the certificate does not name server_name: set "
	    "server_name to one of the SANs listed above (or fix host)" },
	{ "verify", "expired", "the server's certificate has expired: the provider must renew "
	    "it (check this gateway's clock too)" },
	{ "verify", "not yet valid", "the certificate is not valid yet: check this gateway's "
	    "clock" },
	{ "verify", "self-signed certificate in", "the chain ends in a CA not in ca_file: set "
	    "ca_file to a bundle holding it" },
	{ "verify", "self-signed", "the server shows a self-signed certificate: put it in "
	    "ca_file if you trust it, or use the provider's real host name" },
	{ "verify", "local issuer", "the issuer is not in ca_file and the server did not send "
	    "it: set ca_file to the CA (or bundle) that issued this certificate" },
	{ "verify", NULL, "check ca_file and server_name" },
	{ "pin", NULL, "no certificate of the chain matches pin: if the provider changed its "
	    "key or CA on purpose, set pin to one of the chain's pins above" },
	{ "connect", NULL, "check host and port, and that a firewall lets this gateway reach "
	    "the server" },
	{ "resolve", NULL, "check host (the DNS name) and this gateway's resolver" },
	{ "timeout", NULL, "check host, port and the firewall; raise connect_timeout or "
	    "[proxy] timeout for a slow server" },
	{ "no-starttls", NULL, "the server offers no STARTTLS on this port: use the provider's "
	    "submission port (587, tls = starttls) or 465 with tls = implicit" },
	{ "starttls-refused", NULL, "the server refused STARTTLS: check port and tls" },
	{ "handshake", NULL, "check min_tls and tls_ciphers against what the server supports, "
	    "and port and tls" },
	{ "auth", "back-off", "a login was refused recently; wait auth_retry_after seconds" },
	{ "auth", "no usable", "set auth_mechanism to one the server offers (see after TLS)" },
	{ "auth", NULL, "check username and password (or password_file); for a token login, "
	    "the mailbox (username) and the app's SMTP permission" },
	{ "oauth2", NULL, "the token endpoint gave no token: check oauth2_token_url, "
	    "oauth2_client_id, the client secret, oauth2_scope and oauth2_ca_file" },
	{ "greeting", NULL, "the server is not ready: check host and port" },
	{ "ehlo", NULL, "the server refused our EHLO: check [proxy] hostname" },
	{ "closed", NULL, "the server closed the connection: check host, port and tls" },
};

const char *
probefmt_hint(const struct upstream_report *rep)
{
	size_t i;

	if (rep->fail_stage[0] == '\0')
		return (NULL);
	if (rep->fail_hint[0] != '\0')
		return (rep->fail_hint);
	for (i = 0; i < sizeof(hints) / sizeof(hints[0]); i++)
		if (strcmp(hints[i].reason, rep->fail_reason) == 0 &&
		    (hints[i].detail == NULL || strstr(rep->fail_detail, hints[i].detail) != NULL))
			return (hints[i].hint);
	return ("check host, port and tls");
}

/* The next capability of an EHLO reply kept as '\n' lines after *${pp} (its length). */
static const char *
next_cap(const char **pp, size_t *lenp)
{
	const char *p = *pp, *nl;

	if (p == NULL || *p == '\0')
		return (NULL);
	nl = strchr(p, '\n');
	*lenp = nl != NULL ? (size_t)(nl - p) : strlen(p);
	*pp = nl != NULL ? nl + 1 : p + *lenp;
	/* "250-WORD" / "250 WORD": the capability starts after the code and separator. */
	if (*lenp >= 4) {
		*lenp -= 4;
		return (p + 4);
	}
	*lenp = 0;
	return (p);
}

/* The capabilities of ${ehlo}: every line but the first (the server's name). */
static const char *
caps_start(const char *ehlo)
{
	const char *nl = strchr(ehlo, '\n');

	return (nl != NULL ? nl + 1 : NULL);
}

static void
text_caps(FILE *f, const char *label, const char *ehlo)
{
	const char *p = caps_start(ehlo), *cap;
	size_t len;
	int n = 0;

	fprintf(f, "  %-11s ", label);
	while ((cap = next_cap(&p, &len)) != NULL)
		fprintf(f, "%s%.*s", n++ ? ", " : "", (int)len, cap);
	fprintf(f, "%s\n", n ? "" : "(none)");
}

/* A reply kept with '\n' between lines, shown on one line. */
static void
text_reply(FILE *f, const char *label, const char *reply)
{
	const char *p;

	fprintf(f, "  %-11s ", label);
	for (p = reply; *p != '\0'; p++) {
		if (*p == '\n')
			fputs(" / ", f);
		else
			fputc(*p, f);
	}
	fputc('\n', f);
}

static void
text_cert(FILE *f, size_t i, const struct upreport_cert *c)
{
	fprintf(f, "    [%zu] subject   %s\n", i, c->subject);
	fprintf(f, "        issuer    %s\n", c->issuer);
	if (c->sans[0] != '\0')
		fprintf(f, "        SANs      %s\n", c->sans);
	if (c->days_left >= 0)
		fprintf(f, "        notAfter  %s (%ld days left)\n", c->not_after, c->days_left);
	else
		fprintf(f, "        notAfter  %s (EXPIRED %ld days ago)\n", c->not_after,
		    -c->days_left);
	fprintf(f, "        pin       %s\n", c->pin);
}

/* How long step ${i} took: until the next one began, or the end. */
static double
step_ms(const struct upstream_report *rep, size_t i)
{
	double end = i + 1 < rep->nsteps ? rep->steps[i + 1].at : rep->total;

	return ((end - rep->steps[i].at) * 1000.);
}

static void
text_tls(FILE *f, const struct upstream_report *rep)
{
	size_t i;

	fprintf(f, "  %-11s %s, %s, group %s%s\n", "TLS", rep->version, rep->cipher, rep->group,
	    rep->resumed ? ", resumed" : "");
	if (rep->verify_code == 0)
		fprintf(f, "  %-11s ok (chain to ca_file, name %s)\n", "verify", rep->server_name);
	else
		fprintf(f, "  %-11s FAILED: %s (OpenSSL error %ld)%s\n", "verify", rep->verify_str,
		    rep->verify_code, rep->verify ? "" : "; ignored: verify = no");
	fprintf(f, "  %-11s %s\n", "chain", rep->nchain == 0 ? "(none sent)" :
	    rep->chain_verified ? "verified, leaf first, up to the trust anchor" :
	    "as sent by the server, leaf first");
	for (i = 0; i < rep->nchain; i++)
		text_cert(f, i, &rep->chain[i]);
	if (rep->chain_more > 0)
		fprintf(f, "    ... %zu more\n", rep->chain_more);
	/* Pins: which one the chain matched, or that none did (and what was expected). */
	if (rep->pins[0] == '\0')
		return;
	if (rep->pin_matched[0] != '\0')
		fprintf(f, "  %-11s ok: %s matches\n", "pin", rep->pin_matched);
	else if (strcmp(rep->fail_reason, "pin") == 0)
		fprintf(f, "  %-11s MISMATCH: no certificate of the chain above matches pin = %s\n",
		    "pin", rep->pins);
	else
		fprintf(f, "  %-11s not checked (pin = %s)\n", "pin", rep->pins);
}

void
probefmt_text(FILE *f, const struct upstream_report *rep)
{
	const char *hint = probefmt_hint(rep);
	size_t i;

	fprintf(f, "upstream %s: %s port %d, tls %s, server_name %s, verify %s\n", rep->name,
	    rep->host, rep->port, rep->mode, rep->server_name, rep->verify ? "yes" : "no");
	for (i = 0; i < rep->naddrs; i++)
		fprintf(f, "  %-11s %s %s\n", i == 0 ? "address" : "", rep->addrs[i].addr,
		    rep->addrs[i].error[0] ? rep->addrs[i].error : "connected");
	if (rep->addrs_more > 0)
		fprintf(f, "  %-11s %zu more tried\n", "", rep->addrs_more);
	if (rep->mode[0] == 's' && rep->greeting[0] != '\0')
		text_reply(f, "greeting", rep->greeting);
	if (rep->ehlo_plain[0] != '\0')
		text_caps(f, "before TLS", rep->ehlo_plain);
	if (rep->tls)
		text_tls(f, rep);
	if (rep->mode[0] != 's' && rep->greeting[0] != '\0')
		text_reply(f, "greeting", rep->greeting);
	if (rep->ehlo_tls[0] != '\0')
		text_caps(f, "after TLS", rep->ehlo_tls);
	if (rep->auth_mech[0] != '\0')
		fprintf(f, "  %-11s %s as %s: %s (%s)\n", "AUTH", rep->auth_mech, rep->username,
		    rep->auth_code / 100 == 2 ? "ok" : "refused", rep->auth_reply);
	else if (rep->username[0] != '\0' && rep->ehlo_tls[0] != '\0')
		fprintf(f, "  %-11s not tried (%s login as %s)\n", "AUTH", rep->auth_kind,
		    rep->username);
	else if (rep->username[0] == '\0' && rep->ehlo_tls[0] != '\0')
		fprintf(f, "  %-11s none configured: devices log in themselves\n", "AUTH");
	if (rep->quit_reply[0] != '\0')
		text_reply(f, "QUIT", rep->quit_reply);
	fprintf(f, "  %-11s ", "times");
	for (i = 0; i < rep->nsteps; i++)
		fprintf(f, "%s %.1f ms, ", rep->steps[i].name, step_ms(rep, i));
	fprintf(f, "total %.1f ms\n", rep->total * 1000.);
	if (rep->ok) {
		fprintf(f, "  %-11s OK: a session would succeed (no mail was sent)\n", "result");
		return;
	}
	fprintf(f, "  %-11s FAILED at %s (%s): %s\n", "result", rep->fail_stage,
	    rep->fail_reason, rep->fail_detail);
	fprintf(f, "  %-11s %s\n", "fix", hint != NULL ? hint : "");
}

/* A kept string, or JSON null when empty. */
static json_t *
str_or_null(const char *s)
{
	return (s[0] != '\0' ? json_string(s) : json_null());
}

static json_t *
json_caps(const char *ehlo)
{
	const char *p, *cap;
	json_t *a;
	size_t len;

	if (ehlo[0] == '\0')
		return (json_null());
	a = json_array();
	p = caps_start(ehlo);
	while (a != NULL && (cap = next_cap(&p, &len)) != NULL)
		json_array_append_new(a, json_stringn(cap, len));
	return (a);
}

/* "DNS:a, IP:b" as ["DNS:a", "IP:b"]. */
static json_t *
json_sans(const char *sans)
{
	const char *p = sans, *comma;
	json_t *a = json_array();

	while (a != NULL && *p != '\0') {
		comma = strstr(p, ", ");
		json_array_append_new(a, json_stringn(p, comma ? (size_t)(comma - p) : strlen(p)));
		p = comma ? comma + 2 : p + strlen(p);
	}
	return (a);
}

static json_t *
json_chain(const struct upstream_report *rep)
{
	const struct upreport_cert *c;
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < rep->nchain; i++) {
		c = &rep->chain[i];
		json_array_append_new(a, json_pack("{s:s, s:s, s:o, s:s, s:I, s:s}",
		    "subject", c->subject, "issuer", c->issuer, "sans", json_sans(c->sans),
		    "not_after", c->not_after, "days_left", (json_int_t)c->days_left,
		    "pin", c->pin));
	}
	return (a);
}

static json_t *
json_addrs(const struct upstream_report *rep)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < rep->naddrs; i++)
		json_array_append_new(a, json_pack("{s:s, s:o}", "addr", rep->addrs[i].addr,
		    "error", str_or_null(rep->addrs[i].error)));
	return (a);
}

static json_t *
json_steps(const struct upstream_report *rep)
{
	json_t *a = json_array();
	size_t i;

	/* Microseconds are all a network step can tell; the rest is float noise. */
	for (i = 0; a != NULL && i < rep->nsteps; i++)
		json_array_append_new(a, json_pack("{s:s, s:f}", "step", rep->steps[i].name,
		    "ms", (double)(long long)(step_ms(rep, i) * 1000. + .5) / 1000.));
	return (a);
}

static json_t *
json_tls(const struct upstream_report *rep)
{
	if (!rep->tls)
		return (json_null());
	return (json_pack("{s:s, s:s, s:s, s:b, s:s, s:I, s:b}", "version", rep->version,
	    "cipher", rep->cipher, "group", rep->group, "resumed", rep->resumed,
	    "verify", rep->verify_str, "verify_code", (json_int_t)rep->verify_code,
	    "chain_verified", rep->chain_verified));
}

/* The pins configured and the one matched; null when none is configured. */
static json_t *
json_pin(const struct upstream_report *rep)
{
	const char *p = rep->pins, *comma;
	json_t *a;

	if (rep->pins[0] == '\0' || (a = json_array()) == NULL)
		return (json_null());
	while (*p != '\0') {
		comma = strstr(p, ", ");
		json_array_append_new(a, json_stringn(p, comma ? (size_t)(comma - p) : strlen(p)));
		p = comma ? comma + 2 : p + strlen(p);
	}
	return (json_pack("{s:o, s:o, s:b}", "expected", a, "matched",
	    str_or_null(rep->pin_matched), "mismatch", strcmp(rep->fail_reason, "pin") == 0));
}

static json_t *
json_auth(const struct upstream_report *rep)
{
	if (rep->username[0] == '\0')
		return (json_null());
	return (json_pack("{s:s, s:s, s:o, s:b, s:o}", "kind", rep->auth_kind,
	    "username", rep->username, "mechanism", str_or_null(rep->auth_mech),
	    "ok", rep->auth_code / 100 == 2, "reply", str_or_null(rep->auth_reply)));
}

static json_t *
json_failure(const struct upstream_report *rep)
{
	if (rep->fail_stage[0] == '\0')
		return (json_null());
	return (json_pack("{s:s, s:s, s:s, s:s}", "stage", rep->fail_stage,
	    "reason", rep->fail_reason, "detail", rep->fail_detail,
	    "hint", probefmt_hint(rep)));
}

json_t *
probefmt_json(const struct upstream_report *rep)
{
	/* json_pack takes the "o" values even when it fails, so nothing leaks. */
	return (json_pack("{s:s, s:s, s:i, s:s, s:s, s:b, s:b, s:o, s:o, s:o, s:o, s:o, "
	    "s:o, s:o, s:o, s:o, s:o, s:f, s:o}",
	    "upstream", rep->name, "host", rep->host, "port", rep->port, "tls", rep->mode,
	    "server_name", rep->server_name, "verify", rep->verify, "ok", rep->ok,
	    "addresses", json_addrs(rep), "greeting", str_or_null(rep->greeting),
	    "capabilities_before_tls", json_caps(rep->ehlo_plain),
	    "capabilities_after_tls", json_caps(rep->ehlo_tls),
	    "tls_session", json_tls(rep), "chain", json_chain(rep), "pin", json_pin(rep),
	    "auth", json_auth(rep),
	    "quit", str_or_null(rep->quit_reply), "steps", json_steps(rep),
	    "total_ms", (double)(long long)(rep->total * 1e6 + .5) / 1000.,
	    "failure", json_failure(rep)));
}
