/*
 * test_gateway_http.c: the gateway's error body, the request-body decision
 * taken before routing (413 without reading), request ids, public messages
 * of server errors (gateway/http.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include <jansson.h>

#include "http.h"

/* Parses an error body and returns its "error" object (borrowed from *root). */
static json_t *
parse_error(const char *text, size_t len, json_t **root)
{
	json_error_t e;
	*root = json_loadb(text, len, 0, &e);
	if (*root == NULL)
		fail_msg("error body is not JSON (%s): %.*s", e.text, (int)len, text);
	assert_int_equal(json_object_size(*root), 1);
	json_t *err = json_object_get(*root, "error");
	assert_true(json_is_object(err));
	return err;
}

static void
test_error_json_plain(void **state)
{
	(void)state;
	mall_arena *a = mall_arena_new();
	size_t len;
	char *s = mall_gw_error_json(a, "not_found", "no route for GET /api/v1/x", NULL, &len);
	assert_string_equal(s, "{\"error\":{\"code\":\"not_found\",\"message\":\"no route for GET "
	                       "/api/v1/x\"}}");
	assert_int_equal(len, strlen(s));

	/* a status without field errors renders no "fields" */
	mall_status st;
	mall_status_clear(&st);
	s = mall_gw_error_json(a, "unavailable", "catalog is unavailable", &st, &len);
	json_t *root;
	json_t *err = parse_error(s, len, &root);
	assert_null(json_object_get(err, "fields"));
	assert_string_equal(json_string_value(json_object_get(err, "code")), "unavailable");
	json_decref(root);
	mall_arena_free(a);
}

static void
test_error_json_fields(void **state)
{
	(void)state;
	mall_arena *a = mall_arena_new();
	mall_status st;
	mall_status_clear(&st);
	mall_status_field(&st, "pageSize", "must be between 1 and 100");
	mall_status_field(&st, "sort", "must be one of newest, price_asc, price_desc");
	mall_status_field(&st, "pageSize", "a second complaint about the same field");
	size_t len;
	char *s = mall_gw_error_json(a, "invalid_argument", "invalid request", &st, &len);
	json_t *root;
	json_t *err = parse_error(s, len, &root);
	json_t *fields = json_object_get(err, "fields");
	assert_true(json_is_object(fields));
	assert_int_equal(json_object_size(fields), 2);
	/* the first error of a field wins; a JSON object has each key once */
	assert_string_equal(json_string_value(json_object_get(fields, "pageSize")),
	                    "must be between 1 and 100");
	assert_null(strstr(s, "second complaint"));
	json_decref(root);
	mall_arena_free(a);
}

static void
test_error_json_details(void **state)
{
	(void)state;
	mall_arena *a = mall_arena_new();
	mall_status st;
	mall_status_clear(&st);
	mall_status_reason(&st, MALL_FAILED_PRECONDITION, "out_of_stock", "only 3 left");
	mall_status_detail(&st, "available", 3);
	mall_status_detail(&st, "big", INT64_MIN);
	size_t len;
	char *s = mall_gw_error_json(a, st.reason, st.message, &st, &len);
	json_t *root;
	json_t *err = parse_error(s, len, &root);
	assert_string_equal(json_string_value(json_object_get(err, "code")), "out_of_stock");
	assert_null(json_object_get(err, "fields"));
	json_t *d = json_object_get(err, "details");
	assert_true(json_is_object(d));
	assert_int_equal(json_object_size(d), 2);
	assert_int_equal(json_integer_value(json_object_get(d, "available")), 3);
	assert_int_equal(json_integer_value(json_object_get(d, "big")), INT64_MIN);
	json_decref(root);
	mall_arena_free(a);
}

static void
test_error_json_escaping(void **state)
{
	(void)state;
	mall_arena *a = mall_arena_new();
	mall_status st;
	mall_status_clear(&st);
	/* field names come from the client's query: quotes, backslashes, control
	 * characters and broken UTF-8 must still give valid JSON */
	mall_status_field(&st, "a\"b\\c", "bad \x01 value \xC3\x28 \xF0\x9F\x98\x80");
	const char *msg = "no file /\"quoted\"\n\t\xff";
	size_t len;
	char *s = mall_gw_error_json(a, "not_found", msg, &st, &len);
	json_t *root;
	json_t *err = parse_error(s, len, &root);
	assert_string_equal(json_string_value(json_object_get(err, "message")),
	                    "no file /\"quoted\"\n\t\xEF\xBF\xBD");
	json_t *fields = json_object_get(err, "fields");
	const char *fm = json_string_value(json_object_get(fields, "a\"b\\c"));
	assert_non_null(fm);
	assert_string_equal(fm, "bad \x01 value \xEF\xBF\xBD( \xF0\x9F\x98\x80");
	json_decref(root);

	/* the most field errors a status holds, each at its longest */
	mall_status_clear(&st);
	char big[400];
	memset(big, '"', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < MALL_STATUS_MAX_FIELDS + 2; i++) {
		char name[64];
		int k = snprintf(name, sizeof(name), "f%d", i);
		memset(name + k, '"', sizeof(name) - 1 - (size_t)k);
		name[sizeof(name) - 1] = '\0';
		mall_status_field(&st, name, "%s", big);
	}
	s = mall_gw_error_json(a, "invalid_argument", big, &st, &len);
	err = parse_error(s, len, &root);
	assert_int_equal(json_object_size(json_object_get(err, "fields")), MALL_STATUS_MAX_FIELDS);
	json_decref(root);
	mall_arena_free(a);
}

static void
test_body_check(void **state)
{
	(void)state;
	const int64_t lim = 1024 * 1024;
	assert_int_equal(mall_gw_body_check(-1, NULL, lim), MALL_GW_BODY_NONE);
	assert_int_equal(mall_gw_body_check(0, NULL, lim), MALL_GW_BODY_NONE);
	assert_int_equal(mall_gw_body_check(1, NULL, lim), MALL_GW_BODY_LENGTH);
	assert_int_equal(mall_gw_body_check(lim, NULL, lim), MALL_GW_BODY_LENGTH);
	assert_int_equal(mall_gw_body_check(lim + 1, NULL, lim), MALL_GW_BODY_TOO_LARGE);
	assert_int_equal(mall_gw_body_check(2000000, NULL, lim), MALL_GW_BODY_TOO_LARGE);
	assert_int_equal(mall_gw_body_check(INT64_MAX, NULL, lim), MALL_GW_BODY_TOO_LARGE);
	/* the upload limit lets the same length through */
	assert_int_equal(mall_gw_body_check(2000000, NULL, 50 * lim), MALL_GW_BODY_LENGTH);

	/* chunked: its size is learned by reading, whatever the limit */
	assert_int_equal(mall_gw_body_check(-1, "chunked", lim), MALL_GW_BODY_CHUNKED);
	assert_int_equal(mall_gw_body_check(-1, "Chunked", 1), MALL_GW_BODY_CHUNKED);
	/* ambiguous framing (request smuggling) and codings we do not decode */
	assert_int_equal(mall_gw_body_check(10, "chunked", lim), MALL_GW_BODY_BAD);
	assert_int_equal(mall_gw_body_check(0, "chunked", lim), MALL_GW_BODY_BAD);
	assert_int_equal(mall_gw_body_check(-1, "gzip, chunked", lim), MALL_GW_BODY_BAD);
	assert_int_equal(mall_gw_body_check(-1, "identity", lim), MALL_GW_BODY_BAD);
	assert_int_equal(mall_gw_body_check(-1, "", lim), MALL_GW_BODY_BAD);
}

static void
test_request_id(void **state)
{
	(void)state;
	assert_true(mall_gw_request_id_valid("0123456789abcdef0123456789abcdef"));
	assert_true(mall_gw_request_id_valid("req-1.A_b"));
	char max[65];
	memset(max, 'a', 64);
	max[64] = '\0';
	assert_true(mall_gw_request_id_valid(max));
	char over[66];
	memset(over, 'a', 65);
	over[65] = '\0';
	assert_false(mall_gw_request_id_valid(over));
	assert_false(mall_gw_request_id_valid(""));
	assert_false(mall_gw_request_id_valid("a b"));
	assert_false(mall_gw_request_id_valid("a\r\nX-Injected: 1"));
	assert_false(mall_gw_request_id_valid("\"quoted\""));
	assert_false(mall_gw_request_id_valid("한글"));
}

static void
test_public_message(void **state)
{
	(void)state;
	mall_status st;
	char buf[160];
	mall_status_clear(&st);
	mall_status_set(&st, MALL_NOT_FOUND, "product \"nope\" does not exist");
	assert_string_equal(mall_gw_public_message(&st, "catalog", buf, sizeof(buf)),
	                    "product \"nope\" does not exist");
	/* server errors hide addresses and queries */
	mall_status_set(&st, MALL_UNAVAILABLE, "could not reach catalog at tcp://10.0.0.7:7401");
	assert_string_equal(mall_gw_public_message(&st, "catalog", buf, sizeof(buf)),
	                    "catalog is unavailable, try again later");
	mall_status_set(&st, MALL_DEADLINE_EXCEEDED, "call timed out after 3000 ms at tcp://x");
	assert_string_equal(mall_gw_public_message(&st, "catalog", buf, sizeof(buf)),
	                    "catalog did not answer in time");
	mall_status_set(&st, MALL_INTERNAL,
	                "could not query: relation \"products\" does not exist");
	assert_null(strstr(mall_gw_public_message(&st, "catalog", buf, sizeof(buf)), "relation"));
	/* the statuses the gateway answers for them: one table (status.h) */
	assert_int_equal(mall_code_http(MALL_UNAVAILABLE), 503);
	assert_int_equal(mall_code_http(MALL_DEADLINE_EXCEEDED), 504);
	assert_int_equal(mall_code_http(MALL_NOT_FOUND), 404);
	assert_int_equal(mall_code_http(MALL_INVALID_ARGUMENT), 400);
}

static void
test_small_helpers(void **state)
{
	(void)state;
	assert_true(mall_gw_media_is_json("application/json"));
	assert_true(mall_gw_media_is_json("Application/JSON; charset=utf-8"));
	assert_true(mall_gw_media_is_json(" application/json ;charset=UTF-8"));
	assert_false(mall_gw_media_is_json(NULL));
	assert_false(mall_gw_media_is_json("application/jsonp"));
	assert_false(mall_gw_media_is_json("text/plain"));
	assert_false(mall_gw_media_is_json("application/x-www-form-urlencoded"));

	assert_string_equal(mall_gw_method_label("GET"), "GET");
	assert_string_equal(mall_gw_method_label("DELETE"), "DELETE");
	assert_string_equal(mall_gw_method_label("PROPFIND"), "OTHER");
	assert_string_equal(mall_gw_method_label("get"), "OTHER");

	assert_string_equal(mall_gw_reason(404), "Not Found");
	assert_string_equal(mall_gw_reason(413), "Content Too Large");
	assert_string_equal(mall_gw_reason(503), "Service Unavailable");
	assert_string_equal(mall_gw_reason(599), "Internal Server Error");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_error_json_plain),    cmocka_unit_test(test_error_json_fields),
	    cmocka_unit_test(test_error_json_details),
	    cmocka_unit_test(test_error_json_escaping), cmocka_unit_test(test_body_check),
	    cmocka_unit_test(test_request_id),          cmocka_unit_test(test_public_message),
	    cmocka_unit_test(test_small_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
