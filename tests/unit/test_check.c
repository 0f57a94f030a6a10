/* Unit tests of lib/check.c: the field checks the member and order services
 * share. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "check.h"

static void
test_email(void **state)
{
	(void)state;
	mall_arena *a = mall_arena_new();
	mall_status st;
	mall_status_clear(&st);
	assert_string_equal(mall_check_email(&st, a, "email", "Min.Su@Example.COM"),
	                    "min.su@example.com");
	assert_int_equal(st.nfields, 0);
	const char *bad[] = {"", "minsu", "a@b", "@example.com", "a..b@example.com",
	                     ".a@example.com", "a@@example.com", "a@example..com",
	                     "a b@example.com", "a@exa mple.com", "'; DROP TABLE member;--@x.com"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		mall_status_clear(&st);
		if (mall_check_email(&st, a, "email", bad[i]) != NULL || st.nfields != 1)
			fail_msg("\"%s\" passed as an email", bad[i]);
		assert_string_equal(st.fields[0].field, "email");
	}
	char long_email[300];
	memset(long_email, 'a', sizeof(long_email));
	memcpy(long_email + 280, "@example.com", 13);
	mall_status_clear(&st);
	assert_null(mall_check_email(&st, a, "email", long_email));
	assert_non_null(strstr(st.fields[0].message, "254"));
	mall_arena_free(a);
}

static void
test_phone(void **state)
{
	(void)state;
	mall_arena *a = mall_arena_new();
	mall_status st;
	mall_status_clear(&st);
	assert_string_equal(mall_check_phone(&st, a, "phone", "01012345678"), "010-1234-5678");
	assert_string_equal(mall_check_phone(&st, a, "phone", "011-123-4567"), "011-123-4567");
	assert_string_equal(mall_check_phone(&st, a, "phone", "0161234567"), "016-123-4567");
	assert_int_equal(st.nfields, 0);
	const char *bad[] = {"",           "02-123-4567",   "010-12345-678", "010--1234-5678",
	                     "010-1234-567", "0101234567890", "015-1234-5678", "010 1234 5678",
	                     "-01012345678", "010-12345678"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		mall_status_clear(&st);
		if (mall_check_phone(&st, a, "phone", bad[i]) != NULL || st.nfields != 1)
			fail_msg("\"%s\" passed as a phone number", bad[i]);
	}
	mall_arena_free(a);
}

static void
test_text_postal_code_and_id(void **state)
{
	(void)state;
	mall_status st;
	mall_status_clear(&st);
	mall_check_text(&st, "name", "김민수", 1, 3);
	mall_check_text(&st, "address2", "", 0, 200);
	mall_check_postal_code(&st, "postalCode", "06236");
	mall_check_id(&st, "id", 1);
	assert_int_equal(st.nfields, 0);

	mall_check_text(&st, "name", "김민수님", 1, 3);  /* 4 characters */
	mall_check_text(&st, "recipient", "   ", 1, 50); /* only blanks */
	mall_check_text(&st, "address1", "a\tb", 1, 50); /* control character */
	mall_check_text(&st, "address2", "\xC3\x28", 0, 50);
	mall_check_postal_code(&st, "postalCode", "1234");
	mall_check_postal_code(&st, "zip", "12a45");
	mall_check_id(&st, "memberId", 0);
	assert_int_equal(st.code, MALL_INVALID_ARGUMENT);
	assert_int_equal(st.nfields, 7);
	assert_string_equal(st.fields[0].field, "name");
	assert_string_equal(st.fields[6].field, "memberId");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_email),
	    cmocka_unit_test(test_phone),
	    cmocka_unit_test(test_text_postal_code_and_id),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
