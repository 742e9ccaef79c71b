/*
 * smtp-tls-proxy: plaintext SMTP in, verified TLS out. This file owns the life of
 * the process: command line, configuration, signals, the event loop.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/ssl.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "resolve.h"

#define VERSION "0.1.0"
#define DEFAULT_CONFIG "/etc/smtp-tls-proxy/smtp-tls-proxy.ini"
/* How long running sessions get to finish after SIGTERM. */
#define SHUTDOWN_SECONDS 30.

static struct config *cfg;
static struct listeners *listeners;
static ev_timer drain_timer;
static ev_tstamp stop_deadline;

static void
usage(FILE *f)
{
	fprintf(f, "usage: smtp-tls-proxy [-t] [-c FILE] | -V | -h\n"
	    "  -c FILE  configuration (default " DEFAULT_CONFIG ")\n"
	    "  -t       check the configuration and the files it names, then exit\n"
	    "  -V       print the version\n"
	    "  -h       this help\n");
}

static void
on_drain_check(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	if (listeners_sessions(listeners) == 0 || ev_now(loop) >= stop_deadline)
		ev_break(loop, EVBREAK_ALL);
}

static void
on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct logline l;

	(void)revents;
	log_begin(&l, L_INFO, NULL, "proxy.stop");
	log_str(&l, "signal", w->signum == SIGTERM ? "TERM" : "INT");
	log_num(&l, "sessions", (long long)listeners_sessions(listeners));
	log_end(&l);
	listeners_close(listeners);
	stop_deadline = ev_now(loop) + SHUTDOWN_SECONDS;
	ev_timer_init(&drain_timer, on_drain_check, 0., 0.1);
	ev_timer_start(loop, &drain_timer);
}

static void
on_reload(struct ev_loop *loop, ev_signal *w, int revents)
{
	char errs[4096], *line, *save = NULL;
	struct config *n;

	(void)loop;
	(void)w;
	(void)revents;
	if ((n = config_load(cfg->path, errs, sizeof(errs))) == NULL) {
		for (line = strtok_r(errs, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			log_simple(L_ERROR, "config.reload-refused", line);
		return;
	}
	log_init(n->log_level, n->log_format);
	listeners_set_config(listeners, n);
	config_unref(cfg);
	cfg = n;
	log_simple(L_INFO, "config.reload", cfg->path);
}

int
main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	char errs[8192];
	int ch, check = 0;
	struct ev_loop *loop;
	ev_signal sterm, sint, shup;
	struct logline l;

	while ((ch = getopt(argc, argv, "c:thV")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'V':
			printf("smtp-tls-proxy %s (%s)\n", VERSION, OpenSSL_version(OPENSSL_VERSION));
			return (0);
		case 'h':
			usage(stdout);
			return (0);
		default:
			usage(stderr);
			return (2);
		}
	}
	if (optind != argc) {
		usage(stderr);
		return (2);
	}
	if ((cfg = config_load(path, errs, sizeof(errs))) == NULL) {
		fputs(errs, stderr);
		return (1);
	}
	if (check) {
		printf("configuration OK\n");
		config_unref(cfg);
		return (0);
	}
	log_init(cfg->log_level, cfg->log_format);
	signal(SIGPIPE, SIG_IGN);
	loop = EV_DEFAULT;
	if (resolve_init(loop) != 0)
		return (1);
	if ((listeners = listeners_open(loop, cfg)) == NULL)
		return (1);
	ev_signal_init(&sterm, on_stop, SIGTERM);
	ev_signal_init(&sint, on_stop, SIGINT);
	ev_signal_init(&shup, on_reload, SIGHUP);
	ev_signal_start(loop, &sterm);
	ev_signal_start(loop, &sint);
	ev_signal_start(loop, &shup);
	log_begin(&l, L_INFO, NULL, "proxy.start");
	log_str(&l, "version", VERSION);
	log_str(&l, "config", cfg->path);
	log_str(&l, "upstream", cfg->host);
	log_num(&l, "port", cfg->port);
	log_str(&l, "tls", config_tls_str(cfg->tls));
	log_str(&l, "verify", cfg->verify ? "yes" : "no");
	log_str(&l, "auth", cfg->username[0] ? "proxy" : "client");
	log_end(&l);
	ev_run(loop, 0);
	log_begin(&l, L_INFO, NULL, "proxy.exit");
	log_num(&l, "sessions", (long long)listeners_sessions(listeners));
	log_end(&l);
	resolve_shutdown();
	if (listeners_sessions(listeners) == 0) {
		/* Free everything so valgrind can vouch for the long-lived paths. */
		listeners_free(listeners);
		config_unref(cfg);
		ev_loop_destroy(loop);
	}
	return (0);
}
