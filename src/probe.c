/*
 * The probe command (see probe.h). It is its own single process: it maps its own shared
 * memory, fetches its own OAuth2 tokens (oauth2.c on its loop, asked with SIGUSR2 sent to
 * itself) and runs upstream.c's preparation with a report attached, pinned to one
 * upstream by a device profile whose route holds only that upstream.
 *
 * Per upstream:  [TOKEN: wait for the token or its failure]  ->  PREPARE  ->  QUIT
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "config.h"
#include "conn.h"
#include "log.h"
#include "oauth2.h"
#include "probe.h"
#include "probefmt.h"
#include "resolve.h"
#include "shared.h"
#include "smtp.h"
#include "upreport.h"
#include "upstream.h"

#define PROG	"smtp-tls-proxy probe"

/* One upstream being probed. */
struct probe {
	struct ev_loop	*loop;
	struct config	*cfg;
	struct upstream_conf *up;
	struct device_conf dev;		/* route = { up }: no failover */
	struct upstream_report rep;
	struct conn	*c;		/* after a successful preparation, for QUIT */
	ev_timer	 timer;
	int		 waiting_token;
	int		 done;
};

static struct probe *current;

static void
usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [-c FILE] [--json] [-v] [UPSTREAM]\n"
	    "  UPSTREAM  default for [upstream], else NAME of [upstream NAME]; none: all\n"
	    "  -c FILE   configuration (default " CONFIG_DEFAULT_PATH ")\n"
	    "  --json    the report as JSON\n"
	    "  -v        log every step on stderr (debug)\n");
}

static void
finish(struct probe *p, int ok)
{
	if (p->done)
		return;
	p->done = 1;
	ev_timer_stop(p->loop, &p->timer);
	if (p->c != NULL) {
		conn_free(p->c);
		p->c = NULL;
		/* The count of max_connections the session would have released. */
		shared_upstream_leave(p->up->slot);
	}
	upreport_end(&p->rep, ok, ev_time());
	ev_break(p->loop, EVBREAK_ONE);
}

/* The answer to QUIT, or the server going away: either way nothing was sent. */
static void
on_quit_event(struct conn *c, int ev, void *arg)
{
	struct probe *p = arg;
	struct smtp_reply r;
	const char *q;
	size_t len;

	(void)c;
	if ((q = conn_peek(p->c, &len)) != NULL && smtp_reply_parse(q, len, &r) > 0) {
		snprintf(p->rep.quit_reply, sizeof(p->rep.quit_reply), "%.*s",
		    (int)(len >= 2 ? len - 2 : len), q);
		finish(p, 1);
	} else if (ev & CONN_EV_ERROR || conn_eof(p->c)) {
		snprintf(p->rep.quit_reply, sizeof(p->rep.quit_reply), "(closed without a reply)");
		finish(p, 1);
	}
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct probe *p = w->data;

	(void)loop;
	(void)revents;
	if (p->waiting_token) {
		/* No answer from the token endpoint yet: the session waits on its own. */
		p->waiting_token = 0;
		ev_break(p->loop, EVBREAK_ONE);
		return;
	}
	snprintf(p->rep.quit_reply, sizeof(p->rep.quit_reply), "(no reply in time)");
	finish(p, 1);
}

/* upstream.c's callback: ready (log in done) or failed with the 421 a device would see. */
static void
on_ready(void *arg, struct conn *c, const struct smtp_caps *caps, const char *reply)
{
	struct probe *p = arg;

	(void)caps;
	(void)reply;
	if (c == NULL) {
		finish(p, 0);
		return;
	}
	p->c = c;
	conn_set_cb(c, on_quit_event, p);
	upreport_step(&p->rep, "quit", ev_time());
	if (conn_write(c, "QUIT\r\n", 6) != 0) {
		finish(p, 1);
		return;
	}
	ev_timer_set(&p->timer, (ev_tstamp)p->cfg->timeout, 0.);
	ev_timer_start(p->loop, &p->timer);
}

/* 1 once the token of ${up} is there, or its fetch failed. */
static int
token_settled(const struct upstream_conf *up)
{
	struct shared_token_info info;
	char tok[SHARED_TOKEN_MAX + 1];
	size_t n;

	n = shared_token_get(up->slot, up->oauth2_fp, tok, sizeof(tok), &info);
	OPENSSL_cleanse(tok, sizeof(tok));
	return (n > 0 || (info.failing && !info.fetching));
}

/* oauth2.c published a token or a failure. */
static void
on_token_news(void)
{
	upstream_token_wake();
	if (current != NULL && current->waiting_token && token_settled(current->up)) {
		current->waiting_token = 0;
		ev_timer_stop(current->loop, &current->timer);
		ev_break(current->loop, EVBREAK_ONE);
	}
}

/* A session of ours asked for a token (upstream_token_owner): oauth2.c looks. */
static void
on_usr2(struct ev_loop *l, ev_signal *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
	oauth2_poll();
}

/* Probe ${up}; 0 if a session would succeed. The report goes out in text or into ${all}. */
static int
probe_one(struct ev_loop *loop, struct config *cfg, struct upstream_conf *up, json_t *all)
{
	struct probe *p;
	struct upstream *u;
	int ok;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		fprintf(stderr, PROG ": out of memory\n");
		return (-1);
	}
	p->loop = loop;
	p->cfg = cfg;
	p->up = up;
	snprintf(p->dev.name, sizeof(p->dev.name), "probe");
	p->dev.route[0] = up->slot;
	p->dev.nroute = 1;
	p->dev.lim = cfg->lim;
	ev_timer_init(&p->timer, on_timer, 0., 0.);
	p->timer.data = p;
	current = p;
	upreport_init(&p->rep, up, ev_time());
	/* A session would find the token fetched already: wait for it, bounded. */
	if (UPSTREAM_OAUTH2(up) && !token_settled(up)) {
		p->waiting_token = 1;
		ev_timer_set(&p->timer, (ev_tstamp)cfg->timeout, 0.);
		ev_timer_start(loop, &p->timer);
		upreport_step(&p->rep, "token-fetch", ev_time());
		ev_run(loop, 0);
		ev_timer_stop(loop, &p->timer);
	}
	if ((u = upstream_start(loop, cfg, &p->dev, NULL, "probe", "probe", on_ready, p)) == NULL) {
		fprintf(stderr, PROG ": out of memory\n");
		free(p);
		return (-1);
	}
	upstream_observe(u, &p->rep);
	while (!p->done)
		ev_run(loop, 0);
	current = NULL;
	if (all != NULL)
		json_array_append_new(all, probefmt_json(&p->rep));
	else
		probefmt_text(stdout, &p->rep);
	ok = p->rep.ok;
	free(p);
	return (ok ? 0 : -1);
}

int
probe_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = CONFIG_DEFAULT_PATH;
	struct upstream_conf *one = NULL;
	struct ev_loop *loop;
	struct config *cfg;
	json_t *all = NULL;
	ev_signal usr2;
	char errs[8192];
	int ch, json = 0, verbose = 0, rc = 0;
	size_t i;

	while ((ch = getopt_long(argc, argv, "c:hv", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return (0);
		default:
			usage(stderr);
			return (2);
		}
	}
	if (optind < argc - 1) {
		usage(stderr);
		return (2);
	}
	if ((cfg = config_load(path, errs, sizeof(errs))) == NULL) {
		fputs(errs, stderr);
		return (1);
	}
	fputs(cfg->warnings, stderr);
	if (optind == argc - 1 && (one = config_upstream(cfg, argv[optind])) == NULL) {
		fprintf(stderr, PROG ": no upstream %s in %s (the unnamed [upstream] is called "
		    "default)\n", argv[optind], path);
		config_unref(cfg);
		return (1);
	}
	/* The report is the output; log lines only for -v, or our own errors. */
	log_init(verbose ? L_DEBUG : L_ERROR, LOG_TEXT);
	signal(SIGPIPE, SIG_IGN);
	if (shared_init() != 0) {
		fprintf(stderr, PROG ": cannot map shared memory\n");
		config_unref(cfg);
		return (1);
	}
	loop = EV_DEFAULT;
	if (resolve_init(loop) != 0) {
		fprintf(stderr, PROG ": cannot start the resolver\n");
		config_unref(cfg);
		return (1);
	}
	upstream_token_owner(getpid());
	ev_signal_init(&usr2, on_usr2, SIGUSR2);
	ev_signal_start(loop, &usr2);
	oauth2_configure(loop, cfg, on_token_news);
	if (json && (all = json_array()) == NULL)
		rc = 1;
	for (i = 0; i < cfg->nups; i++) {
		if (one != NULL && cfg->ups[i] != one)
			continue;
		if (!json && one == NULL && i > 0)
			fputc('\n', stdout);
		if (probe_one(loop, cfg, cfg->ups[i], all) != 0)
			rc = 1;
	}
	if (all != NULL) {
		json_t *doc = json_pack("{s:b, s:o}", "ok", rc == 0, "upstreams", all);

		if (doc == NULL || json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) != 0)
			rc = 1;
		fputc('\n', stdout);
		json_decref(doc);
	}
	fflush(stdout);
	oauth2_shutdown();
	resolve_shutdown();
	ev_signal_stop(loop, &usr2);
	config_unref(cfg);
	return (rc);
}
