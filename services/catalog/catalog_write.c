/*
 * catalog_write.c: admin-side writes: categories, products, SKUs and stock.
 *
 * Each handler is MALL_RPC_MUTATING: it runs inside the transaction that
 * lib/idem.c opened for its idempotency key, on the worker's connection, and
 * must neither begin nor commit.  Every write bumps catalog_version in that
 * transaction so every instance drops its read cache (catalog_cache.c).
 */
#include <ctype.h>
#include <regex.h>
#include <string.h>

#include <jansson.h>

#include "catalog.h"
#include "json_pb.h"

#define MAX_PRICE 1000000000LL
#define MAX_STOCK 1000000000LL

static void
check_text(mall_status *st, const char *field, const char *v, size_t min, size_t max)
{
	size_t len = strlen(v);
	size_t chars = mall_utf8_chars(v, len);
	if (!mall_utf8_valid(v, len))
		mall_status_field(st, field, "must be valid UTF-8");
	else if (min > 0 && (chars < min || chars > max))
		mall_status_field(st, field, "must be %zu to %zu characters", min, max);
	else if (chars > max)
		mall_status_field(st, field, "must be at most %zu characters", max);
}

/* slug: lower-case letters, digits and '-', starting with a letter or digit */
static void
check_slug(mall_status *st, const char *field, const char *v, size_t max)
{
	size_t len = strlen(v);
	bool ok = len >= 1 && len <= max && (islower((unsigned char)v[0]) || isdigit((unsigned char)v[0]));
	for (size_t i = 0; ok && i < len; i++)
		ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '-';
	if (!ok)
		mall_status_field(st, field,
		                  "must be 1 to %zu lower-case letters, digits or '-', not starting with '-'",
		                  max);
}

static void
check_sku_code(mall_status *st, const char *field, const char *v)
{
	size_t len = strlen(v);
	bool ok = len >= 1 && len <= 64 && isalnum((unsigned char)v[0]);
	for (size_t i = 0; ok && i < len; i++)
		ok = isalnum((unsigned char)v[i]) || v[i] == '-' || v[i] == '_';
	if (!ok)
		mall_status_field(st, field, "must be 1 to 64 letters, digits, '-' or '_'");
}

/* JSON text of n messages, for a jsonb column; the caller frees it. */
static char *
json_list(ProtobufCMessage *const *items, size_t n)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, mall_pb_to_json(items[i]));
	char *text = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return text;
}

static void
check_images(mall_status *st, Mall__Catalog__Image *const *images, size_t n)
{
	if (n > 20)
		mall_status_field(st, "images", "at most 20 images");
	for (size_t i = 0; i < n && i < 20; i++) {
		char field[32];
		snprintf(field, sizeof(field), "images[%zu].url", i);
		check_text(st, field, images[i]->url, 1, 2000);
		snprintf(field, sizeof(field), "images[%zu].alt", i);
		check_text(st, field, images[i]->alt, 0, 500);
	}
}

mall_code
catalog_bump_version(mall_db_conn *conn, mall_status *st)
{
	PGresult *res = mall_db_exec(conn, st,
	    "UPDATE catalog_version SET version = version + 1 RETURNING version::text", 0, NULL);
	if (res == NULL)
		return st->code;
	const char *params[] = {PQgetvalue(res, 0, 0)};
	/* delivered to every listening instance when the transaction commits */
	int64_t rc = mall_db_exec_cmd(conn, st, "SELECT pg_notify('catalog_version', $1)", 1, params);
	PQclear(res);
	return rc < 0 ? st->code : MALL_OK;
}

/* The id of the category with slug, as text; a field error when there is none. */
static char *
category_id(mall_db_conn *conn, mall_arena *a, const char *field, const char *slug,
            mall_status *st)
{
	const char *params[] = {slug};
	PGresult *res = mall_db_exec(conn, st, "SELECT id::text FROM category WHERE slug = $1", 1,
	                             params);
	if (res == NULL)
		return NULL;
	char *id = NULL;
	if (PQntuples(res) == 1)
		id = mall_arena_strdup(a, PQgetvalue(res, 0, 0));
	else
		mall_status_field(st, field, "no category has slug %s", slug);
	PQclear(res);
	return id;
}

mall_code
catalog_create_category(mall_rpc_ctx *ctx, const ProtobufCMessage *req_,
                        ProtobufCMessage **reply, mall_status *st)
{
	const Mall__Catalog__CreateCategoryRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	check_slug(st, "slug", req->slug, 80);
	check_text(st, "name", req->name, 1, 200);
	if (st->code != MALL_OK)
		return st->code;
	char *parent = NULL;
	if (req->parent_slug[0] != '\0' &&
	    (parent = category_id(conn, a, "parentSlug", req->parent_slug, st)) == NULL)
		return st->code;
	const char *params[] = {req->slug, req->name, parent,
	                        mall_arena_printf(a, "%d", (int)req->position)};
	PGresult *res = mall_db_exec(conn, st,
	    "INSERT INTO category (slug, name, parent_id, position) VALUES ($1, $2, $3, $4) "
	    "RETURNING id, coalesce(parent_id, 0)",
	    4, params);
	if (res == NULL) {
		if (st->code == MALL_ALREADY_EXISTS)
			mall_status_set(st, MALL_ALREADY_EXISTS, "category %s exists already", req->slug);
		return st->code;
	}
	Mall__Catalog__Category *c = (void *)mall_pb_new(&mall__catalog__category__descriptor, a);
	c->id = mall_db_int64(res, 0, 0);
	c->parent_id = mall_db_int64(res, 0, 1);
	c->slug = mall_arena_strdup(a, req->slug);
	c->name = mall_arena_strdup(a, req->name);
	c->position = req->position;
	PQclear(res);
	if (catalog_bump_version(conn, st) != MALL_OK)
		return st->code;
	*reply = &c->base;
	return MALL_OK;
}

static void
check_options(mall_status *st, Mall__Catalog__Option *const *options, size_t n)
{
	if (n > 5)
		mall_status_field(st, "options", "at most 5 options");
	for (size_t i = 0; i < n && i < 5; i++) {
		char field[40];
		snprintf(field, sizeof(field), "options[%zu].name", i);
		check_text(st, field, options[i]->name, 1, 50);
		if (options[i]->n_values == 0 || options[i]->n_values > 50) {
			snprintf(field, sizeof(field), "options[%zu].values", i);
			mall_status_field(st, field, "must have 1 to 50 values");
		}
		for (size_t j = 0; j < options[i]->n_values && j < 50; j++) {
			snprintf(field, sizeof(field), "options[%zu].values[%zu]", i, j);
			check_text(st, field, options[i]->values[j], 1, 50);
		}
	}
}

mall_code
catalog_create_product(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                       mall_status *st)
{
	const Mall__Catalog__CreateProductRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	check_slug(st, "slug", req->slug, 120);
	check_text(st, "name", req->name, 1, 200);
	check_text(st, "summary", req->summary, 0, 1000);
	check_text(st, "descriptionHtml", req->description_html, 0, 100000);
	check_images(st, req->images, req->n_images);
	check_options(st, req->options, req->n_options);
	if (req->category_slug[0] == '\0')
		mall_status_field(st, "categorySlug", "is required");
	if (st->code != MALL_OK)
		return st->code;
	char *cat = category_id(conn, a, "categorySlug", req->category_slug, st);
	if (cat == NULL)
		return st->code;
	char *images = json_list((ProtobufCMessage *const *)req->images, req->n_images);
	char *options = json_list((ProtobufCMessage *const *)req->options, req->n_options);
	const char *params[] = {req->slug, req->name, req->summary, req->description_html, cat,
	                        images, options, req->published ? "true" : "false"};
	PGresult *res = mall_db_exec(conn, st,
	    "INSERT INTO product (slug, name, summary, description_html, category_id, images,"
	    " options, published) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8) RETURNING id",
	    8, params);
	free(images);
	free(options);
	if (res == NULL) {
		if (st->code == MALL_ALREADY_EXISTS)
			mall_status_set(st, MALL_ALREADY_EXISTS, "product %s exists already", req->slug);
		return st->code;
	}
	int64_t id = mall_db_int64(res, 0, 0);
	PQclear(res);
	Mall__Catalog__Product *p;
	if (catalog_bump_version(conn, st) != MALL_OK ||
	    catalog_load_product(conn, a, id, &p, st) != MALL_OK)
		return st->code;
	*reply = &p->base;
	return MALL_OK;
}

static const char *const updatable[] = {"name", "summary", "descriptionHtml", "categorySlug",
                                        "published", "images"};
enum { U_NAME, U_SUMMARY, U_DESCRIPTION, U_CATEGORY, U_PUBLISHED, U_IMAGES, U_COUNT };

mall_code
catalog_update_product(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                       mall_status *st)
{
	const Mall__Catalog__UpdateProductRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	bool set[U_COUNT] = {false};
	if (req->id <= 0)
		mall_status_field(st, "id", "must be a product id");
	mall_update_mask_parse(req->update_mask, req->n_update_mask, updatable, U_COUNT, set, st);
	if (set[U_NAME])
		check_text(st, "name", req->name, 1, 200);
	if (set[U_SUMMARY])
		check_text(st, "summary", req->summary, 0, 1000);
	if (set[U_DESCRIPTION])
		check_text(st, "descriptionHtml", req->description_html, 0, 100000);
	if (set[U_IMAGES])
		check_images(st, req->images, req->n_images);
	if (st->code != MALL_OK)
		return st->code;
	char *cat = NULL;
	if (set[U_CATEGORY] &&
	    (cat = category_id(conn, a, "categorySlug", req->category_slug, st)) == NULL)
		return st->code;
	char *images = set[U_IMAGES]
	                   ? json_list((ProtobufCMessage *const *)req->images, req->n_images)
	                   : NULL;
	const char *params[] = {
	    mall_arena_printf(a, "%lld", (long long)req->id),
	    set[U_NAME] ? req->name : NULL,
	    set[U_SUMMARY] ? req->summary : NULL,
	    set[U_DESCRIPTION] ? req->description_html : NULL,
	    cat,
	    set[U_PUBLISHED] ? (req->published ? "true" : "false") : NULL,
	    images};
	int64_t n = mall_db_exec_cmd(conn, st,
	    "UPDATE product SET name = coalesce($2, name), summary = coalesce($3, summary),"
	    " description_html = coalesce($4, description_html),"
	    " category_id = coalesce($5::bigint, category_id),"
	    " published = coalesce($6::boolean, published),"
	    " images = coalesce($7::jsonb, images), updated_at = now() WHERE id = $1",
	    7, params);
	free(images);
	if (n < 0)
		return st->code;
	if (n == 0)
		return mall_status_set(st, MALL_NOT_FOUND, "product %lld not found", (long long)req->id);
	Mall__Catalog__Product *p;
	if (catalog_bump_version(conn, st) != MALL_OK ||
	    catalog_load_product(conn, a, req->id, &p, st) != MALL_OK)
		return st->code;
	*reply = &p->base;
	return MALL_OK;
}

/* Every option value names one of the product's options and one of its values,
 * each option at most once. */
static void
check_option_values(mall_status *st, const Mall__Catalog__Product *p,
                    Mall__Catalog__OptionValue *const *values, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char field[40];
		snprintf(field, sizeof(field), "optionValues[%zu]", i);
		const Mall__Catalog__Option *opt = NULL;
		for (size_t j = 0; j < p->n_options; j++)
			if (strcmp(p->options[j]->name, values[i]->option) == 0)
				opt = p->options[j];
		if (opt == NULL) {
			mall_status_field(st, field, "product %s has no option %s", p->slug,
			                  values[i]->option);
			continue;
		}
		bool known = false;
		for (size_t j = 0; j < opt->n_values; j++)
			if (strcmp(opt->values[j], values[i]->value) == 0)
				known = true;
		if (!known)
			mall_status_field(st, field, "option %s has no value %s", opt->name,
			                  values[i]->value);
		for (size_t j = 0; j < i; j++)
			if (strcmp(values[j]->option, values[i]->option) == 0)
				mall_status_field(st, field, "option %s given twice", opt->name);
	}
}

mall_code
catalog_create_sku(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                   mall_status *st)
{
	const Mall__Catalog__CreateSkuRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	check_sku_code(st, "code", req->code);
	if (req->price < 0 || req->price > MAX_PRICE)
		mall_status_field(st, "price", "must be between 0 and %lld won", MAX_PRICE);
	if (req->on_hand < 0 || req->on_hand > MAX_STOCK)
		mall_status_field(st, "onHand", "must be between 0 and %lld", MAX_STOCK);
	if (req->product_id <= 0)
		mall_status_field(st, "productId", "must be a product id");
	if (st->code != MALL_OK)
		return st->code;
	Mall__Catalog__Product *p;
	if (catalog_load_product(conn, a, req->product_id, &p, st) != MALL_OK)
		return st->code;
	check_option_values(st, p, req->option_values, req->n_option_values);
	if (st->code != MALL_OK)
		return st->code;
	char *values = json_list((ProtobufCMessage *const *)req->option_values,
	                         req->n_option_values);
	const char *params[] = {mall_arena_printf(a, "%lld", (long long)req->product_id), req->code,
	                        values, mall_arena_printf(a, "%lld", (long long)req->price),
	                        mall_arena_printf(a, "%lld", (long long)req->on_hand)};
	int64_t n = mall_db_exec_cmd(conn, st,
	    "INSERT INTO sku (product_id, code, option_values, price, on_hand)"
	    " VALUES ($1, $2, $3::jsonb, $4, $5)",
	    5, params);
	free(values);
	if (n < 0) {
		if (st->code == MALL_ALREADY_EXISTS)
			mall_status_set(st, MALL_ALREADY_EXISTS, "sku %s exists already", req->code);
		return st->code;
	}
	Mall__Catalog__Sku *sku;
	if (catalog_bump_version(conn, st) != MALL_OK ||
	    catalog_load_sku(conn, a, req->code, &sku, st) != MALL_OK)
		return st->code;
	*reply = &sku->base;
	return MALL_OK;
}

mall_code
catalog_set_stock(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                  mall_status *st)
{
	const Mall__Catalog__SetStockRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	if (req->sku_code[0] == '\0')
		mall_status_field(st, "skuCode", "is required");
	if (req->on_hand < 0 || req->on_hand > MAX_STOCK)
		mall_status_field(st, "onHand", "must be between 0 and %lld", MAX_STOCK);
	if (st->code != MALL_OK)
		return st->code;
	/* lock the row: reservations (catalog_reservation.c) change `reserved`
	 * concurrently.  Stock on hand never goes below what orders hold: that
	 * would promise stock that is not there (and break sku's CHECK reserved
	 * <= on_hand); the reservations must be released first. */
	const char *params[] = {req->sku_code, mall_arena_printf(a, "%lld", (long long)req->on_hand)};
	PGresult *res = mall_db_exec(conn, st,
	    "SELECT reserved FROM sku WHERE code = $1 FOR UPDATE", 1, params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_NOT_FOUND, "sku %s not found", req->sku_code);
	}
	int64_t reserved = mall_db_int64(res, 0, 0);
	PQclear(res);
	if (req->on_hand < reserved) {
		mall_status_reason(st, MALL_FAILED_PRECONDITION, "stock_reserved",
		                   "sku %s has %lld reserved: stock on hand cannot go below that",
		                   req->sku_code, (long long)reserved);
		mall_status_detail(st, "reserved", reserved);
		return st->code;
	}
	if (mall_db_exec_cmd(conn, st, "UPDATE sku SET on_hand = $2 WHERE code = $1", 2, params) < 0)
		return st->code;
	Mall__Catalog__Sku *sku;
	if (catalog_bump_version(conn, st) != MALL_OK ||
	    catalog_load_sku(conn, a, req->sku_code, &sku, st) != MALL_OK)
		return st->code;
	*reply = &sku->base;
	return MALL_OK;
}
