/*
 * catalog_cache.c: the catalog's in-memory reply cache.
 *
 * The read path is the hot path, so list, detail and category replies are kept
 * packed in memory, keyed by method and packed request.  An entry is valid for
 * the generation it was read at.  The generation moves on every write this
 * instance commits (main.c's mutation hook, after the commit and before the
 * reply) and on every NOTIFY catalog_version, which every catalog write sends
 * in its transaction, so other instances learn within milliseconds.  A reader
 * takes the generation before it reads the database, so a write that commits
 * during the read leaves the entry stale, never served.  If the listening
 * connection breaks, notifications may be lost: the generation moves on
 * reconnect too.  The database stays the source of truth.
 *
 * A hit is answered with the stored bytes as they are (copied into the
 * request's arena and handed to mall_rpc_ctx_set_packed_reply), never
 * unpacked and packed again; what a handler must know of the reply to decide
 * whether to give it (a product's `published`) is stored beside it as flags.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "log.h"

typedef struct entry {
	struct entry *next;
	uint64_t hash;
	uint64_t gen;
	size_t key_len;
	unsigned char *key; /* method '\0' request-bytes */
	size_t value_len;
	unsigned char *value; /* packed reply */
	unsigned flags;       /* the caller's, e.g. CATALOG_CACHE_PUBLISHED */
} entry;

#define NBUCKETS 4096

static struct {
	atomic_uint_fast64_t gen;
	pthread_mutex_t mu;
	entry *buckets[NBUCKETS];
	size_t count;
	size_t max_entries;
	pthread_t listener;
	atomic_bool stop;
	bool started;
	char *conninfo;
} cache = {.gen = 1, .mu = PTHREAD_MUTEX_INITIALIZER};

uint64_t
catalog_cache_generation(void)
{
	return atomic_load(&cache.gen);
}

static void
clear_locked(void)
{
	for (size_t i = 0; i < NBUCKETS; i++) {
		entry *e = cache.buckets[i];
		while (e != NULL) {
			entry *next = e->next;
			free(e->key);
			free(e->value);
			free(e);
			e = next;
		}
		cache.buckets[i] = NULL;
	}
	cache.count = 0;
}

void
catalog_cache_invalidate(void)
{
	atomic_fetch_add(&cache.gen, 1);
	pthread_mutex_lock(&cache.mu);
	clear_locked();
	pthread_mutex_unlock(&cache.mu);
}

/* FNV-1a over the key's two parts. */
static uint64_t
hash_key(const char *method, const ProtobufCBinaryData *body)
{
	uint64_t h = 1469598103934665603ULL;
	for (const char *p = method; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (size_t i = 0; i < body->len; i++)
		h = (h ^ body->data[i]) * 1099511628211ULL;
	return h;
}

static bool
key_equal(const entry *e, const char *method, const ProtobufCBinaryData *body)
{
	size_t mlen = strlen(method);
	return e->key_len == mlen + 1 + body->len && memcmp(e->key, method, mlen + 1) == 0 &&
	       (body->len == 0 || memcmp(e->key + mlen + 1, body->data, body->len) == 0);
}

bool
catalog_cache_lookup(mall_rpc_ctx *ctx, const uint8_t **data, size_t *len, unsigned *flags)
{
	if (cache.max_entries == 0)
		return false;
	const char *method = mall_rpc_ctx_method(ctx);
	const ProtobufCBinaryData *body = mall_rpc_ctx_body(ctx);
	uint64_t h = hash_key(method, body);
	uint64_t gen = catalog_cache_generation();
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	bool hit = false;

	pthread_mutex_lock(&cache.mu);
	for (entry *e = cache.buckets[h % NBUCKETS]; e != NULL; e = e->next) {
		if (e->hash == h && e->gen == gen && key_equal(e, method, body)) {
			uint8_t *copy = mall_arena_alloc(a, e->value_len ? e->value_len : 1);
			memcpy(copy, e->value, e->value_len);
			*data = copy;
			*len = e->value_len;
			if (flags != NULL)
				*flags = e->flags;
			hit = true;
			break;
		}
	}
	pthread_mutex_unlock(&cache.mu);
	return hit;
}

bool
catalog_cache_reply(mall_rpc_ctx *ctx)
{
	const uint8_t *data;
	size_t len;
	if (!catalog_cache_lookup(ctx, &data, &len, NULL))
		return false;
	mall_rpc_ctx_set_packed_reply(ctx, data, len);
	return true;
}

void
catalog_cache_put(mall_rpc_ctx *ctx, uint64_t gen, const ProtobufCMessage *reply, unsigned flags)
{
	if (cache.max_entries == 0 || gen != catalog_cache_generation())
		return;
	const char *method = mall_rpc_ctx_method(ctx);
	const ProtobufCBinaryData *body = mall_rpc_ctx_body(ctx);
	uint64_t h = hash_key(method, body);
	size_t mlen = strlen(method);

	entry *n = mall_xcalloc(1, sizeof(*n));
	n->hash = h;
	n->gen = gen;
	n->key_len = mlen + 1 + body->len;
	n->key = mall_xmalloc(n->key_len);
	memcpy(n->key, method, mlen + 1);
	if (body->len > 0)
		memcpy(n->key + mlen + 1, body->data, body->len);
	n->value_len = protobuf_c_message_get_packed_size(reply);
	n->value = mall_xmalloc(n->value_len ? n->value_len : 1);
	protobuf_c_message_pack(reply, n->value);
	n->flags = flags;

	pthread_mutex_lock(&cache.mu);
	if (gen != catalog_cache_generation()) {
		pthread_mutex_unlock(&cache.mu);
		free(n->key);
		free(n->value);
		free(n);
		return;
	}
	if (cache.count >= cache.max_entries)
		clear_locked(); /* crude but bounded; the working set refills quickly */
	entry **slot = &cache.buckets[h % NBUCKETS];
	for (entry **p = slot; *p != NULL; p = &(*p)->next) {
		if ((*p)->hash == h && key_equal(*p, method, body)) {
			entry *old = *p;
			*p = old->next;
			free(old->key);
			free(old->value);
			free(old);
			cache.count--;
			break;
		}
	}
	n->next = *slot;
	*slot = n;
	cache.count++;
	pthread_mutex_unlock(&cache.mu);
}

/* Listens for catalog_version notifications until stopped. */
static void *
listener_main(void *arg)
{
	(void)arg;
	mall_db_conn *conn = mall_db_conn_new(cache.conninfo);
	bool listening = false;
	while (!atomic_load(&cache.stop)) {
		mall_status st;
		mall_status_clear(&st);
		if (!listening) {
			if (mall_db_exec_cmd(conn, &st, "LISTEN catalog_version", 0, NULL) < 0) {
				mall_log_warn(NULL, "catalog cache: could not listen for changes: %s",
				              st.message);
				for (int i = 0; i < 10 && !atomic_load(&cache.stop); i++)
					usleep(100 * 1000);
				continue;
			}
			listening = true;
			/* notifications may have been missed while not listening */
			catalog_cache_invalidate();
		}
		PGconn *pg = mall_db_pg(conn, &st);
		if (pg == NULL) {
			listening = false;
			continue;
		}
		struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};
		int rc = poll(&pfd, 1, 200);
		if (rc < 0)
			continue;
		if (PQconsumeInput(pg) == 0 || PQstatus(pg) != CONNECTION_OK) {
			mall_log_warn(NULL, "catalog cache: lost the listening connection: %s",
			              PQerrorMessage(pg));
			catalog_cache_invalidate();
			listening = false;
			PQreset(pg);
			continue;
		}
		PGnotify *n;
		bool changed = false;
		while ((n = PQnotifies(pg)) != NULL) {
			changed = true;
			PQfreemem(n);
		}
		if (changed)
			catalog_cache_invalidate();
	}
	mall_db_conn_free(conn);
	return NULL;
}

mall_code
catalog_cache_start(const char *conninfo, size_t max_entries, mall_status *st)
{
	cache.max_entries = max_entries;
	cache.conninfo = mall_xstrdup(conninfo);
	atomic_store(&cache.stop, false);
	if (pthread_create(&cache.listener, NULL, listener_main, NULL) != 0)
		return mall_status_set(st, MALL_INTERNAL, "could not start the cache listener");
	cache.started = true;
	return MALL_OK;
}

void
catalog_cache_stop(void)
{
	if (cache.started) {
		atomic_store(&cache.stop, true);
		pthread_join(cache.listener, NULL);
		cache.started = false;
	}
	pthread_mutex_lock(&cache.mu);
	clear_locked();
	pthread_mutex_unlock(&cache.mu);
	free(cache.conninfo);
	cache.conninfo = NULL;
}
