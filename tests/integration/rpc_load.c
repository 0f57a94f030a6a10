/*
 * rpc_load: a load generator for the integration tests of services.
 *
 *   rpc_load --addrs tcp://h:p,tcp://h:p --method ping|list-products
 *            --threads N --seconds S [--report-every-ms M] [--service NAME]
 *
 * N threads call Ping (mall.rpc.Rpc/Ping) or mall.catalog.Catalog/ListProducts
 * with an empty request through one mall_rpc_client for S seconds, then one
 * JSON object goes to stdout:
 *
 *   {"calls":1234,"ok":1234,"failures":0,"errors":{"UNAVAILABLE":0},
 *    "per_window":[410,402,422],"ok_per_window":[410,402,422]}
 *
 * per_window counts the calls that ended in each window of M ms (default
 * 1000), answered or not; ok_per_window only the answered ones; errors counts
 * failures by code name (UNAVAILABLE and DEADLINE_EXCEEDED always, others when
 * they happened).  Calls that end after the last window count in "calls"
 * only.  Logs go to stderr.  Exit status 0 when the run
 * happened (whatever the calls did), 2 on bad arguments.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "mall/catalog.pb-c.h"
#include "mall/rpc.pb-c.h"
#include "rpc.h"

typedef struct run {
	mall_rpc_client *cli;
	bool list_products;
	atomic_bool stop;
	atomic_long calls;
	atomic_long ok;
	atomic_long by_code[MALL_CODE_MAX + 1];
} run;

static void
usage(void)
{
	fprintf(stderr, "usage: rpc_load --addrs URL[,URL...] --method ping|list-products "
	                "--threads N --seconds S [--report-every-ms M] [--service NAME]\n");
	exit(2);
}

static void *
caller(void *arg)
{
	run *r = arg;
	mall_arena *a = mall_arena_new();
	while (!atomic_load(&r->stop)) {
		mall_status st;
		ProtobufCMessage *rep;
		mall_code code;
		if (r->list_products) {
			Mall__Catalog__ListProductsRequest req =
			    MALL__CATALOG__LIST_PRODUCTS_REQUEST__INIT;
			code = mall_rpc_call(r->cli, &mall__catalog__catalog__descriptor,
			                     "ListProducts", &req.base, &rep, a, NULL, &st);
		} else {
			Mall__Rpc__PingRequest req = MALL__RPC__PING_REQUEST__INIT;
			code = mall_rpc_call(r->cli, &mall__rpc__rpc__descriptor, "Ping", &req.base,
			                     &rep, a, NULL, &st);
		}
		if (code == MALL_OK)
			atomic_fetch_add(&r->ok, 1);
		else if ((int)code >= 0 && code <= MALL_CODE_MAX)
			atomic_fetch_add(&r->by_code[code], 1);
		atomic_fetch_add(&r->calls, 1);
		mall_arena_reset(a);
	}
	mall_arena_free(a);
	return NULL;
}

static long
arg_long(const char *v, long min, long max)
{
	char *end;
	long n = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || n < min || n > max)
		usage();
	return n;
}

int
main(int argc, char **argv)
{
	const char *addrs = NULL, *method = NULL, *service = NULL;
	long threads = 0, seconds = 0, every = 1000;
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--addrs") == 0)
			addrs = argv[++i];
		else if (strcmp(argv[i], "--method") == 0)
			method = argv[++i];
		else if (strcmp(argv[i], "--threads") == 0)
			threads = arg_long(argv[++i], 1, 4096);
		else if (strcmp(argv[i], "--seconds") == 0)
			seconds = arg_long(argv[++i], 1, 86400);
		else if (strcmp(argv[i], "--report-every-ms") == 0)
			every = arg_long(argv[++i], 10, 3600000);
		else if (strcmp(argv[i], "--service") == 0)
			service = argv[++i];
		else
			usage();
	}
	if (addrs == NULL || method == NULL || threads == 0 || seconds == 0)
		usage();
	run r;
	memset(&r, 0, sizeof(r));
	if (strcmp(method, "list-products") == 0)
		r.list_products = true;
	else if (strcmp(method, "ping") != 0)
		usage();
	if (service == NULL)
		service = r.list_products ? "catalog" : "peer";

	mall_log_init("rpc_load");
	mall_log_set_fd(2); /* stdout carries the one JSON result */
	mall_status st;
	if (mall_rpc_client_new(&r.cli, service, addrs, NULL, &st) != MALL_OK) {
		fprintf(stderr, "rpc_load: %s\n", st.message);
		return 2;
	}

	pthread_t *t = calloc((size_t)threads, sizeof(pthread_t));
	for (long i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, caller, &r);

	long nwin = (seconds * 1000 + every - 1) / every;
	long *win = calloc((size_t)nwin, sizeof(long));
	long *okwin = calloc((size_t)nwin, sizeof(long));
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	long last = 0, lastok = 0;
	for (long w = 0; w < nwin; w++) {
		long ms = w == nwin - 1 ? seconds * 1000 - every * w : every;
		next.tv_nsec += (ms % 1000) * 1000000;
		next.tv_sec += ms / 1000 + next.tv_nsec / 1000000000;
		next.tv_nsec %= 1000000000;
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) != 0)
			;
		long now = atomic_load(&r.calls), nowok = atomic_load(&r.ok);
		win[w] = now - last;
		okwin[w] = nowok - lastok;
		last = now;
		lastok = nowok;
	}
	atomic_store(&r.stop, true);
	for (long i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	mall_rpc_client_free(r.cli);

	long calls = atomic_load(&r.calls), ok = atomic_load(&r.ok);
	printf("{\"calls\":%ld,\"ok\":%ld,\"failures\":%ld,\"errors\":{", calls, ok, calls - ok);
	bool first = true;
	for (int c = 1; c <= MALL_CODE_MAX; c++) {
		long n = atomic_load(&r.by_code[c]);
		if (n == 0 && c != MALL_UNAVAILABLE && c != MALL_DEADLINE_EXCEEDED)
			continue; /* those two are always there, the others when they happened */
		printf("%s\"%s\":%ld", first ? "" : ",", mall_code_name((mall_code)c), n);
		first = false;
	}
	printf("},\"per_window\":[");
	for (long w = 0; w < nwin; w++)
		printf("%s%ld", w ? "," : "", win[w]);
	printf("],\"ok_per_window\":[");
	for (long w = 0; w < nwin; w++)
		printf("%s%ld", w ? "," : "", okwin[w]);
	printf("]}\n");
	free(win);
	free(okwin);
	free(t);
	return 0;
}
