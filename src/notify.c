/*
 * The systemd notify protocol (READY, RELOADING, STATUS, WATCHDOG), spoken directly
 * on $NOTIFY_SOCKET without libsystemd.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "notify.h"

static struct sockaddr_un notify_addr;
static socklen_t notify_len;

double
notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET"), *us, *pid;
	double interval = 0;
	size_t n;

	if (path != NULL && (path[0] == '/' || path[0] == '@') &&
	    (n = strlen(path)) < sizeof(notify_addr.sun_path)) {
		memset(&notify_addr, 0, sizeof(notify_addr));
		notify_addr.sun_family = AF_UNIX;
		memcpy(notify_addr.sun_path, path, n);
		/* "@name" is Linux's abstract namespace: a leading NUL, no terminator. */
		if (path[0] == '@')
			notify_addr.sun_path[0] = '\0';
		notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
		    (path[0] == '@' ? 0 : 1));
	}
	us = getenv("WATCHDOG_USEC");
	pid = getenv("WATCHDOG_PID");
	if (us != NULL && (pid == NULL || atol(pid) == (long)getpid())) {
		long long v = atoll(us);

		if (v > 0)
			interval = (double)v / 1e6 / 2;	/* ping twice per period */
	}
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	return (interval);
}

int
notify_enabled(void)
{
	return (notify_len > 0);
}

int
notify_send(const char *msg)
{
	int fd;
	ssize_t w;

	if (notify_len == 0)
		return (0);
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return (-1);
	w = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&notify_addr,
	    notify_len);
	close(fd);
	return (w < 0 ? -1 : 0);
}
