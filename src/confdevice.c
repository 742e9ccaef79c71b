/*
 * The [device NAME] profiles, checked once every section is read: each selects clients
 * (match, inside allow, never tied with another profile), names upstreams that exist,
 * and inherits the [proxy] / [limits] values it does not set itself.
 */
#include <sys/socket.h>
#include <arpa/inet.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "config_int.h"
#include "users.h"

#define LINE(k)	config_key_line(ld, k)

static const char *
cidr_str(const struct cidr *n, char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN] = "?";

	inet_ntop(n->family, n->addr, a, sizeof(a));
	snprintf(buf, size, "%s/%d", a, n->bits);
	return (buf);
}

/* "upstream = a, b": names of upstreams that exist, each once, in failover order. */
static void
resolve_route(struct loader *ld, struct device_conf *d)
{
	struct upstream_conf *up;
	const char *s = d->route_names;
	char item[80];
	size_t i;
	int r;

	d->nroute = 0;
	while ((r = parse_list_next(&s, item, sizeof(item))) == 1) {
		if ((up = config_upstream(ld->c, item)) == NULL) {
			config_err(ld, LINE("upstream"), "[device %s] upstream %s: no such upstream "
			    "(\"default\" is [upstream], others are [upstream NAME])", d->name, item);
			continue;
		}
		for (i = 0; i < d->nroute; i++)
			if (d->route[i] == up->slot)
				config_err(ld, LINE("upstream"), "[device %s] upstream %s is listed twice",
				    d->name, item);
		if (d->nroute == CONFIG_MAX_ROUTE) {
			config_err(ld, LINE("upstream"), "[device %s] more than %d upstreams",
			    d->name, CONFIG_MAX_ROUTE);
			return;
		}
		d->route[d->nroute++] = up->slot;
	}
	if (r < 0 || d->nroute == 0)
		config_err(ld, LINE("upstream"), "[device %s] upstream: expected a comma-separated "
		    "list of upstream names", d->name);
}

/* The limits it does not set are the global ones. */
static void
inherit(struct loader *ld, struct device_conf *d)
{
	const struct limits *g = &ld->c->lim;

	if (!LINE("bare_newline"))
		d->lim.bare_newline = g->bare_newline;
	if (!LINE("max_recipients"))
		d->lim.max_recipients = g->max_recipients;
	if (!LINE("max_message_size"))
		d->lim.max_message_size = g->max_message_size;
	if (!LINE("max_sessions_per_client"))
		d->lim.max_sessions_per_client = g->max_sessions_per_client;
	if (!LINE("max_errors"))
		d->lim.max_errors = g->max_errors;
	if (!LINE("min_data_rate"))
		d->lim.min_data_rate = g->min_data_rate;
}

/* An envelope address: local@domain, no spaces or angle brackets, at most 254 bytes. */
static int
is_address(const char *a)
{
	const char *at = strchr(a, '@');

	return (at != NULL && at > a && at[1] != '\0' && strchr(at + 1, '@') == NULL &&
	    strpbrk(a, " \t<>\"(),;:\\[]") == NULL && strlen(a) <= 254);
}

static void
check_one(struct loader *ld, struct device_conf *d)
{
	struct config *c = ld->c;
	char buf[64];
	size_t i, j;
	int inside;

	if (d->nmatch == 0)
		config_err(ld, d->line, "[device %s] needs match (the addresses or networks of "
		    "its devices)", d->name);
	/* allow is the gate: a profile for clients that are refused anyway is a mistake. */
	for (i = 0; i < d->nmatch; i++) {
		for (j = 0, inside = 0; j < c->nallow && !inside; j++)
			inside = cidr_within(&d->match[i], &c->allow[j]);
		if (!inside)
			config_err(ld, LINE("match"), "[device %s] match %s is outside allow: those "
			    "clients are refused before any profile applies", d->name,
			    cidr_str(&d->match[i], buf, sizeof(buf)));
	}
	resolve_route(ld, d);
	if (d->force_sender[0] != '\0' && !is_address(d->force_sender))
		config_err(ld, LINE("force_sender"), "[device %s] force_sender %s: not an "
		    "address (local@domain, no angle brackets)", d->name, d->force_sender);
	if (d->rewrite_header_from && d->force_sender[0] == '\0')
		config_err(ld, LINE("rewrite_header_from"), "[device %s] rewrite_header_from "
		    "needs force_sender (the From it writes)", d->name);
	if (d->client_auth == CLIENT_AUTH_REQUIRED && c->users_file[0] == '\0')
		config_err(ld, LINE("client_auth"), "[device %s] client_auth = required needs "
		    "users_file in [proxy]", d->name);
	inherit(ld, d);
}

/* Two profiles with the very same network would tie for its addresses: refuse. */
static void
check_ties(struct loader *ld)
{
	struct config *c = ld->c;
	struct device_conf *a, *b;
	size_t i, j, k, l;
	char buf[64];

	for (i = 0; i < c->ndevs; i++) {
		for (j = i + 1; j < c->ndevs; j++) {
			a = c->devs[i];
			b = c->devs[j];
			for (k = 0; k < a->nmatch; k++)
				for (l = 0; l < b->nmatch; l++)
					if (a->match[k].bits == b->match[l].bits &&
					    cidr_within(&a->match[k], &b->match[l]))
						config_err(ld, b->line,
						    "[device %s] and [device %s] (%s:%d) both match %s: "
						    "a client there would fit both equally", b->name,
						    a->name, ld->path, a->line, cidr_str(&a->match[k],
						    buf, sizeof(buf)));
		}
	}
}

/*
 * A problem in the users file is told at the users file's own FILE:LINE; one that has
 * no line there (unreadable, too open) at the config's users_file line.
 */
static void
users_problem(void *arg, int line, int warning, const char *msg)
{
	struct loader *ld = arg;
	const char *path = ld->path;
	char text[PATH_MAX + 600];

	if (line > 0) {
		ld->path = ld->c->users_file;
		snprintf(text, sizeof(text), "%s", msg);
	} else {
		line = config_key_line(ld, "users_file");
		snprintf(text, sizeof(text), "users_file %s: %s", ld->c->users_file, msg);
	}
	if (warning)
		config_warn(ld, line, "%s", text);
	else
		config_err(ld, line, "%s", text);
	ld->path = path;
}

void
config_check_devices(struct loader *ld)
{
	struct config *c = ld->c;
	size_t i;

	ld->cur_kind = "device";
	for (i = 0; i < c->ndevs; i++) {
		ld->cur_lines = c->devs[i]->keyline;
		check_one(ld, c->devs[i]);
	}
	ld->cur_kind = NULL;
	ld->cur_lines = NULL;
	check_ties(ld);
	if (c->users_file[0] != '\0')
		c->users = users_load(c->users_file, users_problem, ld);
}
