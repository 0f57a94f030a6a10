/*
 * test_gateway_routes.c: method + path matching against the gateway's real
 * route table (gateway/routes.c): parameters, HEAD, 405 with Allow, the API
 * space (404 JSON) against the static catch-all, and body limit classes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "routes.h"

static mall_gw_match
match(const char *method, const char *path)
{
	mall_gw_match m;
	mall_gw_route_match(method, path, &m);
	return m;
}

static void
expect_route(const char *method, const char *path, mall_gw_route_id id)
{
	mall_gw_match m = match(method, path);
	if (m.result != MALL_GW_MATCH_OK || m.route->id != id)
		fail_msg("%s %s: result %d, route %d; want route %d", method, path, m.result,
		         m.route ? (int)m.route->id : -1, id);
}

static void
test_exact_routes(void **state)
{
	(void)state;
	expect_route("GET", "/healthz", MALL_GW_ROUTE_HEALTHZ);
	expect_route("HEAD", "/healthz", MALL_GW_ROUTE_HEALTHZ);
	expect_route("GET", "/readyz", MALL_GW_ROUTE_READYZ);
	expect_route("GET", "/metrics", MALL_GW_ROUTE_METRICS);
	expect_route("GET", "/api/v1/openapi.json", MALL_GW_ROUTE_OPENAPI);
	expect_route("GET", "/api/v1/products", MALL_GW_ROUTE_PRODUCTS);
	expect_route("GET", "/api/v1/categories", MALL_GW_ROUTE_CATEGORIES);
	expect_route("POST", "/api/v1/members", MALL_GW_ROUTE_MEMBERS);
	mall_gw_match m = match("GET", "/api/v1/products");
	assert_true(m.api);
	assert_null(m.param);
	assert_true(m.route->flags & MALL_GW_ROUTE_API);
	m = match("GET", "/healthz");
	assert_false(m.api);
	assert_string_equal(m.route->pattern, "/healthz");
}

static void
test_param_route(void **state)
{
	(void)state;
	mall_gw_match m = match("GET", "/api/v1/products/jeju-hallabong");
	assert_int_equal(m.result, MALL_GW_MATCH_OK);
	assert_int_equal(m.route->id, MALL_GW_ROUTE_PRODUCT);
	assert_int_equal(m.param_len, strlen("jeju-hallabong"));
	assert_memory_equal(m.param, "jeju-hallabong", m.param_len);
	assert_string_equal(m.route->pattern, "/api/v1/products/{idOrSlug}");

	m = match("GET", "/api/v1/products/42");
	assert_int_equal(m.route->id, MALL_GW_ROUTE_PRODUCT);
	assert_memory_equal(m.param, "42", 2);

	/* an empty segment, a trailing slash or a deeper path is no product */
	const char *no[] = {"/api/v1/products/",
	                    "/api/v1/products/a/b",
	                    "/api/v1/products//",
	                    "/api/v1/productsx",
	                    "/api/v1/products/a/",
	                    "/api/v1/categories/x",
	                    "/api/v1/x",
	                    "/api/v2/products",
	                    "/api",
	                    "/api/",
	                    "/admin/api/v1/x",
	                    "/webhooks/toss"};
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		m = match("GET", no[i]);
		if (m.result != MALL_GW_MATCH_NOT_FOUND || !m.api)
			fail_msg("GET %s: result %d api %d, want a 404 in the API space", no[i],
			         m.result, m.api);
		assert_null(m.route);
	}
}

static void
test_cart_routes(void **state)
{
	(void)state;
	expect_route("GET", "/api/v1/cart", MALL_GW_ROUTE_CART_GET);
	expect_route("HEAD", "/api/v1/cart", MALL_GW_ROUTE_CART_GET);
	expect_route("POST", "/api/v1/cart/items", MALL_GW_ROUTE_CART_ITEM_ADD);
	expect_route("PATCH", "/api/v1/cart/items/17", MALL_GW_ROUTE_CART_ITEM_PATCH);
	expect_route("DELETE", "/api/v1/cart/items/17", MALL_GW_ROUTE_CART_ITEM_DELETE);
	expect_route("PUT", "/api/v1/cart/coupon", MALL_GW_ROUTE_CART_COUPON_PUT);
	expect_route("DELETE", "/api/v1/cart/coupon", MALL_GW_ROUTE_CART_COUPON_DELETE);
	mall_gw_match m = match("PATCH", "/api/v1/cart/items/17");
	assert_memory_equal(m.param, "17", 2);
	/* the item routes need an item; the list of items is not a route */
	m = match("POST", "/api/v1/cart");
	assert_int_equal(m.result, MALL_GW_MATCH_METHOD);
	assert_string_equal(m.allow, "GET, HEAD");
	m = match("GET", "/api/v1/cart/items");
	assert_int_equal(m.result, MALL_GW_MATCH_METHOD);
	assert_string_equal(m.allow, "POST");
	m = match("POST", "/api/v1/cart/coupon");
	assert_int_equal(m.result, MALL_GW_MATCH_METHOD);
	m = match("PATCH", "/api/v1/cart/items/");
	assert_int_equal(m.result, MALL_GW_MATCH_NOT_FOUND);
	assert_true(m.api);
}

static void
test_order_routes(void **state)
{
	(void)state;
	expect_route("POST", "/api/v1/orders", MALL_GW_ROUTE_ORDER_PLACE);
	expect_route("GET", "/api/v1/orders", MALL_GW_ROUTE_ORDERS);
	expect_route("HEAD", "/api/v1/orders", MALL_GW_ROUTE_ORDERS);
	expect_route("GET", "/api/v1/orders/20261126-000123", MALL_GW_ROUTE_ORDER_GET);
	expect_route("POST", "/api/v1/orders/20261126-000123/cancel", MALL_GW_ROUTE_ORDER_CANCEL);
	mall_gw_match m = match("POST", "/api/v1/orders/20261126-000123/cancel");
	assert_int_equal(m.param_len, 15);
	assert_memory_equal(m.param, "20261126-000123", 15);
	assert_int_equal(m.route->nparams, 1);
	assert_string_equal(m.route->params[0].name, "phone");
	m = match("GET", "/api/v1/orders");
	assert_int_equal(m.route->nparams, 2);
	/* an order is not changed in place, and cancel is a POST only */
	m = match("DELETE", "/api/v1/orders/20261126-000123");
	assert_int_equal(m.result, MALL_GW_MATCH_METHOD);
	assert_string_equal(m.allow, "GET, HEAD");
	m = match("GET", "/api/v1/orders/20261126-000123/cancel");
	assert_int_equal(m.result, MALL_GW_MATCH_METHOD);
	assert_string_equal(m.allow, "POST");
	m = match("PUT", "/api/v1/orders");
	assert_int_equal(m.result, MALL_GW_MATCH_METHOD);
	assert_string_equal(m.allow, "POST, GET, HEAD");
	/* the number is one non-empty segment */
	m = match("GET", "/api/v1/orders/");
	assert_int_equal(m.result, MALL_GW_MATCH_NOT_FOUND);
	assert_true(m.api);
	m = match("POST", "/api/v1/orders//cancel");
	assert_int_equal(m.result, MALL_GW_MATCH_NOT_FOUND);
	m = match("POST", "/api/v1/orders/1/2/cancel");
	assert_int_equal(m.result, MALL_GW_MATCH_NOT_FOUND);
	m = match("POST", "/api/v1/orders/20261126-000123/refund");
	assert_int_equal(m.result, MALL_GW_MATCH_NOT_FOUND);
	assert_true(m.api);
}

static void
test_payment_routes(void **state)
{
	(void)state;
	expect_route("POST", "/api/v1/payments/confirm", MALL_GW_ROUTE_PAYMENT_CONFIRM);
	expect_route("POST", "/webhooks/payments/toss", MALL_GW_ROUTE_PAYMENT_WEBHOOK_TOSS);
	mall_gw_match m = match("POST", "/api/v1/payments/confirm");
	assert_true(m.api);
	assert_int_equal(m.route->limit, MALL_GW_LIMIT_BODY);
	assert_int_equal(m.route->nparams, 0);
	assert_false(m.route->flags & MALL_GW_ROUTE_ANY_QUERY);
	/* the PG's callback: JSON answers, the normal body limit, and a query
	 * string it may have been configured with is not refused */
	m = match("POST", "/webhooks/payments/toss");
	assert_true(m.api);
	assert_true(m.route->flags & MALL_GW_ROUTE_API);
	assert_true(m.route->flags & MALL_GW_ROUTE_ANY_QUERY);
	assert_int_equal(m.route->limit, MALL_GW_LIMIT_BODY);
	/* POST only */
	m = match("GET", "/api/v1/payments/confirm");
	assert_int_equal(m.result, MALL_GW_MATCH_METHOD);
	assert_string_equal(m.allow, "POST");
	m = match("GET", "/webhooks/payments/toss");
	assert_int_equal(m.result, MALL_GW_MATCH_METHOD);
	assert_string_equal(m.allow, "POST");
	assert_non_null(m.route);
	/* no other payment or webhook paths: JSON 404s, never static files */
	m = match("POST", "/api/v1/payments");
	assert_int_equal(m.result, MALL_GW_MATCH_NOT_FOUND);
	assert_true(m.api);
	m = match("POST", "/api/v1/payments/confirm/");
	assert_int_equal(m.result, MALL_GW_MATCH_NOT_FOUND);
	m = match("GET", "/api/v1/orders/20261126-000123/payment");
	assert_int_equal(m.result, MALL_GW_MATCH_NOT_FOUND);
	m = match("POST", "/webhooks/payments/other");
	assert_int_equal(m.result, MALL_GW_MATCH_NOT_FOUND);
	assert_true(m.api);
	m = match("GET", "/webhooks/payments");
	assert_int_equal(m.result, MALL_GW_MATCH_NOT_FOUND);
	assert_true(m.api);
}

static void
test_wrong_method(void **state)
{
	(void)state;
	const char *paths[] = {"/healthz",           "/api/v1/products", "/api/v1/products/x",
	                       "/api/v1/categories", "/index.html",      "/"};
	const char *methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++) {
			mall_gw_match m = match(methods[k], paths[i]);
			if (m.result != MALL_GW_MATCH_METHOD)
				fail_msg("%s %s: result %d, want 405", methods[k], paths[i],
				         m.result);
			assert_string_equal(m.allow, "GET, HEAD");
			assert_non_null(m.route); /* its body limit applies */
		}
	}
	/* a POST-only route: GET (and HEAD) are 405 naming POST */
	mall_gw_match pm = match("GET", "/api/v1/members");
	assert_int_equal(pm.result, MALL_GW_MATCH_METHOD);
	assert_string_equal(pm.allow, "POST");
	/* a method on an unknown API path is 404, not 405 */
	assert_int_equal(match("POST", "/api/v1/nothing").result, MALL_GW_MATCH_NOT_FOUND);
	/* methods are case-sensitive */
	assert_int_equal(match("get", "/healthz").result, MALL_GW_MATCH_METHOD);
}

static void
test_static(void **state)
{
	(void)state;
	const char *paths[] = {"/",     "/index.html", "/app.js",    "/css/site.css",
	                       "/apix", "/api-docs",   "/healthz/x", "/../etc/passwd"};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		mall_gw_match m = match("GET", paths[i]);
		if (m.result != MALL_GW_MATCH_OK || m.route->id != MALL_GW_ROUTE_STATIC)
			fail_msg("GET %s: result %d, want the static route", paths[i], m.result);
		assert_false(m.api);
		assert_false(m.route->flags & MALL_GW_ROUTE_API);
		assert_true(m.route->flags & MALL_GW_ROUTE_ANY_QUERY);
	}
	expect_route("HEAD", "/app.js", MALL_GW_ROUTE_STATIC);
}

static void
test_api_space(void **state)
{
	(void)state;
	assert_true(mall_gw_path_is_api("/api"));
	assert_true(mall_gw_path_is_api("/api/v1/products"));
	assert_true(mall_gw_path_is_api("/admin/api/v1/orders"));
	assert_true(mall_gw_path_is_api("/webhooks/toss"));
	assert_true(mall_gw_path_is_api("/integrations/slack/command"));
	assert_false(mall_gw_path_is_api("/apis"));
	assert_false(mall_gw_path_is_api("/admin"));
	assert_false(mall_gw_path_is_api("/"));
	assert_false(mall_gw_path_is_api("/healthz"));
}

static void
test_table(void **state)
{
	(void)state;
	size_t n;
	const mall_gw_route *r = mall_gw_routes(&n);
	bool seen[MALL_GW_ROUTE_COUNT] = {false};
	for (size_t i = 0; i < n; i++) {
		assert_true(r[i].id < MALL_GW_ROUTE_COUNT);
		assert_false(seen[r[i].id]); /* each handler once */
		seen[r[i].id] = true;
		/* GET routes take no uploads: the default limit is theirs */
		if (strcmp(r[i].method, "GET") == 0)
			assert_int_equal(r[i].limit, MALL_GW_LIMIT_BODY);
		/* routes that check their query say which parameters they accept */
		if (r[i].nparams > 0)
			assert_non_null(r[i].params);
	}
	for (int id = 0; id < MALL_GW_ROUTE_COUNT; id++)
		assert_true(seen[id]);
	/* the static catch-all is last, or it would shadow the others */
	assert_int_equal(r[n - 1].id, MALL_GW_ROUTE_STATIC);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_exact_routes),   cmocka_unit_test(test_param_route),
	    cmocka_unit_test(test_cart_routes),    cmocka_unit_test(test_order_routes),
	    cmocka_unit_test(test_payment_routes), cmocka_unit_test(test_wrong_method),
	    cmocka_unit_test(test_static),         cmocka_unit_test(test_api_space),
	    cmocka_unit_test(test_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
