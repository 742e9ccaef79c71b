/*
 * The Prometheus text exposition of the shared counters (see expo.h). Label values
 * come from fixed tables (mlabels.c), the names kept in the mapping, the configured
 * upstream names and OpenSSL's verify error strings: never from a peer.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "expo.h"
#include "mlabels.h"

#define P	"smtp_tls_proxy_"

struct out {
	char	*p;
	size_t	 len, size;
	int	 failed;
};

static void put(struct out *, const char *, ...) __attribute__((format(printf, 2, 3)));

static void
put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	size_t need, nsize;
	char *np;
	int n;

	for (;;) {
		if (o->failed)
			return;
		va_start(ap, fmt);
		n = vsnprintf(o->p + o->len, o->size - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->failed = 1;
			return;
		}
		need = o->len + (size_t)n + 1;
		if (need <= o->size) {
			o->len += (size_t)n;
			return;
		}
		for (nsize = o->size * 2; nsize < need; nsize *= 2)
			;
		if ((np = realloc(o->p, nsize)) == NULL) {
			o->failed = 1;
			return;
		}
		o->p = np;
		o->size = nsize;
	}
}

/* ${s} as a label value: backslash, double quote and newline escaped. */
static void
put_label(struct out *o, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			put(o, "\\%c", *s);
		else if (*s == '\n')
			put(o, "\\n");
		else
			put(o, "%c", *s);
	}
}

static void
head(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP " P "%s %s\n# TYPE " P "%s %s\n", name, help, name, type);
}

/* The name of upstream slot ${i}. */
static void
put_upstream(struct out *o, const struct expo_names *nm, int i)
{
	if (nm->upstream[i] != NULL)
		put_label(o, nm->upstream[i]);
	else
		put(o, "slot%d", i);
}

/* 1 if upstream slot ${i} is configured or has counts of its own. */
static int
slot_shown(const struct shared_metrics *m, const struct expo_names *nm, int i)
{
	return (nm->upstream[i] != NULL || m->up_attempts[i] != 0 ||
	    m->oauth2[i][0] != 0 || m->oauth2[i][1] != 0);
}

/* One counter per value of a fixed table, all shown: a rate needs the zero first. */
static void
per_table(struct out *o, const char *name, const char *label, const char *const *table,
    size_t n, const long *v)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (v[i] != 0 || i + 1 < n)
			put(o, P "%s{%s=\"%s\"} %ld\n", name, label, table[i], v[i]);
}

static void
sessions(struct out *o, const struct shared_snapshot *s)
{
	int i;

	head(o, "sessions_total", "counter", "Sessions accepted, by listener address.");
	for (i = 0; i <= SHARED_LISTENERS; i++) {
		if (i < SHARED_LISTENERS && s->listeners[i][0] == '\0')
			continue;
		if (i == SHARED_LISTENERS && s->m.listener_sessions[i] == 0)
			continue;
		put(o, P "sessions_total{listener=\"");
		put_label(o, i < SHARED_LISTENERS ? s->listeners[i] : "other");
		put(o, "\"} %ld\n", s->m.listener_sessions[i]);
	}
	head(o, "sessions_active", "gauge", "Sessions running now, over all workers.");
	put(o, P "sessions_active %ld\n", s->c.sessions);
	head(o, "sessions_refused_total", "counter",
	    "Connections refused before any upstream contact, by session.deny reason.");
	per_table(o, "sessions_refused_total", "reason", mlabels_refuse, MLABELS_NREFUSE,
	    s->m.refused);
}

static void
upstreams(struct out *o, const struct shared_snapshot *s, const struct expo_names *nm)
{
	const struct shared_metrics *m = &s->m;
	int i, st, r;

	head(o, "upstream_attempts_total", "counter",
	    "Sessions that started preparing an upstream connection, by upstream.");
	for (i = 0; i < SHARED_TOKENS; i++) {
		if (!slot_shown(m, nm, i))
			continue;
		put(o, P "upstream_attempts_total{upstream=\"");
		put_upstream(o, nm, i);
		put(o, "\"} %ld\n", m->up_attempts[i]);
	}
	head(o, "upstream_failures_total", "counter",
	    "Upstream preparations that failed, by upstream and the stage and reason of "
	    "upstream.fail.");
	for (i = 0; i < SHARED_TOKENS; i++)
		for (st = 0; st < MLABELS_NSTAGE; st++)
			for (r = 0; r < MLABELS_NREASON; r++) {
				if (m->up_fail[i][st][r] == 0)
					continue;
				put(o, P "upstream_failures_total{upstream=\"");
				put_upstream(o, nm, i);
				put(o, "\",stage=\"%s\",reason=\"%s\"} %ld\n", mlabels_stage[st],
				    mlabels_reason[r], m->up_fail[i][st][r]);
			}
	head(o, "upstream_certificate_expiry_timestamp_seconds", "gauge",
	    "notAfter of the last certificate an upstream presented, as Unix time.");
	for (i = 0; i < SHARED_TOKENS; i++) {
		if (m->cert_not_after[i] == 0)
			continue;
		put(o, P "upstream_certificate_expiry_timestamp_seconds{upstream=\"");
		put_upstream(o, nm, i);
		put(o, "\"} %ld\n", m->cert_not_after[i]);
	}
}

static const char *const sides[SHARED_NSIDES] = { "upstream", "device" };

static void
tls(struct out *o, const struct shared_snapshot *s)
{
	const struct shared_metrics *m = &s->m;
	long cum;
	int side, v, c, b;

	head(o, "tls_handshakes_total", "counter",
	    "Finished TLS handshakes, by side, protocol version and cipher suite.");
	for (side = 0; side < SHARED_NSIDES; side++)
		for (v = 0; v < MLABELS_NVERSION; v++)
			for (c = 0; c <= SHARED_CIPHERS; c++) {
				if (m->tls[side][v][c] == 0)
					continue;
				put(o, P "tls_handshakes_total{side=\"%s\",version=\"%s\","
				    "cipher=\"", sides[side], mlabels_version[v]);
				put_label(o, c < SHARED_CIPHERS && s->ciphers[c][0] != '\0' ?
				    s->ciphers[c] : "other");
				put(o, "\"} %ld\n", m->tls[side][v][c]);
			}
	head(o, "tls_handshake_duration_seconds", "histogram",
	    "Time from the first TLS byte to a finished handshake.");
	for (side = 0; side < SHARED_NSIDES; side++) {
		cum = 0;
		for (b = 0; b < MLABELS_NBUCKET; b++) {
			cum += m->tls_bucket[side][b];
			put(o, P "tls_handshake_duration_seconds_bucket{side=\"%s\",le=\"%g\"} "
			    "%ld\n", sides[side], (double)mlabels_bucket_ms[b] / 1000., cum);
		}
		put(o, P "tls_handshake_duration_seconds_bucket{side=\"%s\",le=\"+Inf\"} %ld\n",
		    sides[side], m->tls_count[side]);
		put(o, P "tls_handshake_duration_seconds_sum{side=\"%s\"} %.3f\n", sides[side],
		    (double)m->tls_ms[side] / 1000.);
		put(o, P "tls_handshake_duration_seconds_count{side=\"%s\"} %ld\n", sides[side],
		    m->tls_count[side]);
	}
	head(o, "tls_verify_failures_total", "counter",
	    "Peer certificates refused, by OpenSSL's verify error.");
	for (v = 0; v <= SHARED_VERIFY_CODES; v++) {
		if (m->verify_fail[v] == 0)
			continue;
		put(o, P "tls_verify_failures_total{reason=\"");
		put_label(o, v < SHARED_VERIFY_CODES ? X509_verify_cert_error_string(v) : "other");
		put(o, "\"} %ld\n", m->verify_fail[v]);
	}
}

static void
traffic(struct out *o, const struct shared_snapshot *s, const struct expo_names *nm)
{
	const struct shared_metrics *m = &s->m;
	static const char *const results[2] = { "ok", "fail" };
	int i, r;

	head(o, "messages_total", "counter", "Messages, by result of the message log line.");
	per_table(o, "messages_total", "result", mlabels_result, MLABELS_NRESULT, m->messages);
	head(o, "bytes_total", "counter",
	    "Bytes read from devices (device_to_upstream) and written to them "
	    "(upstream_to_device), counted when a session ends.");
	put(o, P "bytes_total{direction=\"device_to_upstream\"} %ld\n", m->bytes_in);
	put(o, P "bytes_total{direction=\"upstream_to_device\"} %ld\n", m->bytes_out);
	head(o, "auth_total", "counter",
	    "Logins: the proxy's own upstream logins (side=upstream) and device logins "
	    "against users_file (side=device), by result.");
	for (i = 0; i < SHARED_NAUTHS; i++)
		for (r = 0; r < 2; r++)
			put(o, P "auth_total{side=\"%s\",result=\"%s\"} %ld\n", sides[i],
			    results[r], m->auth[i][r]);
	head(o, "oauth2_token_requests_total", "counter",
	    "OAuth2 token requests of the main process, by upstream and result.");
	for (i = 0; i < SHARED_TOKENS; i++) {
		if (m->oauth2[i][0] == 0 && m->oauth2[i][1] == 0)
			continue;
		for (r = 0; r < 2; r++) {
			put(o, P "oauth2_token_requests_total{upstream=\"");
			put_upstream(o, nm, i);
			put(o, "\",result=\"%s\"} %ld\n", results[r], m->oauth2[i][r]);
		}
	}
	head(o, "oauth2_token_expiry_timestamp_seconds", "gauge",
	    "Expiry of the current OAuth2 access token of an upstream, as Unix time.");
	for (i = 0; i < SHARED_TOKENS; i++) {
		if (s->token_expiry[i] == 0)
			continue;
		put(o, P "oauth2_token_expiry_timestamp_seconds{upstream=\"");
		put_upstream(o, nm, i);
		put(o, "\"} %ld\n", s->token_expiry[i]);
	}
}

static void
process(struct out *o, const struct shared_snapshot *s)
{
	head(o, "config_generation", "gauge",
	    "The configuration now served: 1 at start, one more per accepted reload.");
	put(o, P "config_generation %ld\n", s->m.generation);
	head(o, "config_reloads_total", "counter", "Reloads (SIGHUP), by result.");
	put(o, P "config_reloads_total{result=\"ok\"} %ld\n", s->m.reloads[0]);
	put(o, P "config_reloads_total{result=\"refused\"} %ld\n", s->m.reloads[1]);
	head(o, "workers", "gauge", "Worker processes alive.");
	put(o, P "workers %ld\n", s->c.workers);
}

char *
expo_render(const struct shared_snapshot *snap, const struct expo_names *names,
    size_t *lenp)
{
	struct out o = { NULL, 0, 16384, 0 };

	if ((o.p = malloc(o.size)) == NULL)
		return (NULL);
	o.p[0] = '\0';
	sessions(&o, snap);
	upstreams(&o, snap, names);
	tls(&o, snap);
	traffic(&o, snap, names);
	process(&o, snap);
	if (o.failed) {
		free(o.p);
		return (NULL);
	}
	*lenp = o.len;
	return (o.p);
}
