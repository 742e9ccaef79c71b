#ifndef HTTP_H
#define HTTP_H

/*
 * HTTPS POSTs for the token endpoint, driven by an event loop: the only file that knows
 * libcurl (its multi interface on libev). Used by the main process; a request never
 * blocks the loop, the endpoint's certificate is always verified, and the form body
 * (it holds secrets) is wiped when the request ends.
 */
#include <stddef.h>

struct ev_loop;
struct http_req;

/*
 * The end of a request: ${status} is the HTTP status (0 when none came back, then
 * ${err} says why: "timeout after N s", a TLS or connect failure), ${body} the answer
 * (${len} bytes, NUL-terminated; wiped after the call).
 */
typedef void http_cb(void *arg, long status, const char *body, size_t len, const char *err);

/**
 * http_init(loop):
 * Set up libcurl on ${loop}; 0 or -1. Once, before any request.
 */
int http_init(struct ev_loop *loop);

/**
 * http_post(url, form, ca_file, timeout, cb, arg):
 * POST the application/x-www-form-urlencoded ${form} (copied, and the copy wiped) to the
 * https:// ${url}, trusting ${ca_file} ("" = the system bundle), the whole request bounded
 * by ${timeout} seconds; ${cb} is called once, later, from the loop. The request, or NULL
 * (then nothing is called).
 */
struct http_req *http_post(const char *url, const char *form, const char *ca_file,
    long timeout, http_cb *cb, void *arg);

/**
 * http_cancel(r):
 * Abandon ${r}: its callback is never called. NULL is a no-op.
 */
void http_cancel(struct http_req *r);

/**
 * http_forget(loop):
 * In a process just forked from the one that made requests: stop watching their sockets
 * and timers on ${loop} and close the sockets, without a word to the servers (the parent
 * still talks to them). The parent's requests go on unharmed.
 */
void http_forget(struct ev_loop *loop);

/**
 * http_shutdown():
 * Cancel everything and release libcurl.
 */
void http_shutdown(void);

#endif
