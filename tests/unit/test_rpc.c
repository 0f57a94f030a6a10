/*
 * Unit tests of lib/rpc_server.c and lib/rpc_client.c: a fake catalog served
 * in-process over tcp on loopback, called through the real client.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "mall/catalog.pb-c.h"
#include "mall/rpc.pb-c.h"
#include "metrics.h"
#include "rpc.h"

/* ---- helpers ---- */

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* A port nothing listens on right now. */
static int
free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t len = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* ---- the fake catalog ---- */

static atomic_int get_calls;     /* GetProduct handler runs */
static atomic_int counted_calls; /* GetProduct runs for "count-me" */
static atomic_int hook_calls;    /* mutation hook runs */
static atomic_int stall_first;   /* CreateProduct: first run sleeps this long (ms) */
static atomic_int hook_wrong;    /* hook saw a wrong reply descriptor, no body or no reply */
static atomic_int packed_mode;   /* what ListCategories does, see list_categories */
static pthread_mutex_t keys_mu = PTHREAD_MUTEX_INITIALIZER;
static char hook_keys[8][64];
static char hook_methods[8][96];

/* Per-server state handed to handlers as the worker state. */
typedef struct server_state {
	atomic_int slow;  /* GetProduct takes 400 ms */
	atomic_int calls; /* GetProduct runs */
	atomic_int inits; /* worker_init runs */
	atomic_int finis; /* worker_fini runs */
} server_state;

static void *
worker_init(void *arg, int index)
{
	server_state *ss = arg;
	(void)index;
	atomic_fetch_add(&ss->inits, 1);
	return ss;
}

static void
worker_fini(void *state)
{
	server_state *ss = state;
	atomic_fetch_add(&ss->finis, 1);
}

static mall_code
get_product(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
            mall_status *st)
{
	const Mall__Catalog__GetProductRequest *r = (const void *)req;
	atomic_fetch_add(&get_calls, 1);
	if (strcmp(r->id_or_slug, "missing") == 0)
		return mall_status_set(st, MALL_NOT_FOUND, "product \"missing\" does not exist");
	if (strcmp(r->id_or_slug, "bad") == 0) {
		mall_status_field(st, "idOrSlug", "must not be \"bad\"");
		mall_status_field(st, "options.weight", "must be one of 500g, 1kg");
		return MALL_INVALID_ARGUMENT;
	}
	if (strcmp(r->id_or_slug, "sold-out") == 0) {
		mall_status_reason(st, MALL_FAILED_PRECONDITION, "out_of_stock", "only %d left", 3);
		mall_status_detail(st, "available", 3);
		mall_status_detail(st, "requested", 5);
		return MALL_FAILED_PRECONDITION;
	}
	if (strcmp(r->id_or_slug, "count-me") == 0)
		atomic_fetch_add(&counted_calls, 1);
	if (strncmp(r->id_or_slug, "slow:", 5) == 0)
		sleep_ms(atoi(r->id_or_slug + 5));
	server_state *ss = mall_rpc_ctx_worker(ctx);
	if (ss != NULL) {
		atomic_fetch_add(&ss->calls, 1);
		if (atomic_load(&ss->slow))
			sleep_ms(400);
	}
	Mall__Catalog__Product *p = mall_arena_alloc(mall_rpc_ctx_arena(ctx), sizeof(*p));
	mall__catalog__product__init(p);
	p->id = 42;
	p->slug = mall_arena_strdup(mall_rpc_ctx_arena(ctx), r->id_or_slug);
	p->name = mall_arena_printf(mall_rpc_ctx_arena(ctx), "product %s", r->id_or_slug);
	if (strcmp(r->id_or_slug, "huge") == 0) {
		char *big = mall_arena_alloc(mall_rpc_ctx_arena(ctx), 200000);
		memset(big, 'x', 199999);
		p->description_html = big;
	}
	*reply = &p->base;
	return MALL_OK;
}

/* ListProducts echoes what the server saw of the call: trace id, caller. */
static mall_code
list_products(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
              mall_status *st)
{
	const Mall__Catalog__ListProductsRequest *r = (const void *)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	Mall__Catalog__ListProductsReply *rep = mall_arena_alloc(a, sizeof(*rep));
	mall__catalog__list_products_reply__init(rep);
	int n = r->page_size > 0 ? r->page_size : 3;
	rep->products = mall_arena_alloc(a, (size_t)n * sizeof(*rep->products));
	for (int i = 0; i < n; i++) {
		Mall__Catalog__ProductSummary *s = mall_arena_alloc(a, sizeof(*s));
		mall__catalog__product_summary__init(s);
		s->id = i + 1;
		s->slug = mall_arena_printf(a, "%s-%d", r->q, i);
		s->name = (char *)mall_rpc_ctx_trace_id(ctx);
		s->summary = mall_rpc_ctx_has_role(ctx, "admin") ? "admin" : "guest";
		rep->products[i] = s;
	}
	rep->n_products = (size_t)n;
	rep->total_count = mall_rpc_ctx_member_id(ctx);
	rep->page = (int32_t)mall_rpc_ctx_admin_id(ctx);
	rep->page_size = r->page_size;
	*reply = &rep->base;
	return MALL_OK;
}

static mall_code
create_product(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
               mall_status *st)
{
	const Mall__Catalog__CreateProductRequest *r = (const void *)req;
	Mall__Catalog__Product *p = mall_arena_alloc(mall_rpc_ctx_arena(ctx), sizeof(*p));
	mall__catalog__product__init(p);
	p->slug = mall_arena_strdup(mall_rpc_ctx_arena(ctx), r->slug);
	p->summary = mall_arena_strdup(mall_rpc_ctx_arena(ctx), mall_rpc_ctx_idempotency_key(ctx));
	*reply = &p->base;
	return MALL_OK;
}

enum { PACKED_OK, PACKED_EMPTY, PACKED_BOTH, PACKED_HUGE };

/* ListCategories answers with a packed reply: three categories (PACKED_OK),
 * none (PACKED_EMPTY, zero bytes), three with names of 100 kB (PACKED_HUGE),
 * or a packed reply and a message at once (PACKED_BOTH, a handler bug). */
static mall_code
list_categories(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                mall_status *st)
{
	(void)req;
	(void)st;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	int mode = atomic_load(&packed_mode);
	Mall__Catalog__Category c[3], *cp[3];
	Mall__Catalog__ListCategoriesReply r = MALL__CATALOG__LIST_CATEGORIES_REPLY__INIT;
	char *big = NULL;
	if (mode == PACKED_HUGE) {
		big = mall_arena_alloc(a, 100001);
		memset(big, 'n', 100000);
	}
	for (int i = 0; i < 3; i++) {
		mall__catalog__category__init(&c[i]);
		c[i].id = i + 1;
		c[i].slug = mall_arena_printf(a, "cat-%d", i + 1);
		c[i].name = big ? big : mall_arena_printf(a, "Category %d", i + 1);
		c[i].position = 10 * (i + 1);
		cp[i] = &c[i];
	}
	r.n_categories = mode == PACKED_EMPTY ? 0 : 3;
	r.categories = cp;
	size_t len = mall__catalog__list_categories_reply__get_packed_size(&r);
	uint8_t *buf = mall_arena_alloc(a, len ? len : 1);
	mall__catalog__list_categories_reply__pack(&r, buf);
	mall_rpc_ctx_set_packed_reply(ctx, buf, len);
	if (mode == PACKED_BOTH) {
		Mall__Catalog__ListCategoriesReply *m = mall_arena_alloc(a, sizeof(*m));
		mall__catalog__list_categories_reply__init(m);
		*reply = &m->base;
	}
	return MALL_OK;
}

/* CreateCategory (mutating) answers with a packed Category: slug as asked,
 * name the idempotency key. */
static mall_code
create_category(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                mall_status *st)
{
	(void)reply;
	(void)st;
	const Mall__Catalog__CreateCategoryRequest *r = (const void *)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	Mall__Catalog__Category c = MALL__CATALOG__CATEGORY__INIT;
	c.id = 9;
	c.slug = r->slug;
	c.name = (char *)mall_rpc_ctx_idempotency_key(ctx);
	size_t len = mall__catalog__category__get_packed_size(&c);
	uint8_t *buf = mall_arena_alloc(a, len);
	mall__catalog__category__pack(&c, buf);
	mall_rpc_ctx_set_packed_reply(ctx, buf, len);
	return MALL_OK;
}

/* The mutation hook records each key and method, then runs the handler (the
 * first run optionally stalls, so the client retries elsewhere) and checks it
 * got a reply message, as lib/idem.c needs to record it. */
static mall_code
hook(mall_rpc_ctx *ctx, mall_rpc_handler fn, const ProtobufCMessage *req, ProtobufCMessage **reply,
     mall_status *st)
{
	int i = atomic_fetch_add(&hook_calls, 1);
	pthread_mutex_lock(&keys_mu);
	if (i < 8) {
		snprintf(hook_keys[i], sizeof(hook_keys[i]), "%s",
		         mall_rpc_ctx_idempotency_key(ctx));
		snprintf(hook_methods[i], sizeof(hook_methods[i]), "%s", mall_rpc_ctx_method(ctx));
	}
	pthread_mutex_unlock(&keys_mu);
	if (i == 0 && atomic_load(&stall_first) > 0)
		sleep_ms(atomic_load(&stall_first));
	/* no cmocka asserts off the main thread: record and check later */
	const ProtobufCMessageDescriptor *want =
	    strcmp(mall_rpc_ctx_method(ctx), "mall.catalog.Catalog/CreateCategory") == 0
	        ? &mall__catalog__category__descriptor
	        : &mall__catalog__product__descriptor;
	if (mall_rpc_ctx_reply_desc(ctx) != want || mall_rpc_ctx_body(ctx)->len == 0)
		atomic_fetch_add(&hook_wrong, 1);
	mall_code code = fn(ctx, req, reply, st);
	if (code == MALL_OK && (*reply == NULL || (*reply)->descriptor != want))
		atomic_fetch_add(&hook_wrong, 1);
	return code;
}

static const mall_rpc_method catalog_methods[] = {
    {"GetProduct", get_product, 0},
    {"ListProducts", list_products, 0},
    {"CreateProduct", create_product, MALL_RPC_MUTATING},
    {"ListCategories", list_categories, 0},
    {"CreateCategory", create_category, MALL_RPC_MUTATING},
};
#define NCATALOG_METHODS (sizeof(catalog_methods) / sizeof(catalog_methods[0]))

static void
reset_fake(void)
{
	atomic_store(&get_calls, 0);
	atomic_store(&counted_calls, 0);
	atomic_store(&hook_calls, 0);
	atomic_store(&stall_first, 0);
	atomic_store(&hook_wrong, 0);
	atomic_store(&packed_mode, PACKED_OK);
	memset(hook_keys, 0, sizeof(hook_keys));
	memset(hook_methods, 0, sizeof(hook_methods));
}

static mall_rpc_server *
start_server_opts(const char *url, int workers, size_t max_msg)
{
	mall_rpc_server_opts o = {.service = "catalog",
	                          .listen = url,
	                          .contexts = 16,
	                          .workers = workers,
	                          .max_msg = max_msg,
	                          .mutate = hook};
	mall_rpc_server *s;
	mall_status st;
	mall_status_clear(&st);
	assert_int_equal(mall_rpc_server_new(&s, &o, &st), MALL_OK);
	assert_int_equal(mall_rpc_server_add(s, &mall__catalog__catalog__descriptor,
	                                     catalog_methods, NCATALOG_METHODS, &st),
	                 MALL_OK);
	if (mall_rpc_server_start(s, &st) != MALL_OK)
		fail_msg("%s", st.message);
	return s;
}

static mall_rpc_server *
start_server(const char *url)
{
	return start_server_opts(url, 4, 0);
}

static mall_rpc_server *
start_server_state(const char *url, server_state *ss)
{
	mall_rpc_server_opts o = {.service = "catalog",
	                          .listen = url,
	                          .workers = 3,
	                          .worker_init = worker_init,
	                          .worker_fini = worker_fini,
	                          .worker_arg = ss};
	mall_rpc_server *s;
	mall_status st;
	assert_int_equal(mall_rpc_server_new(&s, &o, &st), MALL_OK);
	assert_int_equal(mall_rpc_server_add(s, &mall__catalog__catalog__descriptor,
	                                     catalog_methods, NCATALOG_METHODS, &st),
	                 MALL_OK);
	if (mall_rpc_server_start(s, &st) != MALL_OK)
		fail_msg("%s", st.message);
	return s;
}

static mall_rpc_client *
new_client(const char *addrs, const mall_rpc_client_opts *o)
{
	mall_rpc_client *c;
	mall_status st;
	if (mall_rpc_client_new(&c, "catalog", addrs, o, &st) != MALL_OK)
		fail_msg("%s", st.message);
	return c;
}

static mall_code
get(mall_rpc_client *c, const char *slug, mall_arena *a, const mall_rpc_call_opts *co,
    Mall__Catalog__Product **out, mall_status *st)
{
	Mall__Catalog__GetProductRequest req = MALL__CATALOG__GET_PRODUCT_REQUEST__INIT;
	req.id_or_slug = (char *)slug;
	ProtobufCMessage *rep = NULL;
	mall_code code = mall_rpc_call(c, &mall__catalog__catalog__descriptor, "GetProduct",
	                               &req.base, &rep, a, co, st);
	if (out != NULL)
		*out = (Mall__Catalog__Product *)rep;
	return code;
}

typedef struct fixture {
	char url[64];
	mall_rpc_server *srv;
	mall_rpc_client *cli;
	mall_arena *arena;
} fixture;

static int
setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	reset_fake();
	snprintf(f->url, sizeof(f->url), "tcp://127.0.0.1:%d", free_port());
	f->srv = start_server(f->url);
	f->cli = new_client(f->url, NULL);
	f->arena = mall_arena_new();
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	fixture *f = *state;
	mall_rpc_client_free(f->cli);
	mall_rpc_server_free(f->srv);
	mall_arena_free(f->arena);
	free(f);
	return 0;
}

/* ---- tests ---- */

static void
test_round_trip(void **state)
{
	fixture *f = *state;
	mall_status st;
	Mall__Catalog__Product *p;
	assert_int_equal(get(f->cli, "hanwoo-1kg", f->arena, NULL, &p, &st), MALL_OK);
	assert_non_null(p);
	assert_int_equal(p->id, 42);
	assert_string_equal(p->slug, "hanwoo-1kg");
	assert_string_equal(p->name, "product hanwoo-1kg");

	/* trace id and caller reach the handler */
	Mall__Catalog__ListProductsRequest lr = MALL__CATALOG__LIST_PRODUCTS_REQUEST__INIT;
	lr.q = "beef";
	lr.page_size = 5;
	const char *roles[] = {"staff", "admin", NULL};
	mall_rpc_call_opts co = {
	    .trace_id = "trace-abc", .member_id = 7, .admin_id = 3, .roles = roles};
	ProtobufCMessage *rep;
	assert_int_equal(mall_rpc_call(f->cli, &mall__catalog__catalog__descriptor, "ListProducts",
	                               &lr.base, &rep, f->arena, &co, &st),
	                 MALL_OK);
	Mall__Catalog__ListProductsReply *l = (void *)rep;
	assert_int_equal(l->n_products, 5);
	assert_string_equal(l->products[4]->slug, "beef-4");
	assert_string_equal(l->products[0]->name, "trace-abc");
	assert_string_equal(l->products[0]->summary, "admin");
	assert_int_equal(l->total_count, 7);
	assert_int_equal(l->page, 3);

	/* without one, the client makes up a 32-hex trace id */
	assert_int_equal(mall_rpc_call(f->cli, &mall__catalog__catalog__descriptor, "ListProducts",
	                               &lr.base, &rep, f->arena, NULL, &st),
	                 MALL_OK);
	l = (void *)rep;
	assert_int_equal(strlen(l->products[0]->name), 32);
	assert_string_equal(l->products[0]->summary, "guest");
	assert_int_equal(l->total_count, 0);

	/* the mutation hook is not involved in reads */
	assert_int_equal(atomic_load(&hook_calls), 0);
}

static void
test_remote_error_with_fields(void **state)
{
	fixture *f = *state;
	mall_status st;
	Mall__Catalog__Product *p = (void *)1;
	assert_int_equal(get(f->cli, "missing", f->arena, NULL, &p, &st), MALL_NOT_FOUND);
	assert_null(p);
	assert_string_equal(st.message, "product \"missing\" does not exist");
	assert_int_equal(st.nfields, 0);

	assert_int_equal(get(f->cli, "bad", f->arena, NULL, &p, &st), MALL_INVALID_ARGUMENT);
	assert_int_equal(st.code, MALL_INVALID_ARGUMENT);
	assert_string_equal(st.message, "invalid request");
	assert_int_equal(st.nfields, 2);
	assert_string_equal(st.fields[0].field, "idOrSlug");
	assert_string_equal(st.fields[0].message, "must not be \"bad\"");
	assert_string_equal(st.fields[1].field, "options.weight");
	assert_string_equal(st.fields[1].message, "must be one of 500g, 1kg");
	assert_string_equal(st.reason, "");
	assert_int_equal(st.ndetails, 0);

	/* a reason and details cross the wire with the code */
	assert_int_equal(get(f->cli, "sold-out", f->arena, NULL, &p, &st), MALL_FAILED_PRECONDITION);
	assert_string_equal(st.reason, "out_of_stock");
	assert_string_equal(st.message, "only 3 left");
	assert_int_equal(st.ndetails, 2);
	assert_string_equal(st.details[0].key, "available");
	assert_int_equal(st.details[0].value, 3);
	assert_string_equal(st.details[1].key, "requested");
	assert_int_equal(st.details[1].value, 5);
	/* an error answer is not a failure of the instance: it is not retried */
	assert_int_equal(atomic_load(&get_calls), 3);
}

static void
test_unknown_method_is_unimplemented(void **state)
{
	fixture *f = *state;
	mall_status st;
	Mall__Catalog__GetStockRequest req = MALL__CATALOG__GET_STOCK_REQUEST__INIT;
	req.sku_code = "CHK-500G";
	ProtobufCMessage *rep = NULL;
	assert_int_equal(mall_rpc_call(f->cli, &mall__catalog__catalog__descriptor, "GetStock",
	                               &req.base, &rep, f->arena, NULL, &st),
	                 MALL_UNIMPLEMENTED);
	assert_null(rep);
	assert_non_null(strstr(st.message, "mall.catalog.Catalog/GetStock"));
	assert_non_null(strstr(st.message, "not implemented by catalog"));

	/* a method the service descriptor does not have never leaves the client */
	assert_int_equal(mall_rpc_call(f->cli, &mall__catalog__catalog__descriptor, "NoSuch",
	                               &req.base, &rep, f->arena, NULL, &st),
	                 MALL_INTERNAL);
	/* nor does a request of the wrong type */
	assert_int_equal(mall_rpc_call(f->cli, &mall__catalog__catalog__descriptor, "GetProduct",
	                               &req.base, &rep, f->arena, NULL, &st),
	                 MALL_INTERNAL);
	assert_non_null(strstr(st.message, "mall.catalog.GetProductRequest"));
}

/* Sends raw bytes as a request and decodes the reply envelope. */
static Mall__Rpc__Reply *
raw_call(const char *url, const void *data, size_t len)
{
	nng_socket s;
	assert_int_equal(nng_req0_open(&s), 0);
	assert_int_equal(nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000), 0);
	assert_int_equal(nng_dial(s, url, NULL, 0), 0);
	assert_int_equal(nng_send(s, (void *)data, len, 0), 0);
	char *buf = NULL;
	size_t n = 0;
	assert_int_equal(nng_recv(s, &buf, &n, NNG_FLAG_ALLOC), 0);
	Mall__Rpc__Reply *r = mall__rpc__reply__unpack(NULL, n, (uint8_t *)buf);
	nng_free(buf, n);
	nng_close(s);
	assert_non_null(r);
	return r;
}

static void
test_undecodable_requests_are_invalid_argument(void **state)
{
	fixture *f = *state;
	/* not an envelope at all */
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
	Mall__Rpc__Reply *r = raw_call(f->url, junk, sizeof(junk));
	assert_int_equal(r->status->code, MALL__RPC__CODE__INVALID_ARGUMENT);
	assert_non_null(strstr(r->status->message, "envelope"));
	mall__rpc__reply__free_unpacked(r, NULL);

	/* an envelope whose body is not a GetProductRequest */
	static uint8_t bad_body[] = {0x0a, 0xff, 0xff};
	Mall__Rpc__Request env = MALL__RPC__REQUEST__INIT;
	env.method = "mall.catalog.Catalog/GetProduct";
	env.body.data = bad_body;
	env.body.len = sizeof(bad_body);
	uint8_t buf[256];
	size_t n = mall__rpc__request__pack(&env, buf);
	r = raw_call(f->url, buf, n);
	assert_int_equal(r->status->code, MALL__RPC__CODE__INVALID_ARGUMENT);
	assert_non_null(strstr(r->status->message, "mall.catalog.GetProductRequest"));
	assert_int_equal(r->body.len, 0);
	mall__rpc__reply__free_unpacked(r, NULL);
	assert_int_equal(atomic_load(&get_calls), 0);
}

static void
test_slow_handler_hits_deadline(void **state)
{
	fixture *f = *state;
	mall_status st;
	mall_rpc_call_opts co = {.timeout_ms = 300};
	int64_t t0 = now_ms();
	assert_int_equal(get(f->cli, "slow:1500", f->arena, &co, NULL, &st),
	                 MALL_DEADLINE_EXCEEDED);
	int64_t took = now_ms() - t0;
	assert_true(took >= 290);
	assert_true(took < 1200);
	assert_non_null(strstr(st.message, "mall.catalog.Catalog/GetProduct"));
	assert_non_null(strstr(st.message, "timed out"));
	/* the instance is still usable */
	assert_int_equal(get(f->cli, "after", f->arena, NULL, NULL, &st), MALL_OK);
}

typedef struct slow_arg {
	mall_rpc_client *cli;
	const char *slug;
	int64_t timeout_ms;
	mall_code code;
} slow_arg;

static void *
slow_call(void *p)
{
	slow_arg *a = p;
	mall_arena *arena = mall_arena_new();
	mall_status st;
	mall_rpc_call_opts co = {.timeout_ms = a->timeout_ms};
	a->code = get(a->cli, a->slug, arena, &co, NULL, &st);
	mall_arena_free(arena);
	return NULL;
}

static void
test_expired_request_is_not_run(void **state)
{
	(void)state;
	reset_fake();
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", free_port());
	mall_rpc_server *srv = start_server_opts(url, 1, 0); /* one worker: requests queue */
	mall_rpc_client *cli = new_client(url, NULL);
	mall_metrics_reset();

	slow_arg busy = {cli, "slow:700", 3000, MALL_UNKNOWN};
	pthread_t t;
	pthread_create(&t, NULL, slow_call, &busy);
	sleep_ms(100); /* the worker is now busy for 600 ms more */
	mall_arena *a = mall_arena_new();
	mall_status st;
	mall_rpc_call_opts co = {.timeout_ms = 200};
	assert_int_equal(get(cli, "count-me", a, &co, NULL, &st), MALL_DEADLINE_EXCEEDED);
	pthread_join(t, NULL);
	assert_int_equal(busy.code, MALL_OK);
	sleep_ms(100);
	/* the queued request reached the worker after its deadline: never run */
	assert_int_equal(atomic_load(&counted_calls), 0);
	char *text = mall_metrics_render(NULL);
	assert_non_null(strstr(text, "mall_rpc_server_requests_total{method=\"mall.catalog.Catalog/"
	                             "GetProduct\",code=\"DEADLINE_EXCEEDED\"} 1\n"));
	free(text);
	mall_arena_free(a);
	mall_rpc_client_free(cli);
	mall_rpc_server_free(srv);
}

static void
test_server_down_is_unavailable_fast(void **state)
{
	(void)state;
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", free_port());
	mall_rpc_client *cli = new_client(url, NULL);
	mall_arena *a = mall_arena_new();
	mall_status st;
	for (int i = 0; i < 3; i++) {
		int64_t t0 = now_ms();
		assert_int_equal(get(cli, "x", a, NULL, NULL, &st), MALL_UNAVAILABLE);
		int64_t took = now_ms() - t0;
		/* far from the 3 s deadline: the first call waits out the first
		 * dial's second (FIRST_DIAL_WAIT_MS), later ones KICK_WAIT_MS */
		assert_true(took < (i == 0 ? 1600 : 600));
		char want[128];
		snprintf(want, sizeof(want), "could not reach catalog at %s: ", url);
		if (strncmp(st.message, want, strlen(want)) != 0)
			fail_msg("unexpected message: %s", st.message);
	}
	mall_arena_free(a);
	mall_rpc_client_free(cli);
}

static void
test_server_started_after_client(void **state)
{
	(void)state;
	reset_fake();
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", free_port());
	mall_rpc_client *cli = new_client(url, NULL);
	mall_arena *a = mall_arena_new();
	mall_status st;
	/* first nothing listens */
	assert_int_equal(get(cli, "x", a, NULL, NULL, &st), MALL_UNAVAILABLE);
	sleep_ms(300);
	mall_rpc_server *srv = start_server(url);
	Mall__Catalog__Product *p;
	if (get(cli, "now-up", a, NULL, &p, &st) != MALL_OK)
		fail_msg("call after the server came up: %s", st.message);
	assert_string_equal(p->slug, "now-up");
	mall_arena_free(a);
	mall_rpc_client_free(cli);
	mall_rpc_server_free(srv);
}

static void
test_oversize_messages_are_rejected(void **state)
{
	(void)state;
	reset_fake();
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", free_port());
	mall_rpc_server *srv = start_server_opts(url, 2, 64 * 1024);
	mall_rpc_client_opts o = {.max_msg = 64 * 1024};
	mall_rpc_client *cli = new_client(url, &o);
	mall_arena *a = mall_arena_new();
	mall_status st;

	/* a request over the limit never leaves the client */
	char *big = malloc(100000);
	memset(big, 'a', 99999);
	big[99999] = '\0';
	int64_t t0 = now_ms();
	assert_int_equal(get(cli, big, a, NULL, NULL, &st), MALL_RESOURCE_EXHAUSTED);
	assert_true(now_ms() - t0 < 500);
	assert_non_null(strstr(st.message, "over the limit of 65536 bytes"));
	assert_non_null(strstr(st.message, "mall.catalog.Catalog/GetProduct"));
	free(big);

	/* a reply over the server's limit becomes an error, not a silent drop */
	t0 = now_ms();
	assert_int_equal(get(cli, "huge", a, NULL, NULL, &st), MALL_RESOURCE_EXHAUSTED);
	assert_true(now_ms() - t0 < 500);
	assert_non_null(strstr(st.message, "reply of mall.catalog.Catalog/GetProduct"));

	/* and the connection is still fine */
	assert_int_equal(get(cli, "small", a, NULL, NULL, &st), MALL_OK);
	mall_arena_free(a);
	mall_rpc_client_free(cli);
	mall_rpc_server_free(srv);
}

#define CALLERS 24
#define CALLS_EACH 150

typedef struct caller_arg {
	mall_rpc_client *cli;
	int index;
	int ok;
} caller_arg;

static void *
caller_main(void *p)
{
	caller_arg *ca = p;
	mall_arena *a = mall_arena_new();
	for (int i = 0; i < CALLS_EACH; i++) {
		char slug[32];
		snprintf(slug, sizeof(slug), "p%d-%d", ca->index, i);
		mall_status st;
		Mall__Catalog__Product *p2;
		if (get(ca->cli, slug, a, NULL, &p2, &st) == MALL_OK && strcmp(p2->slug, slug) == 0)
			ca->ok++;
		mall_arena_reset(a);
	}
	mall_arena_free(a);
	return NULL;
}

static void
test_many_concurrent_callers(void **state)
{
	fixture *f = *state;
	pthread_t t[CALLERS];
	caller_arg args[CALLERS];
	for (int i = 0; i < CALLERS; i++) {
		args[i] = (caller_arg){f->cli, i, 0};
		pthread_create(&t[i], NULL, caller_main, &args[i]);
	}
	int ok = 0;
	for (int i = 0; i < CALLERS; i++) {
		pthread_join(t[i], NULL);
		ok += args[i].ok;
	}
	assert_int_equal(ok, CALLERS * CALLS_EACH);
	assert_int_equal(atomic_load(&get_calls), CALLERS * CALLS_EACH);
}

static mall_code
create(mall_rpc_client *c, const char *slug, mall_arena *a, const mall_rpc_call_opts *co,
       Mall__Catalog__Product **out, mall_status *st)
{
	Mall__Catalog__CreateProductRequest req = MALL__CATALOG__CREATE_PRODUCT_REQUEST__INIT;
	req.slug = (char *)slug;
	ProtobufCMessage *rep = NULL;
	mall_code code = mall_rpc_call(c, &mall__catalog__catalog__descriptor, "CreateProduct",
	                               &req.base, &rep, a, co, st);
	*out = (Mall__Catalog__Product *)rep;
	return code;
}

static void
test_mutation_hook_and_idempotency_key(void **state)
{
	fixture *f = *state;
	mall_status st;
	Mall__Catalog__Product *p;

	/* a generated key */
	mall_rpc_call_opts co = {.flags = MALL_RPC_CALL_MUTATING};
	assert_int_equal(create(f->cli, "new-1", f->arena, &co, &p, &st), MALL_OK);
	assert_int_equal(atomic_load(&hook_calls), 1);
	assert_string_equal(hook_methods[0], "mall.catalog.Catalog/CreateProduct");
	assert_int_equal(strlen(hook_keys[0]), 32);
	assert_string_equal(p->summary, hook_keys[0]);
	assert_string_equal(p->slug, "new-1");

	/* the caller's own key */
	co.idempotency_key = "order-20261127-000123-reserve";
	assert_int_equal(create(f->cli, "new-2", f->arena, &co, &p, &st), MALL_OK);
	assert_int_equal(atomic_load(&hook_calls), 2);
	assert_string_equal(hook_keys[1], "order-20261127-000123-reserve");
	assert_string_equal(p->summary, "order-20261127-000123-reserve");
	assert_int_equal(atomic_load(&hook_wrong), 0);
}

static void
test_idempotency_key_kept_across_retry(void **state)
{
	(void)state;
	reset_fake();
	char url1[64], url2[64], both[160];
	snprintf(url1, sizeof(url1), "tcp://127.0.0.1:%d", free_port());
	snprintf(url2, sizeof(url2), "tcp://127.0.0.1:%d", free_port());
	snprintf(both, sizeof(both), "%s,%s", url1, url2);
	mall_rpc_server *s1 = start_server(url1);
	mall_rpc_server *s2 = start_server(url2);
	mall_rpc_client_opts o = {.try_timeout_ms = 250, .timeout_ms = 3000};
	mall_rpc_client *cli = new_client(both, &o);
	mall_arena *a = mall_arena_new();
	mall_status st;
	/* both instances connected before the call */
	for (int i = 0; i < 4; i++)
		assert_int_equal(get(cli, "warm", a, NULL, NULL, &st), MALL_OK);

	atomic_store(&stall_first, 800); /* the first instance to run it stalls */
	mall_rpc_call_opts co = {.flags = MALL_RPC_CALL_MUTATING};
	Mall__Catalog__Product *p;
	int64_t t0 = now_ms();
	if (create(cli, "retried", a, &co, &p, &st) != MALL_OK)
		fail_msg("%s", st.message);
	int64_t took = now_ms() - t0;
	assert_true(took >= 240 && took < 780); /* answered by the retry, not the stalled one */
	assert_int_equal(atomic_load(&hook_calls), 2);
	assert_int_equal(strlen(hook_keys[0]), 32);
	assert_string_equal(hook_keys[0], hook_keys[1]);
	assert_string_equal(p->summary, hook_keys[0]);

	mall_arena_free(a);
	mall_rpc_client_free(cli);
	mall_rpc_server_free(s1);
	mall_rpc_server_free(s2);
}

static void
test_outlier_ejection(void **state)
{
	(void)state;
	reset_fake();
	static server_state ss[2];
	memset(ss, 0, sizeof(ss));
	char url[2][64], both[160];
	for (int i = 0; i < 2; i++)
		snprintf(url[i], sizeof(url[i]), "tcp://127.0.0.1:%d", free_port());
	snprintf(both, sizeof(both), "%s,%s", url[0], url[1]);
	mall_rpc_server *s0 = start_server_state(url[0], &ss[0]);
	mall_rpc_server *s1 = start_server_state(url[1], &ss[1]);
	mall_rpc_client_opts o = {.try_timeout_ms = 100, .eject_ms = 300};
	mall_rpc_client *cli = new_client(both, &o);
	mall_arena *a = mall_arena_new();
	mall_status st;
	int64_t until = now_ms() + 5000;
	while ((atomic_load(&ss[0].calls) == 0 || atomic_load(&ss[1].calls) == 0) &&
	       now_ms() < until)
		assert_int_equal(get(cli, "warm", a, NULL, NULL, &st), MALL_OK);
	assert_true(atomic_load(&ss[0].calls) > 0 && atomic_load(&ss[1].calls) > 0);

	/* instance 0 turns slow: a few calls pay a try timeout, then it is set
	 * aside and the rest go straight to instance 1 */
	atomic_store(&ss[0].slow, 1);
	int slow = 0;
	for (int i = 0; i < 30; i++) {
		int64_t t0 = now_ms();
		if (get(cli, "x", a, NULL, NULL, &st) != MALL_OK)
			fail_msg("call %d: %s", i, st.message);
		if (now_ms() - t0 >= 90)
			slow++;
	}
	if (slow > 3)
		fail_msg("%d of 30 calls waited for the slow instance", slow);
	assert_true(slow >= 1);

	/* it recovers: after the ejection, a probe finds it fast and it is used again */
	atomic_store(&ss[0].slow, 0);
	sleep_ms(700); /* past the ejection, and past its stalled handlers */
	int before = atomic_load(&ss[0].calls);
	for (int i = 0; i < 20; i++)
		assert_int_equal(get(cli, "x", a, NULL, NULL, &st), MALL_OK);
	assert_true(atomic_load(&ss[0].calls) - before >= 5);

	mall_arena_free(a);
	mall_rpc_client_free(cli);
	mall_rpc_server_free(s0);
	mall_rpc_server_free(s1);
	/* worker state: made and released on each of the 3 workers */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(atomic_load(&ss[i].inits), 3);
		assert_int_equal(atomic_load(&ss[i].finis), 3);
	}
}

static void
test_ping(void **state)
{
	fixture *f = *state;
	mall_status st;
	char service[32];
	int64_t pid = 0;
	assert_int_equal(mall_rpc_ping(f->cli, service, sizeof(service), &pid, &st), MALL_OK);
	assert_string_equal(service, "catalog");
	assert_int_equal(pid, getpid());

	/* the instance is hostname:pid */
	Mall__Rpc__PingRequest req = MALL__RPC__PING_REQUEST__INIT;
	ProtobufCMessage *rep;
	assert_int_equal(mall_rpc_call(f->cli, &mall__rpc__rpc__descriptor, "Ping", &req.base, &rep,
	                               f->arena, NULL, &st),
	                 MALL_OK);
	char want[64];
	snprintf(want, sizeof(want), ":%ld", (long)getpid());
	const char *inst = ((Mall__Rpc__PingReply *)rep)->instance;
	assert_true(strlen(inst) > strlen(want));
	assert_string_equal(inst + strlen(inst) - strlen(want), want);
}

static void
test_dns_name_resolves(void **state)
{
	(void)state;
	reset_fake();
	int port = free_port();
	char url[64], name[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
	snprintf(name, sizeof(name), "tcp://localhost:%d", port);
	mall_rpc_server *srv = start_server(url);
	mall_rpc_client_opts o = {.resolve_ms = 200};
	mall_rpc_client *cli = new_client(name, &o);
	mall_arena *a = mall_arena_new();
	mall_status st;
	for (int i = 0; i < 5; i++) {
		if (get(cli, "via-dns", a, NULL, NULL, &st) != MALL_OK)
			fail_msg("%s", st.message);
		sleep_ms(100); /* across re-resolutions: the instance stays */
	}
	mall_arena_free(a);
	mall_rpc_client_free(cli);
	mall_rpc_server_free(srv);

	/* a name that does not resolve: UNAVAILABLE naming it, quickly */
	assert_int_equal(
	    mall_rpc_client_new(&cli, "catalog", "tcp://no-such-host.invalid:7401", NULL, &st),
	    MALL_OK);
	a = mall_arena_new();
	int64_t t0 = now_ms();
	assert_int_equal(get(cli, "x", a, NULL, NULL, &st), MALL_UNAVAILABLE);
	assert_true(now_ms() - t0 < 600);
	assert_non_null(
	    strstr(st.message, "could not reach catalog at tcp://no-such-host.invalid"));
	assert_non_null(strstr(st.message, "could not resolve no-such-host.invalid"));
	mall_arena_free(a);
	mall_rpc_client_free(cli);
}

static void
test_bad_addresses(void **state)
{
	(void)state;
	mall_rpc_client *cli = (void *)1;
	mall_status st;
	assert_int_equal(mall_rpc_client_new(&cli, "catalog", " , ", NULL, &st),
	                 MALL_INVALID_ARGUMENT);
	assert_null(cli);
	assert_string_equal(st.message, "no address given for catalog");
	assert_int_equal(mall_rpc_client_new(&cli, "catalog", "bogus://x", NULL, &st),
	                 MALL_INVALID_ARGUMENT);
	assert_non_null(strstr(st.message, "bogus://x"));

	/* listening twice on one address fails with a clear message */
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", free_port());
	mall_rpc_server *s1 = start_server(url);
	mall_rpc_server_opts o = {.service = "catalog", .listen = url};
	mall_rpc_server *s2;
	assert_int_equal(mall_rpc_server_new(&s2, &o, &st), MALL_OK);
	assert_int_equal(mall_rpc_server_start(s2, &st), MALL_UNAVAILABLE);
	assert_non_null(strstr(st.message, "could not listen for catalog on tcp://127.0.0.1:"));
	mall_rpc_server_free(s2);
	/* an unknown method name in the table is refused */
	static const mall_rpc_method bad[] = {{"NoSuchMethod", get_product, 0}};
	assert_int_equal(mall_rpc_server_new(&s2, &o, &st), MALL_OK);
	assert_int_equal(mall_rpc_server_add(s2, &mall__catalog__catalog__descriptor, bad, 1, &st),
	                 MALL_INVALID_ARGUMENT);
	assert_non_null(strstr(st.message, "NoSuchMethod"));
	mall_rpc_server_free(s2);
	mall_rpc_server_free(s1);
}

static void
test_drain_finishes_in_flight(void **state)
{
	(void)state;
	reset_fake();
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", free_port());
	mall_rpc_server *srv = start_server(url);
	mall_rpc_client *cli = new_client(url, NULL);
	mall_arena *a = mall_arena_new();
	mall_status st;
	assert_int_equal(get(cli, "warm", a, NULL, NULL, &st), MALL_OK);

	slow_arg busy = {cli, "slow:400", 3000, MALL_UNKNOWN};
	pthread_t t;
	pthread_create(&t, NULL, slow_call, &busy);
	sleep_ms(100);
	int64_t t0 = now_ms();
	mall_rpc_server_drain(srv, 5000);
	int64_t took = now_ms() - t0;
	pthread_join(t, NULL);
	assert_int_equal(busy.code, MALL_OK); /* the one in flight was answered */
	assert_true(took >= 200 && took < 2000);

	/* nothing new is taken */
	int before = atomic_load(&get_calls);
	mall_rpc_call_opts co = {.timeout_ms = 300};
	assert_int_not_equal(get(cli, "late", a, &co, NULL, &st), MALL_OK);
	assert_int_equal(atomic_load(&get_calls), before);
	mall_arena_free(a);
	mall_rpc_client_free(cli);
	mall_rpc_server_free(srv);
}

static void
test_metrics_recorded(void **state)
{
	fixture *f = *state;
	mall_metrics_reset();
	mall_status st;
	assert_int_equal(get(f->cli, "m", f->arena, NULL, NULL, &st), MALL_OK);
	assert_int_equal(get(f->cli, "missing", f->arena, NULL, NULL, &st), MALL_NOT_FOUND);
	char *text = mall_metrics_render(NULL);
	assert_non_null(strstr(text, "mall_rpc_server_requests_total{method=\"mall.catalog.Catalog/"
	                             "GetProduct\",code=\"OK\"} 1\n"));
	assert_non_null(strstr(text, "mall_rpc_server_requests_total{method=\"mall.catalog.Catalog/"
	                             "GetProduct\",code=\"NOT_FOUND\"} 1\n"));
	assert_non_null(strstr(text, "mall_rpc_client_requests_total{method=\"mall.catalog.Catalog/"
	                             "GetProduct\",code=\"NOT_FOUND\"} 1\n"));
	assert_non_null(strstr(text, "mall_rpc_client_duration_seconds_count{method=\"mall.catalog."
	                             "Catalog/GetProduct\"} 2\n"));
	free(text);
}

static mall_code
call_list_categories(mall_rpc_client *c, mall_arena *a, Mall__Catalog__ListCategoriesReply **out,
                     mall_status *st)
{
	Mall__Catalog__ListCategoriesRequest req = MALL__CATALOG__LIST_CATEGORIES_REQUEST__INIT;
	ProtobufCMessage *rep = NULL;
	mall_code code = mall_rpc_call(c, &mall__catalog__catalog__descriptor, "ListCategories",
	                               &req.base, &rep, a, NULL, st);
	*out = (Mall__Catalog__ListCategoriesReply *)rep;
	return code;
}

static void
test_packed_reply(void **state)
{
	(void)state;
	reset_fake();
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", free_port());
	mall_rpc_server *srv = start_server_opts(url, 2, 64 * 1024);
	mall_rpc_client *cli = new_client(url, NULL);
	mall_arena *a = mall_arena_new();
	mall_status st;
	Mall__Catalog__ListCategoriesReply *r;

	/* the handler's bytes are the reply */
	if (call_list_categories(cli, a, &r, &st) != MALL_OK)
		fail_msg("%s", st.message);
	assert_int_equal(r->n_categories, 3);
	assert_int_equal(r->categories[0]->id, 1);
	assert_string_equal(r->categories[2]->slug, "cat-3");
	assert_string_equal(r->categories[2]->name, "Category 3");
	assert_int_equal(r->categories[2]->position, 30);

	/* zero bytes are an empty message, not a missing reply */
	atomic_store(&packed_mode, PACKED_EMPTY);
	assert_int_equal(call_list_categories(cli, a, &r, &st), MALL_OK);
	assert_non_null(r);
	assert_int_equal(r->n_categories, 0);

	/* the size limit holds for packed bytes too */
	atomic_store(&packed_mode, PACKED_HUGE);
	int64_t t0 = now_ms();
	assert_int_equal(call_list_categories(cli, a, &r, &st), MALL_RESOURCE_EXHAUSTED);
	assert_true(now_ms() - t0 < 500);
	assert_null(r);
	assert_non_null(strstr(st.message, "reply of mall.catalog.Catalog/ListCategories is"));
	assert_non_null(strstr(st.message, "over the limit of 65536 bytes"));

	/* a message and packed bytes at once is a handler bug, not a guess */
	atomic_store(&packed_mode, PACKED_BOTH);
	assert_int_equal(call_list_categories(cli, a, &r, &st), MALL_INTERNAL);
	assert_null(r);
	assert_non_null(strstr(st.message, "both a reply and a packed reply"));

	/* a mutating handler's packed reply reaches the mutation hook as a
	 * message (idem.c packs it to record it) and the caller as it was */
	mall_rpc_call_opts co = {.flags = MALL_RPC_CALL_MUTATING, .idempotency_key = "cat-key-1"};
	Mall__Catalog__CreateCategoryRequest cr = MALL__CATALOG__CREATE_CATEGORY_REQUEST__INIT;
	cr.slug = "fruit";
	ProtobufCMessage *rep = NULL;
	if (mall_rpc_call(cli, &mall__catalog__catalog__descriptor, "CreateCategory", &cr.base,
	                  &rep, a, &co, &st) != MALL_OK)
		fail_msg("%s", st.message);
	const Mall__Catalog__Category *c = (const void *)rep;
	assert_int_equal(c->id, 9);
	assert_string_equal(c->slug, "fruit");
	assert_string_equal(c->name, "cat-key-1");
	assert_int_equal(atomic_load(&hook_calls), 1);
	assert_int_equal(atomic_load(&hook_wrong), 0);

	/* and the connection is still fine */
	atomic_store(&packed_mode, PACKED_OK);
	assert_int_equal(call_list_categories(cli, a, &r, &st), MALL_OK);
	assert_int_equal(r->n_categories, 3);
	mall_arena_free(a);
	mall_rpc_client_free(cli);
	mall_rpc_server_free(srv);
}

/* Contexts are reused from call to call: a reply that arrives after its call
 * gave up must never be taken for the answer to a later call. */
static void
test_late_replies_never_answer_later_calls(void **state)
{
	fixture *f = *state;
	mall_status st;
	mall_rpc_call_opts co = {.timeout_ms = 150};
	for (int i = 0; i < 3; i++)
		assert_int_equal(get(f->cli, "slow:400", f->arena, &co, NULL, &st),
		                 MALL_DEADLINE_EXCEEDED);
	sleep_ms(500); /* the three late replies have come back by now */
	for (int i = 0; i < 40; i++) {
		char slug[32];
		snprintf(slug, sizeof(slug), "later-%d", i);
		Mall__Catalog__Product *p;
		if (get(f->cli, slug, f->arena, NULL, &p, &st) != MALL_OK)
			fail_msg("call %d: %s", i, st.message);
		assert_string_equal(p->slug, slug);
	}
	assert_int_equal(atomic_load(&get_calls), 43);
}

static int
id_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Ids come from a per-thread pool of random bytes: distinct, 32 hex digits,
 * and a forked child never repeats what its parent hands out next. */
static void
test_new_ids_are_unique(void **state)
{
	(void)state;
	enum { N = 2000 };
	static char ids[N][33];
	for (int i = 0; i < N; i++) {
		mall_rpc_new_id(ids[i]);
		assert_int_equal(strlen(ids[i]), 32);
		assert_int_equal(strspn(ids[i], "0123456789abcdef"), 32);
	}
	qsort(ids, N, sizeof(ids[0]), id_cmp);
	for (int i = 1; i < N; i++)
		assert_string_not_equal(ids[i - 1], ids[i]);

	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char id[33];
		mall_rpc_new_id(id);
		_exit(write(fds[1], id, sizeof(id)) == (ssize_t)sizeof(id) ? 0 : 1);
	}
	char child[33] = "", parent[33];
	assert_int_equal(read(fds[0], child, sizeof(child)), sizeof(child));
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(fds[0]);
	close(fds[1]);
	mall_rpc_new_id(parent);
	assert_int_equal(strlen(child), 32);
	assert_string_not_equal(parent, child);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_remote_error_with_fields, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_method_is_unimplemented, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_undecodable_requests_are_invalid_argument, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_slow_handler_hits_deadline, setup, teardown),
	    cmocka_unit_test(test_expired_request_is_not_run),
	    cmocka_unit_test(test_server_down_is_unavailable_fast),
	    cmocka_unit_test(test_server_started_after_client),
	    cmocka_unit_test(test_oversize_messages_are_rejected),
	    cmocka_unit_test_setup_teardown(test_many_concurrent_callers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mutation_hook_and_idempotency_key, setup,
	                                    teardown),
	    cmocka_unit_test(test_idempotency_key_kept_across_retry),
	    cmocka_unit_test(test_outlier_ejection),
	    cmocka_unit_test_setup_teardown(test_ping, setup, teardown),
	    cmocka_unit_test(test_dns_name_resolves),
	    cmocka_unit_test(test_bad_addresses),
	    cmocka_unit_test(test_drain_finishes_in_flight),
	    cmocka_unit_test_setup_teardown(test_metrics_recorded, setup, teardown),
	    cmocka_unit_test(test_packed_reply),
	    cmocka_unit_test_setup_teardown(test_late_replies_never_answer_later_calls, setup,
	                                    teardown),
	    cmocka_unit_test(test_new_ids_are_unique),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
