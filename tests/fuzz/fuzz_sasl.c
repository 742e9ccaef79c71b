/*
 * fuzz_sasl: what a device sends to log in to the proxy (client_auth) and the users_file
 * the proxy checks it against.
 *
 * Input: byte 0 selects the parser, the rest is its input: 0 users_parse (a users file),
 * 1 sasl_auth_parse (an AUTH argument), 2 sasl_plain, 3 sasl_login (a response line).
 * Checks: nothing outside the input is read; the fields of an accepted PLAIN response,
 * encoded again (auth_plain), decode to themselves; an accepted field is NUL-free and within SASL_FIELD_MAX; an
 * initial response lies inside the argument.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "sasl.h"
#include "users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
ignore(void *arg, int line, int warning, const char *msg)
{
	(void)arg;
	(void)warning;
	if (line < 0 || strlen(msg) == 0)
		abort();
}

static void
check_field(const char *f, size_t size)
{
	size_t n = strnlen(f, size);

	if (n == size || n > SASL_FIELD_MAX)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char user[SASL_FIELD_MAX + 1], pass[SASL_FIELD_MAX + 1], enc[1100];
	char user2[SASL_FIELD_MAX + 1], pass2[SASL_FIELD_MAX + 1];
	const char *in, *ir;
	enum sasl_mech mech;
	struct users *u;
	size_t n, irlen;
	char *copy;

	if (size < 1)
		return (0);
	n = size - 1;
	/* An exact-size copy, so ASan sees any read past the end. */
	if ((copy = malloc(n ? n : 1)) == NULL)
		abort();
	memcpy(copy, data + 1, n);
	in = copy;
	switch (data[0] & 3) {
	case 0:
		u = users_parse(in, n, ignore, NULL);
		users_free(u);
		break;
	case 1:
		if (sasl_auth_parse(in, n, &mech, &ir, &irlen) == 0) {
			if (mech != SASL_UNKNOWN && mech != SASL_PLAIN && mech != SASL_LOGIN)
				abort();
			if (ir != NULL && (ir < in || ir + irlen > in + n))
				abort();
		} else if (ir != NULL)
			abort();
		break;
	case 2:
		if (sasl_plain(in, n, user, sizeof(user), pass, sizeof(pass)) == 0) {
			check_field(user, sizeof(user));
			check_field(pass, sizeof(pass));
			if (user[0] == '\0')
				abort();
			/* What auth_plain() encodes decodes back to the same two fields. */
			if (auth_plain(user, pass, enc, sizeof(enc)) != 0 ||
			    sasl_plain(enc, strlen(enc), user2, sizeof(user2), pass2,
			    sizeof(pass2)) != 0 || strcmp(user, user2) != 0 ||
			    strcmp(pass, pass2) != 0)
				abort();
		}
		break;
	default:
		if (sasl_login(in, n, user, sizeof(user)) == 0)
			check_field(user, sizeof(user));
		(void)sasl_is_cancel(in, n);
		break;
	}
	free(copy);
	return (0);
}
