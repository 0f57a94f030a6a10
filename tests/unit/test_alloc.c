/* Unit tests of lib/alloc.c: arena allocation, alignment, reset, protobuf-c use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "alloc.h"
#include "mall/common.pb-c.h"

static void
test_alloc_zeroed_and_aligned(void **state)
{
	(void)state;
	mall_arena *a = mall_arena_new();
	for (size_t n = 1; n < 5000; n += 37) {
		unsigned char *p = mall_arena_alloc(a, n);
		assert_int_equal((uintptr_t)p % 16, 0);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(p[i], 0);
		memset(p, 0xAB, n); /* ASan catches an overlap or overflow */
	}
	mall_arena_free(a);
}

static void
test_large_allocations_survive_later_small_ones(void **state)
{
	(void)state;
	mall_arena *a = mall_arena_new();
	char *big = mall_arena_alloc(a, 100000);
	memset(big, 'x', 100000);
	char *small = mall_arena_strdup(a, "small");
	char *big2 = mall_arena_alloc(a, 70000);
	memset(big2, 'y', 70000);
	assert_string_equal(small, "small");
	assert_int_equal(big[99999], 'x');
	assert_true(mall_arena_bytes(a) >= 170000);
	mall_arena_free(a);
}

static void
test_strings(void **state)
{
	(void)state;
	mall_arena *a = mall_arena_new();
	assert_string_equal(mall_arena_printf(a, "order %s-%06d", "20261127", 42),
	                    "order 20261127-000042");
	assert_string_equal(mall_arena_strndup(a, "한우 등심", 6), "한우");
	char *long_text = mall_arena_printf(a, "%0*d", 20000, 7);
	assert_int_equal(strlen(long_text), 20000);
	mall_arena_reset(a);
	assert_int_equal(mall_arena_bytes(a), 0);
	assert_string_equal(mall_arena_strdup(a, "after reset"), "after reset");
	mall_arena_free(a);
	mall_arena_free(NULL);
}

static void
test_protobuf_decodes_into_arena(void **state)
{
	(void)state;
	Mall__Money m = MALL__MONEY__INIT;
	m.amount = 12900;
	m.currency = "KRW";
	uint8_t buf[64];
	size_t len = mall__money__pack(&m, buf);
	mall_arena *a = mall_arena_new();
	Mall__Money *out = mall__money__unpack(mall_arena_pb(a), len, buf);
	assert_non_null(out);
	assert_int_equal(out->amount, 12900);
	assert_string_equal(out->currency, "KRW");
	/* nothing to free piece by piece: the arena owns it (LeakSanitizer checks) */
	mall_arena_free(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_alloc_zeroed_and_aligned),
	    cmocka_unit_test(test_large_allocations_survive_later_small_ones),
	    cmocka_unit_test(test_strings),
	    cmocka_unit_test(test_protobuf_decodes_into_arena),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
