/*
 * The [listener NAME] sections, checked once every section is read: their addresses
 * join [proxy] listen (each marked with its listener), their TLS settings agree, and
 * their certificate and key load, match and have not expired, so -t and a reload prove
 * what a device will be shown.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "config_int.h"
#include "tlsserver.h"

#define LINE(k)	config_key_line(ld, k)

/* Warn this long before a listener's certificate expires. */
#define EXPIRY_WARN_DAYS 30

static void
check_expiry(struct loader *ld, const struct listener_conf *lc, time_t not_after)
{
	char date[32];
	struct tm tm;
	time_t now = time(NULL);

	if (not_after == 0)
		return;
	gmtime_r(&not_after, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", &tm);
	if (not_after <= now)
		config_err(ld, LINE("cert_file"), "[listener %s] cert_file %s: the certificate "
		    "expired on %s", lc->name, lc->cert_file, date);
	else if (not_after - now < EXPIRY_WARN_DAYS * 86400L)
		config_warn(ld, LINE("cert_file"), "[listener %s] cert_file %s: the certificate "
		    "expires on %s, in %ld days", lc->name, lc->cert_file, date,
		    (long)((not_after - now) / 86400));
}

static void
check_tls(struct loader *ld, struct listener_conf *lc)
{
	char why[600];
	time_t not_after;

	if (lc->tls == LTLS_NONE) {
		if (lc->require_tls)
			config_err(ld, LINE("require_tls"), "[listener %s] require_tls needs "
			    "tls = starttls", lc->name);
		if (lc->cert_file[0] != '\0' || lc->key_file[0] != '\0' || LINE("tls_profile"))
			config_warn(ld, LINE("cert_file") ? LINE("cert_file") : LINE("key_file") ?
			    LINE("key_file") : LINE("tls_profile"), "[listener %s] tls = none: "
			    "cert_file, key_file and tls_profile are not used", lc->name);
		return;
	}
	if (lc->require_tls && lc->tls == LTLS_IMPLICIT)
		config_warn(ld, LINE("require_tls"), "[listener %s] require_tls: with tls = "
		    "implicit every session is TLS already", lc->name);
	if (lc->cert_file[0] == '\0' || lc->key_file[0] == '\0') {
		config_err(ld, lc->line, "[listener %s] tls = %s needs cert_file and key_file",
		    lc->name, config_ltls_str(lc->tls));
		return;
	}
	if ((lc->tls_ctx = tlsserver_new(lc->profile, lc->cert_file, lc->key_file, &not_after,
	    why, sizeof(why))) == NULL) {
		config_err(ld, strncmp(why, "key_file", 8) == 0 ? LINE("key_file") :
		    LINE("cert_file"), "[listener %s] %s", lc->name, why);
		return;
	}
	check_expiry(ld, lc, not_after);
}

static void
check_proxy_protocol(struct loader *ld, const struct listener_conf *lc)
{
	if (lc->proxy_protocol != 0 && lc->nproxy_from == 0)
		config_err(ld, LINE("proxy_protocol"), "[listener %s] proxy_protocol = v%d needs "
		    "proxy_from: the balancers allowed to send the header (anyone else could "
		    "claim any client address)", lc->name, lc->proxy_protocol);
	else if (lc->proxy_protocol != 0 && lc->transparent)
		config_err(ld, LINE("transparent"), "[listener %s] transparent and proxy_protocol "
		    "cannot be combined: the original destination is this socket's, not the "
		    "balancer's", lc->name);
	else if (lc->proxy_protocol == 0 && lc->nproxy_from > 0)
		config_warn(ld, LINE("proxy_from"), "[listener %s] proxy_from is set but "
		    "proxy_protocol = no: not used", lc->name);
}

/* Add ${lc}'s addresses to listen[]; a fixed port may be bound once in the whole file. */
static void
join_listen(struct loader *ld, struct listener_conf *lc, int lidx)
{
	struct config *c = ld->c;
	size_t i, j;

	for (i = 0; i < lc->naddrs; i++) {
		for (j = 0; j < c->nlisten && lc->addrs[i].port != 0; j++) {
			if (strcmp(c->listen[j].host, lc->addrs[i].host) != 0 ||
			    c->listen[j].port != lc->addrs[i].port)
				continue;
			config_err(ld, LINE("listen"), "[listener %s] listen %s:%d: also in %s%s%s",
			    lc->name, lc->addrs[i].host, lc->addrs[i].port,
			    c->listen[j].lidx < 0 ? "[proxy] listen" : "[listener ",
			    c->listen[j].lidx < 0 ? "" : c->lsts[c->listen[j].lidx]->name,
			    c->listen[j].lidx < 0 ? "" : "]");
			return;
		}
		if (c->nlisten == CONFIG_MAX_LISTEN) {
			config_err(ld, LINE("listen"), "more than %d listen addresses in all",
			    CONFIG_MAX_LISTEN);
			return;
		}
		c->listen[c->nlisten] = lc->addrs[i];
		c->listen[c->nlisten].lidx = lidx;
		c->nlisten++;
	}
}

void
config_check_listeners(struct loader *ld)
{
	struct config *c = ld->c;
	struct listener_conf *lc;
	size_t i;

	if (c->nlsts == 0)
		return;
	/* [proxy] listen's default is for a file that names no listener at all. */
	if (!c->listen_explicit)
		c->nlisten = 0;
	c->listen_explicit = 1;
	ld->cur_kind = "listener";
	for (i = 0; i < c->nlsts; i++) {
		lc = c->lsts[i];
		ld->cur_lines = lc->keyline;
		if (lc->naddrs == 0) {
			config_err(ld, lc->line, "[listener %s] listen is required", lc->name);
			continue;
		}
		config_check_addrs(ld, lc->addrs, lc->naddrs, LINE("listen"));
		check_tls(ld, lc);
		check_proxy_protocol(ld, lc);
		join_listen(ld, lc, (int)i);
	}
	ld->cur_kind = NULL;
	ld->cur_lines = NULL;
}
