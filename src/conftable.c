/*
 * The resolved routing table `-t -v` prints, so an admin can check who goes where
 * before a device finds out: read from the loaded struct config, never from the file,
 * so it shows what the daemon would run (inherited limits, resolved upstream names).
 */
#include <sys/socket.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "conftable.h"

static const char *const policy_names[] = {
	[DATA_NORMALIZE] = "normalize", [DATA_REJECT] = "reject", [DATA_ACCEPT] = "accept",
};
static const char *const auth_names[] = {
	[UP_AUTH_AUTO] = "auto", [UP_AUTH_PLAIN] = "plain", [UP_AUTH_LOGIN] = "login",
	[UP_AUTH_XOAUTH2] = "xoauth2", [UP_AUTH_OAUTHBEARER] = "oauthbearer",
};

/* A network as an admin writes it: a single address without its /32 or /128. */
static void
print_nets(FILE *f, const struct cidr *n, size_t count)
{
	char a[INET6_ADDRSTRLEN];
	size_t i;

	for (i = 0; i < count; i++) {
		if (inet_ntop(n[i].family, n[i].addr, a, sizeof(a)) == NULL)
			snprintf(a, sizeof(a), "?");
		fprintf(f, "%s%s", i > 0 ? ", " : "", a);
		if (n[i].bits != (n[i].family == AF_INET ? 32 : 128))
			fprintf(f, "/%d", n[i].bits);
	}
	fputc('\n', f);
}

/* The limits of a profile that differ from the global ones; "as [limits]" when none do. */
static void
print_limits(FILE *f, const struct limits *l, const struct limits *g)
{
	const char *sep = "";

	fprintf(f, "  limits        ");
	if (l->bare_newline != g->bare_newline) {
		fprintf(f, "bare_newline = %s", policy_names[l->bare_newline]);
		sep = ", ";
	}
#define ONE(key, fmt, cast) do {					\
	if (l->key != g->key) {						\
		fprintf(f, "%s" #key " = " fmt, sep, (cast)l->key);	\
		sep = ", ";						\
	}								\
} while (0)
	ONE(max_recipients, "%lu", unsigned long);
	ONE(max_message_size, "%llu", unsigned long long);
	ONE(max_sessions_per_client, "%lu", unsigned long);
	ONE(max_errors, "%lu", unsigned long);
	ONE(min_data_rate, "%lu", unsigned long);
#undef ONE
	fprintf(f, "%s\n", sep[0] == '\0' ? "as [proxy] / [limits]" : "");
}

static void
print_device(FILE *f, const struct config *c, const struct device_conf *d)
{
	size_t i;

	fprintf(f, "[device %s]\n  match         ", d->name);
	print_nets(f, d->match, d->nmatch);
	fprintf(f, "  upstream      ");
	for (i = 0; i < d->nroute; i++)
		fprintf(f, "%s%s", i > 0 ? " -> " : "", c->ups[d->route[i]]->name);
	fprintf(f, "\n  force_sender  %s%s\n", d->force_sender[0] ? d->force_sender :
	    "- (the device's own MAIL FROM)", d->rewrite_header_from ?
	    " (and the From: header)" : "");
	fprintf(f, "  client_auth   %s\n", d->client_auth == CLIENT_AUTH_REQUIRED ?
	    "required" : "no");
	print_limits(f, &d->lim, &c->lim);
}

static void
print_upstream(FILE *f, const struct upstream_conf *up)
{
	fprintf(f, "  %-12s  %s:%d %s%s", up->name, up->host, up->port, config_tls_str(up->tls),
	    up->verify ? "" : " (verify = no)");
	if (up->username[0] != '\0')
		fprintf(f, ", user %s, auth_mechanism = %s", up->username,
		    auth_names[up->auth_mechanism]);
	if (UPSTREAM_OAUTH2(up))
		fprintf(f, ", oauth2_flow = %s", config_flow_str(up->oauth2_flow));
	else if (up->username[0] == '\0')
		fprintf(f, ", no login of its own (the device's AUTH passes through)");
	fputc('\n', f);
}

/* Where devices connect: every address, with what TLS it asks of them. */
static void
print_listeners(FILE *f, const struct config *c)
{
	const struct listener_conf *lc;
	char addr[80];
	size_t i;

	fprintf(f, "listeners\n");
	for (i = 0; i < c->nlisten; i++) {
		lc = c->listen[i].lidx >= 0 ? c->lsts[c->listen[i].lidx] : NULL;
		snprintf(addr, sizeof(addr), strchr(c->listen[i].host, ':') ? "[%s]:%d" : "%s:%d",
		    c->listen[i].host, c->listen[i].port);
		fprintf(f, "  %-20s  ", addr);
		if (lc == NULL) {
			fprintf(f, "[proxy] listen, plaintext\n");
			continue;
		}
		fprintf(f, "[listener %s] ", lc->name);
		if (lc->tls == LTLS_NONE)
			fprintf(f, "plaintext");
		else
			fprintf(f, "%s, tls_profile = %s%s", config_ltls_str(lc->tls),
			    config_profile_str(lc->profile), lc->require_tls ?
			    ", require_tls" : "");
		if (lc->proxy_protocol != 0)
			fprintf(f, ", PROXY v%d from ", lc->proxy_protocol);
		if (lc->proxy_protocol != 0)
			print_nets(f, lc->proxy_from, lc->nproxy_from);
		else
			fprintf(f, "%s\n", lc->transparent ? ", transparent" : "");
	}
}

/* Intercepted traffic: destination -> upstream, most specific first as written. */
static void
print_intercepts(FILE *f, const struct config *c)
{
	const struct intercept_conf *ic;
	char net[INET6_ADDRSTRLEN + 8], where[80];
	size_t i;

	if (c->nicps == 0)
		return;
	fprintf(f, "intercepts\n");
	for (i = 0; i < c->nicps; i++) {
		ic = c->icps[i];
		if (inet_ntop(ic->net.family, ic->net.addr, net, sizeof(net)) == NULL)
			net[0] = '\0';
		if (ic->port != 0)
			snprintf(where, sizeof(where), ic->net.family == AF_INET6 ? "[%s/%d]:%d" :
			    "%s/%d:%d", net, ic->net.bits, ic->port);
		else
			snprintf(where, sizeof(where), "%s/%d", net, ic->net.bits);
		fprintf(f, "  %-20s  [intercept %s] -> %s", where, ic->name, ic->upstream < 0 ?
		    "original" : c->ups[ic->upstream]->name);
		if (ic->upstream < 0)
			fprintf(f, ", tls_policy = %s", ic->tls_policy == TLS_POLICY_REQUIRE ?
			    "require" : "opportunistic");
		fputc('\n', f);
	}
}

void
conftable_print(FILE *f, const struct config *c)
{
	size_t i;

	for (i = 0; i < c->ndevs; i++)
		print_device(f, c, c->devs[i]);
	fprintf(f, "(no profile)\n  match         every other client allowed: ");
	print_nets(f, c->allow, c->nallow);
	fprintf(f, "  upstream      default\n");
	fprintf(f, "  force_sender  - (the device's own MAIL FROM)\n");
	fprintf(f, "  client_auth   no\n");
	fprintf(f, "  limits        bare_newline = %s, max_recipients = %lu, max_message_size = "
	    "%llu, max_sessions_per_client = %lu, max_errors = %lu, min_data_rate = %lu\n",
	    policy_names[c->lim.bare_newline], c->lim.max_recipients, c->lim.max_message_size,
	    c->lim.max_sessions_per_client, c->lim.max_errors, c->lim.min_data_rate);
	fprintf(f, "upstreams\n");
	for (i = 0; i < c->nups; i++)
		print_upstream(f, c->ups[i]);
	print_listeners(f, c);
	print_intercepts(f, c);
}
