/*
 * catalog_read.c: the storefront's reads: product list and detail, categories,
 * stock, and the SKUs a cart shows.  List, detail and categories are answered
 * from the reply cache (catalog_cache.c) when the catalog has not changed since
 * they were read: the stored bytes go out as a packed reply, never unpacked on
 * the way.  Stock and the cart's SKUs are read fresh every time: a cart must
 * see a stock change the moment it commits.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "catalog.h"
#include "json_pb.h"

static Mall__Money *
money(mall_arena *a, int64_t amount)
{
	Mall__Money *m = (Mall__Money *)mall_pb_new(&mall__money__descriptor, a);
	m->amount = amount;
	m->currency = mall_arena_strdup(a, "KRW");
	return m;
}

static char *
col(mall_arena *a, const PGresult *res, int row, int c)
{
	return mall_arena_strdup(a, PQgetvalue(res, row, c));
}

/* Parses a JSON array of desc messages stored by this service (jsonb). */
static mall_code
parse_list(mall_arena *a, const char *text, const ProtobufCMessageDescriptor *desc,
           ProtobufCMessage ***items, size_t *n, mall_status *st)
{
	json_error_t jerr;
	json_t *arr = json_loads(text, JSON_DECODE_ANY, &jerr);
	*items = NULL;
	*n = 0;
	if (arr == NULL || !json_is_array(arr)) {
		json_decref(arr);
		return mall_status_set(st, MALL_DATA_LOSS, "stored %s list is not a JSON array",
		                       desc->short_name);
	}
	size_t count = json_array_size(arr);
	ProtobufCMessage **out = mall_arena_alloc(a, sizeof(*out) * (count ? count : 1));
	for (size_t i = 0; i < count; i++) {
		if (mall_json_obj_to_pb(json_array_get(arr, i), desc, a, &out[i], st) != MALL_OK) {
			json_decref(arr);
			return mall_status_set(st, MALL_DATA_LOSS, "stored %s %zu does not parse: %s",
			                       desc->short_name, i, st->message);
		}
	}
	json_decref(arr);
	*items = out;
	*n = count;
	return MALL_OK;
}

/* The image in column c (a product's images -> 0, as text), or NULL when it is
 * SQL NULL (no images) or does not parse: a thumbnail is not worth failing a
 * reply for. */
static Mall__Catalog__Image *
thumbnail(mall_arena *a, const PGresult *res, int row, int c)
{
	if (PQgetisnull(res, row, c))
		return NULL;
	json_t *img = json_loads(PQgetvalue(res, row, c), JSON_DECODE_ANY, NULL);
	ProtobufCMessage *m = NULL;
	mall_status ist;
	mall_status_clear(&ist);
	if (img == NULL || !json_is_object(img) ||
	    mall_json_obj_to_pb(img, &mall__catalog__image__descriptor, a, &m, &ist) != MALL_OK)
		m = NULL;
	json_decref(img);
	return (Mall__Catalog__Image *)m;
}

static bool
is_admin(const mall_rpc_ctx *ctx)
{
	return mall_rpc_ctx_admin_id(ctx) != 0;
}

/* An id when s is all digits (and fits), else 0. */
static int64_t
parse_id(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len > 18)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!isdigit((unsigned char)s[i]))
			return 0;
	return strtoll(s, NULL, 10);
}

/* LIKE pattern matching s as a substring, its wildcards escaped. */
static char *
like_pattern(mall_arena *a, const char *s)
{
	size_t len = strlen(s);
	char *p = mall_arena_alloc(a, 2 * len + 3);
	size_t j = 0;
	p[j++] = '%';
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' || s[i] == '_' || s[i] == '\\')
			p[j++] = '\\';
		p[j++] = s[i];
	}
	p[j++] = '%';
	p[j] = '\0';
	return p;
}

/* $1 category id or NULL, $2 include unpublished, $3 LIKE pattern or NULL;
 * the page query adds $4 sort, $5 limit, $6 offset. */
static const char list_count_sql[] =
    "WITH RECURSIVE sub(id) AS ("
    "  SELECT id FROM category WHERE id = $1::bigint"
    "  UNION ALL SELECT c.id FROM category c JOIN sub ON c.parent_id = sub.id) "
    "SELECT count(*) FROM product p "
    "WHERE ($2::boolean OR (p.published AND EXISTS (SELECT 1 FROM sku WHERE sku.product_id = p.id)))"
    "  AND ($1::bigint IS NULL OR p.category_id IN (SELECT id FROM sub))"
    "  AND ($3::text IS NULL OR p.name ILIKE $3::text)";

static const char list_page_sql[] =
    "WITH RECURSIVE sub(id) AS ("
    "  SELECT id FROM category WHERE id = $1::bigint"
    "  UNION ALL SELECT c.id FROM category c JOIN sub ON c.parent_id = sub.id) "
    "SELECT p.id, p.slug, p.name, p.summary, p.category_id, (p.images -> 0)::text, "
    CATALOG_RFC3339_UTC("p.created_at") ", coalesce(s.min_price, 0), s.available "
    "FROM product p "
    "LEFT JOIN LATERAL (SELECT min(price) AS min_price,"
    "  coalesce(bool_or(on_hand > reserved), false) AS available"
    "  FROM sku WHERE sku.product_id = p.id) s ON true "
    "WHERE ($2::boolean OR (p.published AND s.min_price IS NOT NULL))"
    "  AND ($1::bigint IS NULL OR p.category_id IN (SELECT id FROM sub))"
    "  AND ($3::text IS NULL OR p.name ILIKE $3::text) "
    "ORDER BY CASE WHEN $4::int = 1 THEN s.min_price END ASC,"
    "  CASE WHEN $4::int = 2 THEN s.min_price END DESC,"
    "  p.created_at DESC, p.id DESC "
    "LIMIT $5::int OFFSET $6::int";

#define MAX_PAGE 10000
#define MAX_QUERY_CHARS 100

static mall_code
resolve_category(mall_db_conn *conn, mall_arena *a, const char *ref, char **id_out,
                 mall_status *st)
{
	const char *params[] = {ref};
	PGresult *res = mall_db_exec(conn, st,
	    "SELECT id FROM category WHERE slug = $1 OR (id::text = $1)", 1, params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_NOT_FOUND, "category %s not found", ref);
	}
	*id_out = col(a, res, 0, 0);
	PQclear(res);
	return MALL_OK;
}


mall_code
catalog_list_products(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                      mall_status *st)
{
	const Mall__Catalog__ListProductsRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);

	int32_t page = req->page == 0 ? 1 : req->page;
	int32_t page_size = req->page_size == 0 ? 20 : req->page_size;
	if (page < 1 || page > MAX_PAGE)
		mall_status_field(st, "page", "must be between 1 and %d", MAX_PAGE);
	if (page_size < 1 || page_size > 100)
		mall_status_field(st, "pageSize", "must be between 1 and 100");
	if (mall_utf8_chars(req->q, strlen(req->q)) > MAX_QUERY_CHARS)
		mall_status_field(st, "q", "must be at most %d characters", MAX_QUERY_CHARS);
	if (req->sort != MALL__CATALOG__PRODUCT_SORT__NEWEST &&
	    req->sort != MALL__CATALOG__PRODUCT_SORT__PRICE_ASC &&
	    req->sort != MALL__CATALOG__PRODUCT_SORT__PRICE_DESC)
		mall_status_field(st, "sort", "must be newest, price_asc or price_desc");
	if (st->code != MALL_OK)
		return st->code;
	if (req->include_unpublished && !is_admin(ctx))
		return mall_status_set(st, MALL_PERMISSION_DENIED,
		                       "unpublished products are for admin callers only");

	if (catalog_cache_reply(ctx))
		return MALL_OK; /* the stored bytes go out as they are */
	uint64_t gen = catalog_cache_generation();
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);

	char *category_id = NULL;
	if (req->category[0] != '\0' &&
	    resolve_category(conn, a, req->category, &category_id, st) != MALL_OK)
		return st->code;
	const char *pattern = req->q[0] != '\0' ? like_pattern(a, req->q) : NULL;
	const char *unpublished = req->include_unpublished ? "true" : "false";

	const char *count_params[] = {category_id, unpublished, pattern};
	PGresult *res = mall_db_exec(conn, st, list_count_sql, 3, count_params);
	if (res == NULL)
		return st->code;
	int64_t total = mall_db_int64(res, 0, 0);
	PQclear(res);

	const char *page_params[] = {
	    category_id, unpublished, pattern, mall_arena_printf(a, "%d", (int)req->sort),
	    mall_arena_printf(a, "%d", page_size),
	    mall_arena_printf(a, "%lld", (long long)(page - 1) * page_size)};
	res = mall_db_exec(conn, st, list_page_sql, 6, page_params);
	if (res == NULL)
		return st->code;

	Mall__Catalog__ListProductsReply *out =
	    (void *)mall_pb_new(&mall__catalog__list_products_reply__descriptor, a);
	int n = PQntuples(res);
	out->n_products = (size_t)n;
	out->products = mall_arena_alloc(a, sizeof(*out->products) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++) {
		Mall__Catalog__ProductSummary *p =
		    (void *)mall_pb_new(&mall__catalog__product_summary__descriptor, a);
		p->id = mall_db_int64(res, i, 0);
		p->slug = col(a, res, i, 1);
		p->name = col(a, res, i, 2);
		p->summary = col(a, res, i, 3);
		p->category_id = mall_db_int64(res, i, 4);
		p->thumbnail = thumbnail(a, res, i, 5);
		p->created_at = col(a, res, i, 6);
		p->price = money(a, mall_db_int64(res, i, 7));
		p->available = mall_db_bool(res, i, 8);
		out->products[i] = p;
	}
	PQclear(res);
	out->total_count = total;
	out->page = page;
	out->page_size = page_size;
	*reply = &out->base;
	catalog_cache_put(ctx, gen, *reply, 0);
	return MALL_OK;
}

/* The columns sku_row reads, in its order (first column 0). */
#define SKU_COLUMNS "id, product_id, code, option_values::text, price, on_hand, reserved"
#define SKU_COLUMNS_S                                                                              \
	"s.id, s.product_id, s.code, s.option_values::text, s.price, s.on_hand, s.reserved"
#define SKU_NCOLUMNS 7

/* The SKU in row of res, whose first columns are SKU_COLUMNS. */
static mall_code
sku_row(mall_arena *a, const PGresult *res, int row, Mall__Catalog__Sku **out, mall_status *st)
{
	Mall__Catalog__Sku *s = (void *)mall_pb_new(&mall__catalog__sku__descriptor, a);
	s->id = mall_db_int64(res, row, 0);
	s->product_id = mall_db_int64(res, row, 1);
	s->code = col(a, res, row, 2);
	ProtobufCMessage **values;
	if (parse_list(a, PQgetvalue(res, row, 3), &mall__catalog__option_value__descriptor,
	               &values, &s->n_option_values, st) != MALL_OK) {
		char why[sizeof(st->message)];
		memcpy(why, st->message, sizeof(why));
		return mall_status_set(st, st->code, "sku %s: %s", s->code, why);
	}
	s->option_values = (Mall__Catalog__OptionValue **)values;
	s->price = money(a, mall_db_int64(res, row, 4));
	s->on_hand = mall_db_int64(res, row, 5);
	s->reserved = mall_db_int64(res, row, 6);
	s->available = s->on_hand > s->reserved ? s->on_hand - s->reserved : 0;
	*out = s;
	return MALL_OK;
}

static mall_code
load_skus(mall_db_conn *conn, mall_arena *a, const char *sql, const char *param,
          Mall__Catalog__Sku ***skus, size_t *n, mall_status *st)
{
	const char *params[] = {param};
	PGresult *res = mall_db_exec(conn, st, sql, 1, params);
	if (res == NULL)
		return st->code;
	int rows = PQntuples(res);
	Mall__Catalog__Sku **out = mall_arena_alloc(a, sizeof(*out) * (size_t)(rows ? rows : 1));
	for (int i = 0; i < rows; i++) {
		if (sku_row(a, res, i, &out[i], st) != MALL_OK) {
			PQclear(res);
			return st->code;
		}
	}
	PQclear(res);
	*skus = out;
	*n = (size_t)rows;
	return MALL_OK;
}

mall_code
catalog_load_sku(mall_db_conn *conn, mall_arena *a, const char *code, Mall__Catalog__Sku **out,
                 mall_status *st)
{
	Mall__Catalog__Sku **skus;
	size_t n;
	if (load_skus(conn, a, "SELECT " SKU_COLUMNS " FROM sku WHERE code = $1", code, &skus, &n,
	              st) != MALL_OK)
		return st->code;
	if (n == 0)
		return mall_status_set(st, MALL_NOT_FOUND, "sku %s not found", code);
	*out = skus[0];
	return MALL_OK;
}

mall_code
catalog_load_product(mall_db_conn *conn, mall_arena *a, int64_t id, Mall__Catalog__Product **out,
                     mall_status *st)
{
	const char *id_text = mall_arena_printf(a, "%lld", (long long)id);
	const char *params[] = {id_text};
	PGresult *res = mall_db_exec(conn, st,
	    "SELECT id, slug, name, summary, description_html, category_id, images::text,"
	    " options::text, published, " CATALOG_RFC3339_UTC("created_at")
	    " FROM product WHERE id = $1",
	    1, params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_NOT_FOUND, "product %lld not found", (long long)id);
	}
	Mall__Catalog__Product *p = (void *)mall_pb_new(&mall__catalog__product__descriptor, a);
	p->id = mall_db_int64(res, 0, 0);
	p->slug = col(a, res, 0, 1);
	p->name = col(a, res, 0, 2);
	p->summary = col(a, res, 0, 3);
	p->description_html = col(a, res, 0, 4);
	p->category_id = mall_db_int64(res, 0, 5);
	ProtobufCMessage **images, **options;
	if (parse_list(a, PQgetvalue(res, 0, 6), &mall__catalog__image__descriptor, &images,
	               &p->n_images, st) != MALL_OK ||
	    parse_list(a, PQgetvalue(res, 0, 7), &mall__catalog__option__descriptor, &options,
	               &p->n_options, st) != MALL_OK) {
		PQclear(res);
		return st->code;
	}
	p->images = (Mall__Catalog__Image **)images;
	p->options = (Mall__Catalog__Option **)options;
	p->published = mall_db_bool(res, 0, 8);
	p->created_at = col(a, res, 0, 9);
	PQclear(res);

	if (load_skus(conn, a, "SELECT " SKU_COLUMNS " FROM sku WHERE product_id = $1 ORDER BY id",
	              id_text, &p->skus, &p->n_skus, st) != MALL_OK)
		return st->code;
	int64_t min_price = 0;
	for (size_t i = 0; i < p->n_skus; i++) {
		int64_t price = p->skus[i]->price->amount;
		if (i == 0 || price < min_price)
			min_price = price;
		if (p->skus[i]->available > 0)
			p->available = true;
	}
	p->price = money(a, min_price);
	*out = p;
	return MALL_OK;
}

mall_code
catalog_get_product(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                    mall_status *st)
{
	const Mall__Catalog__GetProductRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	const char *ref = req->id_or_slug;
	if (ref[0] == '\0' || strlen(ref) > 200)
		return mall_status_field(st, "idOrSlug", "must be a product id or slug");

	const uint8_t *cached;
	size_t cached_len;
	unsigned flags;
	if (catalog_cache_lookup(ctx, &cached, &cached_len, &flags)) {
		if (!(flags & CATALOG_CACHE_PUBLISHED) && !is_admin(ctx))
			return mall_status_set(st, MALL_NOT_FOUND, "product %s not found", ref);
		mall_rpc_ctx_set_packed_reply(ctx, cached, cached_len);
		return MALL_OK;
	}
	uint64_t gen = catalog_cache_generation();
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);

	int64_t id = parse_id(ref);
	if (id == 0) {
		const char *params[] = {ref};
		PGresult *res = mall_db_exec(conn, st, "SELECT id FROM product WHERE slug = $1", 1,
		                             params);
		if (res == NULL)
			return st->code;
		if (PQntuples(res) == 1)
			id = mall_db_int64(res, 0, 0);
		PQclear(res);
		if (id == 0)
			return mall_status_set(st, MALL_NOT_FOUND, "product %s not found", ref);
	}
	Mall__Catalog__Product *p;
	if (catalog_load_product(conn, a, id, &p, st) != MALL_OK) {
		if (st->code == MALL_NOT_FOUND)
			mall_status_set(st, MALL_NOT_FOUND, "product %s not found", ref);
		return st->code;
	}
	catalog_cache_put(ctx, gen, &p->base, p->published ? CATALOG_CACHE_PUBLISHED : 0);
	if (!p->published && !is_admin(ctx))
		return mall_status_set(st, MALL_NOT_FOUND, "product %s not found", ref);
	*reply = &p->base;
	return MALL_OK;
}

mall_code
catalog_list_categories(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                        mall_status *st)
{
	(void)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	if (catalog_cache_reply(ctx))
		return MALL_OK; /* the stored bytes go out as they are */
	uint64_t gen = catalog_cache_generation();
	PGresult *res = mall_db_exec(mall_rpc_ctx_worker(ctx), st,
	    "SELECT id, slug, name, coalesce(parent_id, 0), position FROM category "
	    "ORDER BY parent_id NULLS FIRST, position, id",
	    0, NULL);
	if (res == NULL)
		return st->code;
	Mall__Catalog__ListCategoriesReply *out =
	    (void *)mall_pb_new(&mall__catalog__list_categories_reply__descriptor, a);
	int n = PQntuples(res);
	out->n_categories = (size_t)n;
	out->categories = mall_arena_alloc(a, sizeof(*out->categories) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++) {
		Mall__Catalog__Category *c =
		    (void *)mall_pb_new(&mall__catalog__category__descriptor, a);
		c->id = mall_db_int64(res, i, 0);
		c->slug = col(a, res, i, 1);
		c->name = col(a, res, i, 2);
		c->parent_id = mall_db_int64(res, i, 3);
		c->position = (int32_t)mall_db_int64(res, i, 4);
		out->categories[i] = c;
	}
	PQclear(res);
	*reply = &out->base;
	catalog_cache_put(ctx, gen, *reply, 0);
	return MALL_OK;
}

mall_code
catalog_get_stock(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                  mall_status *st)
{
	const Mall__Catalog__GetStockRequest *req = (const void *)req_;
	if (req->sku_code[0] == '\0')
		return mall_status_field(st, "skuCode", "is required");
	Mall__Catalog__Sku *sku = NULL;
	if (catalog_load_sku(mall_rpc_ctx_worker(ctx), mall_rpc_ctx_arena(ctx), req->sku_code, &sku,
	                     st) != MALL_OK)
		return st->code;
	*reply = &sku->base;
	return MALL_OK;
}

#define MAX_GET_SKUS 200

/* $1 the ids, an int8[] literal without repeats; a row for each that names a
 * SKU, in $1's order. */
static const char get_skus_sql[] =
    "SELECT " SKU_COLUMNS_S ", p.name, p.slug, p.published, (p.images -> 0)::text "
    "FROM unnest($1::bigint[]) WITH ORDINALITY AS want(id, ord) "
    "JOIN sku s ON s.id = want.id "
    "JOIN product p ON p.id = s.product_id "
    "ORDER BY want.ord";

mall_code
catalog_get_skus(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                 mall_status *st)
{
	const Mall__Catalog__GetSkusRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	if (req->n_ids > MAX_GET_SKUS)
		return mall_status_field(st, "ids", "at most %d ids, not %zu", MAX_GET_SKUS,
		                         req->n_ids);
	for (size_t i = 0; i < req->n_ids; i++) {
		if (req->ids[i] <= 0) {
			char field[32];
			snprintf(field, sizeof(field), "ids[%zu]", i);
			mall_status_field(st, field, "must be a sku id");
		}
	}
	if (st->code != MALL_OK)
		return st->code;

	Mall__Catalog__GetSkusReply *out =
	    (void *)mall_pb_new(&mall__catalog__get_skus_reply__descriptor, a);
	if (req->n_ids == 0) {
		*reply = &out->base;
		return MALL_OK;
	}

	/* "{id,id,...}", each id once (its first place); at most 200, so the
	 * quadratic look-back costs less than a hash set */
	char *ids = mall_arena_alloc(a, req->n_ids * 21 + 3);
	size_t len = 0;
	ids[len++] = '{';
	for (size_t i = 0; i < req->n_ids; i++) {
		size_t j = 0;
		while (j < i && req->ids[j] != req->ids[i])
			j++;
		if (j < i)
			continue;
		if (len > 1)
			ids[len++] = ',';
		len += (size_t)sprintf(ids + len, "%lld", (long long)req->ids[i]);
	}
	ids[len++] = '}';
	ids[len] = '\0';

	const char *params[] = {ids};
	PGresult *res = mall_db_exec(mall_rpc_ctx_worker(ctx), st, get_skus_sql, 1, params);
	if (res == NULL)
		return st->code;
	int n = PQntuples(res);
	out->skus = mall_arena_alloc(a, sizeof(*out->skus) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++) {
		Mall__Catalog__SkuView *v =
		    (void *)mall_pb_new(&mall__catalog__sku_view__descriptor, a);
		if (sku_row(a, res, i, &v->sku, st) != MALL_OK) {
			PQclear(res);
			return st->code;
		}
		v->product_name = col(a, res, i, SKU_NCOLUMNS);
		v->product_slug = col(a, res, i, SKU_NCOLUMNS + 1);
		v->purchasable = mall_db_bool(res, i, SKU_NCOLUMNS + 2);
		v->thumbnail = thumbnail(a, res, i, SKU_NCOLUMNS + 3);
		out->skus[i] = v;
	}
	out->n_skus = (size_t)n;
	PQclear(res);
	*reply = &out->base;
	return MALL_OK;
}
