/*
 * The proxy's state directory (see statefile.h): atomic replacement, and reading a
 * one-line secret the way every secret file of ours is read.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "statefile.h"

int
state_path(const char *dir, const char *upstream, char *out, size_t size)
{
	size_t i;
	int n;

	/* The name becomes part of a path: no '/', no leading dot. */
	if (upstream[0] == '\0' || upstream[0] == '.')
		return (-1);
	for (i = 0; upstream[i] != '\0'; i++)
		if (upstream[i] == '/' || (unsigned char)upstream[i] < 0x21)
			return (-1);
	n = snprintf(out, size, "%s/%s.refresh_token", dir, upstream);
	return (n < 0 || (size_t)n >= size ? -1 : 0);
}

static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, p, n)) < 0) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		p += w;
		n -= (size_t)w;
	}
	return (0);
}

/* Replace the file ${name} in ${dir} with ${data} and a newline, atomically. */
static int
state_write_name(const char *dir, const char *name, const char *data, char *why,
    size_t whysize)
{
	char path[4096], tmp[4200];
	struct stat dst;
	int fd, dfd, err, n;

	n = snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		snprintf(why, whysize, "state_dir %s: path too long", dir);
		return (-1);
	}
	snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, name);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		snprintf(why, whysize, "state_dir %s: %s", dir, strerror(errno));
		return (-1);
	}
	/*
	 * oauth2-login run by root writes for the service's (dynamic) user: the file goes to
	 * whoever owns the directory, as systemd's StateDirectory= made it.
	 */
	if (geteuid() == 0 && stat(dir, &dst) == 0 && fchown(fd, dst.st_uid, dst.st_gid) != 0) {
		err = errno;
		close(fd);
		unlink(tmp);
		snprintf(why, whysize, "%s: %s", tmp, strerror(err));
		return (-1);
	}
	/* mkostemp makes 0600 already; say it, so a umask or a future change cannot widen it. */
	if (fchmod(fd, 0600) != 0 || write_all(fd, data, strlen(data)) != 0 ||
	    write_all(fd, "\n", 1) != 0 || fsync(fd) != 0) {
		err = errno;
		close(fd);
		unlink(tmp);
		snprintf(why, whysize, "%s: %s", tmp, strerror(err));
		return (-1);
	}
	if (close(fd) != 0 || rename(tmp, path) != 0) {
		err = errno;
		unlink(tmp);
		snprintf(why, whysize, "%s: %s", path, strerror(err));
		return (-1);
	}
	/* The rename itself is durable only once the directory is. */
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return (0);
}

int
state_write(const char *dir, const char *upstream, const char *data, char *why,
    size_t whysize)
{
	char path[4096];

	if (state_path(dir, upstream, path, sizeof(path)) != 0) {
		snprintf(why, whysize, "state_dir %s: path too long or bad upstream name", dir);
		return (-1);
	}
	return (state_write_name(dir, strrchr(path, '/') + 1, data, why, whysize));
}

int
state_read_secret(const char *path, char *out, size_t size, time_t *mtimep, char *why,
    size_t whysize)
{
	struct stat st;
	ssize_t n;
	size_t i;
	int fd;

	out[0] = '\0';
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			return (1);
		snprintf(why, whysize, "%s: %s", path, strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == 0 && mtimep != NULL)
		*mtimep = st.st_mtime;
	n = read(fd, out, size);
	close(fd);
	if (n < 0 || (size_t)n == size) {
		OPENSSL_cleanse(out, size);
		out[0] = '\0';
		snprintf(why, whysize, "%s: %s", path, n < 0 ? strerror(errno) : "too long");
		return (-1);
	}
	out[n] = '\0';
	if (n > 0 && out[n - 1] == '\n')
		out[--n] = '\0';
	if (n > 0 && out[n - 1] == '\r')
		out[--n] = '\0';
	for (i = 0; i < (size_t)n; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			break;
	if (n == 0 || i < (size_t)n) {
		OPENSSL_cleanse(out, size);
		out[0] = '\0';
		snprintf(why, whysize, "%s: empty, or control characters in it", path);
		return (-1);
	}
	return (0);
}

/* "sha256:HEX" of the token in ${file}, or "none" when there is no file or no token. */
static void
origin_of(const char *file, char *out, size_t size)
{
	unsigned char md[32];
	char tok[8200], why[256];
	unsigned int mdlen = 0;
	size_t i, n;

	snprintf(out, size, "none");
	if (file[0] == '\0' || state_read_secret(file, tok, sizeof(tok), NULL, why,
	    sizeof(why)) != 0)
		return;
	if (EVP_Digest(tok, strlen(tok), md, &mdlen, EVP_sha256(), NULL) == 1 && size > 71) {
		n = (size_t)snprintf(out, size, "sha256:");
		for (i = 0; i < mdlen; i++)
			n += (size_t)snprintf(out + n, size - n, "%02x", md[i]);
	}
	OPENSSL_cleanse(tok, sizeof(tok));
}

int
state_refresh_token(const char *dir, const char *upstream, const char *file, char *out,
    size_t size, char *why, size_t whysize)
{
	char path[4096], opath[4200], kept_origin[80], now_origin[80];
	int rs = 1, ro;

	if (state_path(dir, upstream, path, sizeof(path)) == 0)
		rs = state_read_secret(path, out, size, NULL, why, whysize);
	if (rs < 0)
		return (-1);
	if (file[0] == '\0')
		return (rs);
	if (rs == 0) {
		snprintf(opath, sizeof(opath), "%s.origin", path);
		ro = state_read_secret(opath, kept_origin, sizeof(kept_origin), NULL, why, whysize);
		origin_of(file, now_origin, sizeof(now_origin));
		/* The file still holds what the kept token replaced: the kept one is newer. */
		if (ro == 0 && strcmp(kept_origin, now_origin) == 0)
			return (0);
		if (ro != 0 && strcmp(now_origin, "none") == 0)
			return (0);
		OPENSSL_cleanse(out, size);
	}
	return (state_read_secret(file, out, size, NULL, why, whysize));
}

int
state_keep_refresh_token(const char *dir, const char *upstream, const char *token,
    const char *file, char *why, size_t whysize)
{
	char origin[80], name[300];

	origin_of(file, origin, sizeof(origin));
	/* The origin first: a crash between the two then leaves the old pair's meaning intact. */
	snprintf(name, sizeof(name), "%s.refresh_token.origin", upstream);
	if (state_write_name(dir, name, origin, why, whysize) != 0)
		return (-1);
	return (state_write(dir, upstream, token, why, whysize));
}
