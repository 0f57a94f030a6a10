/*
 * main.c: mall-order, the order service.  The process life (settings,
 * migrations, database pool, RPC server, outbox relay, ops endpoint, drain on
 * SIGTERM) is lib/service.c's; this file names the methods, holds what the
 * handlers share (the peers' clients, a side pool for the number
 * transactions, the payment windows), runs the sweep thread, starts the
 * payment saga's consumer (order_saga.c) and empties a paid order's cart once
 * the payment is committed.
 *
 *   mall-order            serve
 *   mall-order migrate    apply pending migrations and exit
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "consumer.h"
#include "idem.h"
#include "log.h"
#include "order.h"
#include "outbox.h"
#include "service.h"
#include "sweeper.h"

extern const mall_migration_set mall_migrations_order;

#define MINUTE_MS (INT64_C(60) * 1000)
#define HOUR_MS (60 * MINUTE_MS)
#define DAY_MS (24 * HOUR_MS)
#define SIDE_CONNS 4

static const mall_rpc_method methods[] = {
    {"PlaceOrder", order_place, MALL_RPC_MUTATING},
    {"GetOrder", order_get, 0},
    {"ListOrders", order_list, 0},
    {"CancelOrder", order_cancel, MALL_RPC_MUTATING},
    {"ChangeStatus", order_change_status, MALL_RPC_MUTATING},
    {"RefundOrder", order_refund, MALL_RPC_MUTATING}, /* the back office's */
};

/* settings, read before start */
static const char *catalog_addrs, *cart_addrs, *member_addrs;
static const char *payment_addrs, *payment_events_addrs;

/* what the handlers share: set by start, read-only while serving */
static order_env env;

const order_env *
order_env_get(void)
{
	return &env;
}

static void
read_settings(mall_config *cfg)
{
	catalog_addrs = mall_config_str(cfg, "MALL_CATALOG_ADDRS", "tcp://127.0.0.1:7401");
	member_addrs = mall_config_str(cfg, "MALL_MEMBER_ADDRS", "tcp://127.0.0.1:7411");
	cart_addrs = mall_config_str(cfg, "MALL_CART_ADDRS", "tcp://127.0.0.1:7421");
	payment_addrs = mall_config_str(cfg, "MALL_PAYMENT_ADDRS", "tcp://127.0.0.1:7441");
	/* "": derived from MALL_PAYMENT_ADDRS at start */
	payment_events_addrs = mall_config_str(cfg, "MALL_PAYMENT_EVENTS_ADDRS", "");
	env.rpc_timeout_ms = mall_config_duration_ms(cfg, "MALL_RPC_TIMEOUT", 3000, 10, 600 * 1000);
	/* the catalog takes expiries up to 30 days ahead */
	env.card_window_ms = mall_config_duration_ms(cfg, "MALL_ORDER_CARD_WINDOW", 30 * MINUTE_MS,
	                                             1000, 30 * DAY_MS);
	env.deposit_window_ms = mall_config_duration_ms(cfg, "MALL_ORDER_DEPOSIT_WINDOW",
	                                                72 * HOUR_MS, 1000, 30 * DAY_MS);
	env.sweep_interval_ms =
	    mall_config_duration_ms(cfg, "MALL_ORDER_SWEEP_INTERVAL", 30000, 100, DAY_MS);
	env.saga_lanes =
	    (int)mall_config_int(cfg, "MALL_ORDER_SAGA_LANES", 8, 1, MALL_CONSUMER_LANES_MAX);
	/* a placement's calls each end within their deadline: after a few of
	 * them, an attempt nobody holds is certainly abandoned */
	env.attempt_grace_ms = 2 * env.rpc_timeout_ms + 1000;
}

/* ---- the sweep thread ---- */

static mall_sweeper *sweeper;

static int
sweep_pass(mall_db_conn *db, void *arg)
{
	(void)arg;
	return order_sweep_once(db);
}

static mall_code
start_sweeper(const char *db, mall_status *st)
{
	return mall_sweeper_start(&sweeper, "order", db, env.sweep_interval_ms, sweep_pass, NULL, st);
}

static void
stop_sweeper(void)
{
	mall_sweeper_stop(sweeper);
	sweeper = NULL;
}

static void stop(void);

/* start_saga: the consumer of the payment service's events (order_saga.c). */
static mall_code
start_saga(const char *db, mall_status *st)
{
	static char derived[1024];
	const char *events = payment_events_addrs;
	if (*events == '\0') {
		if (mall_events_addrs_from_rpc(payment_addrs, derived, sizeof(derived)) == 0)
			events = derived;
		else
			mall_log_warn(NULL,
			              "could not derive the payment relays' addresses from %s: "
			              "pulling payment events every second (set "
			              "MALL_PAYMENT_EVENTS_ADDRS)",
			              payment_addrs);
	}
	return order_saga_start(db, env.payment, events, env.saga_lanes, st);
}

static mall_code
start(const char *db, mall_status *st)
{
	mall_rpc_client_opts copts = {.timeout_ms = env.rpc_timeout_ms};
	if (copts.timeout_ms < 1000)
		copts.try_timeout_ms = copts.timeout_ms;
	if (mall_rpc_client_new(&env.catalog, "catalog", catalog_addrs, &copts, st) != MALL_OK ||
	    mall_rpc_client_new(&env.cart, "cart", cart_addrs, &copts, st) != MALL_OK ||
	    mall_rpc_client_new(&env.member, "member", member_addrs, &copts, st) != MALL_OK ||
	    mall_rpc_client_new(&env.payment, "payment", payment_addrs, &copts, st) != MALL_OK ||
	    mall_db_open(&env.side, db, SIDE_CONNS, st) != MALL_OK ||
	    start_sweeper(db, st) != MALL_OK || start_saga(db, st) != MALL_OK) {
		stop();
		return st->code;
	}
	mall_log_info(NULL,
	              "catalog at %s, cart at %s, member at %s, payment at %s; payment windows "
	              "%llds (card), %llds (deposit); sweep every %lldms",
	              catalog_addrs, cart_addrs, member_addrs, payment_addrs,
	              (long long)(env.card_window_ms / 1000),
	              (long long)(env.deposit_window_ms / 1000), (long long)env.sweep_interval_ms);
	return MALL_OK;
}

static void
stop(void)
{
	order_saga_stop(); /* first: its events call the catalog and the cart */
	stop_sweeper();
	mall_db_close(env.side);
	env.side = NULL;
	mall_rpc_client_free(env.catalog);
	mall_rpc_client_free(env.cart);
	mall_rpc_client_free(env.member);
	mall_rpc_client_free(env.payment);
	env.catalog = env.cart = env.member = env.payment = NULL;
}

/* clear_cart: the cart a paid order came from, emptied after the change to
 * paid committed (order_clear_cart; a guest order's cart by its guest id). */
static void
clear_cart(mall_rpc_ctx *ctx, const Mall__Order__Order *o)
{
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	const char *trace = mall_rpc_ctx_trace_id(ctx);
	const char *guest_id = "";
	if (o->member_id == 0) {
		mall_status st;
		mall_status_clear(&st);
		const char *params[1] = {o->number};
		PGresult *res =
		    mall_db_exec(mall_rpc_ctx_worker(ctx), &st,
		                 "SELECT guest_id FROM orders WHERE number = $1", 1, params);
		if (res != NULL && PQntuples(res) == 1)
			guest_id = mall_arena_strdup(a, PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	order_clear_cart(a, trace, o->number, order_clear_request(a, o, guest_id));
}

/* The mutation hook: lib/idem.c's, then, once a change to paid committed,
 * the order's cart is emptied (best effort: a failure leaves the shopper a
 * full cart, never an unpaid order). */
static mall_code
mutate(mall_rpc_ctx *ctx, mall_rpc_handler fn, const ProtobufCMessage *req,
       ProtobufCMessage **reply, mall_status *st)
{
	mall_code rc = mall_idem_mutate(ctx, fn, req, reply, st);
	if (rc == MALL_OK && *reply != NULL &&
	    req->descriptor == &mall__order__change_status_request__descriptor &&
	    ((const Mall__Order__ChangeStatusRequest *)req)->to == MALL__ORDER__ORDER_STATUS__PAID)
		clear_cart(ctx, (const Mall__Order__Order *)*reply);
	return rc;
}

/* A placement waits on the cart, the member service and the catalog while
 * it holds its worker, so the order service runs more workers: 16. */
static const mall_service_def order = {
    .name = "order",
    .default_listen = "tcp://127.0.0.1:7431",
    .default_ops_listen = "127.0.0.1:9431",
    .default_workers = 16,
    .max_workers = 256,
    .migrations = &mall_migrations_order,
    .rpc = &mall__order__order_service__descriptor,
    .methods = methods,
    .nmethods = sizeof(methods) / sizeof(methods[0]),
    .mutate = mutate,
    .events = true,
    .read_settings = read_settings,
    .start = start,
    .stop = stop,
};

int
main(int argc, char **argv)
{
	return mall_service_main(&order, argc, argv);
}
