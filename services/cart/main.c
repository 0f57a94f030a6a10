/*
 * main.c: mall-cart, the cart service.  The process life (settings,
 * migrations, database pool, RPC server, ops endpoint, drain on SIGTERM) is
 * lib/service.c's; this file names the methods, holds what the handlers
 * share (the catalog client, the Redis connections, the guest cart's
 * lifetime) and decides how each change is made idempotent.
 *
 *   mall-cart            serve
 *   mall-cart migrate    apply pending migrations and exit
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cart.h"
#include "config.h"
#include "idem.h"
#include "log.h"
#include "service.h"

extern const mall_migration_set mall_migrations_cart;

#define DAY_MS (INT64_C(24) * 3600 * 1000)

static const mall_rpc_method methods[] = {
    {"GetCart", cart_get, 0},
    {"AddItem", cart_add_item, MALL_RPC_MUTATING},
    {"SetItemQuantity", cart_set_item_quantity, MALL_RPC_MUTATING},
    {"RemoveItem", cart_remove_item, MALL_RPC_MUTATING},
    {"ApplyCoupon", cart_apply_coupon, MALL_RPC_MUTATING},
    {"RemoveCoupon", cart_remove_coupon, MALL_RPC_MUTATING},
    {"MergeGuestCart", cart_merge_guest, MALL_RPC_MUTATING},
    {"ClearCart", cart_clear, MALL_RPC_MUTATING},
    {"GetShippingPolicy", cart_get_shipping_policy, 0},
    {"SetShippingPolicy", cart_set_shipping_policy, MALL_RPC_MUTATING},
    {"CreateCoupon", cart_create_coupon, MALL_RPC_MUTATING},
    {"ListCoupons", cart_list_coupons, 0},
    {"UpdateCoupon", cart_update_coupon, MALL_RPC_MUTATING},
    {"RedeemCoupon", cart_redeem_coupon, MALL_RPC_MUTATING},
    {"ReleaseCoupon", cart_release_coupon, MALL_RPC_MUTATING},
    {"CreateGiftRule", cart_create_gift_rule, MALL_RPC_MUTATING},
    {"ListGiftRules", cart_list_gift_rules, 0},
    {"SetGiftRuleActive", cart_set_gift_rule_active, MALL_RPC_MUTATING},
};

/* settings, read before start */
static const char *catalog_addrs;
static const char *redis_addr;
static int64_t redis_conns;

/* what the handlers share: set by start, read-only while serving */
static cart_env env;
static atomic_size_t next_redis;

const cart_env *
cart_env_get(void)
{
	return &env;
}

mall_redis *
cart_redis(void)
{
	size_t i = atomic_fetch_add_explicit(&next_redis, 1, memory_order_relaxed);
	return env.redis[i % env.nredis];
}

static void
read_settings(mall_config *cfg)
{
	catalog_addrs = mall_config_str(cfg, "MALL_CATALOG_ADDRS", "tcp://127.0.0.1:7401");
	redis_addr = mall_config_str(cfg, "MALL_REDIS_ADDR", "127.0.0.1:6379");
	env.guest_ttl_ms =
	    mall_config_duration_ms(cfg, "MALL_CART_GUEST_TTL", 30 * DAY_MS, 1000, 3650 * DAY_MS);
	env.rpc_timeout_ms = mall_config_duration_ms(cfg, "MALL_RPC_TIMEOUT", 3000, 10, 600 * 1000);
	redis_conns = mall_config_int(cfg, "MALL_CART_REDIS_CONNS", 4, 1, 256);
}

static mall_code
start(const char *db, mall_status *st)
{
	(void)db;
	mall_rpc_client_opts copts = {.timeout_ms = env.rpc_timeout_ms};
	if (copts.timeout_ms < 1000)
		copts.try_timeout_ms = copts.timeout_ms;
	if (mall_rpc_client_new(&env.catalog, "catalog", catalog_addrs, &copts, st) != MALL_OK)
		return st->code;
	env.nredis = (size_t)redis_conns;
	env.redis = mall_xcalloc(env.nredis, sizeof(*env.redis));
	for (size_t i = 0; i < env.nredis; i++)
		env.redis[i] = mall_redis_new(redis_addr, 0);
	mall_log_info(NULL, "catalog at %s, guest carts in redis at %s (%zu connections)",
	              catalog_addrs, redis_addr, env.nredis);
	return MALL_OK;
}

static void
stop(void)
{
	for (size_t i = 0; i < env.nredis; i++)
		mall_redis_free(env.redis[i]);
	free(env.redis);
	env.redis = NULL;
	env.nredis = 0;
	mall_rpc_client_free(env.catalog);
	env.catalog = NULL;
}

/* The CartRef of a request: its field "cart" of type mall.cart.CartRef, or
 * NULL when it has none (MergeGuestCart, the promotion RPCs). */
static const Mall__Cart__CartRef *
request_cart(const ProtobufCMessage *req)
{
	const ProtobufCFieldDescriptor *f =
	    protobuf_c_message_descriptor_get_field_by_name(req->descriptor, "cart");
	if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE || f->label != PROTOBUF_C_LABEL_NONE ||
	    f->descriptor != &mall__cart__cart_ref__descriptor)
		return NULL;
	return *(const Mall__Cart__CartRef *const *)((const char *)req + f->offset);
}

/* The mutation hook.  A guest cart lives in Redis, where the script that
 * changes it also records the idempotency key (cart_store.c): no database
 * transaction is opened for it.  Everything else records the key with its
 * change through lib/idem.c.  A merge deletes the guest cart once the merge
 * committed (or was committed before: a retry deletes what a crash left);
 * merged_guest_cart makes a merge of a cart left behind a no-op, so a failed
 * delete is only logged. */
static mall_code
mutate(mall_rpc_ctx *ctx, mall_rpc_handler fn, const ProtobufCMessage *req,
       ProtobufCMessage **reply, mall_status *st)
{
	const Mall__Cart__CartRef *ref = request_cart(req);
	if (ref != NULL && cart_ref_is_guest(ref)) {
		const char *key = mall_rpc_ctx_idempotency_key(ctx);
		if (key == NULL || *key == '\0')
			return mall_status_set(
			    st, MALL_INVALID_ARGUMENT,
			    "method %s changes state and needs an idempotency key",
			    mall_rpc_ctx_method(ctx));
		*reply = NULL;
		mall_code rc = fn(ctx, req, reply, st);
		if (rc == MALL_OK && *reply == NULL)
			rc = mall_status_set(st, MALL_INTERNAL, "method %s returned no reply",
			                     mall_rpc_ctx_method(ctx));
		return rc;
	}
	mall_code rc = mall_idem_mutate(ctx, fn, req, reply, st);
	if (rc == MALL_OK && req->descriptor == &mall__cart__merge_guest_cart_request__descriptor) {
		const Mall__Cart__MergeGuestCartRequest *m = (const void *)req;
		mall_status dst;
		mall_status_clear(&dst);
		if (cart_store_guest_delete(m->guest_id, &dst) != MALL_OK)
			mall_log_warn(mall_rpc_ctx_trace_id(ctx),
			              "guest cart %s merged into member %lld's but not deleted: %s",
			              m->guest_id, (long long)m->member_id, dst.message);
	}
	return rc;
}

/* A cart call waits on the catalog (GetSkus) while it holds its worker, so
 * the cart runs more workers than the catalog: 8, each with one connection. */
static const mall_service_def cart = {
    .name = "cart",
    .default_listen = "tcp://127.0.0.1:7421",
    .default_ops_listen = "127.0.0.1:9421",
    .default_workers = 8,
    .max_workers = 256,
    .migrations = &mall_migrations_cart,
    .rpc = &mall__cart__cart_service__descriptor,
    .methods = methods,
    .nmethods = sizeof(methods) / sizeof(methods[0]),
    .mutate = mutate,
    .read_settings = read_settings,
    .start = start,
    .stop = stop,
};

int
main(int argc, char **argv)
{
	return mall_service_main(&cart, argc, argv);
}
