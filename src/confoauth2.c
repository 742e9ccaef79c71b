/*
 * The OAuth2 keys of an upstream, checked across each other once the file is read: the
 * flow has what it needs, the secret and key files are read (so -t proves them), the
 * URLs are HTTPS, the token command can be run. Errors name the key's FILE:LINE.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "config.h"
#include "config_int.h"
#include "statefile.h"
#include "token.h"

#define LINE(k)	config_key_line(ld, k)

/* Where to point an error about a missing key: the flow's line, else the section's. */
static int
flow_line(struct loader *ld)
{
	return (LINE("oauth2_flow") ? LINE("oauth2_flow") : LINE("auth_mechanism"));
}

static void
need(struct loader *ld, const char *value, const char *key, const char *why)
{
	if (value[0] == '\0')
		config_err(ld, flow_line(ld), "oauth2_flow = %s needs %s (%s)",
		    config_flow_str(ld->up->oauth2_flow), key, why);
}

static void
https_only(struct loader *ld, const char *url, const char *key)
{
	if (url[0] != '\0' && strncasecmp(url, "https://", 8) != 0)
		config_err(ld, LINE(key), "%s %s: not an https:// URL (a secret is sent there)",
		    key, url);
}

/* Load a secret file into ${out}, warning when others may read it. */
static void
secret_file(struct loader *ld, const char *key, const char *path, char *out, size_t size)
{
	char why[512];
	struct stat st;
	int rc;

	if ((rc = state_read_secret(path, out, size, NULL, why, sizeof(why))) != 0) {
		config_err(ld, LINE(key), "%s %s", key, rc > 0 ? path : why);
		if (rc > 0)
			config_err(ld, LINE(key), "%s %s: %s", key, path, strerror(ENOENT));
		return;
	}
	if (stat(path, &st) == 0 && (st.st_mode & S_IROTH))
		config_warn(ld, LINE(key), "%s %s is readable by every user of this machine "
		    "(chmod o-r it, or give it with LoadCredential=)", key, path);
}

/* The service-account key: client_email, token_uri and an RSA private key that loads. */
static void
key_file(struct loader *ld)
{
	struct upstream_conf *up = ld->up;
	char why[512], *json;
	EVP_PKEY *pk = NULL;
	long n;
	FILE *f;
	BIO *b;

	if ((f = fopen(up->oauth2_key_file, "re")) == NULL) {
		config_err(ld, LINE("oauth2_key_file"), "oauth2_key_file %s: %s",
		    up->oauth2_key_file, strerror(errno));
		return;
	}
	json = calloc(1, 65536);
	n = json == NULL ? -1 : (long)fread(json, 1, 65535, f);
	fclose(f);
	if (n <= 0 || n == 65535 || token_parse_key(json, (size_t)n, up->oauth2_key_email,
	    sizeof(up->oauth2_key_email), up->oauth2_key_token_uri,
	    sizeof(up->oauth2_key_token_uri), &up->oauth2_key_pem, why, sizeof(why)) != 0)
		config_err(ld, LINE("oauth2_key_file"), "oauth2_key_file %s: %s", up->oauth2_key_file,
		    n <= 0 ? "empty or unreadable" : n == 65535 ? "larger than 64 KB" : why);
	if (json != NULL) {
		OPENSSL_cleanse(json, 65536);
		free(json);
	}
	if (up->oauth2_key_pem == NULL)
		return;
	if ((b = BIO_new_mem_buf(up->oauth2_key_pem, -1)) != NULL)
		pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	if (pk == NULL || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA)
		config_err(ld, LINE("oauth2_key_file"), "oauth2_key_file %s: private_key is not "
		    "an RSA key in PEM", up->oauth2_key_file);
	EVP_PKEY_free(pk);
	if (up->oauth2_key_token_uri[0] != '\0' &&
	    strncasecmp(up->oauth2_key_token_uri, "https://", 8) != 0)
		config_err(ld, LINE("oauth2_key_file"), "oauth2_key_file %s: token_uri is not an "
		    "https:// URL", up->oauth2_key_file);
}

/* The token command: it splits, and its program exists and can be run. */
static void
command(struct loader *ld)
{
	struct upstream_conf *up = ld->up;
	char buf[sizeof(up->oauth2_token_command)], *argv[32];

	if (token_argv(up->oauth2_token_command, buf, sizeof(buf), argv, 32) < 0) {
		config_err(ld, LINE("oauth2_token_command"), "oauth2_token_command: empty, an "
		    "unclosed quote or more than 31 words");
		return;
	}
	if (argv[0][0] != '/')
		config_err(ld, LINE("oauth2_token_command"), "oauth2_token_command %s: give the "
		    "program's absolute path (no shell, no PATH search)", argv[0]);
	else if (access(argv[0], X_OK) != 0)
		config_err(ld, LINE("oauth2_token_command"), "oauth2_token_command %s: %s", argv[0],
		    strerror(errno));
}

/* A refresh token: the file, or one oauth2-login (or a rotation) left in state_dir. */
static void
refresh_token(struct loader *ld)
{
	struct config *c = ld->c;
	char path[4096], tok[AUTH_TOKEN_MAX + 2], why[512];
	struct stat st;
	int rc;

	if (ld->up->oauth2_refresh_token_file[0] != '\0')
		secret_file(ld, "oauth2_refresh_token_file", ld->up->oauth2_refresh_token_file, tok,
		    sizeof(tok));
	OPENSSL_cleanse(tok, sizeof(tok));
	rc = state_refresh_token(c->state_dir, ld->up->name, ld->up->oauth2_refresh_token_file, tok,
	    sizeof(tok), why, sizeof(why));
	OPENSSL_cleanse(tok, sizeof(tok));
	if (state_path(c->state_dir, ld->up->name, path, sizeof(path)) != 0)
		snprintf(path, sizeof(path), "%s", c->state_dir);
	/* oauth2-login is what puts a (new) token there: none, or a broken one, is its job. */
	if (rc < 0 && ld->up->oauth2_refresh_token_file[0] == '\0' &&
	    !(ld->flags & CONFIG_FOR_LOGIN))
		config_err(ld, LINE("state_dir"), "state_dir: %s", why);
	else if (rc > 0 && !(ld->flags & CONFIG_FOR_LOGIN))
		config_err(ld, flow_line(ld), "oauth2_flow = refresh_token needs "
		    "oauth2_refresh_token_file, or a token in %s (Microsoft 365: run "
		    "smtp-tls-proxy oauth2-login %s; Google: see the README)", path, ld->up->name);
	/* A rotated token must be kept, or the next restart uses a dead one. */
	if (stat(c->state_dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
	    access(c->state_dir, W_OK) != 0)
		config_warn(ld, LINE("state_dir"), "state_dir %s is not a writable directory: a "
		    "refresh token the server rotates cannot be kept (systemd: StateDirectory=)",
		    c->state_dir);
}

static void
flow(struct loader *ld)
{
	struct upstream_conf *up = ld->up;

	if (up->oauth2_client_secret[0] != '\0' && up->oauth2_client_secret_file[0] != '\0')
		config_err(ld, LINE("oauth2_client_secret_file"),
		    "set oauth2_client_secret or oauth2_client_secret_file, not both");
	else if (up->oauth2_client_secret_file[0] != '\0')
		secret_file(ld, "oauth2_client_secret_file", up->oauth2_client_secret_file,
		    up->oauth2_client_secret, sizeof(up->oauth2_client_secret));
	switch (up->oauth2_flow) {
	case OAUTH2_CLIENT_CREDENTIALS:
		need(ld, up->oauth2_token_url, "oauth2_token_url", "where tokens are issued");
		need(ld, up->oauth2_client_id, "oauth2_client_id", "the app registration's id");
		if (up->oauth2_client_secret[0] == '\0' && up->oauth2_client_secret_file[0] == '\0')
			need(ld, "", "oauth2_client_secret_file", "the app's client secret");
		need(ld, up->oauth2_scope, "oauth2_scope",
		    "e.g. https://outlook.office365.com/.default");
		break;
	case OAUTH2_REFRESH_TOKEN:
		need(ld, up->oauth2_token_url, "oauth2_token_url", "where tokens are issued");
		need(ld, up->oauth2_client_id, "oauth2_client_id", "the app registration's id");
		refresh_token(ld);
		break;
	case OAUTH2_JWT_BEARER:
		need(ld, up->oauth2_key_file, "oauth2_key_file", "the service account's JSON key");
		need(ld, up->oauth2_scope, "oauth2_scope", "e.g. https://mail.google.com/");
		if (up->oauth2_key_file[0] != '\0')
			key_file(ld);
		if (up->oauth2_token_url[0] == '\0' && up->oauth2_key_token_uri[0] == '\0' &&
		    up->oauth2_key_pem != NULL)
			need(ld, "", "oauth2_token_url", "the key file has no token_uri");
		break;
	case OAUTH2_COMMAND:
		need(ld, up->oauth2_token_command, "oauth2_token_command", "the program to run");
		if (up->oauth2_token_command[0] != '\0')
			command(ld);
		break;
	case OAUTH2_NONE:
		config_err(ld, LINE("auth_mechanism"), "auth_mechanism = %s needs oauth2_flow "
		    "(client_credentials, refresh_token, jwt_bearer or command)",
		    up->auth_mechanism == UP_AUTH_XOAUTH2 ? "xoauth2" : "oauthbearer");
		break;
	}
}

/* FNV-1a over every setting a token depends on, secrets included (the hash stays inside). */
static unsigned long long
fingerprint(const struct upstream_conf *up)
{
	const char *const parts[] = {
		up->name, up->username, up->oauth2_token_url, up->oauth2_client_id,
		up->oauth2_client_secret, up->oauth2_scope, up->oauth2_refresh_token_file,
		up->oauth2_key_email, up->oauth2_subject, up->oauth2_token_command,
		up->oauth2_ca_file, config_flow_str(up->oauth2_flow),
	};
	unsigned long long h = 14695981039346656037ULL;
	const char *s;
	size_t i;

	for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		for (s = parts[i]; *s != '\0'; s++)
			h = (h ^ (unsigned char)*s) * 1099511628211ULL;
		h = (h ^ 0xff) * 1099511628211ULL;	/* "ab","c" is not "a","bc" */
	}
	return (h);
}

void
config_check_oauth2(struct loader *ld)
{
	static const char *const keys[] = {
		"oauth2_flow", "oauth2_token_url", "oauth2_client_id", "oauth2_client_secret",
		"oauth2_client_secret_file", "oauth2_scope", "oauth2_refresh_token_file",
		"oauth2_key_file", "oauth2_subject", "oauth2_token_command", "oauth2_device_url",
		"oauth2_ca_file",
	};
	struct upstream_conf *up = ld->up;
	size_t i;

	if (!UPSTREAM_OAUTH2(up)) {
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (LINE(keys[i]) != 0) {
				config_warn(ld, LINE(keys[i]), "%s is set but auth_mechanism is not "
				    "xoauth2 or oauthbearer: it is not used", keys[i]);
				break;
			}
		return;
	}
	if (up->username[0] == '\0')
		config_err(ld, LINE("auth_mechanism"), "auth_mechanism = %s needs username (the "
		    "mailbox the token is for)", up->auth_mechanism == UP_AUTH_XOAUTH2 ?
		    "xoauth2" : "oauthbearer");
	if (up->password[0] != '\0' || up->password_file[0] != '\0')
		config_err(ld, LINE("password") ? LINE("password") : LINE("password_file"),
		    "a password is not used with auth_mechanism = %s; remove it",
		    up->auth_mechanism == UP_AUTH_XOAUTH2 ? "xoauth2" : "oauthbearer");
	https_only(ld, up->oauth2_token_url, "oauth2_token_url");
	https_only(ld, up->oauth2_device_url, "oauth2_device_url");
	if (up->oauth2_ca_file[0] != '\0' && access(up->oauth2_ca_file, R_OK) != 0)
		config_err(ld, LINE("oauth2_ca_file"), "oauth2_ca_file %s: %s", up->oauth2_ca_file,
		    strerror(errno));
	if (up->oauth2_subject[0] == '\0')
		snprintf(up->oauth2_subject, sizeof(up->oauth2_subject), "%s", up->username);
	flow(ld);
	up->oauth2_fp = fingerprint(up);
}
