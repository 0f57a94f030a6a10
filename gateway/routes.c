/*
 * routes.c: the route table and method + path matching (see routes.h).
 */
#include "routes.h"

#include <stdio.h>
#include <string.h>

static const char *const sort_values[] = {"newest", "price_asc", "price_desc", NULL};

/* Query parameters of GET /api/v1/products; each binds to the field of
 * mall.catalog.ListProductsRequest of the same JSON name.  include_unpublished
 * is deliberately absent: it is for admin callers. */
static const mall_gw_param_spec products_params[] = {
    {"category", MALL_GW_PARAM_STRING, 1, 100, NULL, "category slug or id; includes subcategories"},
    {"q", MALL_GW_PARAM_STRING, 1, 100, NULL, "text the product name contains"},
    {"sort", MALL_GW_PARAM_ENUM, 0, 0, sort_values, "order of the list"},
    {"page", MALL_GW_PARAM_INT, 1, MALL_GW_PAGE_MAX, NULL, "page number, from 1"},
    {"pageSize", MALL_GW_PARAM_INT, 1, MALL_GW_PAGE_SIZE_MAX, NULL, "products per page"},
};

/* Query parameters of GET /api/v1/orders (mall.order.ListOrdersRequest). */
static const mall_gw_param_spec orders_params[] = {
    {"page", MALL_GW_PARAM_INT, 1, MALL_GW_PAGE_MAX, NULL, "page number, from 1"},
    {"pageSize", MALL_GW_PARAM_INT, 1, MALL_GW_PAGE_SIZE_MAX, NULL, "orders per page"},
};

/* The query parameter of one order's routes: the orderer's phone, with which a
 * guest reaches an order placed without signing in (order_routes.c). */
static const mall_gw_param_spec order_params[] = {
    {"phone", MALL_GW_PARAM_STRING, 1, 20, NULL,
     "the orderer's phone, for an order placed as a guest"},
};

#define NPARAMS(a) (sizeof(a) / sizeof((a)[0]))

static const mall_gw_route routes[] = {
    {"GET", "/healthz", MALL_GW_ROUTE_HEALTHZ, MALL_GW_LIMIT_BODY, MALL_GW_ROUTE_ANY_QUERY, NULL,
     0},
    {"GET", "/readyz", MALL_GW_ROUTE_READYZ, MALL_GW_LIMIT_BODY, MALL_GW_ROUTE_ANY_QUERY, NULL, 0},
    {"GET", "/metrics", MALL_GW_ROUTE_METRICS, MALL_GW_LIMIT_BODY, MALL_GW_ROUTE_ANY_QUERY, NULL,
     0},
    {"GET", "/api/v1/openapi.json", MALL_GW_ROUTE_OPENAPI, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API | MALL_GW_ROUTE_ANY_QUERY, NULL, 0},
    {"GET", "/api/v1/products", MALL_GW_ROUTE_PRODUCTS, MALL_GW_LIMIT_BODY, MALL_GW_ROUTE_API,
     products_params, NPARAMS(products_params)},
    {"GET", "/api/v1/products/{idOrSlug}", MALL_GW_ROUTE_PRODUCT, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, NULL, 0},
    {"GET", "/api/v1/categories", MALL_GW_ROUTE_CATEGORIES, MALL_GW_LIMIT_BODY, MALL_GW_ROUTE_API,
     NULL, 0},
    {"POST", "/api/v1/members", MALL_GW_ROUTE_MEMBERS, MALL_GW_LIMIT_BODY, MALL_GW_ROUTE_API,
     NULL, 0},
    {"GET", "/api/v1/session", MALL_GW_ROUTE_SESSION_GET, MALL_GW_LIMIT_BODY, MALL_GW_ROUTE_API,
     NULL, 0},
    {"POST", "/api/v1/session", MALL_GW_ROUTE_SESSION_LOGIN, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, NULL, 0},
    {"DELETE", "/api/v1/session", MALL_GW_ROUTE_SESSION_LOGOUT, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, NULL, 0},
    {"GET", "/api/v1/me", MALL_GW_ROUTE_ME_GET, MALL_GW_LIMIT_BODY, MALL_GW_ROUTE_API, NULL, 0},
    {"PATCH", "/api/v1/me", MALL_GW_ROUTE_ME_PATCH, MALL_GW_LIMIT_BODY, MALL_GW_ROUTE_API, NULL,
     0},
    {"GET", "/api/v1/me/addresses", MALL_GW_ROUTE_ME_ADDRESSES, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, NULL, 0},
    {"POST", "/api/v1/me/addresses", MALL_GW_ROUTE_ME_ADDRESS_ADD, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, NULL, 0},
    {"PATCH", "/api/v1/me/addresses/{id}", MALL_GW_ROUTE_ME_ADDRESS_PATCH, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, NULL, 0},
    {"DELETE", "/api/v1/me/addresses/{id}", MALL_GW_ROUTE_ME_ADDRESS_DELETE, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, NULL, 0},
    {"GET", "/api/v1/cart", MALL_GW_ROUTE_CART_GET, MALL_GW_LIMIT_BODY, MALL_GW_ROUTE_API, NULL,
     0},
    {"POST", "/api/v1/cart/items", MALL_GW_ROUTE_CART_ITEM_ADD, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, NULL, 0},
    {"PATCH", "/api/v1/cart/items/{itemId}", MALL_GW_ROUTE_CART_ITEM_PATCH, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, NULL, 0},
    {"DELETE", "/api/v1/cart/items/{itemId}", MALL_GW_ROUTE_CART_ITEM_DELETE, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, NULL, 0},
    {"PUT", "/api/v1/cart/coupon", MALL_GW_ROUTE_CART_COUPON_PUT, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, NULL, 0},
    {"DELETE", "/api/v1/cart/coupon", MALL_GW_ROUTE_CART_COUPON_DELETE, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, NULL, 0},
    {"POST", "/api/v1/orders", MALL_GW_ROUTE_ORDER_PLACE, MALL_GW_LIMIT_BODY, MALL_GW_ROUTE_API,
     NULL, 0},
    {"GET", "/api/v1/orders", MALL_GW_ROUTE_ORDERS, MALL_GW_LIMIT_BODY, MALL_GW_ROUTE_API,
     orders_params, NPARAMS(orders_params)},
    {"GET", "/api/v1/orders/{number}", MALL_GW_ROUTE_ORDER_GET, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, order_params, NPARAMS(order_params)},
    {"POST", "/api/v1/orders/{number}/cancel", MALL_GW_ROUTE_ORDER_CANCEL, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, order_params, NPARAMS(order_params)},
    {"POST", "/api/v1/payments/confirm", MALL_GW_ROUTE_PAYMENT_CONFIRM, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API, NULL, 0},
    /* the PG's callback: a query string it was configured with must not cost
     * a deposit (a refused callback is retried, then given up) */
    {"POST", "/webhooks/payments/toss", MALL_GW_ROUTE_PAYMENT_WEBHOOK_TOSS, MALL_GW_LIMIT_BODY,
     MALL_GW_ROUTE_API | MALL_GW_ROUTE_ANY_QUERY, NULL, 0},
    {"GET", "/*", MALL_GW_ROUTE_STATIC, MALL_GW_LIMIT_BODY, MALL_GW_ROUTE_ANY_QUERY, NULL, 0},
};

const mall_gw_route *
mall_gw_routes(size_t *n)
{
	*n = NPARAMS(routes);
	return routes;
}

static const char *const api_prefixes[] = {"/api", "/admin/api", "/webhooks", "/integrations"};

bool
mall_gw_path_is_api(const char *path)
{
	for (size_t i = 0; i < NPARAMS(api_prefixes); i++) {
		size_t n = strlen(api_prefixes[i]);
		if (strncmp(path, api_prefixes[i], n) == 0 && (path[n] == '\0' || path[n] == '/'))
			return true;
	}
	return false;
}

/* Whether path matches pattern; a {name} segment's text goes to *param. */
static bool
pattern_match(const char *pattern, const char *path, const char **param, size_t *param_len)
{
	const char *p = pattern, *s = path;
	*param = NULL;
	*param_len = 0;
	while (*p && *s) {
		if (*p == '{') {
			const char *pe = strchr(p, '}');
			size_t n = strcspn(s, "/");
			if (pe == NULL || n == 0)
				return false;
			*param = s;
			*param_len = n;
			p = pe + 1;
			s += n;
			continue;
		}
		if (*p != *s)
			return false;
		p++;
		s++;
	}
	return *p == '\0' && *s == '\0';
}

static bool
method_matches(const char *route_method, const char *method)
{
	if (strcmp(route_method, method) == 0)
		return true;
	return strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0;
}

static void
allow_add(char *allow, size_t cap, const char *method)
{
	if (strstr(allow, method) != NULL)
		return;
	size_t o = strlen(allow);
	snprintf(allow + o, cap - o, "%s%s", o ? ", " : "", method);
	if (strcmp(method, "GET") == 0)
		allow_add(allow, cap, "HEAD");
}

void
mall_gw_route_match(const char *method, const char *path, mall_gw_match *m)
{
	memset(m, 0, sizeof(*m));
	m->result = MALL_GW_MATCH_NOT_FOUND;
	m->api = mall_gw_path_is_api(path);
	bool path_known = false;
	for (size_t i = 0; i < NPARAMS(routes); i++) {
		const mall_gw_route *r = &routes[i];
		const char *param;
		size_t plen;
		bool hit;
		if (strcmp(r->pattern, "/*") == 0) {
			hit = !m->api && !path_known && path[0] == '/';
			param = NULL;
			plen = 0;
		} else {
			hit = pattern_match(r->pattern, path, &param, &plen);
		}
		if (!hit)
			continue;
		if (method_matches(r->method, method)) {
			m->result = MALL_GW_MATCH_OK;
			m->route = r;
			m->param = param;
			m->param_len = plen;
			m->allow[0] = '\0';
			return;
		}
		path_known = true;
		if (m->route == NULL)
			m->route = r;
		allow_add(m->allow, sizeof(m->allow), r->method);
	}
	if (path_known)
		m->result = MALL_GW_MATCH_METHOD;
}
