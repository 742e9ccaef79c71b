/*
 * The checks across keys, once every line is read: listen addresses, the names the
 * proxy and its upstream go by, the credentials (read from password_file here, so -t
 * proves the file) and the TLS context (so -t proves the CA file, the cipher list and the
 * client certificate and key).
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
	int line = config_key_line(ld, "password_file");
	struct stat st;
	ssize_t n;
	int fd;

	if ((fd = open(ld->up->password_file, O_RDONLY | O_CLOEXEC)) < 0) {
		config_err(ld, line, "password_file %s: %s", ld->up->password_file, strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & S_IROTH))
		config_warn(ld, line, "password_file %s is readable by every user of this machine "
		    "(chmod o-r it, or give it with LoadCredential=)", ld->up->password_file);
	n = read(fd, ld->up->password, sizeof(ld->up->password));
	close(fd);
	if (n < 0) {
		config_err(ld, line, "password_file %s: %s", ld->up->password_file, strerror(errno));
		return (-1);
	}
	if ((size_t)n == sizeof(ld->up->password)) {
		OPENSSL_cleanse(ld->up->password, sizeof(ld->up->password));
		config_err(ld, line, "password_file %s: longer than %zu bytes", ld->up->password_file,
		    sizeof(ld->up->password) - 1);
		return (-1);
	}
	ld->up->password[n] = '\0';
	/* One trailing newline is how editors save a one-line file, not part of the secret. */
	if (n > 0 && ld->up->password[n - 1] == '\n')
		ld->up->password[--n] = '\0';
	if (n > 0 && ld->up->password[n - 1] == '\r')
		ld->up->password[--n] = '\0';
	if (n == 0 || config_has_control(ld->up->password)) {
		config_err(ld, line, "password_file %s: empty, or control characters in it",
		    ld->up->password_file);
		return (-1);
	}
	return (0);
}

void
config_check_addrs(struct loader *ld, const struct listen_addr *list, size_t n, int line)
{
	static const unsigned char mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
	unsigned char a[16];
	size_t i;

	for (i = 0; i < n; i++) {
		if (inet_pton(AF_INET, list[i].host, a) == 1)
			continue;
		if (inet_pton(AF_INET6, list[i].host, a) != 1)
			config_err(ld, line, "listen %s: not a numeric IPv4 or IPv6 address",
			    list[i].host);
		else if (memcmp(a, mapped, 12) == 0)
			config_err(ld, line, "listen [%s]: an IPv4-mapped address; write it as IPv4",
			    list[i].host);
	}
}

static void
check_listen(struct loader *ld)
{
	struct config *c = ld->c;
	int line = config_key_line(ld, "listen");

	c->listen_explicit = line != 0;
	config_check_addrs(ld, c->listen, c->nlisten, line);
}

/* The upstream's names: its host (required), its TLS mode and SNI by default. */
static void
check_upstream_names(struct loader *ld)
{
	if (ld->up->host[0] == '\0' && ld->up->slot == 0)
		config_err(ld, ld->section_line[1], "[upstream] host is required");
	else if (ld->up->host[0] == '\0')
		config_err(ld, ld->up->line, "[upstream %s] host is required", ld->up->name);
	if (!config_key_line(ld, "tls"))
		ld->up->tls = ld->up->port == 465 ? UP_TLS_IMPLICIT : UP_TLS_STARTTLS;
	if (ld->up->server_name[0] == '\0')
		snprintf(ld->up->server_name, sizeof(ld->up->server_name), "%s", ld->up->host);
}

/* The name we go by: fully qualified, or relays refuse our EHLO. */
static void
check_hostname(struct loader *ld)
{
	struct config *c = ld->c;
	char name[256];

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

	if (ld->up->username[0] != '\0') {
		if (UPSTREAM_OAUTH2(ld->up))
			;	/* the token's keys: config_check_oauth2() */
		else if (ld->up->password[0] != '\0' && ld->up->password_file[0] != '\0')
			config_err(ld, fline, "set password or password_file, not both");
		else if (ld->up->password_file[0] != '\0')
			(void)read_password_file(ld);
		else if (ld->up->password[0] == '\0')
			config_err(ld, config_key_line(ld, "username"),
			    "username is set but neither password nor password_file");
		if (pub != NULL)
			config_err(ld, aline, "allow has a public network while username is set: "
			    "anyone there could send mail as %s (open relay)", ld->up->username);
		return;
	}
	if (ld->up->password[0] != '\0' || ld->up->password_file[0] != '\0')
		config_err(ld, pline ? pline : fline, "password given without username");
	/* The devices' own AUTH passes through, but many relays trust an address. */
	if (pub != NULL) {
		if (inet_ntop(pub->family, pub->addr, addr, sizeof(addr)) == NULL)
			addr[0] = '\0';
		config_warn(ld, aline, "allow has a public network (%s/%d) and no username: an open "
		    "relay wherever the upstream trusts this gateway's address", addr, pub->bits);
	}
}

/*
 * Kept sessions hold their max_connections slot in each worker: reuse for every worker
 * must leave room for sessions in use. Without a login of the proxy's own there is
 * nothing to reuse (the device's AUTH passes through). Where the default would hold
 * them all (a provider that allows a few connections), it stands aside unasked.
 */
static void
check_reuse(struct loader *ld)
{
	struct upstream_conf *up = ld->up;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned long workers = ld->c->workers > 0 ? ld->c->workers : ncpu > 0 ?
	    (unsigned long)ncpu : 1;

	if (up->reuse == 0)
		return;
	if (config_key_line(ld, "reuse") == 0 && up->reuse == REUSE_DEFAULT &&
	    (up->username[0] == '\0' || up->reuse * workers >= up->max_connections)) {
		up->reuse = 0;
		return;
	}
	if (up->username[0] == '\0') {
		if (up->reuse != REUSE_DEFAULT)	/* the default needs no word */
			config_warn(ld, config_key_line(ld, "reuse"), "reuse = %lu: no "
			    "username, so the devices' own AUTH passes through and no session "
			    "is ever reused", up->reuse);
	} else if (up->reuse * workers >= up->max_connections)
		config_warn(ld, config_key_line(ld, "reuse"), "reuse = %lu per worker (%lu "
		    "worker%s) can hold all max_connections = %lu sessions idle", up->reuse,
		    workers, workers == 1 ? "" : "s", up->max_connections);
}

/*
 * The client certificate keys: both or neither, and each file readable (said with its
 * own line and errno, clearer than OpenSSL's words); -1 when the context cannot be made.
 */
static int
check_client_cert(struct loader *ld)
{
	const struct upstream_conf *up = ld->up;
	int cline = config_key_line(ld, "client_cert_file");
	int kline = config_key_line(ld, "client_key_file");
	struct stat st;
	int fd;

	if ((up->client_cert_file[0] == '\0') != (up->client_key_file[0] == '\0')) {
		config_err(ld, cline ? cline : kline, "set client_cert_file and client_key_file "
		    "together (the certificate presented to the upstream and its key)");
		return (-1);
	}
	if (up->client_cert_file[0] == '\0')
		return (0);
	if ((fd = open(up->client_cert_file, O_RDONLY | O_CLOEXEC)) < 0) {
		config_err(ld, cline, "client_cert_file %s: %s", up->client_cert_file,
		    strerror(errno));
		return (-1);
	}
	close(fd);
	if ((fd = open(up->client_key_file, O_RDONLY | O_CLOEXEC)) < 0) {
		config_err(ld, kline, "client_key_file %s: %s", up->client_key_file,
		    strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & S_IROTH))
		config_warn(ld, kline, "client_key_file %s is readable by every user of this "
		    "machine (chmod o-r it, or give it with LoadCredential=)", up->client_key_file);
	close(fd);
	return (0);
}

/*
 * The TLS context towards the upstream: proves the CA file, the cipher list and the
 * client certificate and key (read here, so a reload reads a renewed one).
 */
static void
make_tls(struct loader *ld)
{
	struct upstream_conf *up = ld->up;
	struct tlsctx_opts o;
	enum tlsctx_bad bad;
	char key[600], why[512];

	if (check_client_cert(ld) != 0)
		return;
	snprintf(key, sizeof(key), "%s|%d|%s|%d|%d", up->host, up->port, up->server_name,
	    up->verify, up->min_tls);
	memset(&o, 0, sizeof(o));
	o.key = key;
	o.ca_file = up->ca_file;
	o.verify = up->verify;
	o.min_tls = up->min_tls;
	o.ciphers = up->tls_ciphers;
	o.pins = &up->pins;
	o.cert_file = up->client_cert_file;
	o.key_file = up->client_key_file;
	if ((up->tlsctx = tlsctx_new_client(&o, &bad, why, sizeof(why))) != NULL)
		return;
	switch (bad) {
	case TLSCTX_BAD_CIPHERS:
		config_err(ld, config_key_line(ld, "tls_ciphers"),
		    "tls_ciphers '%s': no TLS 1.2 cipher OpenSSL knows matches (%s)",
		    up->tls_ciphers, why);
		break;
	case TLSCTX_BAD_CERT:
		config_err(ld, config_key_line(ld, "client_cert_file"),
		    "client_cert_file %s: not a PEM certificate OpenSSL accepts (%s)",
		    up->client_cert_file, why);
		break;
	case TLSCTX_BAD_KEY:
		config_err(ld, config_key_line(ld, "client_key_file"),
		    "client_key_file %s: not an unencrypted PEM private key matching "
		    "client_cert_file (%s)", up->client_key_file, why);
		break;
	case TLSCTX_BAD_CA:
		config_err(ld, config_key_line(ld, "ca_file"), "ca_file %s: %s",
		    up->ca_file[0] ? up->ca_file : "(system store)", why);
		break;
	}
}

void
config_check(struct loader *ld)
{
	struct config *c = ld->c;
	size_t i;

	check_listen(ld);
	config_check_listeners(ld);
	check_hostname(ld);
	/* Each upstream the same way: config_key_line() now answers for its section. */
	for (i = 0; i < c->nups; i++) {
		ld->up = c->ups[i];
		ld->cur_kind = "upstream";
		ld->cur_lines = ld->up->keyline;
		check_upstream_names(ld);
		check_credentials(ld);
		check_reuse(ld);
		config_check_oauth2(ld);
		if (ld->nerr == 0)
			make_tls(ld);
	}
	ld->up = NULL;
	ld->cur_kind = NULL;
	ld->cur_lines = NULL;
	config_check_devices(ld);
	if (ld->nerr == 0)
		config_check_intercepts(ld);
}
