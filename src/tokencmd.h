#ifndef TOKENCMD_H
#define TOKENCMD_H

/*
 * Running oauth2_token_command from the main process's event loop: no shell, stdin
 * /dev/null, stdout collected (at most 64 KB), stderr left to the journal, the whole run
 * bounded by a timeout after which its process group is killed.
 */
#include <stddef.h>

struct ev_loop;
struct tokencmd;

/*
 * The end of a run: ${out} holds what it printed (${len} bytes, NUL-terminated; wiped
 * after the call) when ${err} is ""; else ${err} says what went wrong ("exited 1",
 * "killed by signal 9", "timeout after 30 s, killed", "printed more than 64 KB").
 */
typedef void tokencmd_cb(void *arg, const char *out, size_t len, const char *err);

/**
 * tokencmd_start(loop, cmd, timeout, cb, arg, why, whysize):
 * Start ${cmd} (split by token_argv) on ${loop}; ${cb} is called once, later. The run,
 * or NULL with the reason in ${why} (then nothing is called).
 */
struct tokencmd *tokencmd_start(struct ev_loop *loop, const char *cmd, long timeout,
    tokencmd_cb *cb, void *arg, char *why, size_t whysize);

/**
 * tokencmd_cancel(t):
 * Kill the run and forget it: its callback is never called. NULL is a no-op.
 */
void tokencmd_cancel(struct tokencmd *t);

/**
 * tokencmd_forget(loop):
 * In a process just forked from the one running commands: stop watching them on ${loop}
 * and close their pipes; the parent goes on with them.
 */
void tokencmd_forget(struct ev_loop *loop);

#endif
