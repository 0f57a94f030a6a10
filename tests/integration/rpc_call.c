/*
 * rpc_call: one RPC from the command line, JSON in and out, for the
 * integration tests of services whose methods no HTTP route reaches yet.
 *
 *   rpc_call --addrs tcp://h:p --service mall.member.Member --method GetMember
 *            [--key K | --mutating] [--timeout-ms N] [--try-timeout-ms N]
 *            'JSON request'
 *
 * --timeout-ms is the call's deadline (default 5000), --try-timeout-ms that of
 * one attempt (default the client's, 1000; a loaded test machine hashing
 * passwords may need more).
 *
 * Services: mall.catalog.Catalog, mall.member.Member, mall.cart.CartService,
 * mall.order.OrderService, mall.payment.PaymentService and
 * the built-in mall.rpc.Events (Since) that every service answers.
 *
 * The request is bound with json_pb (unknown fields are an error, as at the
 * gateway).  --mutating sends a new idempotency key, --key K that one.  The
 * reply goes to stdout as JSON and the exit status is 0; an error status goes
 * to stdout as {"error":{"code":"not_found","message":"...","fields":{...},
 * "reason":"out_of_stock","details":{"available":3}}} (reason and details
 * when the status has them)
 * and the exit status is 1; bad arguments exit 2.  Logs go to stderr, and
 * last the time the call took: "rpc_call: took 12.345 ms".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "json_pb.h"
#include "log.h"
#include "mall/cart.pb-c.h"
#include "mall/catalog.pb-c.h"
#include "mall/member.pb-c.h"
#include "mall/order.pb-c.h"
#include "mall/payment.pb-c.h"
#include "mall/rpc.pb-c.h"

/* LeakSanitizer's suppressions for this helper (added to any the environment
 * gives): nng 1.5.2 leaves a few hundred bytes, allocated on its own threads
 * for a dial still in flight, when a client process exits early; with dozens
 * of rpc_call processes starting at once on a loaded machine it happens now
 * and then.  Not memory of ours, and a short-lived test client: the servers
 * keep full leak checks. */
const char *__lsan_default_suppressions(void);
const char *
__lsan_default_suppressions(void)
{
	return "leak:libnng.so\n";
}
#include "rpc.h"

static const ProtobufCServiceDescriptor *const services[] = {
    &mall__catalog__catalog__descriptor,
    &mall__member__member__descriptor,
    &mall__cart__cart_service__descriptor,
    &mall__order__order_service__descriptor,
    &mall__payment__payment_service__descriptor,
    &mall__rpc__events__descriptor, /* every service's built-in Events.Since */
};

static double
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int
usage(void)
{
	fprintf(stderr, "usage: rpc_call --addrs URLS --service NAME --method NAME "
	                "[--key K | --mutating] [--timeout-ms N] [--try-timeout-ms N] JSON\n");
	return 2;
}

static void
print_status(const mall_status *st)
{
	json_t *err = json_object();
	json_object_set_new(err, "code", json_string(mall_code_slug(st->code)));
	json_object_set_new(err, "message", json_string(st->message));
	if (st->nfields > 0) {
		json_t *fields = json_object();
		for (int i = 0; i < st->nfields; i++)
			json_object_set_new(fields, st->fields[i].field,
			                    json_string(st->fields[i].message));
		json_object_set_new(err, "fields", fields);
	}
	if (st->reason[0])
		json_object_set_new(err, "reason", json_string(st->reason));
	if (st->ndetails > 0) {
		json_t *details = json_object();
		for (int i = 0; i < st->ndetails; i++)
			json_object_set_new(details, st->details[i].key,
			                    json_integer((json_int_t)st->details[i].value));
		json_object_set_new(err, "details", details);
	}
	json_t *doc = json_pack("{so}", "error", err);
	json_dumpf(doc, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(doc);
}

int
main(int argc, char **argv)
{
	const char *addrs = NULL, *service = NULL, *method = NULL, *key = NULL, *json = NULL;
	bool mutating = false;
	long timeout_ms = 5000, try_timeout_ms = 0;
	mall_log_set_fd(2);
	for (int i = 1; i < argc; i++) {
		bool more = i + 1 < argc;
		if (strcmp(argv[i], "--addrs") == 0 && more)
			addrs = argv[++i];
		else if (strcmp(argv[i], "--service") == 0 && more)
			service = argv[++i];
		else if (strcmp(argv[i], "--method") == 0 && more)
			method = argv[++i];
		else if (strcmp(argv[i], "--key") == 0 && more)
			key = argv[++i];
		else if (strcmp(argv[i], "--mutating") == 0)
			mutating = true;
		else if (strcmp(argv[i], "--timeout-ms") == 0 && more)
			timeout_ms = strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--try-timeout-ms") == 0 && more)
			try_timeout_ms = strtol(argv[++i], NULL, 10);
		else if (json == NULL && argv[i][0] != '-')
			json = argv[i];
		else
			return usage();
	}
	if (addrs == NULL || service == NULL || method == NULL || json == NULL || timeout_ms <= 0 ||
	    try_timeout_ms < 0)
		return usage();
	const ProtobufCServiceDescriptor *svc = NULL;
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
		if (strcmp(services[i]->name, service) == 0)
			svc = services[i];
	const ProtobufCMethodDescriptor *md =
	    svc ? protobuf_c_service_descriptor_get_method_by_name(svc, method) : NULL;
	if (md == NULL) {
		fprintf(stderr, "rpc_call: no method %s/%s\n", service, method);
		return 2;
	}

	mall_status st;
	mall_status_clear(&st);
	mall_arena *a = mall_arena_new();
	ProtobufCMessage *req = NULL, *reply = NULL;
	mall_rpc_client *c = NULL;
	int rc = 1;
	mall_rpc_client_opts copts = {.timeout_ms = timeout_ms, .try_timeout_ms = try_timeout_ms};
	mall_rpc_call_opts opts = {.idempotency_key = key,
	                           .flags = (mutating || key) ? MALL_RPC_CALL_MUTATING : 0};
	double t0 = 0, t1 = 0;
	if (mall_json_to_pb(json, strlen(json), md->input, a, &req, &st) != MALL_OK ||
	    mall_rpc_client_new(&c, service, addrs, &copts, &st) != MALL_OK ||
	    (t0 = now_ms(), mall_rpc_call(c, svc, method, req, &reply, a, &opts, &st)) != MALL_OK) {
		print_status(&st);
	} else {
		char *text = mall_pb_to_json_text(reply, NULL);
		puts(text);
		free(text);
		rc = 0;
	}
	t1 = now_ms();
	if (t0 > 0)
		fprintf(stderr, "rpc_call: took %.3f ms\n", t1 - t0);
	mall_rpc_client_free(c);
	mall_arena_free(a);
	return rc;
}
