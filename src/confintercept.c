/*
 * The [intercept NAME] rules of transparent listeners, checked once every section is
 * read: each has a destination and names an upstream that exists, or "original", for
 * which [upstream]'s TLS settings (never its host or credentials) are made ready here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "config.h"
#include "config_int.h"
#include "tlsctx.h"

#define LINE(k)	config_key_line(ld, k)

/* Was [upstream] server_name written in the file (not defaulted to host)? */
static int
server_name_set(struct loader *ld)
{
	const char *kind = ld->cur_kind;
	const int *lines = ld->cur_lines;
	int line;

	ld->cur_kind = "upstream";
	ld->cur_lines = ld->c->up.keyline;
	line = LINE("server_name");
	ld->cur_kind = kind;
	ld->cur_lines = lines;
	return (line != 0);
}

/*
 * The upstream of "original": a copy of [upstream] stripped of who it is and how the
 * proxy logs in there; host and port are each session's original destination. Under
 * opportunistic the certificate is checked and logged, never fatal.
 */
static struct upstream_conf *
make_original(struct loader *ld, const struct intercept_conf *ic)
{
	const struct upstream_conf *def = &ld->c->up;
	struct upstream_conf *o;
	struct tlsctx_opts opts;
	enum tlsctx_bad bad;
	char why[512];

	if ((o = malloc(sizeof(*o))) == NULL) {
		config_err(ld, ic->line, "out of memory");
		return (NULL);
	}
	memcpy(o, def, sizeof(*o));
	snprintf(o->name, sizeof(o->name), "original");
	o->host[0] = '\0';
	o->port = 0;
	/* server_name only when the admin set one: else each destination's own address. */
	if (!server_name_set(ld))
		o->server_name[0] = '\0';
	OPENSSL_cleanse(o->password, sizeof(o->password));
	OPENSSL_cleanse(o->oauth2_client_secret, sizeof(o->oauth2_client_secret));
	o->username[0] = o->password_file[0] = '\0';
	o->auth_mechanism = UP_AUTH_AUTO;
	memset(&o->pins, 0, sizeof(o->pins));
	o->client_cert_file[0] = o->client_key_file[0] = '\0';
	o->oauth2_flow = OAUTH2_NONE;
	o->oauth2_key_pem = NULL;
	o->original = 1;
	o->opportunistic = ic->tls_policy == TLS_POLICY_OPPORTUNISTIC;
	if (o->opportunistic)
		o->verify = 0;
	/*
	 * No session cache ("" key): a session is never offered to another destination.
	 * Nor [upstream]'s pins or client certificate: they belong to that server.
	 */
	memset(&opts, 0, sizeof(opts));
	opts.key = "";
	opts.ca_file = o->ca_file;
	opts.verify = o->verify;
	opts.min_tls = o->min_tls;
	opts.ciphers = o->tls_ciphers;
	if ((o->tlsctx = tlsctx_new_client(&opts, &bad, why, sizeof(why))) == NULL) {
		config_err(ld, ic->line, "[intercept %s] original: %s", ic->name, why);
		free(o);
		return (NULL);
	}
	return (o);
}

static void
check_one(struct loader *ld, struct intercept_conf *ic)
{
	struct config *c = ld->c;
	size_t i;

	if (!ic->has_net)
		config_err(ld, ic->line, "[intercept %s] destination is required", ic->name);
	ic->upstream = -2;
	if (ic->upstream_name[0] == '\0') {
		config_err(ld, ic->line, "[intercept %s] upstream is required (an upstream's name, "
		    "or original)", ic->name);
		return;
	}
	if (strcmp(ic->upstream_name, "original") == 0)
		ic->upstream = -1;
	for (i = 0; i < c->nups && ic->upstream == -2; i++)
		if (strcmp(c->ups[i]->name, ic->upstream_name) == 0)
			ic->upstream = (int)i;
	if (ic->upstream == -2) {
		config_err(ld, LINE("upstream"), "[intercept %s] upstream %s: no such upstream "
		    "(define [upstream %s], or use default or original)", ic->name,
		    ic->upstream_name, ic->upstream_name);
		return;
	}
	if (ic->upstream >= 0 && LINE("tls_policy"))
		config_warn(ld, LINE("tls_policy"), "[intercept %s] tls_policy is for upstream = "
		    "original; [upstream %s] keeps its own TLS settings", ic->name,
		    ic->upstream_name);
	if (ic->upstream == -1)
		ic->orig = make_original(ld, ic);
}

/* Two rules for the same network and port: which one applies would be a coin toss. */
static void
check_ties(struct loader *ld)
{
	struct config *c = ld->c;
	size_t i, j;

	for (i = 0; i < c->nicps; i++)
		for (j = 0; j < i; j++) {
			const struct intercept_conf *a = c->icps[j], *b = c->icps[i];

			if (a->has_net && b->has_net && a->port == b->port &&
			    a->net.family == b->net.family && a->net.bits == b->net.bits &&
			    memcmp(a->net.addr, b->net.addr, sizeof(a->net.addr)) == 0)
				config_err(ld, b->line, "[intercept %s] and [intercept %s] (line %d) have "
				    "the same destination", b->name, a->name, a->line);
		}
}

void
config_check_intercepts(struct loader *ld)
{
	struct config *c = ld->c;
	size_t i;
	int transparent = 0;

	ld->cur_kind = "intercept";
	for (i = 0; i < c->nicps; i++) {
		ld->cur_lines = c->icps[i]->keyline;
		check_one(ld, c->icps[i]);
	}
	ld->cur_kind = NULL;
	ld->cur_lines = NULL;
	check_ties(ld);
	for (i = 0; i < c->nlsts; i++)
		transparent |= c->lsts[i]->transparent;
	if (transparent && c->nicps == 0)
		config_err(ld, 0, "a listener has transparent = yes but there is no [intercept "
		    "NAME] rule: every intercepted session would be refused");
	else if (!transparent && c->nicps > 0)
		config_warn(ld, c->icps[0]->line, "[intercept %s]: no listener has transparent = "
		    "yes, so no rule is used", c->icps[0]->name);
}
