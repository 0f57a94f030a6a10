/* Unit tests of lib/status.c: codes, names, the HTTP table, field errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "status.h"
#include "mall/rpc.pb-c.h"

static void
test_codes_match_the_proto(void **state)
{
	(void)state;
	assert_int_equal(MALL_INVALID_ARGUMENT, MALL__RPC__CODE__INVALID_ARGUMENT);
	assert_int_equal(MALL_UNAVAILABLE, MALL__RPC__CODE__UNAVAILABLE);
	assert_int_equal(MALL_UNAUTHENTICATED, MALL__RPC__CODE__UNAUTHENTICATED);
	for (int c = 0; c <= MALL_CODE_MAX; c++) {
		const ProtobufCEnumValue *v =
		    protobuf_c_enum_descriptor_get_value(&mall__rpc__code__descriptor, c);
		assert_non_null(v);
		assert_string_equal(v->name, mall_code_name((mall_code)c));
	}
}

static void
test_http_mapping(void **state)
{
	(void)state;
	assert_int_equal(mall_code_http(MALL_OK), 200);
	assert_int_equal(mall_code_http(MALL_INVALID_ARGUMENT), 400);
	assert_int_equal(mall_code_http(MALL_NOT_FOUND), 404);
	assert_int_equal(mall_code_http(MALL_ALREADY_EXISTS), 409);
	assert_int_equal(mall_code_http(MALL_PERMISSION_DENIED), 403);
	assert_int_equal(mall_code_http(MALL_UNAUTHENTICATED), 401);
	assert_int_equal(mall_code_http(MALL_RESOURCE_EXHAUSTED), 429);
	assert_int_equal(mall_code_http(MALL_UNAVAILABLE), 503);
	assert_int_equal(mall_code_http(MALL_DEADLINE_EXCEEDED), 504);
	assert_int_equal(mall_code_http(MALL_INTERNAL), 500);
	assert_int_equal(mall_code_http((mall_code)99), 500);
	assert_string_equal(mall_code_slug(MALL_FAILED_PRECONDITION), "failed_precondition");
	assert_int_equal(mall_code_parse("not_found"), MALL_NOT_FOUND);
	assert_int_equal(mall_code_parse("UNAVAILABLE"), MALL_UNAVAILABLE);
	assert_int_equal(mall_code_parse("nonsense"), -1);
}

static void
test_field_errors(void **state)
{
	(void)state;
	mall_status st;
	mall_status_clear(&st);
	assert_true(mall_status_ok(&st));
	assert_int_equal(mall_status_field(&st, "pageSize", "must be between %d and %d", 1, 100),
	                 MALL_INVALID_ARGUMENT);
	mall_status_field(&st, "q", "too long");
	assert_int_equal(st.code, MALL_INVALID_ARGUMENT);
	assert_string_equal(st.message, "invalid request");
	assert_int_equal(st.nfields, 2);
	assert_string_equal(st.fields[0].field, "pageSize");
	assert_string_equal(st.fields[0].message, "must be between 1 and 100");
	for (int i = 0; i < 40; i++)
		mall_status_field(&st, "x", "overflow is dropped, not written past the end");
	assert_int_equal(st.nfields, MALL_STATUS_MAX_FIELDS);

	mall_status_clear(&st);
	mall_status_set(&st, MALL_NOT_FOUND, "product %s not found", "hanwoo-sirloin");
	assert_string_equal(st.message, "product hanwoo-sirloin not found");
	mall_status_field(&st, "id", "bad");
	assert_int_equal(st.code, MALL_INVALID_ARGUMENT);
	assert_string_equal(st.message, "invalid request");

	char long_msg[1000];
	memset(long_msg, 'a', sizeof(long_msg) - 1);
	long_msg[sizeof(long_msg) - 1] = '\0';
	mall_status_set(&st, MALL_INTERNAL, "%s", long_msg);
	assert_int_equal(strlen(st.message), sizeof(st.message) - 1);
}

static void
test_reason_and_details(void **state)
{
	(void)state;
	mall_status st;
	mall_status_clear(&st);
	assert_int_equal(mall_status_reason(&st, MALL_FAILED_PRECONDITION, "out_of_stock",
	                                    "only %d left", 3),
	                 MALL_FAILED_PRECONDITION);
	assert_string_equal(st.reason, "out_of_stock");
	assert_string_equal(st.message, "only 3 left");
	for (int i = 0; i < MALL_STATUS_MAX_DETAILS + 2; i++)
		mall_status_detail(&st, "available", i);
	assert_int_equal(st.ndetails, MALL_STATUS_MAX_DETAILS);
	assert_int_equal(st.details[1].value, 1);
	/* a later plain status does not keep an earlier reason or details */
	mall_status_set(&st, MALL_UNAVAILABLE, "catalog is down");
	assert_string_equal(st.reason, "");
	assert_int_equal(st.ndetails, 0);
	mall_status_reason(&st, MALL_NOT_FOUND, "x", "y");
	mall_status_clear(&st);
	assert_string_equal(st.reason, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_codes_match_the_proto),
	    cmocka_unit_test(test_http_mapping),
	    cmocka_unit_test(test_field_errors),
	    cmocka_unit_test(test_reason_and_details),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
