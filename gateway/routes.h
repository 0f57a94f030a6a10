/*
 * routes.h: the gateway's route table and the matching of method + path.
 *
 * The table is data only (a route names its handler by id, server.c maps ids
 * to functions), so that matching, the per-route body limits and the query
 * parameters each route accepts can be tested without a server, and checked
 * against docs/openapi.json.  A GET route also answers HEAD.  Paths under the
 * API prefixes (/api, /admin/api, /webhooks, /integrations) that match no
 * route are 404 JSON; every other GET/HEAD path is a static file.
 */
#ifndef MALL_GW_ROUTES_H
#define MALL_GW_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "query.h"

typedef enum mall_gw_route_id {
	MALL_GW_ROUTE_HEALTHZ,
	MALL_GW_ROUTE_READYZ,
	MALL_GW_ROUTE_METRICS,
	MALL_GW_ROUTE_OPENAPI,
	MALL_GW_ROUTE_PRODUCTS,
	MALL_GW_ROUTE_PRODUCT,
	MALL_GW_ROUTE_CATEGORIES,
	MALL_GW_ROUTE_MEMBERS,
	MALL_GW_ROUTE_SESSION_GET,
	MALL_GW_ROUTE_SESSION_LOGIN,
	MALL_GW_ROUTE_SESSION_LOGOUT,
	MALL_GW_ROUTE_ME_GET,
	MALL_GW_ROUTE_ME_PATCH,
	MALL_GW_ROUTE_ME_ADDRESSES,
	MALL_GW_ROUTE_ME_ADDRESS_ADD,
	MALL_GW_ROUTE_ME_ADDRESS_PATCH,
	MALL_GW_ROUTE_ME_ADDRESS_DELETE,
	MALL_GW_ROUTE_CART_GET,
	MALL_GW_ROUTE_CART_ITEM_ADD,
	MALL_GW_ROUTE_CART_ITEM_PATCH,
	MALL_GW_ROUTE_CART_ITEM_DELETE,
	MALL_GW_ROUTE_CART_COUPON_PUT,
	MALL_GW_ROUTE_CART_COUPON_DELETE,
	MALL_GW_ROUTE_ORDER_PLACE,
	MALL_GW_ROUTE_ORDERS,
	MALL_GW_ROUTE_ORDER_GET,
	MALL_GW_ROUTE_ORDER_CANCEL,
	MALL_GW_ROUTE_PAYMENT_CONFIRM,
	MALL_GW_ROUTE_PAYMENT_WEBHOOK_TOSS,
	MALL_GW_ROUTE_STATIC,
	MALL_GW_ROUTE_COUNT
} mall_gw_route_id;

/* The request-body limit that applies to a route (sizes come from settings). */
typedef enum mall_gw_limit {
	MALL_GW_LIMIT_BODY,   /* MALL_GATEWAY_MAX_BODY, 1 MiB by default */
	MALL_GW_LIMIT_UPLOAD, /* MALL_GATEWAY_MAX_UPLOAD, 50 MiB by default */
} mall_gw_limit;

enum {
	MALL_GW_ROUTE_API = 1 << 0,       /* JSON API: Cache-Control: no-store */
	MALL_GW_ROUTE_ANY_QUERY = 1 << 1, /* the query string is ignored, not checked */
};

typedef struct mall_gw_route {
	const char *method;  /* "GET" (answers HEAD too), "POST", ... */
	const char *pattern; /* "/api/v1/products/{idOrSlug}": {name} is one non-empty
	                      * segment; the pattern "/" followed by "*" is the
	                      * static catch-all */
	mall_gw_route_id id;
	mall_gw_limit limit;
	unsigned flags;
	const mall_gw_param_spec *params; /* the query parameters it accepts */
	size_t nparams;
} mall_gw_route;

typedef enum mall_gw_match_result {
	MALL_GW_MATCH_OK,
	MALL_GW_MATCH_NOT_FOUND, /* no route has this path */
	MALL_GW_MATCH_METHOD,    /* routes have this path, not with this method: 405 */
} mall_gw_match_result;

typedef struct mall_gw_match {
	mall_gw_match_result result;
	/* OK: the route; METHOD: a route with this path (for its body limit);
	 * NOT_FOUND: NULL */
	const mall_gw_route *route;
	const char *param; /* the {name} segment of path (not terminated), or NULL */
	size_t param_len;
	char allow[64]; /* METHOD: the Allow header value, "GET, HEAD" */
	bool api;       /* the path is in the API space (JSON errors, no-store) */
} mall_gw_match;

/* mall_gw_routes: the table, *n entries. */
const mall_gw_route *mall_gw_routes(size_t *n);

/* mall_gw_route_match: matches a decoded path (starting with '/') and a method
 * against the table. */
void mall_gw_route_match(const char *method, const char *path, mall_gw_match *m);

/* mall_gw_path_is_api: whether path is under one of the API prefixes. */
bool mall_gw_path_is_api(const char *path);

/* Limits of the product and order lists (also in docs/openapi.json). */
#define MALL_GW_PAGE_MAX 10000
#define MALL_GW_PAGE_SIZE_MAX 100

#endif
