#ifndef CONN_H
#define CONN_H

#include <sys/socket.h>

#include <stddef.h>

#include <ev.h>
#include <openssl/ssl.h>

/*
 * One non-blocking socket, plain or TLS, driven by libev. It hides the SSL
 * want-read/want-write dance and tells its owner what happened through one
 * callback with a set of events. The callback is always the last thing a conn
 * does in an event, so the owner may free the conn from inside it.
 */
struct conn;

#define CONN_EV_CONNECTED	0x01	/* TCP connect finished */
#define CONN_EV_TLS		0x02	/* TLS handshake finished */
#define CONN_EV_READ		0x04	/* new input is buffered, or the peer closed (conn_eof) */
#define CONN_EV_DRAIN		0x08	/* output fell to the low-water mark */
#define CONN_EV_ERROR		0x10	/* failed: conn_error() says why; nothing more will come */

typedef void conn_cb(struct conn *, int events, void *arg);

/**
 * conn_new(loop, fd, incap, outcap, cb, arg):
 * Wrap the connected, non-blocking socket ${fd} (taking ownership), with input and
 * output buffers of at most ${incap} and ${outcap} bytes, and start reading.
 */
struct conn *conn_new(struct ev_loop *loop, int fd, size_t incap, size_t outcap, conn_cb *cb,
    void *arg);

/**
 * conn_connect(loop, sa, salen, incap, outcap, cb, arg, err, errsize):
 * Start a non-blocking TCP connect to ${sa}; CONN_EV_CONNECTED or CONN_EV_ERROR
 * follows. NULL with a reason in ${err} if no socket could be made.
 */
struct conn *conn_connect(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
    size_t incap, size_t outcap, conn_cb *cb, void *arg, char *err, size_t errsize);

/**
 * conn_set_cb(c, cb, arg):
 * Hand the conn to a new owner.
 */
void conn_set_cb(struct conn *c, conn_cb *cb, void *arg);

/**
 * conn_start_tls(c, ssl):
 * Start a TLS client handshake over ${c} with ${ssl} (ownership taken); CONN_EV_TLS
 * or CONN_EV_ERROR follows. Return -1 (and free ${ssl}) if plaintext input is still
 * buffered: bytes that arrived before the handshake must never be read as if they
 * came through TLS (response injection, CVE-2011-0411 class).
 */
int conn_start_tls(struct conn *c, SSL *ssl);

/**
 * conn_line(c, lenp):
 * The first CRLF-terminated input line (length without CRLF in ${lenp}); NULL if none.
 */
const char *conn_line(struct conn *c, size_t *lenp);

/**
 * conn_peek(c, lenp):
 * All buffered input; NULL when there is none.
 */
const char *conn_peek(struct conn *c, size_t *lenp);

/**
 * conn_consume(c, n):
 * Drop ${n} bytes of input; reading resumes if it had stopped on a full buffer.
 */
void conn_consume(struct conn *c, size_t n);

/**
 * conn_write(c, p, n):
 * Queue ${n} bytes and start sending them. 0, or -1 if the output buffer cannot take
 * them (the owner should have paused its source). Send errors arrive as CONN_EV_ERROR.
 */
int conn_write(struct conn *c, const void *p, size_t n);

/**
 * conn_wreserve(c, n, gotp), conn_wcommit(c, n):
 * Write straight into the output buffer: space for up to ${n} bytes (count in
 * ${gotp}; NULL if full), then queue the ${n} bytes written there and send.
 */
char *conn_wreserve(struct conn *c, size_t n, size_t *gotp);
void conn_wcommit(struct conn *c, size_t n);

/**
 * conn_out_len(c), conn_out_room(c), conn_in_len(c):
 * Bytes waiting to be sent; room left for more; bytes of input buffered.
 */
size_t conn_out_len(const struct conn *c);
size_t conn_out_room(const struct conn *c);
size_t conn_in_len(const struct conn *c);

/**
 * conn_pause(c, paused):
 * Stop (1) or resume (0) reading from the socket; buffered input stays readable.
 */
void conn_pause(struct conn *c, int paused);

/**
 * conn_eof(c), conn_failed(c), conn_error(c):
 * The peer closed cleanly (all its data is in the input buffer); the conn failed;
 * why it failed.
 */
int conn_eof(const struct conn *c);
int conn_failed(const struct conn *c);
const char *conn_error(const struct conn *c);

/**
 * conn_ssl(c), conn_fd(c):
 * The TLS state (NULL before conn_start_tls) and the socket.
 */
SSL *conn_ssl(const struct conn *c);
int conn_fd(const struct conn *c);

/**
 * conn_bytes_in(c), conn_bytes_out(c):
 * Payload bytes received and sent so far (after TLS decryption).
 */
unsigned long long conn_bytes_in(const struct conn *c);
unsigned long long conn_bytes_out(const struct conn *c);

/**
 * conn_secret(c, on):
 * While on, buffered bytes are wiped as they are consumed or freed (AUTH exchanges).
 */
void conn_secret(struct conn *c, int on);

/**
 * conn_free(c):
 * Close ${c} politely (TLS close_notify attempted once, no waiting) and free it.
 * NULL is a no-op.
 */
void conn_free(struct conn *c);

/**
 * conn_abort(c):
 * Close ${c} with a TCP reset and no close_notify, and free it: the peer must not
 * mistake the end for a clean finish (a message cut short is never delivered).
 */
void conn_abort(struct conn *c);

#endif
