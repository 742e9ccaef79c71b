/* expo: the Prometheus text exposition of a metrics snapshot. */
#include "unit.h"

#include <openssl/x509.h>

#include "expo.h"

static struct shared_snapshot snap;
static struct expo_names names;

static char *
render(void)
{
	size_t len;
	char *t = expo_render(&snap, &names, &len);

	assert_non_null(t);
	assert_int_equal(strlen(t), len);
	return (t);
}

/* 1 if ${line} is a whole line of ${text}. */
static int
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p;

	for (p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return (1);
	return (0);
}

static void
reset(void)
{
	memset(&snap, 0, sizeof(snap));
	memset(&names, 0, sizeof(names));
}

static void
test_expo_counters_with_their_labels(void **state)
{
	char *t;

	(void)state;
	reset();
	snprintf(snap.listeners[0], sizeof(snap.listeners[0]), "127.0.0.1:2525");
	snap.m.listener_sessions[0] = 7;
	snap.c.sessions = 2;
	snap.c.workers = 3;
	snap.m.refused[0] = 4;		/* allow */
	snap.m.messages[1] = 5;		/* tempfail */
	snap.m.bytes_in = 1000;
	snap.m.bytes_out = 200;
	snap.m.auth[SHARED_AUTH_DEVICE][1] = 6;
	snap.m.reloads[1] = 1;
	snap.m.generation = 2;
	names.upstream[0] = "default";
	names.upstream[1] = "m365";
	snap.m.up_attempts[1] = 9;
	snap.m.up_fail[1][1][1] = 8;	/* stage connect, reason connect */
	snap.m.cert_not_after[0] = 1900000000;
	snap.token_expiry[1] = 1800000000;
	snap.m.oauth2[1][1] = 3;
	t = render();
	assert_true(has_line(t, "smtp_tls_proxy_sessions_total{listener=\"127.0.0.1:2525\"} 7"));
	assert_true(has_line(t, "smtp_tls_proxy_sessions_active 2"));
	assert_true(has_line(t, "smtp_tls_proxy_workers 3"));
	assert_true(has_line(t, "smtp_tls_proxy_sessions_refused_total{reason=\"allow\"} 4"));
	assert_true(has_line(t, "smtp_tls_proxy_sessions_refused_total{reason=\"upstream_busy\"} 0"));
	/* "other" only when something fell there. */
	assert_null(strstr(t, "reason=\"other\""));
	assert_true(has_line(t, "smtp_tls_proxy_messages_total{result=\"tempfail\"} 5"));
	assert_true(has_line(t, "smtp_tls_proxy_messages_total{result=\"ok\"} 0"));
	assert_true(has_line(t, "smtp_tls_proxy_bytes_total{direction=\"device_to_upstream\"} 1000"));
	assert_true(has_line(t, "smtp_tls_proxy_bytes_total{direction=\"upstream_to_device\"} 200"));
	assert_true(has_line(t, "smtp_tls_proxy_auth_total{side=\"device\",result=\"fail\"} 6"));
	assert_true(has_line(t, "smtp_tls_proxy_auth_total{side=\"upstream\",result=\"ok\"} 0"));
	assert_true(has_line(t, "smtp_tls_proxy_config_reloads_total{result=\"refused\"} 1"));
	assert_true(has_line(t, "smtp_tls_proxy_config_generation 2"));
	assert_true(has_line(t, "smtp_tls_proxy_upstream_attempts_total{upstream=\"default\"} 0"));
	assert_true(has_line(t, "smtp_tls_proxy_upstream_attempts_total{upstream=\"m365\"} 9"));
	assert_true(has_line(t, "smtp_tls_proxy_upstream_failures_total{upstream=\"m365\","
	    "stage=\"connect\",reason=\"connect\"} 8"));
	assert_true(has_line(t, "smtp_tls_proxy_upstream_certificate_expiry_timestamp_seconds"
	    "{upstream=\"default\"} 1900000000"));
	assert_true(has_line(t, "smtp_tls_proxy_oauth2_token_expiry_timestamp_seconds"
	    "{upstream=\"m365\"} 1800000000"));
	assert_true(has_line(t, "smtp_tls_proxy_oauth2_token_requests_total{upstream=\"m365\","
	    "result=\"fail\"} 3"));
	assert_true(has_line(t, "smtp_tls_proxy_oauth2_token_requests_total{upstream=\"m365\","
	    "result=\"ok\"} 0"));
	/* Slots without an upstream and without counts are not shown. */
	assert_null(strstr(t, "slot"));
	free(t);
}

static void
test_expo_histogram_is_cumulative(void **state)
{
	char *t;

	(void)state;
	reset();
	snap.m.tls_bucket[SHARED_SIDE_UPSTREAM][0] = 1;	/* <= 5 ms */
	snap.m.tls_bucket[SHARED_SIDE_UPSTREAM][4] = 2;	/* <= 100 ms */
	snap.m.tls_count[SHARED_SIDE_UPSTREAM] = 4;	/* one past 10 s */
	snap.m.tls_ms[SHARED_SIDE_UPSTREAM] = 12345;
	snprintf(snap.ciphers[0], sizeof(snap.ciphers[0]), "TLS_AES_256_GCM_SHA384");
	snap.m.tls[SHARED_SIDE_UPSTREAM][0][0] = 3;
	snap.m.tls[SHARED_SIDE_UPSTREAM][1][SHARED_CIPHERS] = 1;
	t = render();
	assert_true(has_line(t, "smtp_tls_proxy_tls_handshake_duration_seconds_bucket"
	    "{side=\"upstream\",le=\"0.005\"} 1"));
	assert_true(has_line(t, "smtp_tls_proxy_tls_handshake_duration_seconds_bucket"
	    "{side=\"upstream\",le=\"0.05\"} 1"));
	assert_true(has_line(t, "smtp_tls_proxy_tls_handshake_duration_seconds_bucket"
	    "{side=\"upstream\",le=\"0.1\"} 3"));
	assert_true(has_line(t, "smtp_tls_proxy_tls_handshake_duration_seconds_bucket"
	    "{side=\"upstream\",le=\"10\"} 3"));
	assert_true(has_line(t, "smtp_tls_proxy_tls_handshake_duration_seconds_bucket"
	    "{side=\"upstream\",le=\"+Inf\"} 4"));
	assert_true(has_line(t, "smtp_tls_proxy_tls_handshake_duration_seconds_sum"
	    "{side=\"upstream\"} 12.345"));
	assert_true(has_line(t, "smtp_tls_proxy_tls_handshake_duration_seconds_count"
	    "{side=\"upstream\"} 4"));
	assert_true(has_line(t, "smtp_tls_proxy_tls_handshakes_total{side=\"upstream\","
	    "version=\"TLSv1.3\",cipher=\"TLS_AES_256_GCM_SHA384\"} 3"));
	assert_true(has_line(t, "smtp_tls_proxy_tls_handshakes_total{side=\"upstream\","
	    "version=\"TLSv1.2\",cipher=\"other\"} 1"));
	free(t);
}

static void
test_expo_verify_reasons_are_openssl_strings(void **state)
{
	char *t, line[256];

	(void)state;
	reset();
	snap.m.verify_fail[X509_V_ERR_CERT_HAS_EXPIRED] = 2;
	snap.m.verify_fail[SHARED_VERIFY_CODES] = 1;
	t = render();
	snprintf(line, sizeof(line), "smtp_tls_proxy_tls_verify_failures_total{reason=\"%s\"} 2",
	    X509_verify_cert_error_string(X509_V_ERR_CERT_HAS_EXPIRED));
	assert_true(has_line(t, line));
	assert_true(has_line(t, "smtp_tls_proxy_tls_verify_failures_total{reason=\"other\"} 1"));
	free(t);
}

static void
test_expo_label_values_are_escaped(void **state)
{
	char *t;

	(void)state;
	reset();
	names.upstream[2] = "a\"b\\c\nd";
	snap.m.up_attempts[5] = 1;	/* a slot no upstream has now */
	t = render();
	assert_true(has_line(t, "smtp_tls_proxy_upstream_attempts_total"
	    "{upstream=\"a\\\"b\\\\c\\nd\"} 0"));
	assert_true(has_line(t, "smtp_tls_proxy_upstream_attempts_total{upstream=\"slot5\"} 1"));
	free(t);
}

static void
test_expo_every_sample_has_help_and_type(void **state)
{
	char *t, *line, *save = NULL, name[128], seen[64][128];
	size_t nseen = 0, i, n;
	int found;

	(void)state;
	reset();
	t = render();
	for (line = strtok_r(t, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# TYPE ", 7) == 0) {
			n = strcspn(line + 7, " ");
			assert_true(n < sizeof(name) && nseen < NELEM(seen));
			memcpy(seen[nseen], line + 7, n);
			seen[nseen++][n] = '\0';
			continue;
		}
		if (line[0] == '#')
			continue;
		n = strcspn(line, "{ ");
		assert_true(n < sizeof(name));
		memcpy(name, line, n);
		name[n] = '\0';
		found = 0;
		for (i = 0; i < nseen; i++)
			if (strncmp(name, seen[i], strlen(seen[i])) == 0)
				found = 1;
		assert_true(found);
	}
	free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_expo_counters_with_their_labels),
		cmocka_unit_test(test_expo_histogram_is_cumulative),
		cmocka_unit_test(test_expo_verify_reasons_are_openssl_strings),
		cmocka_unit_test(test_expo_label_values_are_escaped),
		cmocka_unit_test(test_expo_every_sample_has_help_and_type),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
