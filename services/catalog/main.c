/*
 * main.c: mall-catalog, the catalog service.  The process life (settings,
 * migrations, database pool, RPC server, ops endpoint, drain on SIGTERM) is
 * lib/service.c's; this file names the methods and wires the reply cache.
 *
 *   mall-catalog            serve
 *   mall-catalog migrate    apply pending migrations and exit
 */
#include "catalog.h"
#include "idem.h"
#include "service.h"

extern const mall_migration_set mall_migrations_catalog;

static const mall_rpc_method methods[] = {
    {"ListProducts", catalog_list_products, 0},
    {"GetProduct", catalog_get_product, 0},
    {"ListCategories", catalog_list_categories, 0},
    {"GetStock", catalog_get_stock, 0},
    {"GetSkus", catalog_get_skus, 0},
    {"CreateCategory", catalog_create_category, MALL_RPC_MUTATING},
    {"CreateProduct", catalog_create_product, MALL_RPC_MUTATING},
    {"UpdateProduct", catalog_update_product, MALL_RPC_MUTATING},
    {"CreateSku", catalog_create_sku, MALL_RPC_MUTATING},
    {"SetStock", catalog_set_stock, MALL_RPC_MUTATING},
    {"GetReservation", catalog_get_reservation, 0},
    {"ReserveStock", catalog_reserve_stock, MALL_RPC_MUTATING},
    {"CommitReservation", catalog_commit_reservation, MALL_RPC_MUTATING},
    {"ReleaseReservation", catalog_release_reservation, MALL_RPC_MUTATING},
    {"RestockReservation", catalog_restock_reservation, MALL_RPC_MUTATING},
};

static size_t cache_entries;

static void
read_settings(mall_config *cfg)
{
	cache_entries = (size_t)mall_config_int(cfg, "MALL_CATALOG_CACHE_ENTRIES", 4096, 0, 1000000);
}

static mall_code
start(const char *db, mall_status *st)
{
	return catalog_cache_start(db, cache_entries, st);
}

/* Records the idempotency key with the write (lib/idem.c), then, once the write
 * is committed and before the caller hears of it, drops this instance's cache. */
static mall_code
mutate(mall_rpc_ctx *ctx, mall_rpc_handler fn, const ProtobufCMessage *req,
       ProtobufCMessage **reply, mall_status *st)
{
	mall_code code = mall_idem_mutate(ctx, fn, req, reply, st);
	if (code == MALL_OK)
		catalog_cache_invalidate();
	return code;
}

static const mall_service_def catalog = {
    .name = "catalog",
    .default_listen = "tcp://127.0.0.1:7401",
    .default_ops_listen = "127.0.0.1:9401",
    .default_workers = 4,
    .max_workers = 256,
    .migrations = &mall_migrations_catalog,
    .rpc = &mall__catalog__catalog__descriptor,
    .methods = methods,
    .nmethods = sizeof(methods) / sizeof(methods[0]),
    .mutate = mutate,
    .read_settings = read_settings,
    .start = start,
    .stop = catalog_cache_stop,
};

int
main(int argc, char **argv)
{
	return mall_service_main(&catalog, argc, argv);
}
