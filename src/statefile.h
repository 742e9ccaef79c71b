#ifndef STATEFILE_H
#define STATEFILE_H

/*
 * What the proxy keeps across restarts in [proxy] state_dir (systemd's
 * StateDirectory=): today the refresh token of each upstream using the refresh_token
 * flow, as the token endpoint last rotated it or oauth2-login stored it. One file per
 * upstream, "NAME.refresh_token", mode 0600, replaced atomically.
 */
#include <stddef.h>
#include <time.h>

/**
 * state_path(dir, upstream, out, size):
 * The path of ${upstream}'s refresh token file in ${dir} into ${out}; 0, or -1 if it
 * does not fit or ${upstream} is not a plain name.
 */
int state_path(const char *dir, const char *upstream, char *out, size_t size);

/**
 * state_write(dir, upstream, data, why, whysize):
 * Replace ${upstream}'s file in ${dir} with the string ${data} and a newline: a new
 * file (mode 0600) written, fsync'd and renamed over the old one, then the directory
 * fsync'd, so a crash leaves the old token or the new one, never half of one. 0, or -1
 * with the reason in ${why} (the temporary file is removed).
 */
int state_write(const char *dir, const char *upstream, const char *data, char *why,
    size_t whysize);

/**
 * state_read_secret(path, out, size, mtimep, why, whysize):
 * Read the one-line secret in the file ${path} into ${out} (${size} bytes; one trailing
 * newline dropped) and its modification time into *${mtimep} (may be NULL). 0; 1 if
 * the file does not exist; -1 with the reason in ${why} (unreadable, empty, too long,
 * control characters).
 */
int state_read_secret(const char *path, char *out, size_t size, time_t *mtimep, char *why,
    size_t whysize);

/**
 * state_refresh_token(dir, upstream, file, out, size, why, whysize):
 * The refresh token to start from, into ${out}: the one kept in ${dir} (rotated, or stored
 * by oauth2-login), unless the configured ${file} ("" = none) now holds a different token
 * than the one the kept token replaced (its ".origin" file) -- the admin put a new one
 * there. Modification times are not compared: LoadCredential= copies the file anew at
 * every start. 0; 1 when there is none at all; -1 with the reason in ${why}.
 */
int state_refresh_token(const char *dir, const char *upstream, const char *file, char *out,
    size_t size, char *why, size_t whysize);

/**
 * state_keep_refresh_token(dir, upstream, token, file, why, whysize):
 * Keep ${token} in ${dir} (state_write) and, beside it, the SHA-256 of the token in the
 * configured ${file} ("" = none) that it replaces, for state_refresh_token(). 0 or -1.
 */
int state_keep_refresh_token(const char *dir, const char *upstream, const char *token,
    const char *file, char *why, size_t whysize);

#endif
