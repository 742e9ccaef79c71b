/*
 * probefmt: the probe's report as text and JSON, from report structs made by hand (the
 * way upstream.c fills them through upreport_*).
 */
#include "unit.h"

#include <jansson.h>

#include "config.h"
#include "probefmt.h"
#include "upreport.h"

#define EHLO_TLS "250-mail.test\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n"

/* A report of a preparation that got as far as the EHLO under TLS. */
static void
made(struct upstream_report *rep, const char *username)
{
	struct upstream_conf up;

	memset(&up, 0, sizeof(up));
	snprintf(up.name, sizeof(up.name), "office");
	snprintf(up.host, sizeof(up.host), "smtp.example.com");
	up.port = 587;
	up.tls = UP_TLS_STARTTLS;
	snprintf(up.server_name, sizeof(up.server_name), "smtp.example.com");
	up.verify = 1;
	snprintf(up.username, sizeof(up.username), "%s", username);
	upreport_init(rep, &up, 100.);
	upreport_step(rep, "resolve", 100.);
	upreport_addr(rep, "[2001:db8::1]:587", NULL);
	upreport_step(rep, "connect", 100.001);
	upreport_addr(rep, "[2001:db8::1]:587", "network unreachable");
	upreport_addr(rep, "192.0.2.1:587", NULL);
	upreport_step(rep, "greeting", 100.002);
	upreport_reply(rep, "greeting", LIT("220 mail.test ESMTP\r\n"));
	upreport_step(rep, "ehlo-tls", 100.010);
	upreport_reply(rep, "ehlo-tls", LIT(EHLO_TLS));
	rep->tls = 1;
	snprintf(rep->version, sizeof(rep->version), "TLSv1.3");
	snprintf(rep->verify_str, sizeof(rep->verify_str), "ok");
	rep->nchain = 1;
	snprintf(rep->chain[0].subject, sizeof(rep->chain[0].subject), "CN=smtp.example.com");
	snprintf(rep->chain[0].sans, sizeof(rep->chain[0].sans), "DNS:a.test, IP:192.0.2.1");
	snprintf(rep->chain[0].pin, sizeof(rep->chain[0].pin), "sha256//AAAA");
	rep->chain[0].days_left = -3;
}

static char *
text_of(const struct upstream_report *rep)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	probefmt_text(f, rep);
	fclose(f);
	return (buf);
}

static void
test_success_text_and_json(void **state)
{
	struct upstream_report rep;
	json_t *j, *caps, *addrs;
	char *t;

	(void)state;
	made(&rep, "");
	upreport_end(&rep, 1, 100.020);
	assert_true(rep.ok);
	assert_null(probefmt_hint(&rep));
	t = text_of(&rep);
	assert_non_null(strstr(t, "[2001:db8::1]:587 network unreachable"));
	assert_non_null(strstr(t, "192.0.2.1:587 connected"));
	assert_non_null(strstr(t, "after TLS   PIPELINING, AUTH PLAIN LOGIN\n"));
	assert_non_null(strstr(t, "EXPIRED 3 days ago"));
	assert_non_null(strstr(t, "connect 1.0 ms"));
	assert_non_null(strstr(t, "total 20.0 ms"));
	assert_non_null(strstr(t, "OK: a session would succeed"));
	assert_null(strstr(t, "fix"));
	free(t);
	j = probefmt_json(&rep);
	assert_non_null(j);
	assert_true(json_is_true(json_object_get(j, "ok")));
	caps = json_object_get(j, "capabilities_after_tls");
	assert_int_equal(json_array_size(caps), 2);
	assert_string_equal(json_string_value(json_array_get(caps, 1)), "AUTH PLAIN LOGIN");
	assert_true(json_is_null(json_object_get(j, "capabilities_before_tls")));
	addrs = json_object_get(j, "addresses");
	assert_int_equal(json_array_size(addrs), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(addrs, 0),
	    "error")), "network unreachable");
	assert_true(json_is_null(json_object_get(json_array_get(addrs, 1), "error")));
	assert_int_equal(json_array_size(json_object_get(json_array_get(
	    json_object_get(j, "chain"), 0), "sans")), 2);
	assert_true(json_is_null(json_object_get(j, "failure")));
	assert_true(json_is_null(json_object_get(j, "auth")));
	json_decref(j);
}

static void
test_failure_first_only_and_hints(void **state)
{
	static const struct {
		const char *reason, *detail, *hint, *words;
	} cases[] = {
		{ "verify", "hostname mismatch", NULL, "server_name" },
		{ "verify", "self-signed certificate in certificate chain", NULL, "ca_file" },
		{ "verify", "unable to get local issuer certificate", NULL, "ca_file" },
		{ "verify", "certificate has expired", NULL, "renew" },
		{ "connect", "192.0.2.1:587 refused", NULL, "firewall" },
		{ "no-starttls", "x", NULL, "587" },
		{ "auth", "credentials refused", NULL, "password" },
		{ "oauth2", "HTTP 401", NULL, "oauth2_token_url" },
		{ "protocol", "a TLS record", "set tls = implicit", "tls = implicit" },
		{ "weird", "x", NULL, "host, port" },
	};
	struct upstream_report rep;
	json_t *j, *fl;
	size_t i;
	char *t;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		made(&rep, "dev@example.com");
		upreport_fail(&rep, "tls", cases[i].reason, cases[i].detail, cases[i].hint);
		upreport_fail(&rep, "later", "closed", "second failure", NULL);
		upreport_end(&rep, 1, 100.5);
		assert_false(rep.ok);
		assert_non_null(strstr(probefmt_hint(&rep), cases[i].words));
		t = text_of(&rep);
		assert_non_null(strstr(t, "FAILED at tls"));
		assert_non_null(strstr(t, cases[i].detail));
		assert_null(strstr(t, "second failure"));
		assert_non_null(strstr(t, "not tried (password login as dev@example.com)"));
		free(t);
		j = probefmt_json(&rep);
		fl = json_object_get(j, "failure");
		assert_string_equal(json_string_value(json_object_get(fl, "reason")),
		    cases[i].reason);
		assert_non_null(strstr(json_string_value(json_object_get(fl, "hint")),
		    cases[i].words));
		json_decref(j);
	}
}

static void
test_null_report_is_a_noop(void **state)
{
	(void)state;
	upreport_step(NULL, "x", 1.);
	upreport_addr(NULL, "a", NULL);
	upreport_reply(NULL, "greeting", LIT("220 x\r\n"));
	upreport_tls(NULL, NULL);
	upreport_auth(NULL, "PLAIN", 235, LIT("235 ok\r\n"));
	upreport_fail(NULL, "a", "b", "c", NULL);
	upreport_end(NULL, 1, 1.);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_success_text_and_json),
		cmocka_unit_test(test_failure_first_only_and_hints),
		cmocka_unit_test(test_null_report_is_a_noop),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
