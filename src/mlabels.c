/*
 * The fixed label values of the metrics (see mlabels.h). They follow the strings the
 * log lines use, so a dashboard and a grep over the log say the same thing.
 */
#include <string.h>

#include "mlabels.h"

const char *const mlabels_refuse[MLABELS_NREFUSE] = {
	"allow", "max_sessions", "max_sessions_per_client", "upstream_busy", "auth_backoff",
	"proxy_header", "loop", "no-intercept-rule", "other",
};

const char *const mlabels_stage[MLABELS_NSTAGE] = {
	"resolve", "connect", "tls", "greeting", "ehlo", "starttls", "ehlo-tls", "token",
	"auth", "auth-plain", "auth-login", "auth-user", "auth-pass", "auth-xoauth2",
	"auth-oauthbearer", "auth-token-error", "other",
};

const char *const mlabels_reason[MLABELS_NREASON] = {
	"resolve", "connect", "socket", "timeout", "closed", "io", "tls", "handshake",
	"verify", "response-injection", "greeting", "ehlo", "no-starttls", "starttls-refused",
	"protocol", "auth", "token", "oauth2", "max_connections", "buffer", "pin", "other",
};

const char *const mlabels_result[MLABELS_NRESULT] = {
	"ok", "tempfail", "permfail", "rejected", "aborted", "other",
};

const char *const mlabels_version[MLABELS_NVERSION] = {
	"TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1", "other",
};

const long mlabels_bucket_ms[MLABELS_NBUCKET] = {
	5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
};

size_t
mlabels_index(const char *const *table, size_t n, const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i + 1 < n; i++)
		if (strcmp(table[i], name) == 0)
			return (i);
	return (n - 1);
}
