#ifndef CAPTURE_H
#define CAPTURE_H

/* Shared by the unit tests that check log lines: stderr caught in a temporary file. */
#include <fcntl.h>
#include <unistd.h>

static char out[16384];
static size_t outlen;
static int saved_fd = -1;
static char tmppath[64];

/* Send stderr to a temporary file until capture_end(). */
static void
capture_begin(void)
{
	int fd;

	snprintf(tmppath, sizeof(tmppath), "/tmp/unit-log-XXXXXX");
	fd = mkstemp(tmppath);
	assert_true(fd >= 0);
	saved_fd = dup(STDERR_FILENO);
	assert_true(saved_fd >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);
}

/* Restore stderr; what was written is in out[0..outlen), NUL-terminated. */
static void
capture_end(void)
{
	ssize_t n;
	int fd;

	assert_int_equal(dup2(saved_fd, STDERR_FILENO), STDERR_FILENO);
	close(saved_fd);
	saved_fd = -1;
	fd = open(tmppath, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, out, sizeof(out) - 1);
	assert_true(n >= 0);
	outlen = (size_t)n;
	out[outlen] = '\0';
	close(fd);
	unlink(tmppath);
}

#endif
