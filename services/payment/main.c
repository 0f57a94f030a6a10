/*
 * main.c: mall-payment, the payment service.  The process life (settings,
 * migrations, database pool, RPC server, outbox relay, ops endpoint, drain on
 * SIGTERM) is lib/service.c's; this file names the methods, holds what the
 * handlers share (the order service's client, the PG client and the pool its
 * exchanges are recorded on) and runs the recovery sweep's thread
 * (payment_sweep.c).
 *
 *   mall-payment            serve
 *   mall-payment migrate    apply pending migrations and exit
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "payment.h"
#include "service.h"
#include "sweeper.h"

extern const mall_migration_set mall_migrations_payment;

#define SIDE_CONNS 4
#define DAY_MS (INT64_C(24) * 3600 * 1000)

static const mall_rpc_method methods[] = {
    {"Confirm", payment_confirm, 0},                /* idempotent by order number */
    {"DepositWebhook", payment_deposit_webhook, 0}, /* idempotent by the payment's state */
    {"GetPayment", payment_get, 0},
    {"Cancel", payment_cancel, MALL_RPC_MUTATING},
};

static const char *order_addrs, *pg_url, *pg_secret;
static int64_t pg_timeout_ms, sweep_interval_ms, sweep_grace_ms;
static payment_env env;

const payment_env *
payment_env_get(void)
{
	return &env;
}

static void
read_settings(mall_config *cfg)
{
	order_addrs = mall_config_str(cfg, "MALL_ORDER_ADDRS", "tcp://127.0.0.1:7431");
	pg_url = mall_config_str(cfg, "MALL_PAYMENT_PG_URL", "http://127.0.0.1:8091");
	if (strncmp(pg_url, "http://", 7) != 0 && strncmp(pg_url, "https://", 8) != 0)
		mall_config_error(cfg, "MALL_PAYMENT_PG_URL: \"%s\" is not an http(s) URL", pg_url);
	/* a secret: from the environment only, no default; required to serve
	 * (checked at start, so `mall-payment migrate` runs without it) */
	pg_secret = mall_config_str(cfg, "MALL_PAYMENT_PG_SECRET_KEY", "");
	env.client_key = mall_config_str(cfg, "MALL_PAYMENT_PG_CLIENT_KEY", "test_ck_sandbox");
	pg_timeout_ms = mall_config_duration_ms(cfg, "MALL_PAYMENT_PG_TIMEOUT", 10000, 100, 120000);
	env.rpc_timeout_ms = mall_config_duration_ms(cfg, "MALL_RPC_TIMEOUT", 3000, 10, 600 * 1000);
	sweep_interval_ms =
	    mall_config_duration_ms(cfg, "MALL_PAYMENT_SWEEP_INTERVAL", 30000, 100, DAY_MS);
	/* a Confirm holds its row locked while the PG answers, and the sweep
	 * skips locked rows; the grace only spares the PG a lookup of a confirm
	 * the shopper is about to retry: a few calls' deadlines past the PG's */
	sweep_grace_ms = mall_config_duration_ms(cfg, "MALL_PAYMENT_SWEEP_GRACE",
	                                         pg_timeout_ms + 3 * env.rpc_timeout_ms, 0, DAY_MS);
}

/* ---- the sweep thread ---- */

static mall_sweeper *sweeper;

static bool
sweep_stopping(void)
{
	return mall_sweeper_stopping(sweeper);
}

static int
sweep_pass(mall_db_conn *db, void *arg)
{
	(void)arg;
	return payment_sweep_once(db, sweep_grace_ms, sweep_stopping);
}

static mall_code
start_sweeper(const char *db, mall_status *st)
{
	return mall_sweeper_start(&sweeper, "payment", db, sweep_interval_ms, sweep_pass, NULL, st);
}

static void
stop_sweeper(void)
{
	mall_sweeper_stop(sweeper);
	sweeper = NULL;
}

static void stop(void);

static mall_code
start(const char *db, mall_status *st)
{
	if (!*pg_secret)
		return mall_status_set(
		    st, MALL_FAILED_PRECONDITION,
		    "MALL_PAYMENT_PG_SECRET_KEY is not set: the PG's secret key is "
		    "required");
	mall_rpc_client_opts copts = {.timeout_ms = env.rpc_timeout_ms};
	if (copts.timeout_ms < 1000)
		copts.try_timeout_ms = copts.timeout_ms;
	if (pg_toss_global_init(st) != MALL_OK ||
	    mall_rpc_client_new(&env.order, "order", order_addrs, &copts, st) != MALL_OK ||
	    mall_db_open(&env.side, db, SIDE_CONNS, st) != MALL_OK) {
		stop();
		return st->code;
	}
	pg_toss_opts po = {.url = pg_url,
	                   .secret_key = pg_secret,
	                   .connect_timeout_ms = 3000,
	                   .timeout_ms = pg_timeout_ms,
	                   .record = env.side};
	if (pg_toss_new(&env.pg, &po, st) != MALL_OK || start_sweeper(db, st) != MALL_OK) {
		stop();
		return st->code;
	}
	mall_log_info(NULL,
	              "order at %s; PG at %s (timeout %lldms); sweep every %lldms of payments "
	              "confirming for %lldms",
	              order_addrs, pg_url, (long long)pg_timeout_ms, (long long)sweep_interval_ms,
	              (long long)sweep_grace_ms);
	return MALL_OK;
}

static void
stop(void)
{
	stop_sweeper(); /* first: it uses everything below */
	pg_toss_free(env.pg);
	env.pg = NULL;
	mall_rpc_client_free(env.order);
	env.order = NULL;
	mall_db_close(env.side);
	env.side = NULL;
}

/* A confirm holds its worker while the PG answers (up to the PG timeout), so
 * the payment service runs more workers: 16. */
static const mall_service_def payment = {
    .name = "payment",
    .default_listen = "tcp://127.0.0.1:7441",
    .default_ops_listen = "127.0.0.1:9441",
    .default_workers = 16,
    .max_workers = 256,
    .migrations = &mall_migrations_payment,
    .rpc = &mall__payment__payment_service__descriptor,
    .methods = methods,
    .nmethods = sizeof(methods) / sizeof(methods[0]),
    .events = true,
    .read_settings = read_settings,
    .start = start,
    .stop = stop,
};

int
main(int argc, char **argv)
{
	return mall_service_main(&payment, argc, argv);
}
