/*
 * The checks across keys, once every line is read: listen addresses, the names the
 * proxy and its upstream go by, the credentials (read from password_file here, so -t
 * proves the file) and the TLS context (so -t proves the CA file and the cipher list).
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config.h"
#include "config_int.h"
#include "tlsctx.h"

static int
read_password_file(struct loader *ld)
{
	struct config *c = ld->c;
	int line = config_key_line(ld, "password_file");
	struct stat st;
	ssize_t n;
	int fd;

	if ((fd = open(c->up.password_file, O_RDONLY | O_CLOEXEC)) < 0) {
		config_err(ld, line, "password_file %s: %s", c->up.password_file, strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & S_IROTH))
		config_warn(ld, line, "password_file %s is readable by every user of this machine "
		    "(chmod o-r it, or give it with LoadCredential=)", c->up.password_file);
	n = read(fd, c->up.password, sizeof(c->up.password));
	close(fd);
	if (n < 0) {
		config_err(ld, line, "password_file %s: %s", c->up.password_file, strerror(errno));
		return (-1);
	}
	if ((size_t)n == sizeof(c->up.password)) {
		OPENSSL_cleanse(c->up.password, sizeof(c->up.password));
		config_err(ld, line, "password_file %s: longer than %zu bytes", c->up.password_file,
		    sizeof(c->up.password) - 1);
		return (-1);
	}
	c->up.password[n] = '\0';
	/* One trailing newline is how editors save a one-line file, not part of the secret. */
	if (n > 0 && c->up.password[n - 1] == '\n')
		c->up.password[--n] = '\0';
	if (n > 0 && c->up.password[n - 1] == '\r')
		c->up.password[--n] = '\0';
	if (n == 0 || config_has_control(c->up.password)) {
		config_err(ld, line, "password_file %s: empty, or control characters in it",
		    c->up.password_file);
		return (-1);
	}
	return (0);
}

/* Listen addresses are numeric and not v4-mapped: caught here, so -t says it with the line. */
static void
check_listen(struct loader *ld)
{
	static const unsigned char mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
	struct config *c = ld->c;
	int line = config_key_line(ld, "listen");
	unsigned char a[16];
	size_t i;

	c->listen_explicit = line != 0;
	for (i = 0; i < c->nlisten; i++) {
		if (inet_pton(AF_INET, c->listen[i].host, a) == 1)
			continue;
		if (inet_pton(AF_INET6, c->listen[i].host, a) != 1)
			config_err(ld, line, "listen %s: not a numeric IPv4 or IPv6 address",
			    c->listen[i].host);
		else if (memcmp(a, mapped, 12) == 0)
			config_err(ld, line, "listen [%s]: an IPv4-mapped address; write it as IPv4",
			    c->listen[i].host);
	}
}

/* The names: the upstream's (required), its TLS mode and SNI by default, and ours. */
static void
check_names(struct loader *ld)
{
	struct config *c = ld->c;
	char name[256];

	if (c->up.host[0] == '\0')
		config_err(ld, ld->section_line[1], "[upstream] host is required");
	if (!config_key_line(ld, "tls"))
		c->up.tls = c->up.port == 465 ? UP_TLS_IMPLICIT : UP_TLS_STARTTLS;
	if (c->up.server_name[0] == '\0')
		snprintf(c->up.server_name, sizeof(c->up.server_name), "%s", c->up.host);
	if (c->hostname[0] == '\0') {
		if (gethostname(name, sizeof(name)) != 0)
			name[0] = '\0';
		name[sizeof(name) - 1] = '\0';
		snprintf(c->hostname, sizeof(c->hostname), "%s", name);
	}
	/* Relays reject EHLO localhost or a bare label: demand a name they accept. */
	if (strcasecmp(c->hostname, "localhost") == 0 ||
	    strncasecmp(c->hostname, "localhost.", 10) == 0 || strchr(c->hostname, '.') == NULL)
		config_err(ld, config_key_line(ld, "hostname"),
		    "hostname '%s' is not a fully-qualified name; set hostname in [proxy] "
		    "to this gateway's DNS name (mail servers reject EHLO localhost)", c->hostname);
}

/* The first public network in allow, or NULL. */
static const struct cidr *
public_allow(const struct config *c)
{
	size_t i;

	for (i = 0; i < c->nallow; i++)
		if (!cidr_is_private(&c->allow[i]))
			return (&c->allow[i]);
	return (NULL);
}

/* Credentials: complete, read, and never offered to a public network. */
static void
check_credentials(struct loader *ld)
{
	struct config *c = ld->c;
	int pline = config_key_line(ld, "password");
	int fline = config_key_line(ld, "password_file");
	int aline = config_key_line(ld, "allow");
	const struct cidr *pub = public_allow(c);
	char addr[INET6_ADDRSTRLEN];

	if (c->up.username[0] != '\0') {
		if (UPSTREAM_OAUTH2(&c->up))
			;	/* the token's keys: config_check_oauth2() */
		else if (c->up.password[0] != '\0' && c->up.password_file[0] != '\0')
			config_err(ld, fline, "set password or password_file, not both");
		else if (c->up.password_file[0] != '\0')
			(void)read_password_file(ld);
		else if (c->up.password[0] == '\0')
			config_err(ld, config_key_line(ld, "username"),
			    "username is set but neither password nor password_file");
		if (pub != NULL)
			config_err(ld, aline, "allow has a public network while username is set: "
			    "anyone there could send mail as %s (open relay)", c->up.username);
		return;
	}
	if (c->up.password[0] != '\0' || c->up.password_file[0] != '\0')
		config_err(ld, pline ? pline : fline, "password given without username");
	/* The devices' own AUTH passes through, but many relays trust an address. */
	if (pub != NULL) {
		if (inet_ntop(pub->family, pub->addr, addr, sizeof(addr)) == NULL)
			addr[0] = '\0';
		config_warn(ld, aline, "allow has a public network (%s/%d) and no username: an open "
		    "relay wherever the upstream trusts this gateway's address", addr, pub->bits);
	}
}

/* The TLS context towards the upstream: proves the CA file and the cipher list. */
static void
make_tls(struct loader *ld)
{
	struct config *c = ld->c;
	char key[600], why[512];
	int bad_ciphers;

	snprintf(key, sizeof(key), "%s|%d|%s|%d|%d", c->up.host, c->up.port, c->up.server_name,
	    c->up.verify, c->up.min_tls);
	c->up.tlsctx = tlsctx_new_client(key, c->up.ca_file, c->up.verify, c->up.min_tls,
	    c->up.tls_ciphers, &bad_ciphers, why, sizeof(why));
	if (c->up.tlsctx == NULL && bad_ciphers)
		config_err(ld, config_key_line(ld, "tls_ciphers"),
		    "tls_ciphers '%s': no TLS 1.2 cipher OpenSSL knows matches (%s)",
		    c->up.tls_ciphers, why);
	else if (c->up.tlsctx == NULL)
		config_err(ld, config_key_line(ld, "ca_file"), "ca_file %s: %s",
		    c->up.ca_file[0] ? c->up.ca_file : "(system store)", why);
}

void
config_check(struct loader *ld)
{
	check_listen(ld);
	check_names(ld);
	check_credentials(ld);
	config_check_oauth2(ld);
	if (ld->nerr == 0)
		make_tls(ld);
}
