/*
 * test_gateway_query.c: percent-decoding, query-string parsing and the checks
 * of query parameters (gateway/query.c), with the bad input a client can send.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "json_pb.h"
#include "query.h"
#include "routes.h"

static mall_gw_decode_err
dec(const char *src, bool plus, char *out)
{
	size_t n;
	return mall_gw_percent_decode(src, strlen(src), plus, true, out, &n);
}

static void
test_decode_ok(void **state)
{
	(void)state;
	char out[128];
	size_t n;
	assert_int_equal(dec("a%20b+c", true, out), MALL_GW_DECODE_OK);
	assert_string_equal(out, "a b c");
	assert_int_equal(dec("a%20b+c", false, out), MALL_GW_DECODE_OK);
	assert_string_equal(out, "a b+c");
	/* upper and lower case hex; Korean in UTF-8 */
	assert_int_equal(dec("%ed%95%9C%EA%B8%80", true, out), MALL_GW_DECODE_OK);
	assert_string_equal(out, "한글");
	/* raw UTF-8 (not escaped) passes too */
	assert_int_equal(dec("한라봉", true, out), MALL_GW_DECODE_OK);
	assert_string_equal(out, "한라봉");
	/* the length out is the decoded length; "%2e%2e" is ".." (callers check) */
	assert_int_equal(mall_gw_percent_decode("%2e%2e", 6, false, true, out, &n),
	                 MALL_GW_DECODE_OK);
	assert_int_equal(n, 2);
	assert_string_equal(out, "..");
	/* decoding in place */
	char inplace[] = "x%41y";
	assert_int_equal(mall_gw_percent_decode(inplace, 5, false, true, inplace, &n),
	                 MALL_GW_DECODE_OK);
	assert_string_equal(inplace, "xAy");
}

static void
test_decode_bad(void **state)
{
	(void)state;
	char out[128];
	assert_int_equal(dec("a%zz", true, out), MALL_GW_DECODE_ESCAPE);
	assert_int_equal(dec("a%2", true, out), MALL_GW_DECODE_ESCAPE);
	assert_int_equal(dec("%", true, out), MALL_GW_DECODE_ESCAPE);
	assert_int_equal(dec("%g0", true, out), MALL_GW_DECODE_ESCAPE);
	assert_int_equal(dec("a%00b", true, out), MALL_GW_DECODE_NUL);
	/* a NUL hides behind nothing: not even a later bad escape changes the verdict */
	assert_int_equal(dec("%00%zz", true, out), MALL_GW_DECODE_NUL);
	/* invalid UTF-8: lone continuation, truncated, overlong '/', surrogate, > U+10FFFF */
	assert_int_equal(dec("%80", true, out), MALL_GW_DECODE_UTF8);
	assert_int_equal(dec("%C3%28", true, out), MALL_GW_DECODE_UTF8);
	assert_int_equal(dec("%E2%82", true, out), MALL_GW_DECODE_UTF8);
	assert_int_equal(dec("%C0%AF", true, out), MALL_GW_DECODE_UTF8);
	assert_int_equal(dec("%ED%A0%80", true, out), MALL_GW_DECODE_UTF8);
	assert_int_equal(dec("%F4%90%80%80", true, out), MALL_GW_DECODE_UTF8);
	/* control characters, escaped or not */
	assert_int_equal(dec("a%0Ab", true, out), MALL_GW_DECODE_CONTROL);
	assert_int_equal(dec("a\tb", true, out), MALL_GW_DECODE_CONTROL);
	assert_int_equal(dec("%7F", true, out), MALL_GW_DECODE_CONTROL);
	size_t n;
	assert_int_equal(mall_gw_percent_decode("a%0Ab", 5, true, false, out, &n),
	                 MALL_GW_DECODE_OK);
	assert_string_equal(mall_gw_decode_err_text(MALL_GW_DECODE_ESCAPE),
	                    "malformed percent-encoding");
}

static const char *
field_msg(const mall_status *st, const char *field)
{
	for (int i = 0; i < st->nfields; i++)
		if (strcmp(st->fields[i].field, field) == 0)
			return st->fields[i].message;
	return NULL;
}

static void
test_parse(void **state)
{
	(void)state;
	mall_arena *a = mall_arena_new();
	mall_status st;
	mall_gw_param *p;
	size_t n;

	mall_status_clear(&st);
	assert_int_equal(mall_gw_query_parse(NULL, a, &p, &n, &st), MALL_OK);
	assert_int_equal(n, 0);
	assert_int_equal(mall_gw_query_parse("", a, &p, &n, &st), MALL_OK);
	assert_int_equal(n, 0);

	assert_int_equal(
	    mall_gw_query_parse("q=%ED%95%9C+%EA%B8%80&&page=2&flag&empty=&", a, &p, &n, &st),
	    MALL_OK);
	assert_int_equal(n, 4);
	assert_string_equal(p[0].name, "q");
	assert_string_equal(p[0].value, "한 글");
	assert_string_equal(p[1].name, "page");
	assert_string_equal(p[1].value, "2");
	assert_string_equal(p[2].name, "flag");
	assert_string_equal(p[2].value, "");
	assert_string_equal(p[3].name, "empty");
	assert_string_equal(p[3].value, "");
	/* '=' inside a value is part of it */
	assert_int_equal(mall_gw_query_parse("q=a=b", a, &p, &n, &st), MALL_OK);
	assert_string_equal(p[0].value, "a=b");
	assert_int_equal(st.nfields, 0);
	mall_arena_free(a);
}

static void
test_parse_bad(void **state)
{
	(void)state;
	mall_arena *a = mall_arena_new();
	mall_status st;
	mall_gw_param *p;
	size_t n;

	/* every bad pair is reported, under its name; the good ones still come out */
	mall_status_clear(&st);
	assert_int_equal(mall_gw_query_parse("q=%zz&page=1&category=%C3%28&x=%00", a, &p, &n, &st),
	                 MALL_INVALID_ARGUMENT);
	assert_int_equal(st.code, MALL_INVALID_ARGUMENT);
	assert_string_equal(field_msg(&st, "q"), "malformed percent-encoding");
	assert_string_equal(field_msg(&st, "category"), "must be valid UTF-8");
	assert_string_equal(field_msg(&st, "x"), "must not contain NUL characters");
	assert_int_equal(n, 1);
	assert_string_equal(p[0].name, "page");

	/* a name that cannot be decoded, and a pair without a name, are "query" errors */
	mall_status_clear(&st);
	assert_int_equal(mall_gw_query_parse("%zz=1", a, &p, &n, &st), MALL_INVALID_ARGUMENT);
	assert_non_null(field_msg(&st, "query"));
	mall_status_clear(&st);
	assert_int_equal(mall_gw_query_parse("=1", a, &p, &n, &st), MALL_INVALID_ARGUMENT);
	assert_string_equal(field_msg(&st, "query"), "parameter without a name");

	/* too many parameters */
	char qs[1024] = "";
	for (int i = 0; i < MALL_GW_MAX_PARAMS + 1; i++)
		strcat(qs, "a=1&");
	mall_status_clear(&st);
	assert_int_equal(mall_gw_query_parse(qs, a, &p, &n, &st), MALL_INVALID_ARGUMENT);
	assert_non_null(field_msg(&st, "query"));
	/* a flood of separators is refused before anything is allocated for it */
	char flood[4096];
	memset(flood, '&', sizeof(flood) - 1);
	flood[sizeof(flood) - 1] = '\0';
	mall_status_clear(&st);
	size_t before = mall_arena_bytes(a);
	assert_int_equal(mall_gw_query_parse(flood, a, &p, &n, &st), MALL_INVALID_ARGUMENT);
	assert_int_equal(mall_arena_bytes(a), before);
	mall_arena_free(a);
}

/* The product list's own parameters, from the route table. */
static const mall_gw_route *
products_route(void)
{
	mall_gw_match m;
	mall_gw_route_match("GET", "/api/v1/products", &m);
	assert_int_equal(m.result, MALL_GW_MATCH_OK);
	return m.route;
}

static mall_code
check(const char *qs, mall_status *st)
{
	mall_arena *a = mall_arena_new();
	mall_gw_param *p;
	size_t n;
	const mall_gw_route *r = products_route();
	mall_status_clear(st);
	mall_code c = mall_gw_query_parse(qs, a, &p, &n, st);
	if (c == MALL_OK)
		c = mall_gw_params_check(p, n, r->params, r->nparams, st);
	mall_arena_free(a);
	return c;
}

static void
test_products_params(void **state)
{
	(void)state;
	mall_status st;
	assert_int_equal(check("category=fruit&q=%ED%95%9C%EB%9D%BC%EB%B4%89&sort=price_asc&page=3"
	                       "&pageSize=100",
	                       &st),
	                 MALL_OK);
	assert_int_equal(check("page=1&pageSize=1&sort=newest&sort=", &st), MALL_INVALID_ARGUMENT);
	assert_string_equal(field_msg(&st, "sort"), "must be given at most once");
	/* empty values are absent (forms send q=) */
	assert_int_equal(check("q=&category=&page=&pageSize=&sort=", &st), MALL_OK);
	assert_int_equal(check("page=10000", &st), MALL_OK);

	assert_int_equal(check("pageSize=0", &st), MALL_INVALID_ARGUMENT);
	assert_string_equal(field_msg(&st, "pageSize"), "must be between 1 and 100");
	assert_int_equal(check("pageSize=101", &st), MALL_INVALID_ARGUMENT);
	assert_int_equal(check("page=0", &st), MALL_INVALID_ARGUMENT);
	assert_string_equal(field_msg(&st, "page"), "must be between 1 and 10000");
	assert_int_equal(check("page=-1", &st), MALL_INVALID_ARGUMENT);
	assert_int_equal(check("page=10001", &st), MALL_INVALID_ARGUMENT);
	assert_int_equal(check("page=99999999999999999999999", &st), MALL_INVALID_ARGUMENT);
	assert_string_equal(field_msg(&st, "page"), "must be an integer");
	for (const char *const *q =
	         (const char *const[]){"page=1.5", "page=%2B1", "page=+1", "page=1e3", "page=0x10",
	                               "page=-", "page=1a", NULL};
	     *q; q++) {
		assert_int_equal(check(*q, &st), MALL_INVALID_ARGUMENT);
		assert_string_equal(field_msg(&st, "page"), "must be an integer");
	}
	assert_int_equal(check("sort=cheapest", &st), MALL_INVALID_ARGUMENT);
	assert_string_equal(field_msg(&st, "sort"), "must be one of newest, price_asc, price_desc");
	assert_int_equal(check("sort=PRICE_ASC", &st), MALL_INVALID_ARGUMENT);

	/* unknown parameters, including fields a storefront may not set */
	assert_int_equal(check("includeUnpublished=true", &st), MALL_INVALID_ARGUMENT);
	assert_string_equal(field_msg(&st, "includeUnpublished"), "unknown parameter");
	assert_int_equal(check("page_size=10", &st), MALL_INVALID_ARGUMENT);

	/* length counts characters: 100 Korean syllables pass, 101 do not */
	char qs[2048] = "q=";
	for (int i = 0; i < 100; i++)
		strcat(qs, "%ED%95%9C");
	assert_int_equal(check(qs, &st), MALL_OK);
	strcat(qs, "a");
	assert_int_equal(check(qs, &st), MALL_INVALID_ARGUMENT);
	assert_string_equal(field_msg(&st, "q"), "must be 1 to 100 characters long");

	/* every error at once */
	assert_int_equal(check("pageSize=0&page=0&x=1&sort=foo", &st), MALL_INVALID_ARGUMENT);
	assert_int_equal(st.nfields, 4);
	assert_non_null(field_msg(&st, "pageSize"));
	assert_non_null(field_msg(&st, "page"));
	assert_non_null(field_msg(&st, "x"));
	assert_non_null(field_msg(&st, "sort"));
}

static void
test_utf8_chars(void **state)
{
	(void)state;
	assert_int_equal(mall_utf8_chars("abc", 3), 3);
	assert_int_equal(mall_utf8_chars("한글", strlen("한글")), 2);
	assert_int_equal(mall_utf8_chars("", 0), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decode_ok),       cmocka_unit_test(test_decode_bad),
	    cmocka_unit_test(test_parse),           cmocka_unit_test(test_parse_bad),
	    cmocka_unit_test(test_products_params), cmocka_unit_test(test_utf8_chars),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
