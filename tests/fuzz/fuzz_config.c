/*
 * fuzz_config: the input as a config file through config_load() and config_unref().
 *
 * The file lives at one path per process. Inputs naming device or proc files are
 * skipped: ca_file = /dev/zero would make OpenSSL read forever, a harness hang and
 * not a bug (config_load trusts its operator's paths by design).
 */
#include <unistd.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void
remove_file(void)
{
	if (path[0] != '\0')
		(void)unlink(path);
}

static int
mentions(const uint8_t *d, size_t n, const char *word)
{
	return (memmem(d, n, word, strlen(word)) != NULL);
}

static int
has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return (1);
	return (0);
}

/* Every line of ${errs} is "PATH:LINE: message" or "PATH: message"; passwords masked. */
static void
check_errs(const char *errs)
{
	size_t pl = strlen(path);
	const char *l = errs, *nl, *msg;

	while (*l != '\0') {
		if ((nl = strchr(l, '\n')) == NULL)
			nl = l + strlen(l);	/* a cut last line */
		if ((size_t)(nl - l) >= pl && strncmp(l, path, pl) != 0)
			abort();
		msg = l + pl;
		if (msg < nl && *msg == ':') {
			msg++;
			while (msg < nl && *msg >= '0' && *msg <= '9')
				msg++;
			if (msg < nl && *msg == ':')
				msg++;
			if (msg < nl && *msg == ' ')
				msg++;
			if ((size_t)(nl - msg) >= 11 && strncmp(msg, "password = ", 11) == 0 &&
			    ((size_t)(nl - msg) < 19 || strncmp(msg + 11, "********", 8) != 0))
				abort();
		}
		if (*nl == '\0')
			break;
		l = nl + 1;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c;
	char *errs;
	size_t errsize, i;
	FILE *f;

	if (mentions(data, size, "dev") || mentions(data, size, "proc") ||
	    mentions(data, size, "sys") || mentions(data, size, "fd/"))
		return (0);
	if (path[0] == '\0') {
		snprintf(path, sizeof(path), "/tmp/fuzz_config.%ld.ini", (long)getpid());
		atexit(remove_file);
	}
	if ((f = fopen(path, "w")) == NULL)
		abort();
	if (size > 0 && fwrite(data, 1, size, f) != size)
		abort();
	if (fclose(f) != 0)
		abort();

	/* Mostly a roomy buffer; sometimes a tiny one, to test cutting. */
	errsize = (size % 5 == 0) ? 1 + size % 97 : 4096;
	if ((errs = malloc(errsize)) == NULL)
		abort();
	memset(errs, 0xA5, errsize);
	c = config_load(path, errs, errsize);
	if (memchr(errs, '\0', errsize) == NULL)
		abort();
	if (errsize == 4096)
		check_errs(errs);
	if (c == NULL) {
		if (errsize > 1 && errs[0] == '\0')
			abort();	/* refused without a word */
	} else {
		if (errs[0] != '\0')
			abort();	/* accepted with errors */
		if (c->refs != 1 || c->nlisten < 1 || c->nlisten > CONFIG_MAX_LISTEN ||
		    c->nallow > CONFIG_MAX_ALLOW || c->up.host[0] == '\0' ||
		    c->up.port < 1 || c->up.port > 65535 || c->up.tlsctx == NULL ||
		    strchr(c->hostname, '.') == NULL || c->max_sessions < 1 ||
		    c->timeout < 1 || c->up.server_name[0] == '\0')
			abort();
		for (i = 0; i < c->nlisten; i++)
			if (c->listen[i].port < 0 || c->listen[i].port > 65535 ||
			    c->listen[i].host[0] == '\0')
				abort();
		if (has_control(c->hostname) || has_control(c->up.host) ||
		    has_control(c->up.server_name) || has_control(c->up.username) ||
		    has_control(c->up.password))
			abort();
		if ((c->up.username[0] != '\0') != (c->up.password[0] != '\0'))
			abort();
		if (config_ref(c) != c || c->refs != 2)
			abort();
		config_unref(c);
		config_unref(c);
	}
	config_unref(NULL);
	free(errs);
	return (0);
}
