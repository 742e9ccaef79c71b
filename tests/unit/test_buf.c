/* buf: the bounded, lazily allocated byte queue. */
#include "unit.h"

#include "buf.h"

static void
test_buf_init_allocates_nothing(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 100);
	assert_null(b.data);
	assert_int_equal(b.size, 0);
	assert_int_equal(buf_len(&b), 0);
	assert_null(buf_data(&b));
	assert_int_equal(buf_room(&b), 100);
	buf_free(&b);
}

static void
test_buf_consuming_everything_releases_memory(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 100);
	assert_int_equal(buf_append(&b, "hello", 5), 0);
	assert_non_null(b.data);
	assert_int_equal(buf_len(&b), 5);
	assert_memory_equal(buf_data(&b), "hello", 5);
	buf_consume(&b, 2);
	assert_int_equal(buf_len(&b), 3);
	assert_memory_equal(buf_data(&b), "llo", 3);
	buf_consume(&b, 3);
	assert_int_equal(buf_len(&b), 0);
	assert_null(buf_data(&b));
	assert_null(b.data);
	assert_int_equal(b.size, 0);
	assert_int_equal(buf_room(&b), 100);
	buf_free(&b);
}

static void
test_buf_consume_more_than_held_empties_and_releases(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 100);
	assert_int_equal(buf_append(&b, "abc", 3), 0);
	buf_consume(&b, 50);
	assert_int_equal(buf_len(&b), 0);
	assert_null(b.data);
	buf_free(&b);
}

static void
test_buf_secret_consume_wipes_and_releases(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 64);
	b.secret = 1;
	assert_int_equal(buf_append(&b, "password", 8), 0);
	buf_consume(&b, 4);
	/* The consumed bytes are wiped in place; the rest are intact. */
	assert_memory_equal(b.data, "\0\0\0\0", 4);
	assert_memory_equal(buf_data(&b), "word", 4);
	buf_consume(&b, 4);
	assert_null(b.data);
	buf_free(&b);
}

static void
test_buf_append_beyond_cap_fails_and_appends_nothing(void **state)
{
	struct buf b;
	char big[20];

	(void)state;
	memset(big, 'x', sizeof(big));
	buf_init(&b, 10);
	assert_int_equal(buf_append(&b, big, 11), -1);
	assert_int_equal(buf_len(&b), 0);
	assert_null(b.data);
	assert_int_equal(buf_append(&b, "0123456", 7), 0);
	assert_int_equal(buf_append(&b, "abcd", 4), -1);
	assert_int_equal(buf_len(&b), 7);
	assert_memory_equal(buf_data(&b), "0123456", 7);
	assert_int_equal(buf_room(&b), 3);
	assert_int_equal(buf_append(&b, "abc", 3), 0);
	assert_int_equal(buf_len(&b), 10);
	assert_int_equal(buf_room(&b), 0);
	assert_int_equal(buf_append(&b, "z", 1), -1);
	assert_int_equal(buf_len(&b), 10);
	assert_memory_equal(buf_data(&b), "0123456abc", 10);
	/* Never allocates past the cap. */
	assert_true(b.size <= 10);
	buf_free(&b);
}

static void
test_buf_append_zero_bytes_allocates_nothing(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 10);
	assert_int_equal(buf_append(&b, "", 0), 0);
	assert_null(b.data);
	buf_free(&b);
}

static void
test_buf_reserve_commit_appends(void **state)
{
	struct buf b;
	size_t got = 0;
	char *w;

	(void)state;
	buf_init(&b, 4096);
	w = buf_reserve(&b, 5, &got);
	assert_non_null(w);
	assert_true(got >= 5);
	/* Reserving alone holds nothing, though memory now exists. */
	assert_int_equal(buf_len(&b), 0);
	assert_null(buf_data(&b));
	memcpy(w, "abc", 3);
	buf_commit(&b, 3);
	assert_int_equal(buf_len(&b), 3);
	assert_memory_equal(buf_data(&b), "abc", 3);
	w = buf_reserve(&b, 2, &got);
	assert_non_null(w);
	assert_true(got >= 2);
	memcpy(w, "de", 2);
	buf_commit(&b, 2);
	assert_int_equal(buf_len(&b), 5);
	assert_memory_equal(buf_data(&b), "abcde", 5);
	buf_free(&b);
}

static void
test_buf_reserve_is_limited_by_room(void **state)
{
	struct buf b;
	size_t got = 0;
	char *w;

	(void)state;
	buf_init(&b, 8);
	assert_int_equal(buf_append(&b, "12345", 5), 0);
	w = buf_reserve(&b, 100, &got);
	assert_non_null(w);
	assert_true(got >= 3);
	/* Filling what is reserved up to the room must be allowed and stay inside cap. */
	memcpy(w, "678", 3);
	buf_commit(&b, 3);
	assert_int_equal(buf_len(&b), 8);
	assert_int_equal(buf_room(&b), 0);
	assert_null(buf_reserve(&b, 1, &got));
	assert_memory_equal(buf_data(&b), "12345678", 8);
	buf_free(&b);
}

static void
test_buf_reserve_on_full_buffer_returns_null(void **state)
{
	struct buf b;
	size_t got = 0;

	(void)state;
	buf_init(&b, 3);
	assert_int_equal(buf_append(&b, "abc", 3), 0);
	assert_null(buf_reserve(&b, 1, &got));
	buf_free(&b);
}

static void
test_buf_compaction_reuses_space_in_front(void **state)
{
	struct buf b;
	char chunk[600];
	size_t got = 0, size;
	char *w;

	(void)state;
	memset(chunk, 'a', sizeof(chunk));
	buf_init(&b, 1024);
	assert_int_equal(buf_append(&b, chunk, 600), 0);
	size = b.size;
	buf_consume(&b, 500);
	assert_int_equal(buf_len(&b), 100);
	/* 100 held + 600 more fit the cap only if the held bytes slide to the front. */
	memset(chunk, 'b', sizeof(chunk));
	assert_int_equal(buf_append(&b, chunk, 600), 0);
	assert_int_equal(buf_len(&b), 700);
	assert_int_equal(b.size, size);
	assert_true(b.size <= 1024);
	{
		const char *d = buf_data(&b);
		size_t i;

		for (i = 0; i < 100; i++)
			assert_int_equal(d[i], 'a');
		for (i = 100; i < 700; i++)
			assert_int_equal(d[i], 'b');
	}
	w = buf_reserve(&b, 324, &got);
	assert_non_null(w);
	assert_int_equal(got, 324);
	buf_free(&b);
}

static void
test_buf_grows_keeping_contents(void **state)
{
	struct buf b;
	char chunk[100];
	size_t i, k;

	(void)state;
	buf_init(&b, 64 * 1024);
	for (k = 0; k < 300; k++) {
		memset(chunk, (int)('A' + k % 26), sizeof(chunk));
		assert_int_equal(buf_append(&b, chunk, sizeof(chunk)), 0);
		if (k % 3 == 0)
			buf_consume(&b, 40);
	}
	/* 300 * 100 appended, 100 * 40 consumed. */
	assert_int_equal(buf_len(&b), 30000 - 4000);
	assert_true(b.size <= 64 * 1024);
	for (i = 0; i < buf_len(&b); i++) {
		size_t abs = 4000 + i;

		assert_int_equal(buf_data(&b)[i], 'A' + (abs / 100) % 26);
	}
	buf_free(&b);
}

static void
test_buf_free_resets(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 100);
	b.secret = 1;
	assert_int_equal(buf_append(&b, "abc", 3), 0);
	buf_free(&b);
	assert_null(b.data);
	assert_int_equal(buf_len(&b), 0);
	assert_int_equal(buf_room(&b), 100);
	/* Usable again after free. */
	assert_int_equal(buf_append(&b, "x", 1), 0);
	buf_free(&b);
	buf_free(&b);
}

/* buf_line on exactly the bytes given. */
static const char *
line_of(struct buf *b, const char *p, size_t n, size_t *lenp)
{
	buf_free(b);
	if (n > 0)
		assert_int_equal(buf_append(b, p, n), 0);
	return (buf_line(b, lenp));
}

static void
test_buf_line_ends_only_at_crlf(void **state)
{
	struct buf b;
	const char *l;
	size_t len = 999;

	(void)state;
	buf_init(&b, 1024);
	assert_null(line_of(&b, LIT(""), &len));
	assert_null(line_of(&b, LIT("abc"), &len));
	assert_null(line_of(&b, LIT("abc\n"), &len));
	assert_null(line_of(&b, LIT("abc\ndef\n"), &len));
	assert_null(line_of(&b, LIT("abc\rdef"), &len));
	assert_null(line_of(&b, LIT("abc\r"), &len));
	assert_null(line_of(&b, LIT("\r"), &len));
	assert_null(line_of(&b, LIT("\n"), &len));
	assert_null(line_of(&b, LIT("\n\r"), &len));
	assert_null(line_of(&b, LIT("a\r\rb\n\r"), &len));

	l = line_of(&b, LIT("\r\n"), &len);
	assert_non_null(l);
	assert_int_equal(len, 0);

	l = line_of(&b, LIT("EHLO x\r\nQUIT\r\n"), &len);
	assert_non_null(l);
	assert_int_equal(len, 6);
	assert_memory_equal(l, "EHLO x", 6);

	/* A bare LF or CR before the CRLF stays inside the line. */
	l = line_of(&b, LIT("a\nb\rc\r\r\n"), &len);
	assert_non_null(l);
	assert_int_equal(len, 6);
	assert_memory_equal(l, "a\nb\rc\r", 6);
	buf_free(&b);
}

static void
test_buf_line_cr_at_end_waits_for_lf(void **state)
{
	struct buf b;
	const char *l;
	size_t len = 0;

	(void)state;
	buf_init(&b, 1024);
	assert_int_equal(buf_append(&b, "NOOP\r", 5), 0);
	assert_null(buf_line(&b, &len));
	assert_int_equal(buf_append(&b, "\n", 1), 0);
	l = buf_line(&b, &len);
	assert_non_null(l);
	assert_int_equal(len, 4);
	assert_memory_equal(l, "NOOP", 4);
	buf_free(&b);
}

static void
test_buf_line_after_consume_finds_next_line(void **state)
{
	struct buf b;
	const char *l;
	size_t len = 0;

	(void)state;
	buf_init(&b, 1024);
	assert_int_equal(buf_append(&b, LIT("A\r\nBB\nx\r\nC")), 0);
	l = buf_line(&b, &len);
	assert_non_null(l);
	assert_int_equal(len, 1);
	buf_consume(&b, len + 2);
	l = buf_line(&b, &len);
	assert_non_null(l);
	assert_int_equal(len, 4);
	assert_memory_equal(l, "BB\nx", 4);
	buf_consume(&b, len + 2);
	assert_null(buf_line(&b, &len));
	assert_int_equal(buf_len(&b), 1);
	buf_free(&b);
}

/* Every split of a stream into two appends yields the same lines. */
static void
test_buf_line_same_at_every_split(void **state)
{
	static const char in[] = "EHLO a\r\nMAIL\nX\r\r\nRCPT\r\r\n\r\nQ\r";
	static const size_t want[] = { 6, 7, 5, 0 };
	struct buf b;
	size_t split, i, len, n = sizeof(in) - 1;
	const char *l;

	(void)state;
	for (split = 0; split <= n; split++) {
		size_t got = 0;

		buf_init(&b, 256);
		if (split > 0)
			assert_int_equal(buf_append(&b, in, split), 0);
		/* Drain whatever lines the first part holds, then add the rest. */
		for (i = 0; i < 2; i++) {
			while ((l = buf_line(&b, &len)) != NULL) {
				assert_true(got < NELEM(want));
				assert_int_equal(len, want[got]);
				got++;
				buf_consume(&b, len + 2);
			}
			if (i == 0 && split < n)
				assert_int_equal(buf_append(&b, in + split, n - split), 0);
		}
		assert_int_equal(got, NELEM(want));
		assert_int_equal(buf_len(&b), 2);
		buf_free(&b);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_init_allocates_nothing),
		cmocka_unit_test(test_buf_consuming_everything_releases_memory),
		cmocka_unit_test(test_buf_consume_more_than_held_empties_and_releases),
		cmocka_unit_test(test_buf_secret_consume_wipes_and_releases),
		cmocka_unit_test(test_buf_append_beyond_cap_fails_and_appends_nothing),
		cmocka_unit_test(test_buf_append_zero_bytes_allocates_nothing),
		cmocka_unit_test(test_buf_reserve_commit_appends),
		cmocka_unit_test(test_buf_reserve_is_limited_by_room),
		cmocka_unit_test(test_buf_reserve_on_full_buffer_returns_null),
		cmocka_unit_test(test_buf_compaction_reuses_space_in_front),
		cmocka_unit_test(test_buf_grows_keeping_contents),
		cmocka_unit_test(test_buf_free_resets),
		cmocka_unit_test(test_buf_line_ends_only_at_crlf),
		cmocka_unit_test(test_buf_line_cr_at_end_waits_for_lf),
		cmocka_unit_test(test_buf_line_after_consume_finds_next_line),
		cmocka_unit_test(test_buf_line_same_at_every_split),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
