/*
 * catalog.h: the catalog service's internal interface (mall-catalog).
 *
 * Areas: catalog_read.c answers the storefront (list, detail, categories,
 * stock) and the cart (GetSkus), catalog_write.c the admin-side writes
 * (categories, products, SKUs, stock), catalog_reservation.c the stock an
 * order holds from checkout to payment, catalog_cache.c keeps read replies in
 * memory, valid while the catalog's generation is unchanged.  main.c wires
 * them to the runtime.
 *
 * Every handler runs on an RPC worker thread whose state is the worker's own
 * mall_db_conn (so lib/idem.c can wrap the mutating ones in a transaction).
 */
#ifndef MALL_CATALOG_H
#define MALL_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "rpc.h"
#include "status.h"

#include "mall/catalog.pb-c.h"

/* SQL: the timestamptz column col as RFC 3339 text in UTC, to the second */
#define CATALOG_RFC3339_UTC(col)                                                                   \
	"to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* ---- catalog_read.c ---- */
mall_code catalog_list_products(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                ProtobufCMessage **reply, mall_status *st);
mall_code catalog_get_product(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                              ProtobufCMessage **reply, mall_status *st);
mall_code catalog_list_categories(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                  ProtobufCMessage **reply, mall_status *st);
mall_code catalog_get_stock(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                            ProtobufCMessage **reply, mall_status *st);
/* catalog_get_skus: GetSkus, for the cart: the SKUs with the request's ids
 * (at most 200; repeats answered once, unknown ids left out, request order
 * kept) with their product's name, slug, published flag and first image.
 * Never cached: stock is as committed when the call is answered. */
mall_code catalog_get_skus(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                           mall_status *st);
/* catalog_load_product: the product with id and its SKUs, published or not,
 * read on conn into arena a.  NOT_FOUND when there is none. */
mall_code catalog_load_product(mall_db_conn *conn, mall_arena *a, int64_t id,
                               Mall__Catalog__Product **out, mall_status *st);
/* catalog_load_sku: the SKU whose code is code. */
mall_code catalog_load_sku(mall_db_conn *conn, mall_arena *a, const char *code,
                           Mall__Catalog__Sku **out, mall_status *st);

/* ---- catalog_write.c (MALL_RPC_MUTATING: run inside lib/idem.c's transaction) ---- */
mall_code catalog_create_category(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                  ProtobufCMessage **reply, mall_status *st);
mall_code catalog_create_product(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                 ProtobufCMessage **reply, mall_status *st);
mall_code catalog_update_product(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                 ProtobufCMessage **reply, mall_status *st);
mall_code catalog_create_sku(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                             ProtobufCMessage **reply, mall_status *st);
mall_code catalog_set_stock(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                            ProtobufCMessage **reply, mall_status *st);

/* ---- catalog_reservation.c: stock reservations by order id ---- */

/* catalog_reserve_stock: ReserveStock (MALL_RPC_MUTATING): all the lines or
 * none; a repeat for the order answers its reservation as it is (same lines)
 * or is FAILED_PRECONDITION reservation_mismatch; a line over the available
 * stock is FAILED_PRECONDITION out_of_stock (details skuId, available), an
 * unknown SKU NOT_FOUND (detail skuId). */
mall_code catalog_reserve_stock(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                ProtobufCMessage **reply, mall_status *st);
/* catalog_commit_reservation, catalog_release_reservation,
 * catalog_restock_reservation: CommitReservation (reserved -> committed),
 * ReleaseReservation (reserved -> released), RestockReservation (committed ->
 * restocked), all MALL_RPC_MUTATING; one already done answers the reservation
 * as it is, an impossible one is FAILED_PRECONDITION with a reason
 * (reservation_released, reservation_committed, reservation_not_committed);
 * no reservation is NOT_FOUND. */
mall_code catalog_commit_reservation(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                     ProtobufCMessage **reply, mall_status *st);
mall_code catalog_release_reservation(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                      ProtobufCMessage **reply, mall_status *st);
mall_code catalog_restock_reservation(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                      ProtobufCMessage **reply, mall_status *st);
/* catalog_get_reservation: GetReservation, read fresh (never cached). */
mall_code catalog_get_reservation(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                  ProtobufCMessage **reply, mall_status *st);

/* ---- catalog_cache.c ---- */

/* catalog_cache_start: starts the listener that learns of other instances'
 * writes (LISTEN catalog_version on its own connection to conninfo). */
mall_code catalog_cache_start(const char *conninfo, size_t max_entries, mall_status *st);
void catalog_cache_stop(void);
/* catalog_cache_generation: the current generation; read it before reading the
 * database for a reply that will be cached. */
uint64_t catalog_cache_generation(void);
/* catalog_cache_invalidate: a write committed (or may have): drop everything. */
void catalog_cache_invalidate(void);
/* catalog_cache_lookup: the packed reply stored for (method, request bytes) at
 * the current generation, copied into ctx's arena: true with *data, *len and
 * *flags (as given to catalog_cache_put; flags may be NULL), false if none. */
bool catalog_cache_lookup(mall_rpc_ctx *ctx, const uint8_t **data, size_t *len, unsigned *flags);
/* catalog_cache_reply: on a hit, makes the stored bytes ctx's reply (with
 * mall_rpc_ctx_set_packed_reply, so the handler returns MALL_OK with *reply
 * NULL) and returns true; false if none. */
bool catalog_cache_reply(mall_rpc_ctx *ctx);
/* catalog_cache_put: stores reply for (method, request bytes), read at gen,
 * with flags for catalog_cache_lookup. */
void catalog_cache_put(mall_rpc_ctx *ctx, uint64_t gen, const ProtobufCMessage *reply,
                       unsigned flags);
enum {
	CATALOG_CACHE_PUBLISHED = 1 << 0, /* GetProduct: the product is published */
};
/* catalog_bump_version: in a write's transaction: bumps catalog_version and
 * notifies every instance after commit. */
mall_code catalog_bump_version(mall_db_conn *conn, mall_status *st);

#endif
