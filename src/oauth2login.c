/*
 * oauth2-login (see oauth2login.h): RFC 8628 over libcurl's easy interface. This is a
 * command an admin runs once, not the daemon, so it may block: one request at a time,
 * each bounded by [proxy] timeout, and a sleep between polls.
 *
 * What passes through here is secret (the client secret, the device code, the access and
 * refresh tokens): it goes into form bodies and answer buffers that are wiped after use,
 * and only ever out to the token endpoint and into the state_dir file.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "config.h"
#include "oauth2login.h"
#include "statefile.h"
#include "token.h"

#define PROG		"smtp-tls-proxy oauth2-login"
#define BODY_MAX	65536	/* a token answer is a few KB; more is not a token endpoint */
#define FORM_MAX	8192
#define INTERVAL_DEFAULT 5	/* RFC 8628 3.2: when the answer gives no interval */
#define SLOW_DOWN_STEP	5	/* RFC 8628 3.5: seconds added on each slow_down */
#define EXPIRES_DEFAULT	900	/* expires_in is required; should it be missing, 15 minutes */

/* One HTTPS client for the whole command: its connection is reused across polls. */
struct http {
	CURL			*h;
	struct curl_slist	*headers;
	char			*body;		/* the answer, BODY_MAX + 1 bytes, wiped */
	size_t			 len;
	int			 toolong;
	long			 status;
	char			 err[CURL_ERROR_SIZE];
};

static int fail(const char *, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr, "smtp-tls-proxy oauth2-login: ..."; -1. */
static int
fail(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return (-1);
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [-c FILE] UPSTREAM\n"
	    "  UPSTREAM  default for [upstream]\n"
	    "  -c FILE   configuration (default " CONFIG_DEFAULT_PATH ")\n");
}

/* The upstream called ${name}, or NULL: the one place that will learn [upstream NAME]. */
static struct upstream_conf *
find_upstream(struct config *c, const char *name)
{
	return (config_upstream(c, name));
}

/* 0 if ${up} can be signed in with a device code; else say why and -1. */
static int
check_upstream(const struct config *c, const struct upstream_conf *up)
{
	char missing[128] = "";
	struct stat st;

	if (!UPSTREAM_OAUTH2(up)) {
		fail("upstream %s does not log in with OAuth2 (auth_mechanism is not xoauth2 or "
		    "oauthbearer): there is nothing to sign in for", up->name);
		return (-1);
	}
	if (up->oauth2_flow != OAUTH2_REFRESH_TOKEN) {
		fail("upstream %s uses oauth2_flow = %s, which takes no refresh token; "
		    "oauth2-login is for oauth2_flow = refresh_token", up->name,
		    config_flow_str(up->oauth2_flow));
		return (-1);
	}
	if (up->oauth2_device_url[0] == '\0')
		strcat(missing, " oauth2_device_url");
	if (up->oauth2_token_url[0] == '\0')
		strcat(missing, " oauth2_token_url");
	if (up->oauth2_client_id[0] == '\0')
		strcat(missing, " oauth2_client_id");
	if (missing[0] != '\0') {
		fail("upstream %s: oauth2-login needs%s in its section of %s", up->name, missing,
		    c->path);
		return (-1);
	}
	/* Before the admin is sent to sign in, not after. */
	if (stat(c->state_dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
	    access(c->state_dir, W_OK) != 0) {
		fail("state_dir %s is not a writable directory: the refresh token could not be "
		    "kept (create it, or run as its owner)", c->state_dir);
		return (-1);
	}
	return (0);
}

/* libcurl's write callback: keep at most BODY_MAX bytes, then make it give up. */
static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct http *x = arg;

	n *= size;
	if (n > BODY_MAX - x->len) {
		x->toolong = 1;
		return (0);
	}
	memcpy(x->body + x->len, p, n);
	x->len += n;
	x->body[x->len] = '\0';
	return (n);
}

static void
http_free(struct http *x)
{
	if (x->body != NULL) {
		OPENSSL_cleanse(x->body, BODY_MAX + 1);
		free(x->body);
	}
	curl_slist_free_all(x->headers);
	if (x->h != NULL)
		curl_easy_cleanup(x->h);
}

/* HTTPS only, no redirects, the endpoint verified against oauth2_ca_file or the system's. */
static int
http_init(struct http *x, const struct config *c, const struct upstream_conf *up)
{
	long t = c->timeout > 0 ? (long)c->timeout : 300;

	memset(x, 0, sizeof(*x));
	if ((x->body = calloc(1, BODY_MAX + 1)) == NULL || (x->h = curl_easy_init()) == NULL ||
	    (x->headers = curl_slist_append(NULL, "Accept: application/json")) == NULL) {
		http_free(x);
		return (fail("out of memory"));
	}
	if (curl_easy_setopt(x->h, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK ||
	    curl_easy_setopt(x->h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(x->h, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
	    curl_easy_setopt(x->h, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
	    (up->oauth2_ca_file[0] != '\0' &&
	    curl_easy_setopt(x->h, CURLOPT_CAINFO, up->oauth2_ca_file) != CURLE_OK) ||
	    curl_easy_setopt(x->h, CURLOPT_CONNECTTIMEOUT, t) != CURLE_OK ||
	    curl_easy_setopt(x->h, CURLOPT_TIMEOUT, t) != CURLE_OK ||
	    curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->headers) != CURLE_OK ||
	    curl_easy_setopt(x->h, CURLOPT_USERAGENT, "smtp-tls-proxy") != CURLE_OK ||
	    curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
	    curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x) != CURLE_OK ||
	    curl_easy_setopt(x->h, CURLOPT_ERRORBUFFER, x->err) != CURLE_OK) {
		http_free(x);
		return (fail("libcurl refused an option (built without HTTPS?)"));
	}
	return (0);
}

/* POST the ${len}-byte form to ${url}: 0 with the answer in ${x}, or -1 after one line. */
static int
http_post(struct http *x, const char *url, const char *form, size_t len)
{
	CURLcode rc;

	OPENSSL_cleanse(x->body, x->len);
	x->len = 0;
	x->body[0] = '\0';
	x->toolong = 0;
	x->status = 0;
	x->err[0] = '\0';
	if (curl_easy_setopt(x->h, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, form) != CURLE_OK ||
	    curl_easy_setopt(x->h, CURLOPT_POSTFIELDSIZE, (long)len) != CURLE_OK) {
		fail("POST %s: libcurl refused the URL", url);
		return (-1);
	}
	rc = curl_easy_perform(x->h);
	/* The handle keeps no pointer to a form that is wiped and gone after this call. */
	(void)curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, "");
	if (rc != CURLE_OK) {
		if (x->toolong)
			fail("POST %s: the answer is larger than %d bytes", url, BODY_MAX);
		else
			fail("POST %s: %s%s%s", url, curl_easy_strerror(rc),
			    x->err[0] != '\0' ? ": " : "", x->err);
		return (-1);
	}
	(void)curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->status);
	return (0);
}

/* The form's common part: client_id, and the secret only for a confidential client. */
static int
form_client(char *form, size_t *lenp, const struct upstream_conf *up)
{
	if (token_form_add(form, FORM_MAX, lenp, "client_id", up->oauth2_client_id) != 0)
		return (-1);
	if (up->oauth2_client_secret[0] != '\0' && token_form_add(form, FORM_MAX, lenp,
	    "client_secret", up->oauth2_client_secret) != 0)
		return (-1);
	return (0);
}

/* 1 if ${s} is printable ASCII without spaces: safe to print for the admin to follow. */
static int
is_clean(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return (0);
	return (1);
}

/* What an error code the admin can meet means for them. */
static const char *
hint(const char *error)
{
	if (strcmp(error, "expired_token") == 0)
		return (" (the code expired before the sign-in was done: run oauth2-login again)");
	if (strcmp(error, "access_denied") == 0)
		return (" (the sign-in was declined)");
	if (strcmp(error, "invalid_scope") == 0)
		return (" (check oauth2_scope)");
	if (strcmp(error, "invalid_client") == 0 || strcmp(error, "unauthorized_client") == 0)
		return (" (check oauth2_client_id, and that the app allows public client flows)");
	return ("");
}

/* Read the answer in ${x} into ${t}: 0, or -1 after one line naming ${what}. */
static int
answer(struct http *x, const char *what, const char *url, struct token_resp *t)
{
	char why[256], line[512];

	if (token_parse(x->body, x->len, t, why, sizeof(why)) != 0) {
		fail("%s at %s: HTTP %ld, and the answer is not usable: %s", what, url,
		    x->status, why);
		return (-1);
	}
	if (x->status == 200 && t->error[0] == '\0')
		return (0);
	token_describe_error(x->status, t, 1, line, sizeof(line));
	fail("%s at %s: %s%s", what, url, line, hint(t->error));
	token_wipe(t);
	return (-1);
}

/* RFC 8628 3.1-3.3: ask for a device code, tell the admin where to sign in. */
static int
device_start(struct http *x, const struct upstream_conf *up, struct token_resp *d)
{
	char form[FORM_MAX];
	size_t n = 0;
	int rc = -1;

	if (form_client(form, &n, up) != 0 || (up->oauth2_scope[0] != '\0' &&
	    token_form_add(form, sizeof(form), &n, "scope", up->oauth2_scope) != 0))
		fail("upstream %s: oauth2_client_id and oauth2_scope are too long", up->name);
	else if (http_post(x, up->oauth2_device_url, form, n) == 0 &&
	    answer(x, "device authorization", up->oauth2_device_url, d) == 0)
		rc = 0;
	OPENSSL_cleanse(form, sizeof(form));
	if (rc != 0)
		return (-1);
	if (d->device_code[0] == '\0' || d->user_code[0] == '\0' ||
	    d->verification_uri[0] == '\0') {
		fail("device authorization at %s: the answer lacks device_code, user_code or "
		    "verification_uri (is oauth2_device_url the device authorization endpoint?)",
		    up->oauth2_device_url);
		return (-1);
	}
	if (!is_clean(d->user_code) || !is_clean(d->verification_uri) ||
	    !is_clean(d->verification_uri_complete)) {
		fail("device authorization at %s: the user code or verification URI holds "
		    "spaces or control characters", up->oauth2_device_url);
		return (-1);
	}
	if (d->interval <= 0)
		d->interval = INTERVAL_DEFAULT;
	if (d->expires_in <= 0)
		d->expires_in = EXPIRES_DEFAULT;
	printf("To sign in upstream %s%s%s, open\n\n    %s\n\nin a browser and enter the code"
	    "\n\n    %s\n\n", up->name, up->username[0] != '\0' ? " as " : "", up->username,
	    d->verification_uri, d->user_code);
	if (d->verification_uri_complete[0] != '\0')
		printf("or open this address, which holds the code:\n\n    %s\n\n",
		    d->verification_uri_complete);
	printf("The code is valid for %ld minutes. Waiting for the sign-in...\n",
	    (d->expires_in + 59) / 60);
	fflush(stdout);
	return (0);
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + ts.tv_nsec / 1e9);
}

static void
pause_for(long secs)
{
	struct timespec ts = { secs, 0 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/*
 * RFC 8628 3.4-3.5: poll the token endpoint every interval until the admin signed in
 * (0, the tokens in ${t}), refused, or the code expired (-1 after one line).
 */
static int
device_poll(struct http *x, const struct upstream_conf *up, const struct token_resp *d,
    struct token_resp *t)
{
	double deadline = now() + (double)d->expires_in;
	long interval = d->interval;
	char form[FORM_MAX], why[256];
	size_t n = 0;
	int rc;

	if (token_form_add(form, sizeof(form), &n, "grant_type",
	    "urn:ietf:params:oauth:grant-type:device_code") != 0 ||
	    token_form_add(form, sizeof(form), &n, "device_code", d->device_code) != 0 ||
	    form_client(form, &n, up) != 0) {
		OPENSSL_cleanse(form, sizeof(form));
		return (fail("upstream %s: the device code and client id are too long", up->name));
	}
	for (;;) {
		pause_for(interval);
		if (now() >= deadline) {
			rc = fail("the code expired before the sign-in was done; run oauth2-login "
			    "again");
			break;
		}
		if (http_post(x, up->oauth2_token_url, form, n) != 0) {
			rc = -1;
			break;
		}
		/* Still waiting: the two errors that are not an answer yet. */
		if (token_parse(x->body, x->len, t, why, sizeof(why)) == 0) {
			if (strcmp(t->error, "authorization_pending") == 0)
				continue;
			if (strcmp(t->error, "slow_down") == 0) {
				interval += SLOW_DOWN_STEP;
				continue;
			}
			token_wipe(t);
		}
		rc = answer(x, "token request", up->oauth2_token_url, t);
		break;
	}
	OPENSSL_cleanse(form, sizeof(form));
	return (rc == 0 ? 0 : -1);
}

/* Keep the refresh token where the refresh_token flow looks for it: 0 or -1. */
static int
store(const struct config *c, const struct upstream_conf *up, const struct token_resp *t)
{
	char path[4096], why[512];

	if (t->refresh_token[0] == '\0')
		return (fail("signed in, but the token endpoint gave no refresh token: for "
		    "Microsoft add offline_access to oauth2_scope, then run oauth2-login again"));
	/* Given to state_dir's owner when run as root (the service's dynamic user). */
	if (state_keep_refresh_token(c->state_dir, up->name, t->refresh_token,
	    up->oauth2_refresh_token_file, why, sizeof(why)) != 0)
		return (fail("cannot store the refresh token: %s", why));
	if (state_path(c->state_dir, up->name, path, sizeof(path)) != 0)
		return (-1);
	printf("Signed in. The refresh token for upstream %s is stored in %s (mode 0600);\n"
	    "the proxy uses it from its next start or reload (systemctl reload "
	    "smtp-tls-proxy).\n", up->name, path);
	fflush(stdout);
	return (0);
}

int
oauth2_login_main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	struct token_resp d, t;
	struct upstream_conf *up;
	struct config *c;
	struct http x;
	char errs[8192];
	int ch, rc = 1;

	while ((ch = getopt(argc, argv, "c:h")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return (0);
		default:
			usage(stderr);
			return (2);
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return (2);
	}
	if ((c = config_load_flags(path, CONFIG_FOR_LOGIN, errs, sizeof(errs))) == NULL) {
		fputs(errs, stderr);
		return (1);
	}
	fputs(c->warnings, stderr);
	if ((up = find_upstream(c, argv[optind])) == NULL) {
		fail("no upstream %s in %s (the unnamed [upstream] is called default)",
		    argv[optind], path);
		config_unref(c);
		return (1);
	}
	if (check_upstream(c, up) != 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
		config_unref(c);
		return (1);
	}
	memset(&d, 0, sizeof(d));
	memset(&t, 0, sizeof(t));
	if (http_init(&x, c, up) == 0) {
		if (device_start(&x, up, &d) == 0 && device_poll(&x, up, &d, &t) == 0)
			rc = store(c, up, &t) == 0 ? 0 : 1;
		http_free(&x);
	}
	token_wipe(&d);
	token_wipe(&t);
	curl_global_cleanup();
	config_unref(c);
	return (rc);
}
