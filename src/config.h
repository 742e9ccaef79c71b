#ifndef CONFIG_H
#define CONFIG_H

#include <limits.h>
#include <stddef.h>

#include "data.h"
#include "log.h"
#include "parse.h"

#define CONFIG_MAX_LISTEN	16
#define CONFIG_MAX_ALLOW	64

enum up_tls { UP_TLS_STARTTLS, UP_TLS_IMPLICIT };
enum up_auth { UP_AUTH_AUTO, UP_AUTH_PLAIN, UP_AUTH_LOGIN };

struct listen_addr {
	char	 host[64];
	int	 port;
};

/*
 * One upstream: a server and the credentials used there. [upstream] is the one named
 * "default"; [upstream NAME] sections will fill more of these from the same key rows.
 */
struct upstream_conf {
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
	char		 tls_ciphers[1024];	/* TLS 1.2 cipher list; "" = our default */
	struct tlsctx	*tlsctx;		/* TLS towards it, with its session cache */
};

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
	enum data_policy bare_newline;
	unsigned long	 workers;		/* event-loop processes; 0 = one per CPU */
	unsigned long	 shutdown_timeout;	/* seconds sessions get to finish on stop */
	unsigned long	 first_command_timeout;	/* seconds from our 220 to the first command */

	/* [upstream] */
	struct upstream_conf up;

	/* [limits] */
	unsigned long	 max_recipients;
	unsigned long long max_message_size;	/* bytes; 0 = only the upstream's SIZE */
	unsigned long	 max_sessions_per_client;
	unsigned long	 max_errors;
	unsigned long	 min_data_rate;		/* bytes/s after the first 30 s of DATA */

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

/**
 * config_ref(c), config_unref(c):
 * Take or drop a reference; the last one frees, wiping the password. NULL is a no-op.
 */
struct config *config_ref(struct config *c);
void config_unref(struct config *c);

/**
 * config_tls_str(t):
 * "starttls" or "implicit".
 */
const char *config_tls_str(enum up_tls t);

#endif
