/*
 * token and statefile: the token endpoint's answers as Microsoft and Google send them,
 * the form bodies we POST, the token command's argv and output, the service-account key,
 * and the state_dir file that keeps a rotated refresh token across restarts.
 */
#include "unit.h"

#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth.h"
#include "statefile.h"
#include "token.h"

#define MS_TOKEN	"eyJ0eXAiOiJKV1QiLCJub25jZSI6IjEyMyIsImFsZyI6IlJTMjU2In0.eyJhdWQiOiJo" \
			"dHRwczovL291dGxvb2sub2ZmaWNlMzY1LmNvbSJ9.c2lnbmF0dXJl"

static struct token_resp t;
static char why[256];

static int
parse(const char *json)
{
	why[0] = '\0';
	return (token_parse(json, strlen(json), &t, why, sizeof(why)));
}

/* A JSON text with one field "name" holding ${n} copies of ${ch}; the caller frees it. */
static char *
json_long(const char *name, size_t n, char ch)
{
	char *s = malloc(n + 64);
	size_t k;

	assert_non_null(s);
	k = (size_t)sprintf(s, "{\"%s\":\"", name);
	memset(s + k, ch, n);
	strcpy(s + k + n, "\"}");
	return (s);
}

/* ---- token_parse ---------------------------------------------------------------------- */

static void
test_parse_microsoft_answer(void **state)
{
	(void)state;
	assert_int_equal(parse("{\"token_type\":\"Bearer\",\"scope\":"
	    "\"https://outlook.office365.com/.default\",\"expires_in\":3599,"
	    "\"ext_expires_in\":3599,\"access_token\":\"" MS_TOKEN "\"}"), 0);
	assert_string_equal(t.access_token, MS_TOKEN);
	assert_string_equal(t.token_type, "Bearer");
	assert_int_equal(t.expires_in, 3599);
	assert_string_equal(t.refresh_token, "");
	assert_string_equal(t.error, "");
	assert_int_equal(t.interval, -1);
	/* A refresh answer carries the rotated refresh token. */
	assert_int_equal(parse("{\"access_token\":\"a\",\"refresh_token\":\"0.AXkA-rt\","
	    "\"expires_in\":\"3599\"}"), 0);
	assert_string_equal(t.refresh_token, "0.AXkA-rt");
}

static void
test_parse_google_answer_with_string_expires_in(void **state)
{
	(void)state;
	assert_int_equal(parse("{\n  \"access_token\": \"ya29.a0AfB_byC-1x\",\n"
	    "  \"expires_in\": \"3599\",\n  \"scope\": \"https://mail.google.com/\",\n"
	    "  \"token_type\": \"Bearer\"\n}"), 0);
	assert_string_equal(t.access_token, "ya29.a0AfB_byC-1x");
	assert_int_equal(t.expires_in, 3599);
	/* null counts as absent */
	assert_int_equal(parse("{\"access_token\":\"x\",\"expires_in\":null,"
	    "\"refresh_token\":null}"), 0);
	assert_int_equal(t.expires_in, -1);
}

static void
test_parse_error_answers(void **state)
{
	(void)state;
	assert_int_equal(parse("{\"error\":\"invalid_client\",\"error_description\":"
	    "\"AADSTS7000215: Invalid client secret provided.\\r\\nTrace ID: 1\","
	    "\"error_codes\":[7000215],\"timestamp\":\"2026-01-01 00:00:00Z\"}"), 0);
	assert_string_equal(t.error, "invalid_client");
	/* CR and LF made printable: the description goes into one log line. */
	assert_string_equal(t.error_description,
	    "AADSTS7000215: Invalid client secret provided.??Trace ID: 1");
	assert_string_equal(t.access_token, "");
	assert_int_equal(parse("{\"error\":\"authorization_pending\"}"), 0);
	assert_string_equal(t.error, "authorization_pending");
	assert_string_equal(t.error_description, "");
	assert_int_equal(parse("{\"error\":\"slow\\u0001down\\u00e9\"}"), 0);
	assert_string_equal(t.error, "slow?down??");
}

static void
test_parse_description_is_cut_and_printable(void **state)
{
	char *s;
	size_t i, n;

	(void)state;
	/* Microsoft's descriptions run past 400 bytes: cut to fit, never refused. */
	s = json_long("error_description", 450, 'd');
	assert_int_equal(parse(s), 0);
	free(s);
	assert_int_equal(strlen(t.error_description), sizeof(t.error_description) - 1);
	/* Longer than any buffer of the parser's own: still cut, not dropped. */
	s = json_long("error_description", 6000, 'e');
	assert_int_equal(parse(s), 0);
	free(s);
	assert_int_equal(strlen(t.error_description), sizeof(t.error_description) - 1);
	assert_int_equal(t.error_description[0], 'e');
	assert_int_equal(parse("{\"error\":\"x\",\"error_description\":\"caf\\u00e9\\t\\u007f"
	    "\\u2028!\"}"), 0);
	n = strlen(t.error_description);
	for (i = 0; i < n; i++)
		assert_true(t.error_description[i] >= 0x20 && t.error_description[i] < 0x7f);
	assert_string_equal(t.error_description, "caf???????" "!");
	/* Of another type: ignored, the answer still reads. */
	assert_int_equal(parse("{\"error\":\"x\",\"error_description\":[1]}"), 0);
	assert_string_equal(t.error_description, "");
}

static void
test_parse_not_json_or_not_an_object(void **state)
{
	static const char *bad[] = {
		"", "<html><body>Sign in</body></html>", "{\"access_token\":\"SECRET-1\"",
		"[\"access_token\",\"SECRET-1\"]", "\"SECRET-1\"", "42", "null",
		"{\"access_token\":\"SECRET-1\"} trailing",
		"{\"access_token\":\"SECRET-1\",\"access_token\":\"SECRET-1\"}",
	};
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bad); i++) {
		assert_int_equal(parse(bad[i]), -1);
		assert_true(why[0] != '\0');
		assert_null(strstr(why, "SECRET"));
		assert_string_equal(t.access_token, "");
	}
	assert_int_equal(parse("<html>"), -1);
	assert_non_null(strstr(why, "not JSON"));
	assert_int_equal(parse("[]"), -1);
	assert_non_null(strstr(why, "not an object"));
}

static void
test_parse_wrong_types(void **state)
{
	static const struct {
		const char *json, *why;
	} bad[] = {
		{ "{\"access_token\":12345}", "\"access_token\" is not a string" },
		{ "{\"access_token\":{\"v\":\"SECRET\"}}", "\"access_token\" is not a string" },
		{ "{\"refresh_token\":true}", "\"refresh_token\" is not a string" },
		{ "{\"error\":[\"x\"]}", "\"error\" is not a string" },
		{ "{\"expires_in\":\"soon\"}", "\"expires_in\" is not a number of seconds" },
		{ "{\"expires_in\":-5}", "\"expires_in\"" },
		{ "{\"expires_in\":1.5}", "\"expires_in\"" },
		{ "{\"expires_in\":\"12abc\"}", "\"expires_in\"" },
		{ "{\"expires_in\":\" 12\"}", "\"expires_in\"" },
		{ "{\"expires_in\":\"-12\"}", "\"expires_in\"" },
		{ "{\"expires_in\":\"\"}", "\"expires_in\"" },
		{ "{\"expires_in\":\"99999999999999999999999\"}", "\"expires_in\"" },
		{ "{\"expires_in\":99999999999999}", "\"expires_in\"" },
		{ "{\"interval\":\"x\"}", "\"interval\"" },
		{ "{\"access_token\":\"SECRET\",\"token_type\":7}", "\"token_type\"" },
		{ "{\"access_token\":\"SECRET\\u0000X\"}", "NUL" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bad); i++) {
		assert_int_equal(parse(bad[i].json), -1);
		assert_non_null(strstr(why, bad[i].why));
		assert_null(strstr(why, "SECRET"));
		/* What was read before the bad field is wiped. */
		assert_string_equal(t.access_token, "");
	}
	/* The largest accepted lifetime: 100 years. */
	assert_int_equal(parse("{\"expires_in\":3153600000}"), 0);
	assert_int_equal(t.expires_in, 3153600000L);
	assert_int_equal(parse("{\"expires_in\":\"0\",\"interval\":5}"), 0);
	assert_int_equal(t.expires_in, 0);
	assert_int_equal(t.interval, 5);
}

static void
test_parse_access_token_size_limit(void **state)
{
	char *s;

	(void)state;
	s = json_long("access_token", AUTH_TOKEN_MAX, 'A');
	assert_int_equal(parse(s), 0);
	assert_int_equal(strlen(t.access_token), AUTH_TOKEN_MAX);
	free(s);
	s = json_long("access_token", AUTH_TOKEN_MAX + 1, 'A');
	assert_int_equal(parse(s), -1);
	assert_non_null(strstr(why, "\"access_token\" is longer than"));
	assert_string_equal(t.access_token, "");
	free(s);
	s = json_long("token_type", 32, 'B');
	assert_int_equal(parse(s), -1);
	free(s);
}

static void
test_parse_device_authorization(void **state)
{
	(void)state;
	/* Microsoft */
	assert_int_equal(parse("{\"user_code\":\"ABCD1234\",\"device_code\":\"DAQABAAEAAAD--x\","
	    "\"verification_uri\":\"https://microsoft.com/devicelogin\",\"expires_in\":900,"
	    "\"interval\":5,\"message\":\"To sign in, use a web browser\"}"), 0);
	assert_string_equal(t.device_code, "DAQABAAEAAAD--x");
	assert_string_equal(t.user_code, "ABCD1234");
	assert_string_equal(t.verification_uri, "https://microsoft.com/devicelogin");
	assert_int_equal(t.interval, 5);
	assert_int_equal(t.expires_in, 900);
	/* Google spells it verification_url */
	assert_int_equal(parse("{\"device_code\":\"AH-1Ng\",\"user_code\":\"GQVQ-JKEC\","
	    "\"verification_url\":\"https://www.google.com/device\",\"expires_in\":1800,"
	    "\"interval\":5}"), 0);
	assert_string_equal(t.verification_uri, "https://www.google.com/device");
	/* the RFC's name wins when both are there */
	assert_int_equal(parse("{\"verification_url\":\"https://b\",\"verification_uri\":"
	    "\"https://a\",\"verification_uri_complete\":\"https://a?c=1\"}"), 0);
	assert_string_equal(t.verification_uri, "https://a");
	assert_string_equal(t.verification_uri_complete, "https://a?c=1");
	assert_int_equal(parse("{\"verification_url\":5}"), -1);
}

static void
test_describe_error(void **state)
{
	char out[512];

	(void)state;
	assert_int_equal(parse("{\"error\":\"invalid_grant\",\"error_description\":"
	    "\"AADSTS70000: expired\"}"), 0);
	token_describe_error(400, &t, 1, out, sizeof(out));
	assert_string_equal(out, "HTTP 400 invalid_grant: AADSTS70000: expired");
	token_describe_error(500, &t, 0, out, sizeof(out));
	assert_string_equal(out, "HTTP 500, and the answer is not JSON");
	assert_int_equal(parse("{\"token_type\":\"Bearer\"}"), 0);
	token_describe_error(200, &t, 1, out, sizeof(out));
	assert_string_equal(out, "HTTP 200, and the answer has no access_token");
}

/* ---- token_form_add --------------------------------------------------------------------- */

static void
test_form_add_percent_encoding(void **state)
{
	static const struct {
		const char *name, *value, *want;
	} v[] = {
		{ "grant_type", "client_credentials", "grant_type=client_credentials" },
		{ "scope", "https://outlook.office365.com/.default",
		    "scope=https%3A%2F%2Foutlook.office365.com%2F.default" },
		{ "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer",
		    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" },
		{ "scope", "https://outlook.office365.com/SMTP.Send offline_access",
		    "scope=https%3A%2F%2Foutlook.office365.com%2FSMTP.Send+offline_access" },
		{ "a b", "c+d&e=f~_.-", "a+b=c%2Bd%26e%3Df~_.-" },
		{ "s", "caf\xc3\xa9%\x01\x7f\xff", "s=caf%C3%A9%25%01%7F%FF" },
		{ "x", "", "x=" },
		{ "AZaz09", "-._~", "AZaz09=-._~" },
	};
	char buf[256];
	size_t i, len;

	(void)state;
	for (i = 0; i < NELEM(v); i++) {
		len = 0;
		memset(buf, 'Z', sizeof(buf));
		assert_int_equal(token_form_add(buf, sizeof(buf), &len, v[i].name, v[i].value), 0);
		assert_string_equal(buf, v[i].want);
		assert_int_equal(len, strlen(v[i].want));
	}
	/* Fields after the first are joined with '&'. */
	len = 0;
	assert_int_equal(token_form_add(buf, sizeof(buf), &len, "grant_type", "refresh_token"),
	    0);
	assert_int_equal(token_form_add(buf, sizeof(buf), &len, "client_id", "id 1"), 0);
	assert_int_equal(token_form_add(buf, sizeof(buf), &len, "refresh_token", "0.A/b="), 0);
	assert_string_equal(buf, "grant_type=refresh_token&client_id=id+1&"
	    "refresh_token=0.A%2Fb%3D");
	assert_int_equal(len, strlen(buf));
}

static void
test_form_add_overflow_leaves_the_buffer_unchanged(void **state)
{
	char buf[32], want[32];
	size_t size, len, i;

	(void)state;
	/* "a=b&secret=" + value: at every size where it does not fit, nothing changes. */
	for (size = 5; size <= sizeof(buf); size++) {
		len = 0;
		memset(buf, 'Z', sizeof(buf));
		assert_int_equal(token_form_add(buf, size, &len, "a", "b"), 0);
		memcpy(want, buf, 4);
		/* 11 + 9 ("%2F%2F%2F") + 3 = 23 bytes; needs 24 with the NUL */
		if (token_form_add(buf, size, &len, "secret", "///xyz") == 0) {
			assert_true(size >= 24);
			assert_string_equal(buf, "a=b&secret=%2F%2F%2Fxyz");
			assert_int_equal(len, 23);
			continue;
		}
		assert_true(size < 24);
		assert_int_equal(len, 3);
		assert_memory_equal(buf, want, 4);
		/* Nothing of the refused value is left past the end. */
		for (i = 4; i < size; i++)
			assert_true(buf[i] != 'x' && buf[i] != 'y' && buf[i] != 'z' &&
			    buf[i] != '%');
		for (i = size; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 'Z');
	}
	/* Exactly full: "ab=cd" and the NUL in 6 bytes; not in 5. */
	len = 0;
	assert_int_equal(token_form_add(buf, 6, &len, "ab", "cd"), 0);
	len = 0;
	buf[0] = '\0';
	assert_int_equal(token_form_add(buf, 5, &len, "ab", "cd"), -1);
	assert_string_equal(buf, "");
	assert_int_equal(len, 0);
}

/* ---- token_argv ------------------------------------------------------------------------- */

static void
test_argv_words_quotes_backslashes(void **state)
{
	static const struct {
		const char *cmd;
		int argc;
		const char *words[6];
	} v[] = {
		{ "/usr/bin/get-token", 1, { "/usr/bin/get-token" } },
		{ "  /bin/tok\t--user  \"a b\" 'c d'  ", 4, { "/bin/tok", "--user", "a b", "c d" } },
		{ "tok e\\ f", 2, { "tok", "e f" } },
		{ "tok \"a\\\"b\" 'a\\b' a\\\\b", 4, { "tok", "a\"b", "a\\b", "a\\b" } },
		{ "tok '' \"\"", 3, { "tok", "", "" } },
		{ "tok a\"b c\"d 'x'y", 3, { "tok", "ab cd", "xy" } },
		{ "tok \"it's\" 'say \"hi\"'", 3, { "tok", "it's", "say \"hi\"" } },
		{ "tok abc\\", 2, { "tok", "abc\\" } },
		{ "tok $HOME *.txt >out", 4, { "tok", "$HOME", "*.txt", ">out" } },
	};
	char buf[128], *argv[8];
	size_t i;
	int j;

	(void)state;
	for (i = 0; i < NELEM(v); i++) {
		assert_int_equal(token_argv(v[i].cmd, buf, sizeof(buf), argv, 8), v[i].argc);
		for (j = 0; j < v[i].argc; j++)
			assert_string_equal(argv[j], v[i].words[j]);
		assert_null(argv[v[i].argc]);
	}
}

static void
test_argv_refusals(void **state)
{
	char buf[16], *argv[4];

	(void)state;
	assert_int_equal(token_argv("", buf, sizeof(buf), argv, 4), -1);
	assert_int_equal(token_argv(" \t ", buf, sizeof(buf), argv, 4), -1);
	assert_int_equal(token_argv("tok \"abc", buf, sizeof(buf), argv, 4), -1);
	assert_int_equal(token_argv("tok 'abc", buf, sizeof(buf), argv, 4), -1);
	/* max 4: three words and the NULL */
	assert_int_equal(token_argv("a b c", buf, sizeof(buf), argv, 4), 3);
	assert_null(argv[3]);
	assert_int_equal(token_argv("a b c d", buf, sizeof(buf), argv, 4), -1);
	/* 16 bytes of text with the NULs: "abcdefg hijklmn" fits exactly, one more does not */
	assert_int_equal(token_argv("abcdefg hijklmn", buf, sizeof(buf), argv, 4), 2);
	assert_string_equal(argv[1], "hijklmn");
	assert_int_equal(token_argv("abcdefg hijklmno", buf, sizeof(buf), argv, 4), -1);
	assert_int_equal(token_argv("abcdefghijklmnop", buf, sizeof(buf), argv, 4), -1);
	assert_int_equal(token_argv("abcdefghijklmno ", buf, sizeof(buf), argv, 4), 1);
}

/* ---- token_command_output ----------------------------------------------------------------- */

static int
cmdout(const char *s, size_t n)
{
	why[0] = '\0';
	return (token_command_output(s, n, &t, why, sizeof(why)));
}

static void
test_command_output_bare_token(void **state)
{
	(void)state;
	assert_int_equal(cmdout(LIT(MS_TOKEN "\n")), 0);
	assert_string_equal(t.access_token, MS_TOKEN);
	assert_int_equal(t.expires_in, -1);
	assert_int_equal(cmdout(LIT(" \n\tya29.a0-x_~+/==\r\n\n")), 0);
	assert_string_equal(t.access_token, "ya29.a0-x_~+/==");
	assert_int_equal(cmdout(LIT("tok")), 0);
	assert_string_equal(t.access_token, "tok");
}

static void
test_command_output_json(void **state)
{
	(void)state;
	assert_int_equal(cmdout(LIT("{\"access_token\":\"abc.def\",\"expires_in\":3600}\n")), 0);
	assert_string_equal(t.access_token, "abc.def");
	assert_int_equal(t.expires_in, 3600);
	assert_int_equal(cmdout(LIT("  {\"access_token\":\"x\"}  ")), 0);
	assert_int_equal(t.expires_in, -1);
	assert_int_equal(cmdout(LIT("{\"expires_in\":3600}")), -1);
	assert_non_null(strstr(why, "no access_token"));
	assert_int_equal(cmdout(LIT("{\"access_token\":\"SECRET\"")), -1);
	assert_null(strstr(why, "SECRET"));
	/* JSON whose token is not a bearer token is refused as a bare one would be */
	assert_int_equal(cmdout(LIT("{\"access_token\":\"SECRET with spaces\"}")), -1);
	assert_null(strstr(why, "SECRET"));
	assert_string_equal(t.access_token, "");
}

static void
test_command_output_refusals(void **state)
{
	static const struct {
		const char *out;
		size_t len;
		const char *why;
	} bad[] = {
		{ LIT(""), "printed nothing" },
		{ LIT(" \r\n\t\n"), "printed nothing" },
		{ LIT("tok1\ntok2\n"), "more than one line" },
		{ LIT("SECRET with space"), "not a bearer token" },
		{ LIT("SECRET!"), "not a bearer token" },
		{ LIT("=SECRET"), "not a bearer token" },
		{ LIT("SECRET=x"), "not a bearer token" },
		{ LIT("SECRET\001"), "not a bearer token" },
		{ LIT("SECRET\rX"), "not a bearer token" },
		/* a NUL must not cut the output short into something that looks like a token */
		{ LIT("SECRET\0garbage"), "not a bearer token" },
	};
	char *s;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(bad); i++) {
		assert_int_equal(cmdout(bad[i].out, bad[i].len), -1);
		assert_non_null(strstr(why, bad[i].why));
		assert_null(strstr(why, "SECRET"));
		assert_string_equal(t.access_token, "");
	}
	s = malloc(AUTH_TOKEN_MAX + 2);
	assert_non_null(s);
	memset(s, 'A', AUTH_TOKEN_MAX + 1);
	assert_int_equal(cmdout(s, AUTH_TOKEN_MAX), 0);
	assert_int_equal(strlen(t.access_token), AUTH_TOKEN_MAX);
	assert_int_equal(cmdout(s, AUTH_TOKEN_MAX + 1), -1);
	free(s);
}

/* ---- token_parse_key ----------------------------------------------------------------------- */

/* A fresh RSA key as PEM; the caller frees it. */
static char *
rsa_pem(void)
{
	EVP_PKEY *k = EVP_RSA_gen(2048);
	BIO *b = BIO_new(BIO_s_mem());
	char *p, *s;
	long n;

	assert_non_null(k);
	assert_non_null(b);
	assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
	n = BIO_get_mem_data(b, &p);
	s = malloc((size_t)n + 1);
	assert_non_null(s);
	memcpy(s, p, (size_t)n);
	s[n] = '\0';
	BIO_free(b);
	EVP_PKEY_free(k);
	return (s);
}

/* A service-account key file as the Cloud console writes it, of ${type}. */
static char *
sa_json(const char *type, const char *pem)
{
	char *s = malloc(strlen(pem) * 2 + 2048), *o;
	const char *p;

	assert_non_null(s);
	o = s + sprintf(s, "{\n  \"type\": \"%s\",\n  \"project_id\": \"mail-relay-123\",\n"
	    "  \"private_key_id\": \"0123456789abcdef0123456789abcdef01234567\",\n"
	    "  \"private_key\": \"", type);
	for (p = pem; *p != '\0'; p++) {
		if (*p == '\n') {
			*o++ = '\\';
			*o++ = 'n';
		} else
			*o++ = *p;
	}
	sprintf(o, "\",\n  \"client_email\": \"relay@mail-relay-123.iam.gserviceaccount.com\",\n"
	    "  \"client_id\": \"104857600000000000000\",\n"
	    "  \"auth_uri\": \"https://accounts.google.com/o/oauth2/auth\",\n"
	    "  \"token_uri\": \"https://oauth2.googleapis.com/token\",\n"
	    "  \"auth_provider_x509_cert_url\": \"https://www.googleapis.com/oauth2/v1/certs\",\n"
	    "  \"client_x509_cert_url\": \"https://www.googleapis.com/robot/v1/metadata/x509/"
	    "relay%%40mail-relay-123.iam.gserviceaccount.com\",\n"
	    "  \"universe_domain\": \"googleapis.com\"\n}\n");
	return (s);
}

static void
test_parse_key_service_account(void **state)
{
	char email[128], uri[256], small[8], *pem = rsa_pem(), *json, *got;

	(void)state;
	json = sa_json("service_account", pem);
	assert_int_equal(token_parse_key(json, strlen(json), email, sizeof(email), uri,
	    sizeof(uri), &got, why, sizeof(why)), 0);
	assert_string_equal(email, "relay@mail-relay-123.iam.gserviceaccount.com");
	assert_string_equal(uri, "https://oauth2.googleapis.com/token");
	assert_string_equal(got, pem);
	free(got);
	/* The e-mail does not fit: refused, no key handed out. */
	assert_int_equal(token_parse_key(json, strlen(json), small, sizeof(small), uri,
	    sizeof(uri), &got, why, sizeof(why)), -1);
	assert_null(got);
	free(json);

	/* An OAuth client secret JSON or a user's credentials are not service accounts. */
	json = sa_json("authorized_user", pem);
	assert_int_equal(token_parse_key(json, strlen(json), email, sizeof(email), uri,
	    sizeof(uri), &got, why, sizeof(why)), -1);
	assert_null(got);
	assert_non_null(strstr(why, "service_account"));
	assert_null(strstr(why, "PRIVATE"));
	free(json);

	json = "{\"type\":\"service_account\",\"client_email\":\"a@b\"}";
	assert_int_equal(token_parse_key(json, strlen(json), email, sizeof(email), uri,
	    sizeof(uri), &got, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "private_key"));
	json = "{\"type\":\"service_account\",\"client_email\":\"a@b\",\"private_key\":5}";
	assert_int_equal(token_parse_key(json, strlen(json), email, sizeof(email), uri,
	    sizeof(uri), &got, why, sizeof(why)), -1);
	json = "-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----\n";
	assert_int_equal(token_parse_key(json, strlen(json), email, sizeof(email), uri,
	    sizeof(uri), &got, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "not JSON"));
	assert_null(strstr(why, "PRIVATE"));
	free(pem);
}

/* ---- statefile ---------------------------------------------------------------------------- */

static char dir[64];

static int
mkdir_setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/test_token.XXXXXX");
	return (mkdtemp(dir) == NULL ? -1 : 0);
}

static int
rmdir_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return (system(cmd) == 0 ? 0 : -1);
}

static size_t
dir_entries(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return (n);
}

static void
slurp(const char *path, char *out, size_t size)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, out, size - 1);
	assert_true(n >= 0);
	out[n] = '\0';
	close(fd);
}

/* Write ${data} (${n} bytes) to ${name} in the test directory; its path in ${path}. */
static void
put(const char *name, const char *data, size_t n, char *path, size_t size)
{
	int fd;

	snprintf(path, size, "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	close(fd);
}

static void
test_state_path(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(state_path("/var/lib/smtp-tls-proxy", "default", out, sizeof(out)), 0);
	assert_string_equal(out, "/var/lib/smtp-tls-proxy/default.refresh_token");
	assert_int_equal(state_path("/s", "m365-main", out, sizeof(out)), 0);
	assert_string_equal(out, "/s/m365-main.refresh_token");
	assert_int_equal(state_path("/s", "../x", out, sizeof(out)), -1);
	assert_int_equal(state_path("/s", "a/../../x", out, sizeof(out)), -1);
	assert_int_equal(state_path("/s", "..", out, sizeof(out)), -1);
	assert_int_equal(state_path("/s", ".hidden", out, sizeof(out)), -1);
	assert_int_equal(state_path("/s", "", out, sizeof(out)), -1);
	assert_int_equal(state_path("/s", "a b", out, sizeof(out)), -1);
	assert_int_equal(state_path("/s", "a\nb", out, sizeof(out)), -1);
	/* "/s/" + 45 + ".refresh_token" = 62 bytes: fits in 64 with the NUL, 46 does not */
	assert_int_equal(state_path("/s", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", out,
	    sizeof(out)), 0);
	assert_int_equal(state_path("/s", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    out, sizeof(out)), -1);
}

static void
test_state_write_mode_content_and_atomic_replace(void **state)
{
	char path[256], got[256];
	struct stat st, st2;
	mode_t old;
	int fd;

	(void)state;
	/* A permissive umask must not widen the file. */
	old = umask(0);
	assert_int_equal(state_write(dir, "default", "rt-first", why, sizeof(why)), 0);
	umask(old);
	assert_int_equal(state_path(dir, "default", path, sizeof(path)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	slurp(path, got, sizeof(got));
	assert_string_equal(got, "rt-first\n");

	/* Replaced by rename: a reader holding the old file still sees all of the old token. */
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(state_write(dir, "default", "rt-second-and-longer", why, sizeof(why)),
	    0);
	assert_int_equal(stat(path, &st2), 0);
	assert_true(st.st_ino != st2.st_ino);
	assert_int_equal(st2.st_mode & 07777, 0600);
	memset(got, 0, sizeof(got));
	assert_int_equal(read(fd, got, sizeof(got) - 1), 9);
	assert_string_equal(got, "rt-first\n");
	close(fd);
	slurp(path, got, sizeof(got));
	assert_string_equal(got, "rt-second-and-longer\n");
	/* No temporary file is left behind. */
	assert_int_equal(dir_entries(), 1);
	/* And it reads back. */
	assert_int_equal(state_read_secret(path, got, sizeof(got), NULL, why, sizeof(why)), 0);
	assert_string_equal(got, "rt-second-and-longer");
}

static void
test_state_write_failures(void **state)
{
	char sub[128];

	(void)state;
	assert_int_equal(state_write(dir, "../escape", "rt", why, sizeof(why)), -1);
	assert_non_null(strstr(why, "bad upstream name"));
	snprintf(sub, sizeof(sub), "%s/missing", dir);
	assert_int_equal(state_write(sub, "default", "rt-SECRET", why, sizeof(why)), -1);
	assert_non_null(strstr(why, "No such file"));
	assert_null(strstr(why, "SECRET"));
	assert_int_equal(dir_entries(), 1);	/* what the test before left, nothing more */
}

static void
test_state_read_secret(void **state)
{
	static const struct {
		const char *data;
		size_t len;
		int rc;
		const char *want;
	} v[] = {
		{ LIT("rt-abc\n"), 0, "rt-abc" },
		{ LIT("rt-abc"), 0, "rt-abc" },
		{ LIT("rt-abc\r\n"), 0, "rt-abc" },
		{ LIT("pass word x\n"), 0, "pass word x" },
		{ LIT(""), -1, "" },
		{ LIT("\n"), -1, "" },
		{ LIT("rt-abc\n\n"), -1, "" },
		{ LIT("rt\tabc"), -1, "" },
		{ LIT("rt-a\0bc"), -1, "" },
		{ LIT("rt\x7f"), -1, "" },
		{ LIT("line1\nline2\n"), -1, "" },
	};
	char path[256], out[16];
	time_t mt = 0;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(v); i++) {
		put("secret", v[i].data, v[i].len, path, sizeof(path));
		memset(out, 'Z', sizeof(out));
		assert_int_equal(state_read_secret(path, out, sizeof(out), &mt, why, sizeof(why)),
		    v[i].rc);
		assert_string_equal(out, v[i].want);
		assert_true(mt > 0);
		if (v[i].rc != 0)
			assert_non_null(strstr(why, path));
	}
	/* 15 bytes and the NUL fit in 16; 16 bytes do not (nor does 15 + a newline: 16). */
	put("secret", LIT("123456789012345"), path, sizeof(path));
	assert_int_equal(state_read_secret(path, out, sizeof(out), NULL, why, sizeof(why)), 0);
	assert_string_equal(out, "123456789012345");
	put("secret", LIT("1234567890123456"), path, sizeof(path));
	assert_int_equal(state_read_secret(path, out, sizeof(out), NULL, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "too long"));
	assert_string_equal(out, "");
	assert_int_equal(out[5], '\0');		/* wiped, not just cut */
	put("secret", LIT("12345678901234\n"), path, sizeof(path));
	assert_int_equal(state_read_secret(path, out, sizeof(out), NULL, why, sizeof(why)), 0);
	/* missing: 1, not an error */
	snprintf(path, sizeof(path), "%s/none", dir);
	assert_int_equal(state_read_secret(path, out, sizeof(out), NULL, why, sizeof(why)), 1);
	/* a directory */
	assert_int_equal(state_read_secret(dir, out, sizeof(out), NULL, why, sizeof(why)), -1);
	assert_non_null(strstr(why, dir));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_microsoft_answer),
		cmocka_unit_test(test_parse_google_answer_with_string_expires_in),
		cmocka_unit_test(test_parse_error_answers),
		cmocka_unit_test(test_parse_description_is_cut_and_printable),
		cmocka_unit_test(test_parse_not_json_or_not_an_object),
		cmocka_unit_test(test_parse_wrong_types),
		cmocka_unit_test(test_parse_access_token_size_limit),
		cmocka_unit_test(test_parse_device_authorization),
		cmocka_unit_test(test_describe_error),
		cmocka_unit_test(test_form_add_percent_encoding),
		cmocka_unit_test(test_form_add_overflow_leaves_the_buffer_unchanged),
		cmocka_unit_test(test_argv_words_quotes_backslashes),
		cmocka_unit_test(test_argv_refusals),
		cmocka_unit_test(test_command_output_bare_token),
		cmocka_unit_test(test_command_output_json),
		cmocka_unit_test(test_command_output_refusals),
		cmocka_unit_test(test_parse_key_service_account),
		cmocka_unit_test(test_state_path),
		cmocka_unit_test(test_state_write_mode_content_and_atomic_replace),
		cmocka_unit_test(test_state_write_failures),
		cmocka_unit_test(test_state_read_secret),
	};

	return (cmocka_run_group_tests(tests, mkdir_setup, rmdir_teardown));
}
