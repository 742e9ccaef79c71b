/*
 * The configuration: inih's lines into an immutable, reference-counted struct config.
 * Owns the key table (every key, its type, bounds and default), reading the file the
 * way inih does (to say FILE:LINE, and what inih does not say: section headers, inline
 * comments), and FILE:LINE errors and warnings. The checks across keys, and loading the
 * files the config names, are confcheck.c's.
 */

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "config.h"
#include "config_int.h"
#include "tlsctx.h"
#include "tlsserver.h"
#include "users.h"

/* Debian's libinih reads lines into 200 bytes, with room for our newline and NUL. */
#define CONFIG_LINE_MAX 198


/* A K_FUNC key's setter: ${obj} is its section's object (struct config, upstream, device). */
typedef const char *(*setter)(struct config *, char *obj, const char *);

static const char *set_listen(struct config *, char *, const char *);
static const char *set_listener_listen(struct config *, char *, const char *);
static const char *set_proxy_from(struct config *, char *, const char *);
static const char *set_destination(struct config *, char *, const char *);
static const char *set_hostname(struct config *, char *, const char *);
static const char *set_allow(struct config *, char *, const char *);
static const char *set_match(struct config *, char *, const char *);
static const char *set_metrics_listen(struct config *, char *, const char *);
static const char *set_metrics_allow(struct config *, char *, const char *);
static const char *set_route(struct config *, char *, const char *);
static const char *set_pin(struct config *, char *, const char *);

/* How a key's value is read into its field. */
enum key_type {
	K_UINT,		/* unsigned, in [min, max]; or one of ${names} */
	K_BOOL,		/* yes / no (and the usual synonyms) */
	K_ENUM,		/* one of ${names}, any case */
	K_STR,		/* copied, at most the field's size - 1 */
	K_PATH,		/* K_STR with ${CREDENTIALS_DIRECTORY} expanded */
	K_FUNC,		/* its own setter: lists, names with a syntax */
};

struct key_name {
	const char	*name;
	int		 value;
};

/*
 * One row per key: where its value goes (an offset into the section's struct, so the
 * same rows can serve any number of [upstream NAME] sections) and how it is checked.
 */
struct key {
	const char	*section;
	const char	*name;
	const char	*def;
	enum key_type	 type;
	size_t		 off, size;	/* the field */
	unsigned long	 min, max;	/* K_UINT */
	const struct key_name *names;	/* K_ENUM; K_UINT: words that stand for numbers */
	const char	*hint;		/* the error text, when the type's own would not do */
	setter		 set;		/* K_FUNC */
};

/* The field, as offset and size: C() in struct config, U() an upstream's, D() a device's. */
#define C(f)		offsetof(struct config, f), sizeof(((struct config *)0)->f)
#define U(f)		offsetof(struct upstream_conf, f), sizeof(((struct upstream_conf *)0)->f)
#define D(f)		offsetof(struct device_conf, f), sizeof(((struct device_conf *)0)->f)
#define L(f)		offsetof(struct listener_conf, f), sizeof(((struct listener_conf *)0)->f)
#define I(f)		offsetof(struct intercept_conf, f), sizeof(((struct intercept_conf *)0)->f)
#define UINT(sec, key, def, f, lo, hi, hint) \
	{ sec, key, def, K_UINT, f, lo, hi, NULL, hint, NULL }
#define UINT_OR(sec, key, def, f, lo, hi, names, hint) \
	{ sec, key, def, K_UINT, f, lo, hi, names, hint, NULL }
#define ENUM(sec, key, def, f, names, hint) \
	{ sec, key, def, K_ENUM, f, 0, 0, names, hint, NULL }
#define BOOL(sec, key, def, f)	{ sec, key, def, K_BOOL, f, 0, 0, NULL, NULL, NULL }
#define STR(sec, key, def, f)	{ sec, key, def, K_STR, f, 0, 0, NULL, NULL, NULL }
#define PATH(sec, key, def, f)	{ sec, key, def, K_PATH, f, 0, 0, NULL, NULL, NULL }
#define FUNC(sec, key, def, fn)	{ sec, key, def, K_FUNC, 0, 0, 0, 0, NULL, NULL, fn }

static const struct key_name bare_newline_names[] = {
	{ "normalize", DATA_NORMALIZE }, { "reject", DATA_REJECT }, { "accept", DATA_ACCEPT },
	{ NULL, 0 }
};
static const struct key_name auto_names[] = { { "auto", 0 }, { NULL, 0 } };
static const struct key_name tls_names[] = {
	{ "starttls", UP_TLS_STARTTLS }, { "implicit", UP_TLS_IMPLICIT }, { NULL, 0 }
};
static const struct key_name min_tls_names[] = {
	{ "1.2", TLS1_2_VERSION }, { "1.3", TLS1_3_VERSION }, { NULL, 0 }
};
static const struct key_name auth_names[] = {
	{ "auto", UP_AUTH_AUTO }, { "plain", UP_AUTH_PLAIN }, { "login", UP_AUTH_LOGIN },
	{ "xoauth2", UP_AUTH_XOAUTH2 }, { "oauthbearer", UP_AUTH_OAUTHBEARER },
	{ NULL, 0 }
};
static const struct key_name flow_names[] = {
	{ "client_credentials", OAUTH2_CLIENT_CREDENTIALS }, { "refresh_token", OAUTH2_REFRESH_TOKEN },
	{ "jwt_bearer", OAUTH2_JWT_BEARER }, { "command", OAUTH2_COMMAND }, { NULL, 0 }
};
static const struct key_name client_auth_names[] = {
	{ "no", CLIENT_AUTH_NO }, { "required", CLIENT_AUTH_REQUIRED }, { NULL, 0 }
};
static const struct key_name ltls_names[] = {
	{ "none", LTLS_NONE }, { "starttls", LTLS_STARTTLS }, { "implicit", LTLS_IMPLICIT },
	{ NULL, 0 }
};
static const struct key_name profile_names[] = {
	{ "modern", TLS_PROFILE_MODERN }, { "intermediate", TLS_PROFILE_INTERMEDIATE },
	{ "legacy", TLS_PROFILE_LEGACY }, { NULL, 0 }
};
static const struct key_name proxy_protocol_names[] = {
	{ "no", 0 }, { "v1", 1 }, { "v2", 2 }, { NULL, 0 }
};
static const struct key_name tls_policy_names[] = {
	{ "require", TLS_POLICY_REQUIRE }, { "opportunistic", TLS_POLICY_OPPORTUNISTIC },
	{ NULL, 0 }
};
static const struct key_name level_names[] = {
	{ "error", L_ERROR }, { "warn", L_WARN }, { "info", L_INFO }, { "debug", L_DEBUG },
	{ NULL, 0 }
};
static const struct key_name format_names[] = {
	{ "text", LOG_TEXT }, { "json", LOG_JSON }, { NULL, 0 }
};

/* Every key, its section and its default, in one place; conf/smtp-tls-proxy.ini mirrors it. */
static const struct key keys[] = {
	FUNC("proxy", "listen", "127.0.0.1:2525, [::1]:2525", set_listen),
	FUNC("proxy", "hostname", "", set_hostname),
	FUNC("proxy", "allow", "127.0.0.0/8, ::1/128", set_allow),
	UINT("proxy", "max_sessions", "1000", C(max_sessions), 1, 1000000, NULL),
	UINT("proxy", "timeout", "300", C(timeout), 1, 86400, "expected seconds, 1..86400"),
	ENUM("proxy", "bare_newline", "normalize", C(lim.bare_newline), bare_newline_names, NULL),
	UINT_OR("proxy", "workers", "auto", C(workers), 1, 64, auto_names, NULL),
	UINT("proxy", "shutdown_timeout", "30", C(shutdown_timeout), 0, 3600,
	    "expected seconds, 0..3600"),
	UINT("proxy", "first_command_timeout", "30", C(first_command_timeout), 1, 86400,
	    "expected seconds, 1..86400"),
	PATH("proxy", "state_dir", "/var/lib/smtp-tls-proxy", C(state_dir)),
	PATH("proxy", "users_file", "", C(users_file)),
	UINT("proxy", "retry_after", "60", C(retry_after), 0, 86400,
	    "expected seconds, 0..86400 (0: never skip a failed upstream)"),
	STR("upstream", "host", "", U(host)),
	UINT("upstream", "port", "587", U(port), 1, 65535, "expected a port, 1..65535"),
	ENUM("upstream", "tls", "", U(tls), tls_names, NULL),
	STR("upstream", "server_name", "", U(server_name)),
	BOOL("upstream", "verify", "yes", U(verify)),
	PATH("upstream", "ca_file", "/etc/ssl/certs/ca-certificates.crt", U(ca_file)),
	ENUM("upstream", "min_tls", "1.2", U(min_tls), min_tls_names,
	    "expected 1.2 or 1.3 (older versions are not offered)"),
	STR("upstream", "username", "", U(username)),
	STR("upstream", "password", "", U(password)),
	PATH("upstream", "password_file", "", U(password_file)),
	ENUM("upstream", "auth_mechanism", "auto", U(auth_mechanism), auth_names, NULL),
	UINT("upstream", "connect_timeout", "30", U(connect_timeout), 1, 3600,
	    "expected seconds, 1..3600"),
	UINT("upstream", "max_connections", "100", U(max_connections), 1, 1000000, NULL),
	UINT("upstream", "auth_retry_after", "300", U(auth_retry_after), 0, 86400,
	    "expected seconds, 0..86400 (0: no back-off)"),
	STR("upstream", "tls_ciphers", "", U(tls_ciphers)),
	UINT("upstream", "reuse", REUSE_DEFAULT_S, U(reuse), 0, 1000, "expected sessions, 0..1000 (0: off)"),
	UINT("upstream", "reuse_idle", "30", U(reuse_idle), 1, 3600, "expected seconds, 1..3600"),
	UINT("upstream", "reuse_max_messages", "100", U(reuse_max_messages), 0, 1000000,
	    "expected messages (0: no limit)"),
	FUNC("upstream", "pin", "", set_pin),
	PATH("upstream", "client_cert_file", "", U(client_cert_file)),
	PATH("upstream", "client_key_file", "", U(client_key_file)),
	ENUM("upstream", "oauth2_flow", "", U(oauth2_flow), flow_names, NULL),
	STR("upstream", "oauth2_token_url", "", U(oauth2_token_url)),
	STR("upstream", "oauth2_client_id", "", U(oauth2_client_id)),
	STR("upstream", "oauth2_client_secret", "", U(oauth2_client_secret)),
	PATH("upstream", "oauth2_client_secret_file", "", U(oauth2_client_secret_file)),
	STR("upstream", "oauth2_scope", "", U(oauth2_scope)),
	PATH("upstream", "oauth2_refresh_token_file", "", U(oauth2_refresh_token_file)),
	PATH("upstream", "oauth2_key_file", "", U(oauth2_key_file)),
	STR("upstream", "oauth2_subject", "", U(oauth2_subject)),
	STR("upstream", "oauth2_token_command", "", U(oauth2_token_command)),
	STR("upstream", "oauth2_device_url", "", U(oauth2_device_url)),
	PATH("upstream", "oauth2_ca_file", "", U(oauth2_ca_file)),
	UINT("limits", "max_recipients", "100", C(lim.max_recipients), 1, 100000, NULL),
	UINT("limits", "max_message_size", "52428800", C(lim.max_message_size), 0, 4294967295UL,
	    "expected bytes, 0..4294967295 (0: the upstream's SIZE only)"),
	UINT("limits", "max_sessions_per_client", "50", C(lim.max_sessions_per_client), 1, 1000000,
	    NULL),
	UINT("limits", "max_errors", "20", C(lim.max_errors), 1, 10000, NULL),
	UINT("limits", "min_data_rate", "256", C(lim.min_data_rate), 0, 100000000,
	    "expected bytes per second (0: no minimum)"),
	FUNC("device", "match", "", set_match),
	FUNC("device", "upstream", "default", set_route),
	STR("device", "force_sender", "", D(force_sender)),
	BOOL("device", "rewrite_header_from", "no", D(rewrite_header_from)),
	ENUM("device", "client_auth", "no", D(client_auth), client_auth_names, NULL),
	/* A profile's own limits; empty: the [proxy] / [limits] value. */
	ENUM("device", "bare_newline", "", D(lim.bare_newline), bare_newline_names, NULL),
	UINT("device", "max_recipients", "", D(lim.max_recipients), 1, 100000, NULL),
	UINT("device", "max_message_size", "", D(lim.max_message_size), 0, 4294967295UL,
	    "expected bytes, 0..4294967295 (0: the upstream's SIZE only)"),
	UINT("device", "max_sessions_per_client", "", D(lim.max_sessions_per_client), 1, 1000000,
	    NULL),
	UINT("device", "max_errors", "", D(lim.max_errors), 1, 10000, NULL),
	UINT("device", "min_data_rate", "", D(lim.min_data_rate), 0, 100000000,
	    "expected bytes per second (0: no minimum)"),
	FUNC("listener", "listen", "", set_listener_listen),
	ENUM("listener", "tls", "none", L(tls), ltls_names, NULL),
	PATH("listener", "cert_file", "", L(cert_file)),
	PATH("listener", "key_file", "", L(key_file)),
	ENUM("listener", "tls_profile", "intermediate", L(profile), profile_names, NULL),
	BOOL("listener", "require_tls", "no", L(require_tls)),
	ENUM("listener", "proxy_protocol", "no", L(proxy_protocol), proxy_protocol_names, NULL),
	FUNC("listener", "proxy_from", "", set_proxy_from),
	BOOL("listener", "transparent", "no", L(transparent)),
	FUNC("intercept", "destination", "", set_destination),
	STR("intercept", "upstream", "", I(upstream_name)),
	ENUM("intercept", "tls_policy", "require", I(tls_policy), tls_policy_names, NULL),
	FUNC("metrics", "listen", "", set_metrics_listen),
	FUNC("metrics", "allow", "127.0.0.0/8, ::1/128", set_metrics_allow),
	ENUM("log", "level", "info", C(log_level), level_names, NULL),
	ENUM("log", "format", "text", C(log_format), format_names, NULL),
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(sizeof(keys) / sizeof(keys[0]) <= CONFIG_MAX_KEYS, "room for every key's line");

/* Section kinds; [upstream] and [device] also come as [upstream NAME], [device NAME]. */
static const char *sections[] = { "proxy", "upstream", "log", "limits", "device", "metrics",
    "listener", "intercept" };

static void text_add(char *, size_t, size_t *, const char *, int, const char *, const char *,
    va_list) __attribute__((format(printf, 7, 0)));

/* Append "PATH:LINE: KIND" (or "PATH: KIND"), the message and a newline; cut safely when full. */
static void
text_add(char *buf, size_t size, size_t *lenp, const char *path, int line, const char *kind,
    const char *fmt, va_list ap)
{
	int n;

	if (*lenp >= size)
		return;
	n = line > 0 ?
	    snprintf(buf + *lenp, size - *lenp, "%s:%d: %s", path, line, kind) :
	    snprintf(buf + *lenp, size - *lenp, "%s: %s", path, kind);
	if (n > 0)
		*lenp += (size_t)n;
	if (*lenp >= size)
		return;
	n = vsnprintf(buf + *lenp, size - *lenp, fmt, ap);
	if (n > 0)
		*lenp += (size_t)n;
	if (*lenp + 1 < size) {
		buf[(*lenp)++] = '\n';
		buf[*lenp] = '\0';
	} else
		*lenp = size;
}

void
config_err(struct loader *ld, int line, const char *fmt, ...)
{
	va_list ap;

	ld->nerr++;
	va_start(ap, fmt);
	text_add(ld->errs, ld->errsize, &ld->errlen, ld->path, line, "", fmt, ap);
	va_end(ap);
}

void
config_warn(struct loader *ld, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	text_add(ld->c->warnings, sizeof(ld->c->warnings), &ld->warnlen, ld->path, line,
	    "warning: ", fmt, ap);
	va_end(ap);
}

static const char *
copy(char *dst, size_t size, const char *v)
{
	if (strlen(v) >= size)
		return ("value too long");
	strcpy(dst, v);
	return (NULL);
}

/* A comma-separated list of addr:port into ${list}; NULL or why not. */
static const char *
listen_list(const char *v, struct listen_addr *list, size_t *np)
{
	char item[128];
	const char *s = v;
	int r;

	*np = 0;
	while ((r = parse_list_next(&s, item, sizeof(item))) == 1) {
		if (*np == CONFIG_MAX_LISTEN)
			return ("too many listen addresses");
		if (parse_hostport(item, list[*np].host, sizeof(list[0].host),
		    &list[*np].port) != 0)
			return ("expected addr:port or [v6addr]:port");
		list[*np].lidx = -1;
		(*np)++;
	}
	if (r < 0 || *np == 0)
		return ("expected a comma-separated list of addr:port");
	return (NULL);
}

static const char *
set_listen(struct config *c, char *obj, const char *v)
{
	(void)obj;
	return (listen_list(v, c->listen, &c->nlisten));
}

static const char *
set_listener_listen(struct config *c, char *obj, const char *v)
{
	struct listener_conf *lc = (struct listener_conf *)obj;

	(void)c;
	return (listen_list(v, lc->addrs, &lc->naddrs));
}

static const char *
set_hostname(struct config *c, char *obj, const char *v)
{
	size_t i;

	(void)obj;
	for (i = 0; v[i] != '\0'; i++)
		if (!isalnum((unsigned char)v[i]) && v[i] != '-' && v[i] != '.')
			return ("not a host name");
	return (copy(c->hostname, sizeof(c->hostname), v));
}

/* A comma-separated list of networks into ${list} (at most ${max}); NULL or why not. */
static const char *
cidr_list(const char *v, struct cidr *list, size_t max, size_t *np)
{
	char item[128];
	const char *s = v;
	int r;

	*np = 0;
	while ((r = parse_list_next(&s, item, sizeof(item))) == 1) {
		if (*np == max)
			return ("too many networks");
		if (parse_cidr(item, &list[*np]) != 0)
			return ("expected addr or addr/bits, with no bits set past the prefix");
		(*np)++;
	}
	if (r < 0)
		return ("expected a comma-separated list of networks");
	return (NULL);
}

static const char *
set_match(struct config *c, char *obj, const char *v)
{
	struct device_conf *d = (struct device_conf *)(void *)obj;
	const char *why;

	(void)c;
	if ((why = cidr_list(v, d->match, CONFIG_MAX_MATCH, &d->nmatch)) != NULL)
		return (why);
	return (d->nmatch == 0 ? "expected at least one address or network" : NULL);
}

/* The names as written; config_check resolves them once every [upstream NAME] is read. */
static const char *
set_route(struct config *c, char *obj, const char *v)
{
	struct device_conf *d = (struct device_conf *)(void *)obj;

	(void)c;
	return (copy(d->route_names, sizeof(d->route_names), v));
}

/* pin = sha256//BASE64, ...: the upstream's SPKI pins; the reason names the bad one. */
static const char *
set_pin(struct config *c, char *obj, const char *v)
{
	struct upstream_conf *up = (struct upstream_conf *)(void *)obj;
	static _Thread_local char why[200];

	(void)c;
	return (pin_parse_list(v, &up->pins, why, sizeof(why)) == 0 ? NULL : why);
}

/* One addr:port, or empty (off); numeric, checked like listen. */
static const char *
set_metrics_listen(struct config *c, char *obj, const char *v)
{
	(void)obj;
	c->metrics_on = 0;
	if (v[0] == '\0')
		return (NULL);
	if (parse_hostport(v, c->metrics_listen.host, sizeof(c->metrics_listen.host),
	    &c->metrics_listen.port) != 0)
		return ("expected addr:port or [v6addr]:port");
	c->metrics_on = 1;
	return (NULL);
}

static const char *
set_metrics_allow(struct config *c, char *obj, const char *v)
{
	(void)obj;
	return (cidr_list(v, c->metrics_allow, CONFIG_MAX_ALLOW, &c->nmetrics_allow));
}

static const char *
set_proxy_from(struct config *c, char *obj, const char *v)
{
	struct listener_conf *lc = (struct listener_conf *)obj;

	(void)c;
	lc->nproxy_from = 0;
	if (v[0] == '\0')
		return (NULL);
	return (cidr_list(v, lc->proxy_from, CONFIG_MAX_ALLOW, &lc->nproxy_from));
}

/* NET[:PORT]: "203.0.113.0/24:25", "198.51.100.7", "[2001:db8::/32]:587", "2001:db8::1". */
static const char *
set_destination(struct config *c, char *obj, const char *v)
{
	struct intercept_conf *ic = (struct intercept_conf *)obj;
	char net[128];
	const char *colon, *end;
	size_t n;

	(void)c;
	ic->port = 0;
	ic->has_net = 0;
	if (v[0] == '[') {
		if ((end = strchr(v, ']')) == NULL)
			return ("expected NET[:PORT], [V6NET]:PORT");
		n = (size_t)(end - v - 1);
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] != '\0' && colon == NULL)
			return ("expected NET[:PORT], [V6NET]:PORT");
		v++;
	} else {
		/* More than one ':' is a bare IPv6 network, without a port. */
		colon = strchr(v, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			colon = NULL;
		n = colon != NULL ? (size_t)(colon - v) : strlen(v);
	}
	if (n == 0 || n >= sizeof(net))
		return ("expected NET[:PORT], [V6NET]:PORT");
	memcpy(net, v, n);
	net[n] = '\0';
	if (parse_cidr(net, &ic->net) != 0)
		return ("expected an address or network, e.g. 203.0.113.0/24");
	if (colon != NULL) {
		unsigned long port;

		if (parse_ulong(colon + 1, 1, 65535, &port) != 0)
			return ("expected a port, 1..65535, after the ':'");
		ic->port = (int)port;
	}
	ic->has_net = 1;
	return (NULL);
}

static const char *
set_allow(struct config *c, char *obj, const char *v)
{
	(void)obj;
	return (cidr_list(v, c->allow, CONFIG_MAX_ALLOW, &c->nallow));
}


/*
 * Copy a path, expanding ${CREDENTIALS_DIRECTORY}: under systemd, LoadCredential=
 * puts secrets there and the unit cannot know the directory in advance.
 */
static const char *
copy_path(char *dst, size_t size, const char *v)
{
	static const char var[] = "${CREDENTIALS_DIRECTORY}";
	const char *at = strstr(v, var), *dir;
	int n;

	if (at == NULL)
		return (copy(dst, size, v));
	if ((dir = getenv("CREDENTIALS_DIRECTORY")) == NULL)
		return ("${CREDENTIALS_DIRECTORY} is not set (set LoadCredential= in the unit)");
	n = snprintf(dst, size, "%.*s%s%s", (int)(at - v), v, dir, at + sizeof(var) - 1);
	if (n < 0 || (size_t)n >= size)
		return ("value too long");
	return (NULL);
}

/* "expected a, b or c" / "expected auto or 1..64": what a key takes, for its error. */
static const char *
expected(const struct key *k, char *buf, size_t size)
{
	size_t i, n, len;

	if (k->hint != NULL)
		return (k->hint);
	if (k->type == K_BOOL)
		return ("expected yes or no");
	len = (size_t)snprintf(buf, size, "expected");
	for (n = 0; k->names != NULL && k->names[n].name != NULL; n++)
		;
	for (i = 0; i < n && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%s", i == 0 ? " " :
		    i + 1 == n && k->type == K_ENUM ? " or " : ", ", k->names[i].name);
	if (k->type == K_UINT && len < size)
		snprintf(buf + len, size - len, "%s%lu..%lu", n > 0 ? " or " : " ", k->min,
		    k->max);
	return (buf);
}

/* ${k}'s field in ${obj}: an int, or for K_UINT an unsigned of the field's size. */
static void
store(char *obj, const struct key *k, unsigned long v)
{
	char *field = obj + k->off;
	unsigned long long ull = v;
	int i = (int)v;

	if (k->size == sizeof(int))
		memcpy(field, &i, sizeof(i));
	else {
		assert(k->size == sizeof(ull) && k->type == K_UINT);
		memcpy(field, &ull, sizeof(ull));
	}
}

/*
 * The struct a section's keys fill: [upstream] fills the default upstream's, which is
 * what lets the same rows fill an [upstream NAME] section's own.
 */

/* Read ${v} into ${k}'s field; NULL, or why not (in ${buf} or static). */
static const char *
set_key(struct config *c, char *obj, const struct key *k, const char *v, char *buf, size_t size)
{
	const struct key_name *n;
	unsigned long u;
	int b;

	switch (k->type) {
	case K_FUNC:
		return (k->set(c, obj, v));
	case K_STR:
		return (copy(obj + k->off, k->size, v));
	case K_PATH:
		return (copy_path(obj + k->off, k->size, v));
	case K_BOOL:
		if (parse_bool(v, &b) != 0)
			return (expected(k, buf, size));
		store(obj, k, (unsigned long)b);
		return (NULL);
	case K_ENUM:
	case K_UINT:
		/* An empty value of a key without a default: decided later, from others. */
		if (v[0] == '\0' && k->def[0] == '\0')
			return (NULL);
		for (n = k->names; n != NULL && n->name != NULL; n++) {
			if (strcasecmp(v, n->name) == 0) {
				store(obj, k, (unsigned long)n->value);
				return (NULL);
			}
		}
		if (k->type == K_ENUM || parse_ulong(v, k->min, k->max, &u) != 0)
			return (expected(k, buf, size));
		store(obj, k, u);
		return (NULL);
	}
	return ("unknown key type");
}


int
config_has_control(const char *v)
{
	for (; *v != '\0'; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return (1);
	return (0);
}

/* inih keeps quotes: host = "smtp.example.com" is a host name with quotes in it. */
static int
is_quoted(const char *v)
{
	size_t n = strlen(v);

	return (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]);
}

/* Edit distance between ${a} and ${b} ignoring case, for "did you mean"; both short. */
static size_t
distance(const char *a, const char *b)
{
	size_t row[64], i, j, diag, up, nb = strlen(b);

	if (nb >= sizeof(row) / sizeof(row[0]) || strlen(a) >= sizeof(row) / sizeof(row[0]))
		return ((size_t)-1);
	for (j = 0; j <= nb; j++)
		row[j] = j;
	for (i = 1; a[i - 1] != '\0'; i++) {
		diag = row[0];
		row[0] = i;
		for (j = 1; j <= nb; j++) {
			up = row[j];
			row[j] = diag + (tolower((unsigned char)a[i - 1]) !=
			    tolower((unsigned char)b[j - 1]));
			if (up + 1 < row[j])
				row[j] = up + 1;
			if (row[j - 1] + 1 < row[j])
				row[j] = row[j - 1] + 1;
			diag = up;
		}
	}
	return (row[nb]);
}

/*
 * A section we do not know: said once, at its header (inih calls us once per key in it),
 * with the known section it most likely meant.
 */
static void
unknown_section(struct loader *ld, const char *section)
{
	const char *best = NULL;
	size_t i, d, bestd = 3;	/* two typos at most, or the hint is a guess */

	if (strcmp(section, ld->bad_section) == 0)
		return;
	snprintf(ld->bad_section, sizeof(ld->bad_section), "%s", section);
	for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		if ((d = distance(section, sections[i])) < bestd) {
			bestd = d;
			best = sections[i];
		}
	}
	config_err(ld, strcmp(section, ld->header) == 0 ? ld->header_line : ld->line,
	    "unknown section [%s]%s%s%s", section, best ? " (did you mean [" : "",
	    best ? best : "", best ? "]?)" : "");
}

/* Apply the defaults of the rows of section kind ${kind} to ${obj}. */
static void
defaults(struct config *c, const char *kind, char *obj)
{
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].section, kind) == 0 && keys[i].def[0] != '\0' &&
		    set_key(c, obj, &keys[i], keys[i].def, NULL, 0) != NULL)
			abort();	/* a default that does not parse is our bug */
}

/* A section's name: letters, digits, '-', '_', '.'; it ends up in logs and file names. */
static int
valid_name(const char *n)
{
	size_t i;

	if (n[0] == '\0' || strlen(n) >= 64 || n[0] == '.')
		return (0);
	for (i = 0; n[i] != '\0'; i++)
		if (!isalnum((unsigned char)n[i]) && strchr("-_.", n[i]) == NULL)
			return (0);
	return (1);
}

/*
 * A new [KIND NAME] object of ${size} bytes (its name the first field, as in every named
 * section's struct), with the kind's defaults, when ${have} < ${max}; NULL after an
 * error. The caller has looked for one of that name already.
 */
static char *
new_named(struct loader *ld, const char *kind, const char *name, size_t have, size_t max,
    size_t size)
{
	char *o;

	if (!valid_name(name)) {
		if (name[0] == '\0')
			config_err(ld, ld->header_line, "[%s] needs a name: [%s NAME]", kind, kind);
		else
			config_err(ld, ld->header_line, "[%s %s]: a name is letters, digits, '-', "
			    "'_' and '.', at most 63", kind, name);
		return (NULL);
	}
	if (have == max) {
		config_err(ld, ld->header_line, "more than %zu [%s NAME] sections", max, kind);
		return (NULL);
	}
	if ((o = calloc(1, size)) == NULL) {
		config_err(ld, ld->header_line, "out of memory");
		return (NULL);
	}
	defaults(ld->c, kind, o);
	snprintf(o, 64, "%s", name);
	return (o);
}

/* [upstream NAME]: found, or made with the defaults; NULL after an error. */
static struct upstream_conf *
named_upstream(struct loader *ld, const char *name)
{
	struct config *c = ld->c;
	struct upstream_conf *up;
	size_t i;

	if (name[0] == '\0')
		return (&c->up);
	for (i = 1; i < c->nups; i++)
		if (strcmp(c->ups[i]->name, name) == 0)
			return (c->ups[i]);
	if (strcmp(name, "default") == 0) {
		config_err(ld, ld->header_line, "[upstream default]: \"default\" is the name of "
		    "[upstream] itself");
		return (NULL);
	}
	if ((up = (struct upstream_conf *)new_named(ld, "upstream", name, c->nups,
	    CONFIG_MAX_UPSTREAMS, sizeof(*up))) == NULL)
		return (NULL);
	up->slot = (int)c->nups;
	up->line = ld->header_line;
	c->ups[c->nups++] = up;
	return (up);
}

/* [device NAME]: found, or made with the defaults; NULL after an error. */
static struct device_conf *
named_device(struct loader *ld, const char *name)
{
	struct config *c = ld->c;
	struct device_conf *d;
	size_t i;

	for (i = 0; i < c->ndevs; i++)
		if (strcmp(c->devs[i]->name, name) == 0)
			return (c->devs[i]);
	if ((d = (struct device_conf *)new_named(ld, "device", name, c->ndevs,
	    CONFIG_MAX_DEVICES, sizeof(*d))) == NULL)
		return (NULL);
	d->line = ld->header_line;
	c->devs[c->ndevs++] = d;
	return (d);
}

/* [intercept NAME]: found, or made with the defaults; NULL after an error. */
static struct intercept_conf *
named_intercept(struct loader *ld, const char *name)
{
	struct config *c = ld->c;
	struct intercept_conf *ic;
	size_t i;

	for (i = 0; i < c->nicps; i++)
		if (strcmp(c->icps[i]->name, name) == 0)
			return (c->icps[i]);
	if ((ic = (struct intercept_conf *)new_named(ld, "intercept", name, c->nicps,
	    CONFIG_MAX_INTERCEPTS, sizeof(*ic))) == NULL)
		return (NULL);
	ic->line = ld->header_line;
	c->icps[c->nicps++] = ic;
	return (ic);
}

/* [listener NAME]: found, or made with the defaults; NULL after an error. */
static struct listener_conf *
named_listener(struct loader *ld, const char *name)
{
	struct config *c = ld->c;
	struct listener_conf *lc;
	size_t i;

	for (i = 0; i < c->nlsts; i++)
		if (strcmp(c->lsts[i]->name, name) == 0)
			return (c->lsts[i]);
	if ((lc = (struct listener_conf *)new_named(ld, "listener", name, c->nlsts,
	    CONFIG_MAX_LISTENERS, sizeof(*lc))) == NULL)
		return (NULL);
	lc->line = ld->header_line;
	c->lsts[c->nlsts++] = lc;
	return (lc);
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct loader *ld = user;
	const char *why, *oname;
	char buf[200], kind[16], *obj;
	int *lines = ld->seen;
	size_t i, n;
	int known = 0;

	ld->prev_key = 1;
	/* "upstream backup" is kind "upstream", name "backup". */
	n = strcspn(section, " \t");
	snprintf(kind, sizeof(kind), "%.*s", (int)(n < sizeof(kind) ? n : sizeof(kind) - 1),
	    section);
	for (oname = section + n; *oname == ' ' || *oname == '\t'; oname++)
		;
	for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		if (strcmp(kind, sections[i]) == 0) {
			known = 1;
			if (ld->section_line[i] == 0 && oname[0] == '\0')
				ld->section_line[i] = ld->line;
		}
	}
	if (!known || (oname[0] != '\0' && strcmp(kind, "upstream") != 0 &&
	    strcmp(kind, "device") != 0 && strcmp(kind, "listener") != 0 &&
	    strcmp(kind, "intercept") != 0)) {
		unknown_section(ld, section);
		return (1);
	}
	obj = (char *)ld->c;
	if (strcmp(kind, "upstream") == 0) {
		struct upstream_conf *up = named_upstream(ld, oname);

		if (up == NULL)
			return (1);
		obj = (char *)up;
		lines = up->keyline;
	} else if (strcmp(kind, "device") == 0) {
		struct device_conf *d;

		/* A bare [device] was reported at its header, once. */
		if (oname[0] == '\0' || (d = named_device(ld, oname)) == NULL)
			return (1);
		obj = (char *)d;
		lines = d->keyline;
	} else if (strcmp(kind, "listener") == 0) {
		struct listener_conf *lc;

		if (oname[0] == '\0' || (lc = named_listener(ld, oname)) == NULL)
			return (1);
		obj = (char *)lc;
		lines = lc->keyline;
	} else if (strcmp(kind, "intercept") == 0) {
		struct intercept_conf *ic;

		if (oname[0] == '\0' || (ic = named_intercept(ld, oname)) == NULL)
			return (1);
		obj = (char *)ic;
		lines = ic->keyline;
	}
	for (i = 0; i < NKEYS; i++) {
		if (strcmp(keys[i].section, kind) != 0 || strcmp(keys[i].name, name) != 0)
			continue;
		if (lines[i]) {
			config_err(ld, ld->line, "%s is already set on line %d", name, lines[i]);
			return (1);
		}
		lines[i] = ld->line;
		if (config_has_control(value)) {
			config_err(ld, ld->line, "%s: control characters in the value", name);
			return (1);
		}
		if (is_quoted(value))
			config_warn(ld, ld->line, "%s: value is quoted; quotes are kept as part of "
			    "the value", name);
		if (ld->comment_cut && strcmp(name, "password") == 0)
			config_warn(ld, ld->line, "password: a ';' after a space or tab starts a "
			    "comment, so the password was read only up to it; put a password "
			    "with \" ;\" in it in password_file");
		if ((why = set_key(ld->c, obj, &keys[i], value, buf, sizeof(buf))) != NULL)
			config_err(ld, ld->line, "%s = %s: %s", name,
			    strcmp(name, "password") == 0 ||
			    strcmp(name, "oauth2_client_secret") == 0 ? "********" : value, why);
		return (1);
	}
	config_err(ld, ld->line, "unknown key '%s' in [%s]", name, section);
	return (1);
}

/*
 * Look at a line before inih does: note a [section] header (its name and line, which
 * inih does not pass on) and whether an inline comment cuts the value short. Mirrors
 * inih r55: ';' after a space or tab starts a comment, an indented line after a key
 * continues that key's value.
 */
static void
look_ahead(struct loader *ld, const char *line)
{
	const char *s = line, *end;
	size_t i, n;

	if (ld->line == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;		/* inih skips a UTF-8 BOM */
	ld->comment_cut = 0;
	if ((end = strpbrk(s, "=:")) != NULL)
		for (end++; end[0] != '\0' && end[1] != '\0'; end++)
			if ((end[0] == ' ' || end[0] == '\t') && end[1] == ';')
				ld->comment_cut = 1;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s != '[' || (s > line && ld->prev_key) || (end = strchr(s, ']')) == NULL)
		return;
	n = (size_t)(end - s - 1);
	ld->header_line = ld->line;
	ld->prev_key = 0;
	if (n >= sizeof(ld->header)) {
		/* inih cuts it there: two long names could become one section. */
		config_err(ld, ld->line, "[%.*s...]: a section header is at most %zu characters",
		    20, s + 1, sizeof(ld->header) - 1);
		n = sizeof(ld->header) - 1;
	}
	memcpy(ld->header, s + 1, n);
	ld->header[n] = '\0';
	for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		if (strcmp(ld->header, sections[i]) == 0 && ld->section_line[i] == 0)
			ld->section_line[i] = ld->line;
	/*
	 * A profile or upstream exists from its header on, keys or not: inih never calls
	 * back for an empty section, and [device scanner] with nothing under it (a forgotten
	 * match) must not pass -t unnoticed.
	 */
	if (strncmp(ld->header, "device", 6) == 0 && (ld->header[6] == ' ' ||
	    ld->header[6] == '\t' || ld->header[6] == '\0'))
		(void)named_device(ld, ld->header + 6 + strspn(ld->header + 6, " \t"));
	else if (strncmp(ld->header, "listener", 8) == 0 && (ld->header[8] == ' ' ||
	    ld->header[8] == '\t' || ld->header[8] == '\0'))
		(void)named_listener(ld, ld->header + 8 + strspn(ld->header + 8, " \t"));
	else if (strncmp(ld->header, "intercept", 9) == 0 && (ld->header[9] == ' ' ||
	    ld->header[9] == '\t' || ld->header[9] == '\0'))
		(void)named_intercept(ld, ld->header + 9 + strspn(ld->header + 9, " \t"));
	else if (strncmp(ld->header, "upstream", 8) == 0 && (ld->header[8] == ' ' ||
	    ld->header[8] == '\t') && ld->header[8 + strspn(ld->header + 8, " \t")] != '\0')
		(void)named_upstream(ld, ld->header + 8 + strspn(ld->header + 8, " \t"));
}

/* inih's reader: counts lines so every message can say FILE:LINE. */
static char *
reader(char *str, int num, void *stream)
{
	struct loader *ld = stream;
	char line[4096];
	size_t n;

	if (fgets(line, sizeof(line), ld->f) == NULL)
		return (NULL);
	ld->line++;
	n = strlen(line);
	if (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	else if (!feof(ld->f)) {
		int ch;

		while ((ch = fgetc(ld->f)) != EOF && ch != '\n')
			;
		n = sizeof(line);
	}
	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';
	if (n > CONFIG_LINE_MAX || n + 2 > (size_t)num) {
		config_err(ld, ld->line, "line longer than %d characters", CONFIG_LINE_MAX);
		line[0] = '\0';
		n = 0;
	}
	look_ahead(ld, line);
	memcpy(str, line, n);
	str[n] = '\n';
	str[n + 1] = '\0';
	OPENSSL_cleanse(line, sizeof(line));
	return (str);
}

int
config_key_line(const struct loader *ld, const char *name)
{
	size_t i;

	/* The section being checked (an upstream, a device) first, then the global ones. */
	for (i = 0; ld->cur_kind != NULL && i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0 && strcmp(keys[i].section, ld->cur_kind) == 0)
			return (ld->cur_lines[i]);
	for (i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0 && strcmp(keys[i].section, "upstream") != 0 &&
		    strcmp(keys[i].section, "device") != 0 && strcmp(keys[i].section, "listener") != 0 &&
		    strcmp(keys[i].section, "intercept") != 0)
			return (ld->seen[i]);
	return (0);
}


struct config *
config_load(const char *path, char *errs, size_t errsize)
{
	return (config_load_flags(path, 0, errs, errsize));
}

struct config *
config_load_flags(const char *path, int flags, char *errs, size_t errsize)
{
	struct loader ld;
	struct config *c;
	int rc;

	memset(&ld, 0, sizeof(ld));
	ld.flags = flags;
	ld.path = path;
	ld.errs = errs;
	ld.errsize = errsize;
	errs[0] = '\0';
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(errs, errsize, "%s: out of memory\n", path);
		return (NULL);
	}
	c->refs = 1;
	c->ups[0] = &c->up;
	c->nups = 1;
	snprintf(c->path, sizeof(c->path), "%s", path);
	ld.c = c;
	defaults(c, "proxy", (char *)c);
	defaults(c, "log", (char *)c);
	defaults(c, "limits", (char *)c);
	defaults(c, "metrics", (char *)c);
	defaults(c, "upstream", (char *)&c->up);
	snprintf(c->up.name, sizeof(c->up.name), "default");
	if ((ld.f = fopen(path, "r")) == NULL) {
		config_err(&ld, 0, "%s", strerror(errno));
		config_unref(c);
		return (NULL);
	}
	rc = ini_parse_stream(reader, &ld, handler, &ld);
	fclose(ld.f);
	if (rc > 0)
		config_err(&ld, rc, "syntax error (expected [section] or key = value)");
	else if (rc < 0)
		config_err(&ld, 0, "cannot parse");
	if (ld.nerr == 0)
		config_check(&ld);
	if (ld.nerr > 0) {
		/* After the errors, so the first line is still the first error. */
		if (ld.errlen < ld.errsize) {
			snprintf(ld.errs + ld.errlen, ld.errsize - ld.errlen, "%s", c->warnings);
			ld.errlen += strlen(ld.errs + ld.errlen);
		}
		config_unref(c);
		return (NULL);
	}
	return (c);
}

struct config *
config_ref(struct config *c)
{
	if (c != NULL)
		c->refs++;
	return (c);
}

void
config_unref(struct config *c)
{
	size_t i;

	if (c == NULL || --c->refs > 0)
		return;
	for (i = 0; i < c->nups; i++) {
		struct upstream_conf *up = c->ups[i];

		tlsctx_free(up->tlsctx);
		OPENSSL_cleanse(up->password, sizeof(up->password));
		OPENSSL_cleanse(up->oauth2_client_secret, sizeof(up->oauth2_client_secret));
		if (up->oauth2_key_pem != NULL) {
			OPENSSL_cleanse(up->oauth2_key_pem, strlen(up->oauth2_key_pem));
			free(up->oauth2_key_pem);
		}
		if (i > 0)
			free(up);
	}
	for (i = 0; i < c->ndevs; i++)
		free(c->devs[i]);
	for (i = 0; i < c->nlsts; i++) {
		tlsserver_free(c->lsts[i]->tls_ctx);
		free(c->lsts[i]);
	}
	for (i = 0; i < c->nicps; i++) {
		if (c->icps[i]->orig != NULL) {
			tlsctx_free(c->icps[i]->orig->tlsctx);
			free(c->icps[i]->orig);
		}
		free(c->icps[i]);
	}
	users_free(c->users);
	free(c);
}

void
config_wipe_oauth2(struct config *c)
{
	size_t i;

	for (i = 0; i < c->nups; i++) {
		OPENSSL_cleanse(c->ups[i]->oauth2_client_secret,
		    sizeof(c->ups[i]->oauth2_client_secret));
		if (c->ups[i]->oauth2_key_pem != NULL)
			OPENSSL_cleanse(c->ups[i]->oauth2_key_pem, strlen(c->ups[i]->oauth2_key_pem));
	}
}

struct upstream_conf *
config_upstream(const struct config *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->nups; i++)
		if (strcmp(c->ups[i]->name, name) == 0)
			return (c->ups[i]);
	return (NULL);
}

/* The name of ${v} in a NULL-ended ${names} table. */
static const char *
name_of(const struct key_name *names, int v)
{
	size_t i;

	for (i = 0; names[i].name != NULL; i++)
		if (names[i].value == v)
			return (names[i].name);
	return ("?");
}

const char *
config_flow_str(enum oauth2_flow f)
{
	return (f == OAUTH2_NONE ? "none" : name_of(flow_names, (int)f));
}

const char *
config_tls_str(enum up_tls t)
{
	return (t == UP_TLS_IMPLICIT ? "implicit" : "starttls");
}

const struct listener_conf *
config_listener(const struct config *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->nlsts; i++)
		if (strcmp(c->lsts[i]->name, name) == 0)
			return (c->lsts[i]);
	return (NULL);
}


const char *
config_profile_str(enum tls_profile p)
{
	return (name_of(profile_names, (int)p));
}

const char *
config_ltls_str(enum listener_tls t)
{
	return (name_of(ltls_names, (int)t));
}
