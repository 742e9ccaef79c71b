#ifndef CONFIG_H
#define CONFIG_H

#include <limits.h>
#include <stddef.h>

#include "data.h"
#include "log.h"
#include "parse.h"
#include "pin.h"

#define CONFIG_DEFAULT_PATH	"/etc/smtp-tls-proxy/smtp-tls-proxy.ini"
#define CONFIG_MAX_LISTEN	16
#define CONFIG_MAX_ALLOW	64
#define CONFIG_MAX_UPSTREAMS	16	/* [upstream] and [upstream NAME]; = SHARED_TOKENS */
#define CONFIG_MAX_DEVICES	64
#define CONFIG_MAX_ROUTE	8	/* upstreams one device fails over across */
#define CONFIG_MAX_MATCH	32
#define CONFIG_MAX_KEYS		104	/* key rows */
#define CONFIG_MAX_LISTENERS	16	/* [listener NAME] sections */
#define CONFIG_MAX_INTERCEPTS	64	/* [intercept NAME] rules */

struct tlsserver;
struct users;

enum up_tls { UP_TLS_STARTTLS, UP_TLS_IMPLICIT };
/* [upstream] reuse unless set: on, once test_reuse.py and the bench proved it (issue 12). */
#define REUSE_DEFAULT		2
#define REUSE_DEFAULT_S		REUSE_STR(REUSE_DEFAULT)	/* the key table's text */
#define REUSE_STR(x)		REUSE_STR_(x)
#define REUSE_STR_(x)		#x

enum up_auth { UP_AUTH_AUTO, UP_AUTH_PLAIN, UP_AUTH_LOGIN, UP_AUTH_XOAUTH2, UP_AUTH_OAUTHBEARER };
/* Where an OAuth2 access token comes from (auth_mechanism xoauth2 / oauthbearer). */
enum oauth2_flow {
	OAUTH2_NONE, OAUTH2_CLIENT_CREDENTIALS, OAUTH2_REFRESH_TOKEN, OAUTH2_JWT_BEARER,
	OAUTH2_COMMAND
};

struct listen_addr {
	char	 host[64];
	int	 port;
	int	 lidx;		/* its [listener NAME] in cfg->lsts; -1: [proxy] listen */
};

/* How devices reach the proxy on a listener: plaintext, STARTTLS (RFC 3207) or TLS first. */
enum listener_tls { LTLS_NONE, LTLS_STARTTLS, LTLS_IMPLICIT };
/* What TLS a listener accepts from devices (tlsserver.c has what each means). */
enum tls_profile { TLS_PROFILE_MODERN, TLS_PROFILE_INTERMEDIATE, TLS_PROFILE_LEGACY };

/* A [listener NAME]: where devices connect and how. */
struct listener_conf {
	char		 name[64];
	int		 line;			/* of its section header */
	int		 keyline[CONFIG_MAX_KEYS];
	struct listen_addr addrs[CONFIG_MAX_LISTEN];
	size_t		 naddrs;
	enum listener_tls tls;
	char		 cert_file[PATH_MAX];
	char		 key_file[PATH_MAX];
	enum tls_profile profile;
	int		 require_tls;		/* starttls: no MAIL, RCPT, DATA, AUTH before it */
	int		 proxy_protocol;	/* 0: none; 1 or 2: the PROXY header version */
	int		 transparent;		/* the upstream by the original destination */
	struct cidr	 proxy_from[CONFIG_MAX_ALLOW];	/* balancers allowed to send it */
	size_t		 nproxy_from;
	struct tlsserver *tls_ctx;		/* loaded with the config; NULL for tls = none */
};

/*
 * One upstream: a server and the credentials used there. [upstream] is the one named
 * "default"; [upstream NAME] sections will fill more of these from the same key rows.
 */
struct upstream_conf {
	char		 name[64];		/* "default" for [upstream] */
	int		 slot;			/* its index in cfg->ups: the shared slot */
	int		 line;			/* of its section header; 0 = none */
	int		 keyline[CONFIG_MAX_KEYS];	/* line each key was set on; 0 = default */
	char		 host[256];
	int		 port;
	enum up_tls	 tls;
	char		 server_name[256];
	int		 verify;
	char		 ca_file[PATH_MAX];
	int		 min_tls;		/* TLS1_2_VERSION ... */
	char		 username[256];
	char		 password[512];		/* wiped on free */
	char		 password_file[PATH_MAX];
	enum up_auth	 auth_mechanism;
	unsigned long	 connect_timeout;	/* seconds: connect -> ready, whole preparation */
	unsigned long	 max_connections;	/* upstream sessions held at once, all workers */
	unsigned long	 auth_retry_after;	/* seconds of 421 after our login was refused */
	unsigned long	 reuse;			/* prepared sessions kept per worker; 0: off */
	unsigned long	 reuse_idle;		/* seconds one is kept unused */
	unsigned long	 reuse_max_messages;	/* messages before one is closed; 0: no limit */
	char		 tls_ciphers[1024];	/* TLS 1.2 cipher list; "" = our default */
	struct pinset	 pins;			/* SPKI pins; none = verification alone */
	char		 client_cert_file[PATH_MAX];	/* "" = we present no certificate */
	char		 client_key_file[PATH_MAX];
	struct tlsctx	*tlsctx;		/* TLS towards it, with its session cache */
	/* An [intercept] rule's "original": host and port are each session's own. */
	int		 original;
	int		 opportunistic;		/* original + tls_policy = opportunistic */

	/* OAuth2: how the proxy gets the access token it logs in with. */
	enum oauth2_flow oauth2_flow;
	char		 oauth2_token_url[256];
	char		 oauth2_client_id[256];
	char		 oauth2_client_secret[512];	/* wiped on free; or read from the file */
	char		 oauth2_client_secret_file[PATH_MAX];
	char		 oauth2_scope[256];
	char		 oauth2_refresh_token_file[PATH_MAX];
	char		 oauth2_key_file[PATH_MAX];
	char		 oauth2_subject[256];		/* jwt_bearer; "" = username */
	char		 oauth2_token_command[256];
	char		 oauth2_device_url[256];
	char		 oauth2_ca_file[PATH_MAX];	/* "" = the system bundle */
	/* Read from oauth2_key_file (jwt_bearer) when the config is loaded. */
	char		 oauth2_key_email[256];
	char		 oauth2_key_token_uri[256];
	char		*oauth2_key_pem;		/* the private key; wiped and freed */
	/* Names these settings: a token is kept across a reload only while it is the same. */
	unsigned long long oauth2_fp;
};

/*
 * What a device profile may set for its devices only; [proxy] bare_newline and [limits]
 * for every other client.
 */
struct limits {
	enum data_policy bare_newline;
	unsigned long	 max_recipients;
	unsigned long long max_message_size;	/* bytes; 0 = only the upstream's SIZE */
	unsigned long	 max_sessions_per_client;
	unsigned long	 max_errors;
	unsigned long	 min_data_rate;		/* bytes/s after the first 30 s of DATA */
};

enum client_auth { CLIENT_AUTH_NO, CLIENT_AUTH_REQUIRED };

/* A [device NAME] profile: who (by source network) and what they get. */
struct device_conf {
	char		 name[64];
	int		 line;			/* of its section header */
	int		 keyline[CONFIG_MAX_KEYS];
	struct cidr	 match[CONFIG_MAX_MATCH];
	size_t		 nmatch;
	char		 route_names[200];	/* "upstream =" as written; resolved into route */
	int		 route[CONFIG_MAX_ROUTE];	/* indices into cfg->ups, in failover order */
	size_t		 nroute;
	char		 force_sender[320];	/* "" = the device's own MAIL FROM */
	int		 rewrite_header_from;
	enum client_auth client_auth;
	struct limits	 lim;			/* the global ones, with this profile's overrides */
};

enum tls_policy { TLS_POLICY_REQUIRE, TLS_POLICY_OPPORTUNISTIC };

/* An [intercept NAME] rule: intercepted traffic to ${net}[:${port}] goes to an upstream. */
struct intercept_conf {
	char		 name[64];
	int		 line;
	int		 keyline[CONFIG_MAX_KEYS];
	struct cidr	 net;
	int		 has_net;
	int		 port;			/* 0: any port */
	char		 upstream_name[64];	/* as written: NAME or "original" */
	int		 upstream;		/* index into cfg->ups; -1: original */
	enum tls_policy	 tls_policy;
	struct upstream_conf *orig;		/* "original": [upstream]'s TLS settings */
};

/* 1 if ${up} logs in with an OAuth2 token (auth_mechanism xoauth2 or oauthbearer). */
#define UPSTREAM_OAUTH2(up) \
	((up)->auth_mechanism == UP_AUTH_XOAUTH2 || (up)->auth_mechanism == UP_AUTH_OAUTHBEARER)

/*
 * A loaded configuration. Immutable once config_load() returns and shared by
 * reference: a session keeps the one it started with across a reload.
 */
struct config {
	int		 refs;
	char		 path[PATH_MAX];

	/* [proxy] */
	struct listen_addr listen[CONFIG_MAX_LISTEN];
	size_t		 nlisten;
	int		 listen_explicit;	/* set in the file, not the default */
	char		 hostname[256];
	struct cidr	 allow[CONFIG_MAX_ALLOW];
	size_t		 nallow;
	unsigned long	 max_sessions;
	unsigned long	 timeout;		/* seconds, each wait */
	unsigned long	 workers;		/* event-loop processes; 0 = one per CPU */
	unsigned long	 shutdown_timeout;	/* seconds sessions get to finish on stop */
	unsigned long	 first_command_timeout;	/* seconds from our 220 to the first command */
	char		 state_dir[PATH_MAX];	/* what the proxy keeps: rotated refresh tokens */
	char		 users_file[PATH_MAX];	/* name:crypt-hash lines, for client_auth */
	struct users	*users;			/* users_file as loaded; NULL: none */
	unsigned long	 retry_after;		/* seconds a failed upstream is skipped */

	/* [upstream] is ups[0] ("default"); [upstream NAME] the others, in file order. */
	struct upstream_conf up;
	struct upstream_conf *ups[CONFIG_MAX_UPSTREAMS];
	size_t		 nups;

	/* [device NAME] */
	struct device_conf *devs[CONFIG_MAX_DEVICES];
	size_t		 ndevs;

	/* [listener NAME]; their addresses are also in listen[], marked with lidx */
	struct listener_conf *lsts[CONFIG_MAX_LISTENERS];
	size_t		 nlsts;

	/* [intercept NAME], for transparent listeners */
	struct intercept_conf *icps[CONFIG_MAX_INTERCEPTS];
	size_t		 nicps;

	/* [proxy] bare_newline and [limits]: for clients of no profile, and each one's base */
	struct limits	 lim;

	/* [metrics]: the Prometheus endpoint, off unless listen is set */
	int		 metrics_on;
	struct listen_addr metrics_listen;
	struct cidr	 metrics_allow[CONFIG_MAX_ALLOW];
	size_t		 nmetrics_allow;

	/* [log] */
	enum log_level	 log_level;
	enum log_format	 log_format;


	/* "FILE:LINE: warning: message" lines, newline-separated; "" when none. */
	char		 warnings[2048];
};

/**
 * config_load(path, errs, errsize):
 * Read and check the configuration in ${path} and load the files it names (CA,
 * password file). Return it with one reference and ${errs} empty; what loads but is
 * probably a mistake is in its ${warnings} as "FILE:LINE: warning: message" lines.
 * Or return NULL after writing "FILE:LINE: message" lines (newline-separated) into
 * ${errs}: the errors first, then the warnings. "FILE: message" when no line applies.
 */
struct config *config_load(const char *path, char *errs, size_t errsize);

/* config_load_flags(): what the configuration is loaded for. */
#define CONFIG_FOR_LOGIN	0x01	/* oauth2-login: the refresh token it is about to get
					   need not exist yet */

/**
 * config_load_flags(path, flags, errs, errsize):
 * config_load(), with ${flags} (CONFIG_FOR_LOGIN or 0) relaxing what a caller that is
 * not the daemon does not need.
 */
struct config *config_load_flags(const char *path, int flags, char *errs, size_t errsize);

/**
 * config_ref(c), config_unref(c):
 * Take or drop a reference; the last one frees, wiping the password. NULL is a no-op.
 */
struct config *config_ref(struct config *c);
void config_unref(struct config *c);

/**
 * config_upstream(c, name):
 * The upstream called ${name} ("default" is [upstream]), or NULL.
 */
struct upstream_conf *config_upstream(const struct config *c, const char *name);

/**
 * config_wipe_oauth2(c):
 * Wipe the OAuth2 client secret and private key in ${c}: a worker logs in with tokens
 * the main process fetched and never needs them.
 */
void config_wipe_oauth2(struct config *c);

/**
 * config_listener(c, name):
 * The [listener ${name}] of ${c}, or NULL.
 */
const struct listener_conf *config_listener(const struct config *c, const char *name);

/**
 * config_profile_str(p), config_ltls_str(t):
 * "modern", "intermediate", "legacy"; "none", "starttls", "implicit".
 */
const char *config_profile_str(enum tls_profile p);
const char *config_ltls_str(enum listener_tls t);

/**
 * config_tls_str(t):
 * "starttls" or "implicit".
 */
const char *config_tls_str(enum up_tls t);

/**
 * config_flow_str(f):
 * "client_credentials", "refresh_token", "jwt_bearer", "command" or "none".
 */
const char *config_flow_str(enum oauth2_flow f);

#endif
