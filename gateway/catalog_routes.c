/*
 * catalog_routes.c: the storefront's catalog API, each route one call to the
 * catalog service (mall.catalog.Catalog) answered with the reply as JSON.
 *
 *   GET /api/v1/products          ListProducts (query parameters in routes.c)
 *   GET /api/v1/products/{idOrSlug} GetProduct
 *   GET /api/v1/categories        ListCategories
 *
 * The request's trace id goes with every call; a catalog error is answered
 * with its status (mall_code_http): NOT_FOUND 404, UNAVAILABLE 503,
 * DEADLINE_EXCEEDED 504.
 */
#include <stdbool.h>
#include <string.h>

#include "gateway.h"
#include "json_pb.h"
#include "mall/catalog.pb-c.h"

/* Calls method of the catalog with req; the reply, or NULL once answered with
 * the error. */
static ProtobufCMessage *
call(mall_gw_req *r, const char *method, const ProtobufCMessage *req)
{
	ProtobufCMessage *reply = NULL;
	mall_status st;
	mall_status_clear(&st);
	mall_rpc_call_opts opts = {.trace_id = r->trace_id};
	if (mall_rpc_call(r->gw->catalog, &mall__catalog__catalog__descriptor, method, req, &reply,
	                  r->arena, &opts, &st) != MALL_OK) {
		mall_gw_respond_status(r, &st, "catalog");
		return NULL;
	}
	return reply;
}

void
mall_gw_handle_products(mall_gw_req *r)
{
	mall_status st;
	mall_status_clear(&st);
	ProtobufCMessage *req =
	    mall_pb_new(&mall__catalog__list_products_request__descriptor, r->arena);
	/* the parameters were checked against the route's list (routes.c), which
	 * only names fields a storefront may set; empty ones count as absent */
	for (size_t i = 0; i < r->nparams; i++)
		if (r->params[i].value[0] != '\0')
			mall_pb_set_from_string(req, r->arena, r->params[i].name,
			                        r->params[i].value, &st);
	if (!mall_status_ok(&st)) {
		mall_gw_respond_status(r, &st, "gateway");
		return;
	}
	ProtobufCMessage *reply = call(r, "ListProducts", req);
	if (reply != NULL)
		mall_gw_respond_pb(r, reply);
}

/* Stock counts beyond "available" are the back office's business: a SKU's
 * onHand and reserved are left out of the storefront's JSON. */
static bool
skip_stock(const ProtobufCFieldDescriptor *f, const ProtobufCMessageDescriptor *owner, void *arg)
{
	(void)arg;
	return owner == &mall__catalog__sku__descriptor &&
	       (strcmp(f->name, "on_hand") == 0 || strcmp(f->name, "reserved") == 0);
}

static const mall_pb_json_opts storefront_product = {.skip = skip_stock};

void
mall_gw_handle_product(mall_gw_req *r)
{
	if (mall_utf8_chars(r->param, strlen(r->param)) > 200) {
		mall_status st;
		mall_status_clear(&st);
		mall_status_field(&st, "idOrSlug", "must be at most 200 characters long");
		mall_gw_respond_status(r, &st, "gateway");
		return;
	}
	Mall__Catalog__GetProductRequest *req = (Mall__Catalog__GetProductRequest *)mall_pb_new(
	    &mall__catalog__get_product_request__descriptor, r->arena);
	req->id_or_slug = (char *)r->param;
	ProtobufCMessage *reply = call(r, "GetProduct", &req->base);
	if (reply == NULL)
		return;
	mall_gw_respond_pb_opts(r, reply, &storefront_product);
}

void
mall_gw_handle_categories(mall_gw_req *r)
{
	ProtobufCMessage *req =
	    mall_pb_new(&mall__catalog__list_categories_request__descriptor, r->arena);
	ProtobufCMessage *reply = call(r, "ListCategories", req);
	if (reply != NULL)
		mall_gw_respond_pb(r, reply);
}
