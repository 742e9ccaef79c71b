#ifndef NOTIFY_H
#define NOTIFY_H

/*
 * The systemd notification protocol, spoken directly (a datagram to
 * $NOTIFY_SOCKET) so the daemon needs no libsystemd.
 */

/**
 * notify_init():
 * Read $NOTIFY_SOCKET and $WATCHDOG_USEC/$WATCHDOG_PID and unset them, so workers
 * and other children never talk to systemd in the main process's name.
 * Returns the watchdog interval in seconds (0 when none is asked for).
 */
double notify_init(void);

/**
 * notify_send(msg):
 * Send ${msg} ("READY=1\nSTATUS=...") when running under systemd; 0, or -1 on
 * failure (not running under systemd is success).
 */
int notify_send(const char *msg);

/**
 * notify_enabled():
 * 1 if $NOTIFY_SOCKET was set.
 */
int notify_enabled(void);

#endif
