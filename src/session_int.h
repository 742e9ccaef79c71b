#ifndef SESSION_INT_H
#define SESSION_INT_H

/*
 * Private to the files of a session: session.c (its life and its faults), relay.c
 * (the command phase), clientauth.c (a device's AUTH to the proxy itself) and body.c
 * (the DATA phase and the message record).
 * Nothing else includes this; the rest of the program sees session.h.
 */

#include <sys/socket.h>

#include <ev.h>

#include "config.h"
#include "data.h"
#include "session.h"
#include "smtp.h"

#define PEND_MAX	64
#define TXN_TO_MAX	400	/* accepted recipients kept for the log line */
#define TXN_SENT_MAX	1024	/* recipients awaiting the upstream's answer */

/* S_TLS: a device TLS handshake (implicit before S_PREP, STARTTLS from S_CMD). */
enum sess_state { S_PREP, S_TLS, S_CMD, S_DATA, S_CLOSING };

enum pend_kind {
	P_LOCAL,	/* answered by the proxy, in turn */
	P_RELAY,	/* the upstream's reply, relayed */
	P_DATA,		/* reply to DATA: 354 starts the body */
	P_DOT,		/* reply to the end of data: the message's outcome */
	P_AUTH,		/* reply to AUTH or one of its continuation lines */
	P_EHLO_RSET,	/* reply to the RSET an EHLO mid-transaction sent; then the EHLO reply */
	P_NKINDS
};

/* The replies the proxy gives itself; their text is in relay.c's table. */
enum local_reply {
	R_NONE, R_EHLO, R_HELO, R_TOO_LONG, R_BARE, R_BARE_LF, R_UNKNOWN, R_NO_STARTTLS,
	R_NO_BDAT, R_AUTH_OK, R_EHLO_SYNTAX, R_HELO_SYNTAX, R_VRFY, R_EXPN, R_HELP,
	R_REJECTED, R_UP_LOST_DATA, R_TOO_MANY_RCPTS, R_TOO_BIG, R_HDR_TOO_BIG,
	/* client_auth (clientauth.c) */
	R_AUTH_REQUIRED, R_AUTH_FAILED, R_AUTH_TEMP, R_AUTH_CANCELLED, R_AUTH_DECODE,
	R_AUTH_SYNTAX, R_AUTH_MECH, R_AUTH_TWICE, R_AUTH_CHALLENGE, R_AUTH_USERNAME,
	R_AUTH_PASSWORD,
	/* TLS toward the device */
	R_STARTTLS, R_TLS_ACTIVE, R_STARTTLS_TXN, R_STARTTLS_SYNTAX, R_TLS_REQUIRED, R_NEED_HELO,
	/* upstream reuse: QUIT answered here, the upstream session kept */
	R_BYE,
	R_NLOCAL
};

/* What session_drop_upstream() does to the upstream connection. */
#define DROP_CLOSE	0	/* close (TLS close_notify), nothing more to say */
#define DROP_QUIT	1	/* polite: QUIT first, without waiting for its 221 */
#define DROP_RESET	2	/* mid-body: a reset, so a half message never looks finished */

struct pend {
	unsigned char	 kind;		/* enum pend_kind */
	unsigned char	 verb;		/* enum smtp_verb, for P_RELAY and P_EHLO_RSET */
	unsigned char	 local;		/* enum local_reply, for P_LOCAL */
	unsigned char	 txn;		/* low bits of the transaction an RCPT belongs to */
};

/*
 * One mail transaction, from MAIL to the reply to its end of data. It is its own
 * object because a client may pipeline its next MAIL behind the final dot (RFC
 * 2920): the finished one waits for its outcome while the next one fills up.
 * Allocated at MAIL, so an idle session holds none.
 */
struct txn {
	unsigned	 id;
	char		 from[256];	/* as the upstream got it */
	char		 device_from[256];	/* the device's own, when force_sender changed it */
	unsigned	 rcpts;		/* accepted by the upstream */
	unsigned	 to_more;	/* accepted but not listed in to[] */
	unsigned long long bytes;
	char		 to[TXN_TO_MAX];	/* accepted recipients, comma-separated */
	size_t		 sentlen;
	char		 sent[TXN_SENT_MAX];	/* NUL-separated RCPT paths, oldest first */
};

struct session {
	struct ev_loop	*loop;
	struct config	*cfg;
	const struct device_conf *dev;	/* its profile (NULL: none), in cfg */
	const struct listener_conf *lc;	/* the [listener NAME] it came in on; NULL: [proxy] */
	const struct limits *lim;	/* the profile's limits, or the global ones */
	const struct upstream_conf *upc;	/* the upstream it relays to, once prepared */
	struct upstream_conf *own_upc;	/* an intercept rule's "original", for this session */
	char		 orig_dst[64];	/* transparent: where the device was going; "" */
	int		 upc_counted;	/* holds one of upc's max_connections */
	char		 sid[16];
	char		 client[64];
	enum sess_state	 state;
	struct conn	*cl, *up;
	struct upstream	*prep;
	ev_timer	 timer;
	ev_tstamp	 started;
	struct smtp_caps caps;
	/* command phase (relay.c) */
	struct pend	 q[PEND_MAX];
	unsigned	 qhead, qlen;
	unsigned	 qup;		/* entries that wait for the upstream */
	unsigned	 blocked:1;	/* DATA, AUTH or QUIT awaits its reply */
	unsigned	 auth_cont:1;	/* the next client line continues an AUTH */
	unsigned	 in_txn:1;	/* MAIL was sent since the last RSET/EHLO/end of data */
	unsigned	 discarding:1;	/* dropping an overlong line up to its line end */
	unsigned	 client_gone:1;	/* the client failed; only the outcome is awaited */
	unsigned	 dead:1;	/* ended; freed when the outermost handler returns */
	unsigned	 too_big:1;	/* the body being read is over size_limit */
	unsigned	 hdr_big:1;	/* its header block is over what rewrite_header_from holds */
	unsigned	 authed:1;	/* the device logged in to the proxy (client_auth) */
	unsigned	 tls_active:1;	/* the device's side is TLS */
	unsigned	 tls_started:1;	/* its handshake began */
	unsigned	 need_helo:1;	/* after STARTTLS: EHLO or HELO before anything else */
	ev_tstamp	 tls_begun;	/* when the handshake began, for its ms */
	struct clientauth *ca;		/* its AUTH exchange with the proxy, from its first AUTH */
	int		 depth;		/* nesting of handlers, so the last one frees */
	unsigned	 rcpts_sent;	/* RCPT commands in this transaction */
	unsigned	 commands;	/* whole command lines taken */
	unsigned	 errors;	/* error replies so far */
	/* messages (body.c) */
	struct data_scan ds;
	struct hdrfrom	*hf;		/* rewrite_header_from: the header block, while it is read */
	struct txn	*txn;		/* the open transaction, MAIL onwards */
	struct txn	*ended;		/* the one whose end of data awaits its reply */
	unsigned	 txn_ids;
	unsigned long long size_limit;	/* bytes a message may have; 0 = no limit */
	ev_tstamp	 data_start;
	unsigned long long msg_bytes;	/* of the body being read, its end included */
	/* life (session.c) */
	unsigned long long cl_in, cl_out, up_in, up_out;	/* of conns already gone */
	unsigned long long up_base_in, up_base_out;	/* a reused upstream's bytes before */
	unsigned	 up_msgs;	/* messages on the upstream session, earlier ones too */
	unsigned long	 up_token_gen;	/* the OAuth2 token it logged in with */
	unsigned	 up_doubt:1;	/* it said something odd: never kept for reuse */
	const char	*end_reason;
	session_done_cb	*done;
	void		*done_arg;
	struct sockaddr_storage peer;
	struct session	*prev, *next;	/* every session of this process, for shutdown */
};

/* ---- session.c: life and faults (the fault table is at its head) ---- */

/* Progress on an SMTP step restarts the step's timer; partial lines are no progress. */
void session_touch(struct session *s);

/* Write ${n} bytes to the client; a client that cannot take them ends the session. */
void session_to_client(struct session *s, const char *p, size_t n);

/* One more error reply: past max_errors the client gets 421 4.7.0 and is closed. */
void session_count_error(struct session *s);

/* Close the upstream connection (DROP_CLOSE, DROP_QUIT, DROP_RESET), counting its bytes. */
void session_drop_upstream(struct session *s, int how);

/*
 * session_fail(s, code, text, reason):
 * End the session: "${code} ${hostname} ${text}" to the client when ${code} is set, the
 * upstream reset mid-body and sent QUIT otherwise, the client closed once the reply is
 * out (bounded). ${reason} is the session.close reason. Safe on a dead session.
 */
void session_fail(struct session *s, const char *code, const char *text, const char *reason);

/* At once: close both sides, log session.close; freed when the handlers unwind. */
void session_end(struct session *s, const char *reason);

/* The upstream went away (or spoke mid-body): answer per the fault table. */
void session_upstream_lost(struct session *s);

/* The upstream's framing can no longer be trusted: 451 + 421, logged with ${why}. */
void session_upstream_garbled(struct session *s, const char *why);

/* 1 if the upstream session may serve another device: reuse is on, the proxy logged
 * in itself, nothing is pending or odd, no transaction is open. */
int session_reusable(const struct session *s);

/* QUIT was answered here (R_BYE): keep the upstream session if it may be, then close. */
void session_quit(struct session *s);

/* The 220 to STARTTLS is queued: the handshake begins once it is out. */
void session_starttls(struct session *s);

/* From an event of the session's own (a timer): ${fn}(s) as a handler, then move along. */
void session_run(struct session *s, void (*fn)(struct session *));

/* ---- relay.c: the command phase ---- */

/* Answer ${r} in turn: after every reply still owed to earlier commands. */
void relay_local(struct session *s, enum local_reply r);

/* Append an entry to the FIFO of pending replies (its transaction is the open one). */
void relay_push(struct session *s, enum pend_kind kind, int verb, int local);

/* 1 if a whole command line waits in the client's input. */
int relay_has_line(struct session *s);

/* 1 if the oldest pending reply is a message's outcome (its end of data was sent). */
int relay_dot_pending(const struct session *s);

/* Take the client's command lines while the state and the buffers allow. */
void relay_read_commands(struct session *s);

/* Relay the upstream's replies in the order of the commands, and answer local entries. */
void relay_read_replies(struct session *s);

/* ---- clientauth.c: the device's AUTH to the proxy itself (client_auth = required) ---- */

/* 1 if the session's profile has client_auth = required. */
#define CLIENTAUTH_ON(s)	((s)->dev != NULL && (s)->dev->client_auth == CLIENT_AUTH_REQUIRED)

/* 1 if the device must still log in before MAIL, RCPT or DATA. */
#define CLIENTAUTH_MISSING(s)	(CLIENTAUTH_ON(s) && !(s)->authed)

/* 1 if EHLO offers STARTTLS: a starttls listener, before TLS. */
#define STARTTLS_OFFERED(s)	((s)->lc != NULL && (s)->lc->tls == LTLS_STARTTLS && \
	!(s)->tls_active)

/* 1 if require_tls holds MAIL, RCPT, DATA and AUTH back until STARTTLS. */
#define TLS_MISSING(s)		((s)->lc != NULL && (s)->lc->require_tls && !(s)->tls_active)

/* The EHLO reply with the proxy's own AUTH PLAIN LOGIN (and AUTH=) lines; 0 if too small. */
size_t clientauth_ehlo(const struct session *s, char *out, size_t size);

/* AUTH ${c}: answered here, never relayed. */
void clientauth_start(struct session *s, const struct smtp_cmd *c);

/* 1 if the next client line is a response in the AUTH exchange. */
int clientauth_pending(const struct session *s);

/* The client's response line ${line} / ${len} in the AUTH exchange. */
void clientauth_response(struct session *s, const char *line, size_t len);

/* A command line that is not part of an exchange: the previous one's were wiped. */
void clientauth_idle(struct session *s);

/* Free the exchange state and stop its timer. NULL ca is a no-op. */
void clientauth_free(struct session *s);

/* ---- body.c: the DATA phase and the record of each message ---- */

/* The upstream said 354: read the body from here. */
void body_start(struct session *s);

/* Stream the body upstream until its end of data, a full upstream, or a decision. */
void body_read(struct session *s);

/* A new transaction at MAIL ${arg}; the open one, if any, is dropped. */
void body_txn_new(struct session *s, const char *arg, size_t arglen);

/* force_sender changed the open transaction's MAIL: the device's own was ${arg}. */
void body_txn_device_from(struct session *s, const char *arg, size_t arglen);

/* An RCPT ${arg} was sent for the open transaction; its reply is matched in order. */
void body_txn_rcpt_sent(struct session *s, const char *arg, size_t arglen);

/* The reply to the RCPT of entry ${p}: ${accepted} or not. */
void body_txn_rcpt_reply(struct session *s, const struct pend *p, int accepted);

/* Free both transaction records. */
void body_txn_free(struct session *s);

/* Log the outcome of the body being read (its transaction ends): ${reply}, ${result}. */
void body_log_data(struct session *s, const char *reply, const char *result);

/* Log the outcome of the message whose end of data went upstream. */
void body_log_ended(struct session *s, const char *reply, size_t len, const char *result);

#endif
