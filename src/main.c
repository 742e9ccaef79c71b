/*
 * smtp-tls-proxy: plaintext SMTP in, verified TLS out. This file owns the life of
 * the processes: command line, configuration, signals, workers, systemd.
 *
 * The main process binds (or inherits) the listening sockets, then forks the
 * workers, each one event loop accepting on those sockets. It never touches a
 * session: it restarts workers that die, and reloads by starting a new
 * generation of workers with the new configuration while the old one drains,
 * so the sockets stay open and no connection is refused.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/ssl.h>

#include "config.h"
#include "conftable.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "oauth2.h"
#include "oauth2login.h"
#include "probe.h"
#include "resolve.h"
#include "session.h"
#include "shared.h"
#include "tlsserver.h"
#include "upcache.h"
#include "upstream.h"

#define VERSION "0.2.0"
#define MAX_WORKERS 64
/* Restarts faster than this many per 10 s mean a worker dies at start: slow down. */
#define RESTART_BURST 5

struct worker {
	pid_t		 pid;
	int		 generation;
	ev_child	 child;
};

static struct ev_loop *loop;
static struct config *cfg;
static struct listeners *listeners;
static struct worker workers[MAX_WORKERS];
static int generation;
static int stopping;
static ev_signal sig_term, sig_int, sig_hup, sig_usr2;
static ev_timer status_timer, watchdog_timer, stop_timer, restart_timer;
static double watchdog_interval;
static ev_tstamp restart_window;
static int restarts;

/* Worker-side state. */
static ev_signal w_term, w_int;
static ev_timer w_drain, w_beat;
static ev_tstamp w_deadline;
static int w_slot;
static pid_t main_pid;
static int hung_killed;

/* A worker whose loop has not beaten for this long is stuck: it is killed and replaced. */
#define STUCK_SECONDS 15.

static void spawn(int slot);

/*
 * Each session holds two descriptors; the usual soft limit of 1024 would cap a
 * worker near 500 sessions. Take what the hard limit allows and say if it is short.
 */
static void
raise_nofile(const struct config *c)
{
	struct rlimit rl;
	struct logline l;
	rlim_t want = (rlim_t)c->max_sessions * 2 + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		log_begin(&l, L_WARN, NULL, "proxy.nofile");
		log_num(&l, "limit", (long long)rl.rlim_cur);
		log_num(&l, "wanted", (long long)want);
		log_str(&l, "msg", "descriptor limit below 2 x max_sessions; raise LimitNOFILE");
		log_end(&l);
	}
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: smtp-tls-proxy [-t [-v]] [-c FILE] | -V | -h\n"
	    "       smtp-tls-proxy oauth2-login [-c FILE] UPSTREAM\n"
	    "       smtp-tls-proxy probe [-c FILE] [--json] [-v] [UPSTREAM]\n"
	    "  -c FILE  configuration (default " CONFIG_DEFAULT_PATH ")\n"
	    "  -t       check the configuration and the files it names, then exit\n"
	    "  -v       with -t: print who goes where (device profiles, upstreams)\n"
	    "  -V       print the version\n"
	    "  -h       this help\n");
}

static int
nworkers(const struct config *c)
{
	long n = c->workers;

	if (n == 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return (n > MAX_WORKERS ? MAX_WORKERS : (int)n);
}

/* --- worker ------------------------------------------------------------ */

static void
w_check(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	if (session_count() > 0 && ev_now(l) >= w_deadline) {
		/* Time is up: idle sessions get 421; unfinished messages are not delivered. */
		session_shutdown_all();
	}
	if (session_count() == 0)
		ev_break(l, EVBREAK_ALL);
}

static void
w_stop(struct ev_loop *l, ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	if (ev_is_active(&w_drain))
		return;
	/* Stop accepting (the main process keeps the sockets), finish what runs. */
	listeners_close(listeners);
	upcache_close_all();
	w_deadline = ev_now(l) + (ev_tstamp)cfg->shutdown_timeout;
	ev_timer_init(&w_drain, w_check, 0., 0.1);
	ev_timer_start(l, &w_drain);
}

/* Monotonic seconds: a wall-clock step must not make every worker look stuck. */
static long
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((long)ts.tv_sec);
}

static void
w_heartbeat(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
	shared_beat(w_slot, mono());
}

static void
worker_main(int slot)
{
	struct logline l;
	int i;

	w_slot = slot;
	/*
	 * If the main process dies outright (SIGKILL, OOM), drain and go rather than
	 * serve on unsupervised, holding the sockets a new instance needs.
	 */
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != main_pid)
		raise(SIGTERM);

	/* Forget everything of the main process's loop but the sockets. */
	ev_loop_fork(loop);
	ev_signal_stop(loop, &sig_term);
	ev_signal_stop(loop, &sig_int);
	ev_signal_stop(loop, &sig_hup);
	ev_timer_stop(loop, &status_timer);
	ev_timer_stop(loop, &watchdog_timer);
	ev_timer_stop(loop, &stop_timer);
	ev_timer_stop(loop, &restart_timer);
	for (i = 0; i < MAX_WORKERS; i++)
		if (workers[i].pid > 0)
			ev_child_stop(loop, &workers[i].child);
	/* Tokens are the main process's business; sig_usr2 stays, it now wakes sessions. */
	oauth2_forget(loop);
	config_wipe_oauth2(cfg);
	metrics_forget(loop);
	signal(SIGHUP, SIG_IGN);	/* reloads are the main process's business */
	ev_signal_init(&w_term, w_stop, SIGTERM);
	ev_signal_init(&w_int, w_stop, SIGINT);
	ev_signal_start(loop, &w_term);
	ev_signal_start(loop, &w_int);
	resolve_init(loop);
	upcache_init(loop);
	/* A login back-off belongs to one configuration: a reload starts without it. */
	shared_set_generation(generation);
	listeners_start(listeners, loop, cfg);
	ev_timer_init(&w_beat, w_heartbeat, 0., 1.);
	ev_timer_start(loop, &w_beat);
	log_begin(&l, L_INFO, NULL, "worker.start");
	log_num(&l, "pid", (long long)getpid());
	log_num(&l, "generation", generation);
	log_end(&l);
	ev_run(loop, 0);
	upcache_close_all();
	resolve_shutdown();
	listeners_free(listeners);
	config_unref(cfg);
	ev_loop_destroy(loop);
	exit(0);
}

/* --- main process -------------------------------------------------------- */

static void
status(void)
{
	struct shared_counts n;
	char msg[256];

	shared_counts(&n);
	snprintf(msg, sizeof(msg), "STATUS=sessions=%ld total=%ld messages=%ld failed=%ld "
	    "workers=%ld", n.sessions, n.sessions_total, n.messages_ok, n.messages_failed,
	    n.workers);
	notify_send(msg);
}

/* Kill a worker whose event loop stopped beating; on_child() replaces it. */
static void
check_stuck(void)
{
	struct logline lg;
	long beat;
	int i;

	for (i = 0; i < MAX_WORKERS; i++) {
		if (workers[i].pid <= 0 || workers[i].generation != generation)
			continue;
		beat = shared_beat_get(i);
		if (beat == 0 || mono() - beat < (long)STUCK_SECONDS)
			continue;
		log_begin(&lg, L_ERROR, NULL, "worker.stuck");
		log_num(&lg, "pid", (long long)workers[i].pid);
		log_num(&lg, "seconds", (long long)(mono() - beat));
		log_end(&lg);
		shared_beat_clear(i);
		kill(workers[i].pid, SIGKILL);
	}
}

/* The device ticket key every worker seals with: made here, renewed hourly. */
static void
rotate_tickets(void)
{
	static int said;

	if (tlsserver_rotate(shared_now_ms() / 1000) == 0) {
		said = 0;
		return;
	}
	if (!said++)
		log_simple(L_ERROR, "tls.ticket-key", "no random bytes for a session-ticket key; "
		    "devices resume no TLS session until one is made");
}

static void
on_status(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	(void)l;
	status();
	if (!stopping)
		check_stuck();
	rotate_tickets();
}

static void
on_watchdog(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
	notify_send("WATCHDOG=1");
}

static int
live_workers(void)
{
	int i, n = 0;

	for (i = 0; i < MAX_WORKERS; i++)
		n += workers[i].pid > 0;
	return (n);
}

static void
signal_generation(int gen, int sig)
{
	int i;

	for (i = 0; i < MAX_WORKERS; i++)
		if (workers[i].pid > 0 && (gen < 0 || workers[i].generation == gen))
			kill(workers[i].pid, sig);
}

static void
on_restart_timer(struct ev_loop *l, ev_timer *w, int revents)
{
	int i, want = nworkers(cfg), have = 0;

	(void)l;
	(void)w;
	(void)revents;
	for (i = 0; i < MAX_WORKERS; i++)
		have += workers[i].pid > 0 && workers[i].generation == generation;
	for (i = 0; i < MAX_WORKERS && have < want && !stopping; i++) {
		if (workers[i].pid == 0) {
			spawn(i);
			have++;
		}
	}
}

static void
on_child(struct ev_loop *l, ev_child *w, int revents)
{
	struct worker *wk = w->data;
	struct logline lg;
	int st = w->rstatus, expected;

	(void)revents;
	ev_child_stop(l, w);
	expected = stopping || wk->generation != generation;
	log_begin(&lg, expected && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? L_INFO : L_ERROR,
	    NULL, "worker.exit");
	log_num(&lg, "pid", (long long)wk->pid);
	log_num(&lg, "generation", wk->generation);
	if (WIFEXITED(st))
		log_num(&lg, "status", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		log_str(&lg, "signal", strsignal(WTERMSIG(st)));
	log_str(&lg, "restart", expected ? "no" : "yes");
	log_end(&lg);
	wk->pid = 0;
	shared_set_workers(live_workers());
	if (stopping) {
		if (live_workers() == 0)
			ev_break(l, EVBREAK_ALL);
		return;
	}
	if (expected)
		return;
	/* A worker that died took its sessions with it; the others keep serving. */
	if (ev_now(l) - restart_window > 10.) {
		restart_window = ev_now(l);
		restarts = 0;
	}
	if (++restarts > RESTART_BURST) {
		ev_timer_stop(l, &restart_timer);
		ev_timer_set(&restart_timer, 1., 0.);
		ev_timer_start(l, &restart_timer);
		return;
	}
	spawn((int)(wk - workers));
}

static void
spawn(int slot)
{
	struct worker *wk = &workers[slot];
	pid_t pid;

	fflush(NULL);
	/* Before the fork: the worker's first beat is not due for a second. */
	shared_beat_clear(slot);
	if ((pid = fork()) < 0) {
		log_simple(L_ERROR, "worker.fork", strerror(errno));
		ev_timer_stop(loop, &restart_timer);
		ev_timer_set(&restart_timer, 1., 0.);
		ev_timer_start(loop, &restart_timer);
		return;
	}
	if (pid == 0)
		worker_main(slot);
	wk->pid = pid;
	wk->generation = generation;
	ev_child_init(&wk->child, on_child, pid, 0);
	wk->child.data = wk;
	ev_child_start(loop, &wk->child);
	shared_set_workers(live_workers());
}

static void
spawn_generation(void)
{
	int i, n = nworkers(cfg), made = 0;

	generation++;
	shared_m_generation(generation);
	for (i = 0; i < MAX_WORKERS && made < n; i++) {
		if (workers[i].pid == 0) {
			spawn(i);
			made++;
		}
	}
}

static void
on_stop_timeout(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	/* Workers bound their own drain; this only catches one that hangs. */
	if (live_workers() > 0) {
		hung_killed = 1;
		log_simple(L_ERROR, "proxy.stop", "a worker did not finish in time; killed");
	}
	signal_generation(-1, SIGKILL);
	ev_break(l, EVBREAK_ALL);
}

static void
on_stop(struct ev_loop *l, ev_signal *w, int revents)
{
	struct logline lg;

	(void)revents;
	if (stopping)
		return;
	stopping = 1;
	notify_send("STOPPING=1");
	log_begin(&lg, L_INFO, NULL, "proxy.stop");
	log_str(&lg, "signal", w->signum == SIGTERM ? "TERM" : "INT");
	log_num(&lg, "sessions", shared_sessions());
	log_num(&lg, "shutdown_timeout", (long long)cfg->shutdown_timeout);
	log_end(&lg);
	signal_generation(-1, SIGTERM);
	listeners_close(listeners);
	ev_timer_init(&stop_timer, on_stop_timeout, (ev_tstamp)cfg->shutdown_timeout + 10., 0.);
	ev_timer_start(l, &stop_timer);
	if (live_workers() == 0)
		ev_break(l, EVBREAK_ALL);
}

/* A token or a token failure was published: every worker's waiting sessions look. */
static void
wake_workers(void)
{
	signal_generation(-1, SIGUSR2);
}

/*
 * SIGUSR2 goes both ways: a worker asks the main process for a token, the main process
 * tells workers one is there. One watcher, inherited across fork(), so a worker is
 * never without a handler for it (the default action would kill it).
 */
static void
on_usr2(struct ev_loop *l, ev_signal *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
	if (getpid() == main_pid)
		oauth2_poll();
	else
		upstream_token_wake();
}

/* One config.warning line per warning in ${text}: what -t would print. */
static void
log_warnings(const char *text)
{
	struct logline l;
	const char *nl;

	for (; *text != '\0'; text = nl + (*nl != '\0')) {
		if ((nl = strchr(text, '\n')) == NULL)
			nl = text + strlen(text);
		log_begin(&l, L_WARN, NULL, "config.warning");
		log_strn(&l, "msg", text, (size_t)(nl - text));
		log_end(&l);
	}
}

static void
on_reload(struct ev_loop *l, ev_signal *w, int revents)
{
	char errs[4096], msg[128], *line, *save = NULL;
	struct timespec ts;
	struct config *n;
	int old = generation;

	(void)w;
	(void)revents;
	if (stopping)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%lld",
	    (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
	notify_send(msg);
	if ((n = config_load(cfg->path, errs, sizeof(errs))) == NULL) {
		for (line = strtok_r(errs, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save)) {
			if (strstr(line, ": warning: ") != NULL)
				log_warnings(line);
			else
				log_simple(L_ERROR, "config.reload-refused", line);
		}
		shared_m_reload(0);
	} else if (listeners_update(listeners, n) != 0) {
		log_simple(L_ERROR, "config.reload-refused", "a new listen address cannot be bound");
		config_unref(n);
		shared_m_reload(0);
	} else {
		log_init(n->log_level, n->log_format);
		log_warnings(n->warnings);
		config_unref(cfg);
		cfg = n;
		oauth2_configure(loop, cfg, wake_workers);
		if (metrics_reload(cfg) != 0)
			log_simple(L_WARN, "metrics.listen", "new [metrics] listen address not "
			    "bound; still serving on the old one");
		shared_m_reload(1);
		/* The new generation accepts at once; the old one stops accepting and drains. */
		spawn_generation();
		signal_generation(old, SIGTERM);
		log_simple(L_INFO, "config.reload", cfg->path);
	}
	notify_send("READY=1");
	status();
	(void)l;
}

/* The command line: -1 to go on, else the exit code (after -V, -h or a usage error). */
static int
options(int argc, char **argv, const char **path, int *check, int *verbose)
{
	int ch;

	while ((ch = getopt(argc, argv, "c:thvV")) != -1) {
		switch (ch) {
		case 'c':
			*path = optarg;
			break;
		case 't':
			*check = 1;
			break;
		case 'v':
			*verbose = 1;
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
	/* -v says more about a check; alone it would be silently ignored. */
	if (optind != argc || (*verbose && !*check)) {
		usage(stderr);
		return (2);
	}
	return (-1);
}

static void
log_start(void)
{
	struct logline l;

	log_begin(&l, L_INFO, NULL, "proxy.start");
	log_str(&l, "version", VERSION);
	log_str(&l, "config", cfg->path);
	log_str(&l, "upstream", cfg->up.host);
	log_num(&l, "port", cfg->up.port);
	log_str(&l, "tls", config_tls_str(cfg->up.tls));
	log_str(&l, "verify", cfg->up.verify ? "yes" : "no");
	log_str(&l, "auth", cfg->up.username[0] ? "proxy" : "client");
	log_num(&l, "workers", nworkers(cfg));
	log_end(&l);
}

/* Before the workers exist: a signal from then on is handled, never fatal. */
static void
start_signals(void)
{
	ev_signal_init(&sig_term, on_stop, SIGTERM);
	ev_signal_init(&sig_int, on_stop, SIGINT);
	ev_signal_init(&sig_hup, on_reload, SIGHUP);
	ev_signal_start(loop, &sig_term);
	ev_signal_start(loop, &sig_int);
	ev_signal_start(loop, &sig_hup);
	ev_signal_init(&sig_usr2, on_usr2, SIGUSR2);
	ev_signal_start(loop, &sig_usr2);
	ev_timer_init(&restart_timer, on_restart_timer, 1., 0.);
}

/* Once ready: the STATUS= line and the watchdog. */
static void
start_timers(void)
{
	ev_timer_init(&status_timer, on_status, 2., 2.);
	ev_timer_start(loop, &status_timer);
	if (watchdog_interval > 0) {
		ev_timer_init(&watchdog_timer, on_watchdog, 0., watchdog_interval);
		ev_timer_start(loop, &watchdog_timer);
	}
}

int
main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	char errs[8192];
	int rc, check = 0, verbose = 0;
	struct logline l;

	if (argc > 1 && strcmp(argv[1], "oauth2-login") == 0)
		return (oauth2_login_main(argc - 1, argv + 1));
	if (argc > 1 && strcmp(argv[1], "probe") == 0)
		return (probe_main(argc - 1, argv + 1));
	if ((rc = options(argc, argv, &path, &check, &verbose)) >= 0)
		return (rc);
	if ((cfg = config_load(path, errs, sizeof(errs))) == NULL) {
		fputs(errs, stderr);
		return (1);
	}
	if (check) {
		/* Warnings do not fail the check: the file loads, and is run as written. */
		fputs(cfg->warnings, stderr);
		printf("configuration OK\n");
		if (verbose)
			conftable_print(stdout, cfg);
		config_unref(cfg);
		return (0);
	}
	log_init(cfg->log_level, cfg->log_format);
	log_warnings(cfg->warnings);
	raise_nofile(cfg);
	watchdog_interval = notify_init();
	signal(SIGPIPE, SIG_IGN);
#ifdef M_TRIM_THRESHOLD
	/*
	 * A body streams through buffers that are freed each time they empty (idle
	 * sessions cost nothing): without this glibc gives that heap back and faults it
	 * in again every loop turn (two brk() per turn, a tenth of a worker's CPU on a
	 * large message), and mmap()s the upstream's 256 KB buffer.
	 */
	(void)mallopt(M_MMAP_THRESHOLD, 512 * 1024);
	(void)mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
#endif
	if (shared_init() != 0) {
		log_simple(L_ERROR, "proxy.start", "cannot map shared counters");
		return (1);
	}
	loop = EV_DEFAULT;
	main_pid = getpid();
	if ((listeners = listeners_bind(cfg)) == NULL || metrics_start(loop, cfg) != 0)
		return (1);
	start_signals();
	log_start();
	/* Before the workers: a session that comes first finds the fetch already on its way. */
	oauth2_configure(loop, cfg, wake_workers);
	rotate_tickets();
	spawn_generation();
	/* Every socket is bound and the config loaded: connections queue until accepted. */
	notify_send("READY=1");
	status();
	start_timers();
	ev_run(loop, 0);
	log_begin(&l, L_INFO, NULL, "proxy.exit");
	log_num(&l, "sessions", shared_sessions());
	log_end(&l);
	oauth2_shutdown();
	metrics_stop();
	listeners_free(listeners);
	config_unref(cfg);
	ev_loop_destroy(loop);
	return (hung_killed ? 1 : 0);
}
