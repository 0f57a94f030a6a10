/*
 * mallctl: the ops command line, speaking RPC to the services.
 *
 *   mallctl ping <service>                   is the service answering?
 *   mallctl catalog stock <sku-code>         on hand, reserved, available
 *   mallctl catalog set-stock <sku-code> <n> set the stock on hand
 *   mallctl catalog seed <file.json>         create categories, products, SKUs
 *   mallctl rpc [--key K] <service> <Method> [json]
 *                                            any method, the request and the
 *                                            reply as JSON (e.g. the cart's
 *                                            promotion RPCs); every call carries
 *                                            an idempotency key (K, or a new one)
 *
 * Addresses come from MALL_<SERVICE>_ADDRS (default tcp://127.0.0.1:<port>).
 * Exit status: 0 done, 1 the service said no or could not be reached, 2 usage.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "json_pb.h"
#include "log.h"
#include "rpc.h"

#include "mall/cart.pb-c.h"
#include "mall/catalog.pb-c.h"
#include "mall/member.pb-c.h"
#include "mall/order.pb-c.h"
#include "mall/payment.pb-c.h"

static const struct {
	const char *name;
	const char *default_addrs;
	const ProtobufCServiceDescriptor *rpc;
} services[] = {
    {"catalog", "tcp://127.0.0.1:7401", &mall__catalog__catalog__descriptor},
    {"member", "tcp://127.0.0.1:7411", &mall__member__member__descriptor},
    {"cart", "tcp://127.0.0.1:7421", &mall__cart__cart_service__descriptor},
    {"order", "tcp://127.0.0.1:7431", &mall__order__order_service__descriptor},
    {"payment", "tcp://127.0.0.1:7441", &mall__payment__payment_service__descriptor},
};

static void
usage(void)
{
	fprintf(stderr, "usage: mallctl ping <service>\n"
	                "       mallctl catalog stock <sku-code>\n"
	                "       mallctl catalog set-stock <sku-code> <n>\n"
	                "       mallctl catalog seed <file.json>\n"
	                "       mallctl rpc [--key K] <service> <Method> [json]\n");
}

static mall_rpc_client *
connect_to(const char *service)
{
	const char *def = NULL;
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
		if (strcmp(services[i].name, service) == 0)
			def = services[i].default_addrs;
	if (def == NULL) {
		fprintf(stderr,
		        "mallctl: unknown service \"%s\" (known: catalog, member, cart, order, "
		        "payment)\n",
		        service);
		return NULL;
	}
	char var[64];
	snprintf(var, sizeof(var), "MALL_%s_ADDRS", service);
	for (char *p = var; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	mall_config cfg;
	mall_config_init(&cfg);
	const char *addrs = mall_config_str(&cfg, var, def);
	mall_rpc_client *c = NULL;
	mall_status st;
	mall_status_clear(&st);
	mall_rpc_client_opts opts = {.timeout_ms = 5000, .try_timeout_ms = 2000, .max_tries = 3};
	if (mall_rpc_client_new(&c, service, addrs, &opts, &st) != MALL_OK) {
		fprintf(stderr, "mallctl: %s\n", st.message);
		return NULL;
	}
	return c;
}

static void
print_error(const mall_status *st)
{
	fprintf(stderr, "mallctl: %s: %s\n", st->reason[0] ? st->reason : mall_code_slug(st->code),
	        st->message);
	for (int i = 0; i < st->nfields; i++)
		fprintf(stderr, "  %s: %s\n", st->fields[i].field, st->fields[i].message);
	for (int i = 0; i < st->ndetails; i++)
		fprintf(stderr, "  %s = %" PRId64 "\n", st->details[i].key, st->details[i].value);
}

/* mallctl rpc: one call of any method, JSON in (bound with json_pb: unknown
 * fields are errors) and JSON out on stdout. */
static int
rpc(const char *key, const char *service, const char *method, const char *json)
{
	const ProtobufCServiceDescriptor *svc = NULL;
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
		if (strcmp(services[i].name, service) == 0)
			svc = services[i].rpc;
	const ProtobufCMethodDescriptor *md =
	    svc ? protobuf_c_service_descriptor_get_method_by_name(svc, method) : NULL;
	if (md == NULL) {
		fprintf(stderr, "mallctl: %s has no method \"%s\"\n", service, method);
		return 2;
	}
	mall_rpc_client *c = connect_to(service);
	if (c == NULL)
		return 1;
	mall_arena *a = mall_arena_new();
	ProtobufCMessage *req = NULL, *reply = NULL;
	mall_status st;
	mall_status_clear(&st);
	mall_rpc_call_opts opts = {.idempotency_key = key, .flags = MALL_RPC_CALL_MUTATING};
	int rc = 1;
	if (mall_json_to_pb(json, strlen(json), md->input, a, &req, &st) != MALL_OK ||
	    mall_rpc_call(c, svc, method, req, &reply, a, &opts, &st) != MALL_OK) {
		print_error(&st);
	} else {
		char *text = mall_pb_to_json_text(reply, NULL);
		puts(text);
		free(text);
		rc = 0;
	}
	mall_arena_free(a);
	mall_rpc_client_free(c);
	return rc;
}

static int
ping(const char *service)
{
	mall_rpc_client *c = connect_to(service);
	if (c == NULL)
		return 1;
	char name[64];
	int64_t pid = 0;
	mall_status st;
	mall_status_clear(&st);
	int rc = 0;
	if (mall_rpc_ping(c, name, sizeof(name), &pid, &st) != MALL_OK) {
		print_error(&st);
		rc = 1;
	} else {
		printf("%s: ok (pid %" PRId64 ")\n", name, pid);
	}
	mall_rpc_client_free(c);
	return rc;
}

static void
print_sku(const Mall__Catalog__Sku *s)
{
	printf("%s: on hand %" PRId64 ", reserved %" PRId64 ", available %" PRId64 "\n", s->code,
	       s->on_hand, s->reserved, s->available);
}

static int
stock(const char *code)
{
	mall_rpc_client *c = connect_to("catalog");
	if (c == NULL)
		return 1;
	mall_arena *a = mall_arena_new();
	Mall__Catalog__GetStockRequest req = MALL__CATALOG__GET_STOCK_REQUEST__INIT;
	req.sku_code = (char *)code;
	ProtobufCMessage *reply;
	mall_status st;
	mall_status_clear(&st);
	int rc = 0;
	if (mall_rpc_call(c, &mall__catalog__catalog__descriptor, "GetStock", &req.base, &reply, a,
	                  NULL, &st) != MALL_OK) {
		print_error(&st);
		rc = 1;
	} else {
		print_sku((const void *)reply);
	}
	mall_arena_free(a);
	mall_rpc_client_free(c);
	return rc;
}

static int
set_stock(const char *code, const char *n_text)
{
	char *end;
	errno = 0;
	long long n = strtoll(n_text, &end, 10);
	if (end == n_text || *end != '\0' || errno != 0 || n < 0) {
		fprintf(stderr, "mallctl: stock must be a whole number of 0 or more, not \"%s\"\n",
		        n_text);
		return 2;
	}
	mall_rpc_client *c = connect_to("catalog");
	if (c == NULL)
		return 1;
	mall_arena *a = mall_arena_new();
	Mall__Catalog__SetStockRequest req = MALL__CATALOG__SET_STOCK_REQUEST__INIT;
	req.sku_code = (char *)code;
	req.on_hand = n;
	ProtobufCMessage *reply;
	mall_status st;
	mall_status_clear(&st);
	mall_rpc_call_opts opts = {.flags = MALL_RPC_CALL_MUTATING};
	int rc = 0;
	if (mall_rpc_call(c, &mall__catalog__catalog__descriptor, "SetStock", &req.base, &reply, a,
	                  &opts, &st) != MALL_OK) {
		print_error(&st);
		rc = 1;
	} else {
		print_sku((const void *)reply);
	}
	mall_arena_free(a);
	mall_rpc_client_free(c);
	return rc;
}

/* One seed call: obj converted to desc, sent with key (so a second seed run is
 * answered from the idempotency records and changes nothing). */
static mall_code
seed_call(mall_rpc_client *c, mall_arena *a, const char *method,
          const ProtobufCMessageDescriptor *desc, json_t *obj, const char *key,
          ProtobufCMessage **reply, mall_status *st)
{
	ProtobufCMessage *req;
	if (mall_json_obj_to_pb(obj, desc, a, &req, st) != MALL_OK)
		return st->code;
	mall_rpc_call_opts opts = {.flags = MALL_RPC_CALL_MUTATING, .idempotency_key = key};
	return mall_rpc_call(c, &mall__catalog__catalog__descriptor, method, req, reply, a, &opts,
	                     st);
}

static int
seed(const char *path)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		fprintf(stderr, "mallctl: could not read %s: %s at line %d\n", path, jerr.text,
		        jerr.line);
		return 1;
	}
	mall_rpc_client *c = connect_to("catalog");
	if (c == NULL) {
		json_decref(root);
		return 1;
	}
	mall_arena *a = mall_arena_new();
	mall_status st;
	mall_status_clear(&st);
	int categories = 0, products = 0, skus = 0;
	char key[300];
	size_t i;
	json_t *item;
	ProtobufCMessage *reply;

	json_array_foreach(json_object_get(root, "categories"), i, item) {
		const char *slug = json_string_value(json_object_get(item, "slug"));
		snprintf(key, sizeof(key), "seed:category:%s", slug ? slug : "");
		if (seed_call(c, a, "CreateCategory", &mall__catalog__create_category_request__descriptor,
		              item, key, &reply, &st) != MALL_OK)
			goto fail;
		categories++;
	}
	json_array_foreach(json_object_get(root, "products"), i, item) {
		json_t *product = json_deep_copy(item);
		json_t *sku_list = json_incref(json_object_get(product, "skus"));
		json_object_del(product, "skus");
		const char *slug = json_string_value(json_object_get(product, "slug"));
		snprintf(key, sizeof(key), "seed:product:%s", slug ? slug : "");
		mall_code code = seed_call(c, a, "CreateProduct",
		                           &mall__catalog__create_product_request__descriptor, product,
		                           key, &reply, &st);
		json_decref(product);
		if (code != MALL_OK) {
			json_decref(sku_list);
			goto fail;
		}
		int64_t product_id = ((Mall__Catalog__Product *)reply)->id;
		products++;
		size_t j;
		json_t *sku;
		json_array_foreach(sku_list, j, sku) {
			json_t *s = json_deep_copy(sku);
			json_object_set_new(s, "productId", json_integer(product_id));
			const char *code_text = json_string_value(json_object_get(s, "code"));
			snprintf(key, sizeof(key), "seed:sku:%s", code_text ? code_text : "");
			code = seed_call(c, a, "CreateSku", &mall__catalog__create_sku_request__descriptor,
			                 s, key, &reply, &st);
			json_decref(s);
			if (code != MALL_OK) {
				json_decref(sku_list);
				goto fail;
			}
			skus++;
		}
		json_decref(sku_list);
		mall_arena_reset(a);
	}
	printf("seeded %d categories, %d products, %d skus\n", categories, products, skus);
	mall_arena_free(a);
	mall_rpc_client_free(c);
	json_decref(root);
	return 0;
fail:
	fprintf(stderr, "mallctl: seeding stopped at %s\n", key);
	print_error(&st);
	mall_arena_free(a);
	mall_rpc_client_free(c);
	json_decref(root);
	return 1;
}

int
main(int argc, char **argv)
{
	mall_log_init("mallctl");
	mall_log_set_level(MALL_LOG_WARN);
	mall_log_set_fd(2);
	if (argc == 3 && strcmp(argv[1], "ping") == 0)
		return ping(argv[2]);
	if (argc >= 3 && strcmp(argv[1], "catalog") == 0) {
		if (argc == 4 && strcmp(argv[2], "stock") == 0)
			return stock(argv[3]);
		if (argc == 5 && strcmp(argv[2], "set-stock") == 0)
			return set_stock(argv[3], argv[4]);
		if (argc == 4 && strcmp(argv[2], "seed") == 0)
			return seed(argv[3]);
	}
	if (argc >= 2 && strcmp(argv[1], "rpc") == 0) {
		int i = 2;
		const char *key = NULL;
		if (argc > 3 && strcmp(argv[i], "--key") == 0) {
			key = argv[i + 1];
			i += 2;
		}
		if (argc - i == 2 || argc - i == 3)
			return rpc(key, argv[i], argv[i + 1], argc - i == 3 ? argv[i + 2] : "{}");
	}
	usage();
	return 2;
}
