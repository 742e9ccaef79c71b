/*
 * The token command (see tokencmd.h): fork + exec, its stdout read through a pipe by an
 * ev_io, its exit seen by an ev_child, its time bounded by an ev_timer.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/crypto.h>

#include "token.h"
#include "tokencmd.h"

#define OUT_MAX	65536

struct tokencmd {
	struct ev_loop	*loop;
	pid_t		 pid;
	int		 fd;		/* stdout's read end; -1 at EOF */
	int		 exited, status, timed_out, too_big;
	long		 timeout;
	ev_io		 io;
	ev_child	 child;
	ev_timer	 timer;
	char		 out[OUT_MAX + 1];
	size_t		 len;
	tokencmd_cb	*cb;
	void		*arg;
	struct tokencmd	*prev, *next;
};

static struct tokencmd *runs;

static void
run_free(struct tokencmd *t)
{
	ev_io_stop(t->loop, &t->io);
	ev_child_stop(t->loop, &t->child);
	ev_timer_stop(t->loop, &t->timer);
	if (t->fd >= 0)
		close(t->fd);
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		runs = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	OPENSSL_cleanse(t->out, sizeof(t->out));
	free(t);
}

/* Both ends seen (EOF and exit): report once. */
static void
maybe_done(struct tokencmd *t)
{
	char err[128] = "";

	if (t->fd >= 0 || !t->exited)
		return;
	if (t->timed_out)
		snprintf(err, sizeof(err), "timeout after %ld s, killed", t->timeout);
	else if (t->too_big)
		snprintf(err, sizeof(err), "printed more than %d bytes", OUT_MAX);
	else if (WIFEXITED(t->status) && WEXITSTATUS(t->status) != 0)
		snprintf(err, sizeof(err), "exited %d", WEXITSTATUS(t->status));
	else if (WIFSIGNALED(t->status))
		snprintf(err, sizeof(err), "killed by signal %d", WTERMSIG(t->status));
	t->out[t->len] = '\0';
	t->cb(t->arg, t->out, t->len, err);
	run_free(t);
}

static void
on_out(struct ev_loop *l, ev_io *w, int revents)
{
	struct tokencmd *t = w->data;
	char sink[4096];
	ssize_t n;

	(void)l;
	(void)revents;
	if (t->len < OUT_MAX)
		n = read(t->fd, t->out + t->len, OUT_MAX - t->len);
	else if ((n = read(t->fd, sink, sizeof(sink))) > 0)
		t->too_big = 1;
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		if (t->len < OUT_MAX)
			t->len += (size_t)n;
		return;
	}
	ev_io_stop(t->loop, &t->io);
	close(t->fd);
	t->fd = -1;
	maybe_done(t);
}

static void
on_exit_cb(struct ev_loop *l, ev_child *w, int revents)
{
	struct tokencmd *t = w->data;

	(void)l;
	(void)revents;
	ev_child_stop(t->loop, &t->child);
	t->exited = 1;
	t->status = w->rstatus;
	/* A child it left behind may hold the pipe open: its exit ends the run. */
	(void)kill(-t->pid, SIGKILL);
	if (t->fd >= 0) {
		ev_io_stop(t->loop, &t->io);
		/* Drain what is there without waiting for an EOF that may never come. */
		for (;;) {
			ssize_t n = t->len < OUT_MAX ? read(t->fd, t->out + t->len, OUT_MAX - t->len) : 0;

			if (n <= 0)
				break;
			t->len += (size_t)n;
		}
		close(t->fd);
		t->fd = -1;
	}
	ev_timer_stop(t->loop, &t->timer);
	maybe_done(t);
}

static void
on_timeout(struct ev_loop *l, ev_timer *w, int revents)
{
	struct tokencmd *t = w->data;

	(void)l;
	(void)revents;
	t->timed_out = 1;
	(void)kill(-t->pid, SIGKILL);
}

struct tokencmd *
tokencmd_start(struct ev_loop *loop, const char *cmd, long timeout, tokencmd_cb *cb, void *arg,
    char *why, size_t whysize)
{
	char buf[1024], *argv[32];
	struct tokencmd *t;
	int p[2], nul;

	if (token_argv(cmd, buf, sizeof(buf), argv, 32) < 0) {
		snprintf(why, whysize, "oauth2_token_command does not split into words");
		return (NULL);
	}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		snprintf(why, whysize, "out of memory");
		return (NULL);
	}
	if (pipe2(p, O_CLOEXEC) != 0) {
		snprintf(why, whysize, "pipe: %s", strerror(errno));
		free(t);
		return (NULL);
	}
	fflush(NULL);
	if ((t->pid = fork()) < 0) {
		snprintf(why, whysize, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		free(t);
		return (NULL);
	}
	if (t->pid == 0) {
		/* Its own process group, so a timeout kills whatever it started too. */
		(void)setpgid(0, 0);
		sigset_t all;

		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		signal(SIGPIPE, SIG_DFL);
		if ((nul = open("/dev/null", O_RDONLY)) >= 0)
			dup2(nul, 0);
		dup2(p[1], 1);
		/* Nothing of ours (listening sockets, the token endpoint's) goes with it. */
		(void)close_range(3, ~0U, 0);
		execv(argv[0], argv);
		fprintf(stderr, "smtp-tls-proxy: oauth2_token_command %s: %s\n", argv[0],
		    strerror(errno));
		_exit(127);
	}
	(void)setpgid(t->pid, t->pid);	/* also from here: no race with an early kill */
	close(p[1]);
	(void)fcntl(p[0], F_SETFL, O_NONBLOCK);
	t->loop = loop;
	t->fd = p[0];
	t->timeout = timeout;
	t->cb = cb;
	t->arg = arg;
	ev_io_init(&t->io, on_out, t->fd, EV_READ);
	t->io.data = t;
	ev_io_start(loop, &t->io);
	ev_child_init(&t->child, on_exit_cb, t->pid, 0);
	t->child.data = t;
	ev_child_start(loop, &t->child);
	ev_timer_init(&t->timer, on_timeout, (double)timeout, 0.);
	t->timer.data = t;
	ev_timer_start(loop, &t->timer);
	t->next = runs;
	if (runs != NULL)
		runs->prev = t;
	runs = t;
	OPENSSL_cleanse(buf, sizeof(buf));
	return (t);
}

void
tokencmd_cancel(struct tokencmd *t)
{
	if (t == NULL)
		return;
	(void)kill(-t->pid, SIGKILL);
	/* Reaped here, so no zombie is left for a watcher that is gone. */
	if (!t->exited)
		(void)waitpid(t->pid, NULL, 0);
	run_free(t);
}

void
tokencmd_forget(struct ev_loop *loop)
{
	struct tokencmd *t, *next;

	for (t = runs; t != NULL; t = next) {
		next = t->next;
		ev_io_stop(loop, &t->io);
		ev_child_stop(loop, &t->child);
		ev_timer_stop(loop, &t->timer);
		if (t->fd >= 0)
			close(t->fd);
		free(t);
	}
	runs = NULL;
}
