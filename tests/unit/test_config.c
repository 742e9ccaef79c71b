/* config: config_load() on temporary files, its defaults and its error messages. */
#include "unit.h"

#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "config.h"

#define CA	"ca_file = /etc/ssl/certs/ca-certificates.crt\n"

static char dir[64];
static char cfgpath[128];
static char pwpath[128];
static char errs[4096];

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/unit-config-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return (-1);
	snprintf(cfgpath, sizeof(cfgpath), "%s/proxy.ini", dir);
	snprintf(pwpath, sizeof(pwpath), "%s/password", dir);
	return (0);
}

static int
teardown(void **state)
{
	(void)state;
	(void)unlink(cfgpath);
	(void)unlink(pwpath);
	return (rmdir(dir));
}

static void
write_file(const char *path, const char *text, size_t n)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* Load ${text} as the configuration file; errors land in errs. */
static struct config *
load(const char *text)
{
	write_file(cfgpath, text, strlen(text));
	memset(errs, 'Z', sizeof(errs));
	return (config_load(cfgpath, errs, sizeof(errs)));
}

/* The first error is exactly "PATH:LINE: " followed by a message containing ${part}. */
static void
assert_error(struct config *c, int line, const char *part)
{
	char prefix[256];
	const char *nl;

	assert_null(c);
	assert_non_null(memchr(errs, '\0', sizeof(errs)));
	if (line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", cfgpath, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", cfgpath);
	if (strncmp(errs, prefix, strlen(prefix)) != 0)
		fail_msg("error \"%s\" does not start with \"%s\"", errs, prefix);
	nl = strchr(errs, '\n');
	assert_non_null(nl);
	if (strstr(errs, part) == NULL || strstr(errs, part) > nl)
		fail_msg("error \"%s\" does not say \"%s\"", errs, part);
}

static void
assert_loads(struct config *c)
{
	if (c == NULL)
		fail_msg("config did not load: %s", errs);
	assert_string_equal(errs, "");
}

static void
test_config_minimal_file_gets_documented_defaults(void **state)
{
	struct config *c;
	struct cidr want;

	(void)state;
	c = load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mail.example.org\n" CA);
	assert_loads(c);
	assert_int_equal(c->refs, 1);
	assert_string_equal(c->path, cfgpath);
	assert_int_equal(c->nlisten, 2);
	assert_string_equal(c->listen[0].host, "127.0.0.1");
	assert_int_equal(c->listen[0].port, 2525);
	assert_string_equal(c->listen[1].host, "::1");
	assert_int_equal(c->listen[1].port, 2525);
	assert_string_equal(c->hostname, "proxy.test");
	assert_int_equal(c->nallow, 2);
	assert_int_equal(parse_cidr("127.0.0.0/8", &want), 0);
	assert_memory_equal(&c->allow[0], &want, sizeof(want));
	assert_int_equal(parse_cidr("::1/128", &want), 0);
	assert_memory_equal(&c->allow[1], &want, sizeof(want));
	assert_int_equal(c->max_sessions, 1000);
	assert_int_equal(c->timeout, 300);
	assert_int_equal(c->lim.bare_newline, DATA_NORMALIZE);
	assert_string_equal(c->up.host, "mail.example.org");
	assert_int_equal(c->up.port, 587);
	assert_int_equal(c->up.tls, UP_TLS_STARTTLS);
	assert_string_equal(c->up.server_name, "mail.example.org");
	assert_int_equal(c->up.verify, 1);
	assert_string_equal(c->up.ca_file, "/etc/ssl/certs/ca-certificates.crt");
	assert_int_equal(c->up.min_tls, TLS1_2_VERSION);
	assert_string_equal(c->up.username, "");
	assert_string_equal(c->up.password, "");
	assert_int_equal(c->up.auth_mechanism, UP_AUTH_AUTO);
	assert_int_equal(c->log_level, L_INFO);
	assert_int_equal(c->log_format, LOG_TEXT);
	assert_non_null(c->up.tlsctx);
	config_unref(c);
}

static void
test_config_every_key_is_read(void **state)
{
	struct config *c;

	(void)state;
	c = load("; comment\n# comment\n[proxy]\nlisten = 0.0.0.0:25, [::]:26 , 10.0.0.1:27\n"
	    "hostname = gw.example.org\nallow = 10.0.0.0/8, fd00::/8\nmax_sessions = 5\n"
	    "timeout = 60\nbare_newline = reject\n\n[upstream]\nhost = smtp.example.net\n"
	    "port = 2587\ntls = implicit\nserver_name = tls.example.net\nverify = no\n" CA
	    "min_tls = 1.3\nusername = u@example.net\npassword = s3cret\n"
	    "auth_mechanism = login\n[log]\nlevel = debug\nformat = json\n");
	assert_loads(c);
	assert_int_equal(c->nlisten, 3);
	assert_string_equal(c->listen[1].host, "::");
	assert_int_equal(c->listen[1].port, 26);
	assert_string_equal(c->listen[2].host, "10.0.0.1");
	assert_string_equal(c->hostname, "gw.example.org");
	assert_int_equal(c->nallow, 2);
	assert_int_equal(c->max_sessions, 5);
	assert_int_equal(c->timeout, 60);
	assert_int_equal(c->lim.bare_newline, DATA_REJECT);
	assert_int_equal(c->up.port, 2587);
	assert_int_equal(c->up.tls, UP_TLS_IMPLICIT);
	assert_string_equal(c->up.server_name, "tls.example.net");
	assert_int_equal(c->up.verify, 0);
	assert_int_equal(c->up.min_tls, TLS1_3_VERSION);
	assert_string_equal(c->up.username, "u@example.net");
	assert_string_equal(c->up.password, "s3cret");
	assert_int_equal(c->up.auth_mechanism, UP_AUTH_LOGIN);
	assert_int_equal(c->log_level, L_DEBUG);
	assert_int_equal(c->log_format, LOG_JSON);
	config_unref(c);
}

static void
test_config_crlf_line_endings_accepted(void **state)
{
	struct config *c;

	(void)state;
	c = load("[proxy]\r\nhostname = proxy.test\r\n[upstream]\r\nhost = mx.example\r\n"
	    "ca_file = /etc/ssl/certs/ca-certificates.crt\r\n");
	assert_loads(c);
	assert_string_equal(c->hostname, "proxy.test");
	assert_string_equal(c->up.host, "mx.example");
	config_unref(c);
}

static void
test_config_port_465_means_implicit_tls_unless_tls_given(void **state)
{
	struct config *c;

	(void)state;
	c = load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\nport = 465\n" CA);
	assert_loads(c);
	assert_int_equal(c->up.tls, UP_TLS_IMPLICIT);
	assert_string_equal(config_tls_str(c->up.tls), "implicit");
	config_unref(c);
	c = load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\nport = 465\n"
	    "tls = starttls\n" CA);
	assert_loads(c);
	assert_int_equal(c->up.tls, UP_TLS_STARTTLS);
	assert_string_equal(config_tls_str(c->up.tls), "starttls");
	config_unref(c);
	c = load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\nport = 587\n" CA);
	assert_loads(c);
	assert_int_equal(c->up.tls, UP_TLS_STARTTLS);
	config_unref(c);
	c = load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\nport = 25\n" CA);
	assert_loads(c);
	assert_int_equal(c->up.tls, UP_TLS_STARTTLS);
	config_unref(c);
}

static void
test_config_ref_and_unref_count(void **state)
{
	struct config *c;

	(void)state;
	c = load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\n" CA);
	assert_loads(c);
	assert_ptr_equal(config_ref(c), c);
	assert_int_equal(c->refs, 2);
	config_unref(c);
	assert_int_equal(c->refs, 1);
	config_unref(c);
	assert_null(config_ref(NULL));
	config_unref(NULL);
}

static void
test_config_missing_file_names_it(void **state)
{
	char path[160];
	struct config *c;

	(void)state;
	snprintf(path, sizeof(path), "%s/none.ini", dir);
	c = config_load(path, errs, sizeof(errs));
	assert_null(c);
	assert_true(strncmp(errs, path, strlen(path)) == 0);
	assert_non_null(strstr(errs, "No such file"));
}

static void
test_config_unknown_key_with_line(void **state)
{
	(void)state;
	assert_error(load("[proxy]\nhostname = proxy.test\nlisten_on = 1.2.3.4:25\n[upstream]\n"
	    "host = mx.example\n" CA), 3, "unknown key 'listen_on' in [proxy]");
	/* A key from another section is unknown where it is. */
	assert_error(load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\n"
	    "level = debug\n" CA), 5, "unknown key 'level' in [upstream]");
}

static void
test_config_listen_must_be_a_numeric_address(void **state)
{
	(void)state;
	assert_error(load("[proxy]\nhostname = proxy.test\nlisten = mail.example:25\n[upstream]\n"
	    "host = mx.example\n" CA), 3, "listen mail.example: not a numeric IPv4 or IPv6 address");
	assert_error(load("[proxy]\nhostname = proxy.test\nlisten = [::ffff:10.0.0.1]:25\n"
	    "[upstream]\nhost = mx.example\n" CA), 3, "an IPv4-mapped address");
}

static void
test_config_unknown_section_with_line(void **state)
{
	(void)state;
	assert_error(load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\n" CA
	    "[logging]\nlevel = debug\n"), 6, "unknown section [logging]");
	/* Too far from every section for a guess. */
	assert_null(strstr(errs, "did you mean"));
}

static void
test_config_misspelt_section_reported_once_at_its_header(void **state)
{
	char want[512];

	(void)state;
	assert_null(load("[proxy]\nhostname = proxy.test\n[upstrem]\nhost = mx.example\n"
	    "port = 587\n; a comment\n\n" CA "verify = yes\n"));
	snprintf(want, sizeof(want),
	    "%s:3: unknown section [upstrem] (did you mean [upstream]?)\n", cfgpath);
	assert_string_equal(errs, want);
	/*
	 * Case and a missing letter are typos too. An indented header right after another
	 * is a header; after a key, inih takes it for the rest of that key's value.
	 */
	assert_null(load("[Proxy]\nhostname = proxy.test\n[upstream]\n  [limit]\n"
	    "max_errors = 3\n  [log]\n"));
	snprintf(want, sizeof(want),
	    "%s:1: unknown section [Proxy] (did you mean [proxy]?)\n"
	    "%s:4: unknown section [limit] (did you mean [limits]?)\n", cfgpath, cfgpath);
	assert_string_equal(errs, want);
}

static void
test_config_bad_values_with_line(void **state)
{
	static const struct {
		const char	*line;
		const char	*section;
		const char	*msg;
	} t[] = {
		{ "max_sessions = 0", "proxy", "max_sessions = 0: expected 1..1000000" },
		{ "max_sessions = 1000001", "proxy", "expected 1..1000000" },
		{ "max_sessions = -1", "proxy", "expected 1..1000000" },
		{ "timeout = 86401", "proxy", "timeout = 86401: expected seconds, 1..86400" },
		{ "timeout = 5s", "proxy", "expected seconds" },
		{ "listen = 127.0.0.1", "proxy", "listen = 127.0.0.1: expected addr:port" },
		{ "listen = ::1:25", "proxy", "expected addr:port" },
		{ "listen = 1.2.3.4:25,,", "proxy", "expected a comma-separated list" },
		{ "allow = 10.1.2.3/8", "proxy", "allow = 10.1.2.3/8: expected addr or addr/bits" },
		{ "allow = 1.2.3.4/33", "proxy", "expected addr or addr/bits" },
		{ "allow = 10.0.0.0/8,,", "proxy", "expected a comma-separated list" },
		{ "bare_newline = fix", "proxy", "expected normalize, reject or accept" },
		{ "port = 0", "upstream", "port = 0: expected a port, 1..65535" },
		{ "port = 65536", "upstream", "expected a port" },
		{ "tls = ssl", "upstream", "expected starttls or implicit" },
		{ "verify = maybe", "upstream", "verify = maybe: expected yes or no" },
		{ "min_tls = 1.1", "upstream", "expected 1.2 or 1.3" },
		{ "auth_mechanism = cram-md5", "upstream", "expected auto, plain, login, xoauth2 or oauthbearer" },
		{ "level = trace", "log", "level = trace: expected error, warn, info or debug" },
		{ "format = xml", "log", "expected text or json" },
	};
	char text[512];
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(t); i++) {
		/* The bad line is always line 6. */
		snprintf(text, sizeof(text), "[proxy]\nhostname = proxy.test\n[upstream]\n"
		    "host = mx.example\n[%s]\n%s\n[upstream]\n" CA, t[i].section, t[i].line);
		assert_error(load(text), 6, t[i].msg);
	}
	assert_error(load("[proxy]\nhostname = proxy_test.example\n[upstream]\nhost = mx.example\n"
	    CA), 2, "hostname = proxy_test.example: not a host name");
}

static void
test_config_duplicate_key_names_both_lines(void **state)
{
	(void)state;
	assert_error(load("[proxy]\nhostname = proxy.test\ntimeout = 5\n[upstream]\n"
	    "host = mx.example\n" CA "[proxy]\ntimeout = 6\n"), 8,
	    "timeout is already set on line 3");
}

static void
test_config_line_over_199_chars_refused(void **state)
{
	char text[1024], value[256];

	(void)state;
	/* "host = " is 7 characters: 193 more make a 200-character line. */
	memset(value, 'a', 193);
	value[193] = '\0';
	snprintf(text, sizeof(text), "[proxy]\nhostname = proxy.test\n[upstream]\nhost = %s\n" CA,
	    value);
	assert_error(load(text), 4, "line longer than ");
	/* Much longer than inih's own buffer: still one error, for the right line. */
	memset(value, 'b', 250);
	value[250] = '\0';
	snprintf(text, sizeof(text), "[proxy]\nhostname = proxy.test\n[upstream]\n" CA
	    "server_name = %s%s\nhost = mx.example\n", value, value);
	assert_error(load(text), 5, "line longer than ");
}

/* Fails: "line longer than 199 characters", yet a line of exactly 199 is refused too. */
static void
test_config_line_of_the_stated_maximum_accepted(void **state)
{
	char text[1024], value[256];
	const char *p;
	struct config *c;
	int max;

	(void)state;
	memset(value, 'a', 193);
	value[193] = '\0';
	snprintf(text, sizeof(text), "[proxy]\nhostname = proxy.test\n[upstream]\nhost = %s\n" CA,
	    value);
	assert_null(load(text));
	p = strstr(errs, "line longer than ");
	assert_non_null(p);
	max = atoi(p + strlen("line longer than "));
	assert_true(max > 7 && max < 200);
	/* "host = " and max - 7 more characters. */
	value[max - 7] = '\0';
	snprintf(text, sizeof(text), "[proxy]\nhostname = proxy.test\n[upstream]\nhost = %s\n" CA,
	    value);
	c = load(text);
	assert_loads(c);
	assert_int_equal(strlen(c->up.host), (size_t)max - 7);
	config_unref(c);
}

static void
test_config_line_of_198_chars_accepted(void **state)
{
	char text[1024], value[256];
	struct config *c;

	(void)state;
	memset(value, 'a', 191);
	value[191] = '\0';
	snprintf(text, sizeof(text), "[proxy]\nhostname = proxy.test\n[upstream]\nhost = %s\n" CA,
	    value);
	c = load(text);
	assert_loads(c);
	assert_int_equal(strlen(c->up.host), 191);
	config_unref(c);
}

static void
test_config_syntax_error_with_line(void **state)
{
	(void)state;
	assert_error(load("[proxy]\nhostname = proxy.test\njust some words\n[upstream]\n"
	    "host = mx.example\n" CA), 3, "syntax error");
}

static void
test_config_username_with_public_allow_is_open_relay(void **state)
{
	(void)state;
	assert_error(load("[proxy]\nhostname = proxy.test\nallow = 127.0.0.1, 0.0.0.0/0\n"
	    "[upstream]\nhost = mx.example\nusername = u\npassword = p\n" CA), 3, "open relay");
	assert_error(load("[proxy]\nhostname = proxy.test\nallow = 10.0.0.0/8, ::/0\n"
	    "[upstream]\nhost = mx.example\nusername = u\npassword = p\n" CA), 3, "open relay");
	assert_error(load("[proxy]\nhostname = proxy.test\nallow = 8.8.8.0/24\n"
	    "[upstream]\nhost = mx.example\nusername = u\npassword = p\n" CA), 3, "open relay");
}

static void
test_config_username_with_private_allow_loads(void **state)
{
	struct config *c;

	(void)state;
	c = load("[proxy]\nhostname = proxy.test\nallow = 10.0.0.0/8, 192.168.0.0/16, fc00::/7\n"
	    "[upstream]\nhost = mx.example\nusername = u\npassword = p\n" CA);
	assert_loads(c);
	assert_string_equal(c->warnings, "");
	config_unref(c);
}

static void
test_config_public_allow_without_username_warns(void **state)
{
	char want[512];
	struct config *c;

	(void)state;
	/* Without credentials a public allow list loads, but the operator is told. */
	c = load("[proxy]\nhostname = proxy.test\nallow = 10.0.0.0/8, 0.0.0.0/0\n"
	    "[upstream]\nhost = mx.example\n" CA);
	assert_loads(c);
	snprintf(want, sizeof(want), "%s:3: warning: allow has a public network (0.0.0.0/0) and "
	    "no username: an open relay wherever the upstream trusts this gateway's address\n",
	    cfgpath);
	assert_string_equal(c->warnings, want);
	config_unref(c);
	c = load("[proxy]\nhostname = proxy.test\nallow = 192.168.1.0/24, 2001:db8::/32\n"
	    "[upstream]\nhost = mx.example\n" CA);
	assert_loads(c);
	assert_non_null(strstr(c->warnings, ":3: warning: allow has a public network "
	    "(2001:db8::/32)"));
	config_unref(c);
	c = load("[proxy]\nhostname = proxy.test\nallow = 10.0.0.0/8, fc00::/7, 127.0.0.1\n"
	    "[upstream]\nhost = mx.example\n" CA);
	assert_loads(c);
	assert_string_equal(c->warnings, "");
	config_unref(c);
}

static void
test_config_username_without_password_refused(void **state)
{
	(void)state;
	assert_error(load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\n" CA
	    "username = u\n"), 6, "username is set but neither password nor password_file");
}

static void
test_config_password_without_username_refused(void **state)
{
	char text[512];

	(void)state;
	/* Said at the line that gives the password, the one to remove or complete. */
	assert_error(load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\n" CA
	    "password = hunter2\n"), 6, "password given without username");
	assert_null(strstr(errs, "hunter2"));
	snprintf(text, sizeof(text), "[proxy]\nhostname = proxy.test\n[upstream]\n"
	    "host = mx.example\n" CA "\npassword_file = %s\n", pwpath);
	assert_error(load(text), 7, "password given without username");
}

static void
test_config_password_and_password_file_refused(void **state)
{
	char text[512];

	(void)state;
	write_file(pwpath, "filesecret\n", 11);
	snprintf(text, sizeof(text), "[proxy]\nhostname = proxy.test\n[upstream]\n"
	    "host = mx.example\n" CA "username = u\npassword = hunter2\npassword_file = %s\n",
	    pwpath);
	assert_error(load(text), 8, "set password or password_file, not both");
	assert_null(strstr(errs, "hunter2"));
	assert_null(strstr(errs, "filesecret"));
}

static void
test_config_password_file_trailing_newline_stripped(void **state)
{
	static const char *contents[] = { "s3cr3t pass\n", "s3cr3t pass", "s3cr3t pass\r\n" };
	char text[512];
	struct config *c;
	size_t i;

	(void)state;
	snprintf(text, sizeof(text), "[proxy]\nhostname = proxy.test\n[upstream]\n"
	    "host = mx.example\n" CA "username = u\npassword_file = %s\n", pwpath);
	for (i = 0; i < NELEM(contents); i++) {
		write_file(pwpath, contents[i], strlen(contents[i]));
		c = load(text);
		assert_loads(c);
		assert_string_equal(c->up.password, "s3cr3t pass");
		assert_string_equal(c->up.password_file, pwpath);
		config_unref(c);
	}
}

static void
test_config_password_file_bad_contents_refused(void **state)
{
	char text[512];

	(void)state;
	snprintf(text, sizeof(text), "[proxy]\nhostname = proxy.test\n[upstream]\n"
	    "host = mx.example\n" CA "username = u\npassword_file = %s\n", pwpath);
	write_file(pwpath, "\n", 1);
	assert_error(load(text), 7, "empty, or control characters");
	write_file(pwpath, "line1\nline2\n", 12);
	assert_error(load(text), 7, "empty, or control characters");
	assert_null(strstr(errs, "line1"));
	(void)unlink(pwpath);
	assert_error(load(text), 7, "No such file");
}

static void
test_config_missing_ca_file_refused(void **state)
{
	(void)state;
	assert_error(load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\n"
	    "ca_file = /nonexistent/ca.pem\n"), 5, "ca_file /nonexistent/ca.pem: ");
}

static void
test_config_missing_upstream_host_refused(void **state)
{
	(void)state;
	/* Reported against the [upstream] header, even when no key in it is set. */
	assert_error(load("[proxy]\nhostname = proxy.test\n[upstream]\n" CA),
	    3, "[upstream] host is required");
	assert_error(load("[proxy]\nhostname = proxy.test\n\n; the mail server\n[upstream]\n"
	    ";host = smtp.example.com\n"), 5, "[upstream] host is required");
	/* With no [upstream] section at all there is no line to name. */
	assert_error(load("[proxy]\nhostname = proxy.test\n"), 0, "[upstream] host is required");
}

static void
test_config_hostname_must_be_fully_qualified(void **state)
{
	(void)state;
	assert_error(load("[proxy]\nhostname = localhost\n[upstream]\nhost = mx.example\n" CA),
	    2, "hostname 'localhost' is not a fully-qualified name");
	assert_error(load("[proxy]\nhostname = LocalHost.localdomain\n[upstream]\n"
	    "host = mx.example\n" CA), 2, "is not a fully-qualified name");
	assert_error(load("[proxy]\nhostname = gateway\n[upstream]\nhost = mx.example\n" CA),
	    2, "hostname 'gateway' is not a fully-qualified name");
}

static void
test_config_control_characters_in_value_refused(void **state)
{
	(void)state;
	assert_error(load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx\x01.example\n"
	    CA), 4, "host: control characters in the value");
	assert_error(load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\n" CA
	    "server_name = a\tb\n"), 6, "server_name: control characters in the value");
	assert_error(load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\n" CA
	    "username = u\npassword = hun\x1bter2\n"), 7, "password: control characters");
	assert_null(strstr(errs, "hun"));
}

static void
test_config_password_never_in_error_text(void **state)
{
	static const char *cases[] = {
		/* A bad value elsewhere. */
		"[upstream]\nusername = u\npassword = Sekr1tPw\nport = x\n",
		/* Set twice. */
		"[upstream]\nusername = u\npassword = Sekr1tPw\npassword = Sekr1tPw\n",
		/* In the wrong section, or a misspelt key. */
		"[proxy]\npassword = Sekr1tPw\n",
		"[upstream]\npasswd = Sekr1tPw\n",
		"[secrets]\npassword = Sekr1tPw\n",
		/* No username for it. */
		"[upstream]\npassword = Sekr1tPw\n",
		/* On a line that is too long. */
		"[upstream]\npassword = Sekr1tPw"
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		    "xxxxxx\n",
		/* With an open relay. */
		"[proxy]\nallow = 0.0.0.0/0\n[upstream]\nusername = u\npassword = Sekr1tPw\n",
		/* Not a valid line at all. */
		"[upstream]\npassword Sekr1tPw\n",
	};
	char text[1024];
	struct config *c;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		snprintf(text, sizeof(text), "[proxy]\nhostname = proxy.test\n[upstream]\n"
		    "host = mx.example\n" CA "%s", cases[i]);
		c = load(text);
		assert_null(c);
		assert_true(errs[0] != '\0');
		if (strstr(errs, "Sekr1tPw") != NULL)
			fail_msg("case %zu: password in \"%s\"", i, errs);
	}
}

static void
test_config_quoted_value_warns(void **state)
{
	char want[512];
	struct config *c;

	(void)state;
	c = load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = \"mx.example\"\n" CA
	    "username = 'u'\npassword = p\"q\n");
	assert_loads(c);
	assert_string_equal(c->up.host, "\"mx.example\"");
	snprintf(want, sizeof(want),
	    "%s:4: warning: host: value is quoted; quotes are kept as part of the value\n"
	    "%s:6: warning: username: value is quoted; quotes are kept as part of the value\n",
	    cfgpath, cfgpath);
	assert_string_equal(c->warnings, want);
	config_unref(c);
	/* A clean file has no warnings. */
	c = load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\n" CA);
	assert_loads(c);
	assert_string_equal(c->warnings, "");
	config_unref(c);
}

static void
test_config_password_cut_by_inline_comment_warns(void **state)
{
	static const struct {
		const char	*line;
		const char	*password;
		int		 warned;
	} cases[] = {
		{ "password = hunter2 ;the old one", "hunter2", 1 },
		{ "password = hunter2\t;tab", "hunter2", 1 },
		{ "password = hunter2;kept", "hunter2;kept", 0 },
		{ "password =;hunter2", ";hunter2", 0 },
		{ "password = hunter2#kept", "hunter2#kept", 0 },
	};
	char text[512];
	struct config *c;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		snprintf(text, sizeof(text), "[proxy]\nhostname = proxy.test\n[upstream]\n"
		    "host = mx.example\n" CA "username = u\n%s\n", cases[i].line);
		c = load(text);
		assert_loads(c);
		assert_string_equal(c->up.password, cases[i].password);
		if (cases[i].warned) {
			char want[256];

			snprintf(want, sizeof(want), "%s:7: warning: password: a ';' after a "
			    "space or tab starts a comment", cfgpath);
			if (strncmp(c->warnings, want, strlen(want)) != 0)
				fail_msg("case %zu: warnings \"%s\"", i, c->warnings);
			assert_non_null(strstr(c->warnings, "password_file"));
			assert_null(strstr(c->warnings, "hunter2"));
		} else
			assert_string_equal(c->warnings, "");
		config_unref(c);
	}
	/* A ';' after the space that follows '=' cuts everything: inih's rule, warned. */
	c = load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = mx.example\n" CA
	    "username = u\npassword = ;hunter2\n");
	assert_null(c);
	assert_non_null(strstr(errs, "username is set but neither password nor password_file"));
	assert_non_null(strstr(errs, ":7: warning: password: a ';'"));
}

static void
test_config_world_readable_password_file_warns(void **state)
{
	char text[512], want[512];
	struct config *c;

	(void)state;
	snprintf(text, sizeof(text), "[proxy]\nhostname = proxy.test\n[upstream]\n"
	    "host = mx.example\n" CA "username = u\npassword_file = %s\n", pwpath);
	write_file(pwpath, "s3cret\n", 7);
	assert_int_equal(chmod(pwpath, 0644), 0);
	c = load(text);
	assert_loads(c);
	snprintf(want, sizeof(want), "%s:7: warning: password_file %s is readable by every "
	    "user of this machine (chmod o-r it, or give it with LoadCredential=)\n",
	    cfgpath, pwpath);
	assert_string_equal(c->warnings, want);
	config_unref(c);
	/* Group-readable is how a root-owned file is shared with the service's group. */
	assert_int_equal(chmod(pwpath, 0640), 0);
	c = load(text);
	assert_loads(c);
	assert_string_equal(c->warnings, "");
	config_unref(c);
}

static void
test_config_warnings_follow_the_errors_when_refused(void **state)
{
	char want[512];

	(void)state;
	assert_null(load("[proxy]\nhostname = proxy.test\n[upstream]\nhost = 'mx.example'\n"
	    "port = 0\n" CA));
	snprintf(want, sizeof(want), "%s:5: port = 0: expected a port, 1..65535\n"
	    "%s:4: warning: host: value is quoted; quotes are kept as part of the value\n",
	    cfgpath, cfgpath);
	assert_string_equal(errs, want);
}

static void
test_config_every_error_reported_one_per_line(void **state)
{
	char want[1024];
	struct config *c;

	(void)state;
	c = load("[proxy]\nhostname = proxy.test\ntimeout = 0\nfoo = 1\n[upstream]\n"
	    "host = mx.example\nport = x\n" CA);
	assert_null(c);
	snprintf(want, sizeof(want), "%s:3: timeout = 0: expected seconds, 1..86400\n"
	    "%s:4: unknown key 'foo' in [proxy]\n"
	    "%s:7: port = x: expected a port, 1..65535\n", cfgpath, cfgpath, cfgpath);
	assert_string_equal(errs, want);
}

static void
test_config_small_error_buffer_is_cut_safely(void **state)
{
	char small[12];

	(void)state;
	write_file(cfgpath, "[proxy]\nfoo = 1\nbar = 2\n", 24);
	memset(small, 'Z', sizeof(small));
	assert_null(config_load(cfgpath, small, sizeof(small)));
	assert_non_null(memchr(small, '\0', sizeof(small)));
	assert_true(strncmp(small, cfgpath, strlen(small)) == 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_minimal_file_gets_documented_defaults),
		cmocka_unit_test(test_config_every_key_is_read),
		cmocka_unit_test(test_config_crlf_line_endings_accepted),
		cmocka_unit_test(test_config_port_465_means_implicit_tls_unless_tls_given),
		cmocka_unit_test(test_config_ref_and_unref_count),
		cmocka_unit_test(test_config_missing_file_names_it),
		cmocka_unit_test(test_config_unknown_key_with_line),
		cmocka_unit_test(test_config_unknown_section_with_line),
		cmocka_unit_test(test_config_misspelt_section_reported_once_at_its_header),
		cmocka_unit_test(test_config_listen_must_be_a_numeric_address),
		cmocka_unit_test(test_config_bad_values_with_line),
		cmocka_unit_test(test_config_duplicate_key_names_both_lines),
		cmocka_unit_test(test_config_line_over_199_chars_refused),
		cmocka_unit_test(test_config_line_of_the_stated_maximum_accepted),
		cmocka_unit_test(test_config_line_of_198_chars_accepted),
		cmocka_unit_test(test_config_syntax_error_with_line),
		cmocka_unit_test(test_config_username_with_public_allow_is_open_relay),
		cmocka_unit_test(test_config_username_with_private_allow_loads),
		cmocka_unit_test(test_config_public_allow_without_username_warns),
		cmocka_unit_test(test_config_username_without_password_refused),
		cmocka_unit_test(test_config_password_without_username_refused),
		cmocka_unit_test(test_config_password_and_password_file_refused),
		cmocka_unit_test(test_config_password_file_trailing_newline_stripped),
		cmocka_unit_test(test_config_password_file_bad_contents_refused),
		cmocka_unit_test(test_config_missing_ca_file_refused),
		cmocka_unit_test(test_config_missing_upstream_host_refused),
		cmocka_unit_test(test_config_hostname_must_be_fully_qualified),
		cmocka_unit_test(test_config_control_characters_in_value_refused),
		cmocka_unit_test(test_config_password_never_in_error_text),
		cmocka_unit_test(test_config_quoted_value_warns),
		cmocka_unit_test(test_config_password_cut_by_inline_comment_warns),
		cmocka_unit_test(test_config_world_readable_password_file_warns),
		cmocka_unit_test(test_config_warnings_follow_the_errors_when_refused),
		cmocka_unit_test(test_config_every_error_reported_one_per_line),
		cmocka_unit_test(test_config_small_error_buffer_is_cut_safely),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
