#ifndef OAUTH2LOGIN_H
#define OAUTH2LOGIN_H

/*
 * `smtp-tls-proxy oauth2-login [-c FILE] UPSTREAM`: the one-time OAuth 2.0 device
 * authorization grant (RFC 8628) on a headless gateway. It prints a URL and a code for
 * the admin to enter in any browser, polls the token endpoint until the sign-in is done,
 * and keeps the refresh token in state_dir, where the refresh_token flow finds it.
 */

/**
 * oauth2_login_main(argc, argv):
 * Run the command with ${argv}[0] == "oauth2-login". Blocks until the sign-in is done,
 * refused or expired. Return the exit code: 0 once the refresh token is stored, 1 on
 * any failure (one line on stderr saying what), 2 on a usage error. Never prints a
 * token, a device code or the client secret.
 */
int oauth2_login_main(int argc, char **argv);

#endif
