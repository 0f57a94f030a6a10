/*
 * service.h: the life of a service process, shared by every services/<name>/main.c.
 *
 * mall_service_main reads the settings every service has (for service "catalog":
 * MALL_CATALOG_DB, required; MALL_CATALOG_LISTEN, _OPS_LISTEN, _WORKERS,
 * _CONTEXTS, _DB_WAIT) plus the service's own (def->read_settings), and reports
 * every bad one at once (exit status 2).  `mall-<name> migrate` applies the
 * migrations (runtime first, then the service's) and exits.  Otherwise it
 * migrates (waiting up to _DB_WAIT for the database), starts the ops endpoint,
 * a database pool with one connection per RPC worker (the worker state handlers
 * get from mall_rpc_ctx_worker), the service's own parts (def->start), and the
 * RPC server; marks itself ready; waits for SIGTERM or SIGINT; then goes
 * unready, drains the requests in flight, stops everything and exits 0.  A
 * failure to start is logged and exits 1.
 *
 * Events (outbox.h): every service answers the built-in mall.rpc.Events/Since
 * from its outbox on its RPC workers' connections.  A service whose def sets
 * events also runs the outbox relay, publishing on MALL_<NAME>_EVENTS_LISTEN
 * (default: the RPC address with port + 1000, e.g. tcp://127.0.0.1:8411 for
 * tcp://127.0.0.1:7411; ipc://path gives ipc://path.events).
 */
#ifndef MALL_SERVICE_H
#define MALL_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "migrate.h"
#include "rpc.h"

typedef struct mall_service_def {
	const char *name;               /* "catalog": logs, settings, ops */
	const char *default_listen;     /* "tcp://127.0.0.1:7401" */
	const char *default_ops_listen; /* "127.0.0.1:9401" */
	int default_workers;
	int max_workers;
	const mall_migration_set *migrations; /* the service's own; runtime goes first */
	const ProtobufCServiceDescriptor *rpc;
	const mall_rpc_method *methods;
	size_t nmethods;
	/* runs MALL_RPC_MUTATING methods; NULL: mall_idem_mutate (idem.h) */
	mall_rpc_mutation_hook mutate;
	/* writes events to its outbox (mall_outbox_add): run the relay */
	bool events;
	/* optional: reads the service's own settings into its own variables */
	void (*read_settings)(mall_config *cfg);
	/* optional: starts the service's own parts once its database is migrated
	 * (db is its conninfo); stop undoes it after the RPC server is gone */
	mall_code (*start)(const char *db, mall_status *st);
	void (*stop)(void);
} mall_service_def;

/* mall_service_main: runs the service; returns main's exit status. */
int mall_service_main(const mall_service_def *def, int argc, char **argv);

#endif
