/* users: the users_file table (name:crypt-hash lines) and password verification. */
#include <sys/stat.h>

#include <unistd.h>

#include "unit.h"

#include "users.h"

/* crypt(3) hashes of "secret". */
#define Y_SECRET "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$GmcwIgvdUC9qLWcKCi6gklUa1dM3ziD43YxYNURLKy0"
#define S6_SECRET "$6$saltsaltsalt$PMWE8DTlam1JU37Piyk43bHcMxTJq6sgu5DKB0/tGPjanN35jcY68Qkp" \
		  "DfPFUGPWX5uCxIQkSPzMmqEiVNgts."
#define S5_SECRET "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA"
#define S6R_SECRET "$6$rounds=1000$saltsalt$LAV5VE5Y7w1d73x1mFNspYWUpazfmwv2SoepNXNKJ/otop/" \
		   "Zok96Hr8Q13LEv0DRY/x8v0/crpIjl8NJSAqXV/"

/* What the parser reported: "LINE:w|e:message" lines. */
struct seen {
	char	 text[4096];
	int	 errors, warnings;
};

static void
collect(void *arg, int line, int warning, const char *msg)
{
	struct seen *s = arg;
	size_t n = strlen(s->text);

	snprintf(s->text + n, sizeof(s->text) - n, "%d:%c:%s\n", line, warning ? 'w' : 'e', msg);
	if (warning)
		s->warnings++;
	else
		s->errors++;
}

static struct users *
parse(const char *text, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	return (users_parse(text, strlen(text), collect, s));
}

static void
test_users_parse_accepts_supported_schemes_comments_blanks_crlf(void **state)
{
	struct seen s;
	struct users *u;

	(void)state;
	u = parse("# devices\n\nscanner:" Y_SECRET "\r\n  nas:" S6_SECRET "  \n"
	    "\t# indented comment\nplc:" S5_SECRET "\ncam:" S6R_SECRET, &s);
	assert_non_null(u);
	assert_int_equal(s.errors + s.warnings, 0);
	assert_int_equal(users_count(u), 4);
	users_free(u);
}

static void
test_users_verify_right_wrong_unknown(void **state)
{
	struct seen s;
	struct users *u;
	long ms;

	(void)state;
	u = parse("scanner:" Y_SECRET "\nnas:" S6_SECRET "\nplc:" S5_SECRET "\n", &s);
	assert_non_null(u);
	assert_int_equal(users_verify(u, "scanner", "secret", &ms), USERS_OK);
	assert_int_equal(users_verify(u, "nas", "secret", &ms), USERS_OK);
	assert_int_equal(users_verify(u, "plc", "secret", &ms), USERS_OK);
	assert_int_equal(users_verify(u, "scanner", "Secret", &ms), USERS_BAD_PASSWORD);
	assert_int_equal(users_verify(u, "nas", "", &ms), USERS_BAD_PASSWORD);
	assert_int_equal(users_verify(u, "nas", "secret ", &ms), USERS_BAD_PASSWORD);
	assert_int_equal(users_verify(u, "Scanner", "secret", &ms), USERS_NO_SUCH_USER);
	assert_int_equal(users_verify(u, "", "secret", &ms), USERS_NO_SUCH_USER);
	assert_int_equal(users_verify(NULL, "nas", "secret", &ms), USERS_NO_SUCH_USER);
	assert_string_equal(users_result_str(USERS_OK), "ok");
	assert_string_equal(users_result_str(USERS_BAD_PASSWORD), "bad-password");
	assert_string_equal(users_result_str(USERS_NO_SUCH_USER), "no-such-user");
	users_free(u);
}

static void
test_users_refuses_md5_des_and_other_schemes_with_line(void **state)
{
	struct seen s;

	(void)state;
	assert_null(parse("ok:" S6_SECRET "\nold:$1$abc$0123456789abcdef012345\n"
	    "des:abJnggxhB/yWI\nbf:$2b$05$abcdefghijklmnopqrstuuJ1rUQf8D5ZVC2yUEo.LzRMLw5v8oH6\n"
	    "clear:secret\n", &s));
	assert_int_equal(s.errors, 4);
	assert_non_null(strstr(s.text, "2:e:user old: MD5 hashes ($1$) are refused"));
	assert_non_null(strstr(s.text, "3:e:user des: not a crypt(3) hash"));
	assert_non_null(strstr(s.text, "4:e:user bf: unsupported hash scheme $2b$"));
	assert_non_null(strstr(s.text, "5:e:user clear: not a crypt(3) hash"));
	assert_non_null(strstr(s.text, "openssl passwd -6"));
}

static void
test_users_refuses_malformed_lines(void **state)
{
	static const struct {
		const char *text, *want;
	} t[] = {
		{ "no colon here\n", "1:e:expected name:hash" },
		{ ":" S6_SECRET "\n", "1:e:the user name must be" },
		{ "two words:" S6_SECRET "\n", "1:e:the user name must be" },
		{ "nas:\n", "1:e:user nas: not a crypt(3) hash" },
		{ "nas:$6$x\n", "1:e:user nas: malformed SHA-512 hash" },
		{ "nas:$6$salt$\n", "1:e:user nas: malformed SHA-512 hash" },
		{ "nas:$y$j9T$salt\n", "1:e:user nas: malformed yescrypt hash" },
		{ "nas:$6$salt$ab!cd\n", "1:e:user nas: malformed SHA-512 hash" },
		{ "\n# c\nnas:$5$a b$c\n", "3:e:user nas: malformed SHA-256 hash" },
	};
	struct seen s;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(t); i++) {
		assert_null(parse(t[i].text, &s));
		assert_int_equal(s.errors, 1);
		if (strncmp(s.text, t[i].want, strlen(t[i].want)) != 0)
			fail_msg("%s: got %s", t[i].text, s.text);
	}
	/* A NUL byte inside a line. */
	memset(&s, 0, sizeof(s));
	assert_null(users_parse("a:b\0c\n", 6, collect, &s));
	assert_non_null(strstr(s.text, "1:e:a NUL byte"));
}

static void
test_users_refuses_duplicate_names_naming_both_lines(void **state)
{
	struct seen s;

	(void)state;
	assert_null(parse("nas:" S6_SECRET "\nplc:" S5_SECRET "\n\nnas:" Y_SECRET "\n", &s));
	assert_int_equal(s.errors, 1);
	assert_string_equal(s.text, "4:e:user nas is listed twice (first on line 1)\n");
}

static void
test_users_empty_table_is_a_warning(void **state)
{
	struct seen s;
	struct users *u;
	long ms;

	(void)state;
	u = parse("# nobody yet\n", &s);
	assert_non_null(u);
	assert_int_equal(s.warnings, 1);
	assert_int_equal(users_verify(u, "x", "y", &ms), USERS_NO_SUCH_USER);
	users_free(u);
	users_free(NULL);
}

static void
test_users_load_reads_file_and_warns_when_world_readable(void **state)
{
	char path[] = "/tmp/test_users_XXXXXX";
	struct seen s;
	struct users *u;
	int fd;

	(void)state;
	assert_true((fd = mkstemp(path)) >= 0);
	assert_int_equal(write(fd, "nas:" S6_SECRET "\n", strlen("nas:" S6_SECRET "\n")),
	    (ssize_t)strlen("nas:" S6_SECRET "\n"));
	close(fd);
	assert_int_equal(chmod(path, 0600), 0);
	memset(&s, 0, sizeof(s));
	u = users_load(path, collect, &s);
	assert_non_null(u);
	assert_int_equal(s.errors + s.warnings, 0);
	users_free(u);
	assert_int_equal(chmod(path, 0644), 0);
	memset(&s, 0, sizeof(s));
	u = users_load(path, collect, &s);
	assert_non_null(u);
	assert_int_equal(s.warnings, 1);
	assert_non_null(strstr(s.text, "0:w:readable by every user"));
	users_free(u);
	unlink(path);
	memset(&s, 0, sizeof(s));
	assert_null(users_load(path, collect, &s));
	assert_non_null(strstr(s.text, "0:e:cannot read it: No such file"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_users_parse_accepts_supported_schemes_comments_blanks_crlf),
		cmocka_unit_test(test_users_verify_right_wrong_unknown),
		cmocka_unit_test(test_users_refuses_md5_des_and_other_schemes_with_line),
		cmocka_unit_test(test_users_refuses_malformed_lines),
		cmocka_unit_test(test_users_refuses_duplicate_names_naming_both_lines),
		cmocka_unit_test(test_users_empty_table_is_a_warning),
		cmocka_unit_test(test_users_load_reads_file_and_warns_when_world_readable),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
