/*
 * rpc_server.c: the serving half of rpc.h.
 *
 * A REP socket is served by a fixed pool of nng contexts.  Each context is a
 * small state machine driven by its aio callback, as in nng's
 * demo/async/server.c:
 *
 *   IDLE -> RECV --(request)--> WAIT (queued) --(worker)--> SEND -> RECV ...
 *
 * The callback only moves the message to the work queue or re-arms the
 * receive; it never blocks.  Worker threads pop the queue, decode the envelope
 * and the body into a per-request arena, dispatch by full method name, pack the
 * reply and start the send.  State changes happen under the server mutex, so
 * drain can cancel exactly the contexts waiting to receive and never a reply
 * being sent; nng calls that may write to the network (a send) are made
 * outside it, and a queued request wakes one worker, after the unlock.
 *
 * The reply is packed straight into the request's nng message: the status
 * first, then the body (a message packed in place, or bytes the handler had
 * packed already, see mall_rpc_ctx_set_packed_reply), with no copy between.
 */
#include "rpc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "log.h"
#include "mall/rpc.pb-c.h"
#include "metrics.h"

#define DEFAULT_CONTEXTS 64
#define DEFAULT_WORKERS 4
#define DEFAULT_MAX_MSG ((size_t)4 << 20)
#define PING_SERVICE "mall.rpc.Rpc"

typedef enum work_state {
	W_IDLE, /* not receiving: before start, after drain */
	W_RECV, /* waiting for a request */
	W_WAIT, /* request queued or being served by a worker */
	W_SEND, /* reply being sent */
} work_state;

typedef struct work {
	mall_rpc_server *srv;
	work_state state;
	nng_aio *aio;
	nng_ctx ctx;
	bool ctx_open;
	nng_msg *msg;          /* the request while in W_WAIT */
	struct timespec start; /* when the request arrived */
	struct work *next;     /* in the work queue */
} work;

typedef struct method_entry {
	char *full; /* "mall.catalog.Catalog/ListProducts" */
	const ProtobufCMethodDescriptor *md;
	mall_rpc_handler fn;
	unsigned flags;
} method_entry;

struct mall_rpc_server {
	char *service;
	char *listen;
	int ncontexts;
	int nworkers;
	size_t max_msg;
	void *(*worker_init)(void *arg, int index);
	void (*worker_fini)(void *state);
	void *worker_arg;
	mall_rpc_mutation_hook mutate;
	char instance[320]; /* hostname:pid, for Ping */

	method_entry *methods; /* sorted by full name */
	size_t nmethods;

	nng_socket sock;
	bool sock_open;
	work *works;
	pthread_t *threads;
	int nthreads;

	pthread_mutex_t mu;
	pthread_cond_t queued; /* work queued, or stopping */
	pthread_cond_t idle;   /* a work became idle (drain waits on it) */
	work *qhead, *qtail;
	int nidle;
	bool started, draining, stopping;
};

struct mall_rpc_ctx {
	mall_rpc_server *srv;
	mall_arena *arena;
	void *worker;
	const Mall__Rpc__Request *req;
	const method_entry *m;
	const uint8_t *packed; /* mall_rpc_ctx_set_packed_reply */
	size_t packed_len;
	bool has_packed;
};

static mall_code ping(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                      mall_status *st);

static const mall_rpc_method ping_methods[] = {{"Ping", ping, 0}};

static int64_t
unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double
seconds_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(((const method_entry *)a)->full, ((const method_entry *)b)->full);
}

static const method_entry *
find_method(const mall_rpc_server *s, const char *full)
{
	method_entry key = {.full = (char *)full};
	if (s->nmethods == 0)
		return NULL;
	return bsearch(&key, s->methods, s->nmethods, sizeof(method_entry), entry_cmp);
}

mall_code
mall_rpc_server_new(mall_rpc_server **out, const mall_rpc_server_opts *opts, mall_status *st)
{
	*out = NULL;
	if (opts == NULL || opts->listen == NULL || opts->listen[0] == '\0')
		return mall_status_set(st, MALL_INVALID_ARGUMENT,
		                       "rpc server needs an address to listen on");
	if (opts->contexts < 0 || opts->workers < 0)
		return mall_status_set(
		    st, MALL_INVALID_ARGUMENT,
		    "rpc server for %s: contexts and workers must not be negative",
		    opts->service ? opts->service : "?");
	mall_rpc_server *s = mall_xcalloc(1, sizeof(*s));
	s->service = mall_xstrdup(opts->service && opts->service[0] ? opts->service : "mall");
	s->listen = mall_xstrdup(opts->listen);
	s->ncontexts = opts->contexts > 0 ? opts->contexts : DEFAULT_CONTEXTS;
	s->nworkers = opts->workers > 0 ? opts->workers : DEFAULT_WORKERS;
	s->max_msg = opts->max_msg > 0 ? opts->max_msg : DEFAULT_MAX_MSG;
	s->worker_init = opts->worker_init;
	s->worker_fini = opts->worker_fini;
	s->worker_arg = opts->worker_arg;
	s->mutate = opts->mutate;

	char host[256];
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(s->instance, sizeof(s->instance), "%s:%ld", host, (long)getpid());

	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->queued, NULL);
	pthread_cond_init(&s->idle, NULL);

	mall_code code = mall_rpc_server_add(s, &mall__rpc__rpc__descriptor, ping_methods, 1, st);
	if (code != MALL_OK) {
		mall_rpc_server_free(s);
		return code;
	}
	*out = s;
	return MALL_OK;
}

mall_code
mall_rpc_server_add(mall_rpc_server *s, const ProtobufCServiceDescriptor *svc,
                    const mall_rpc_method *methods, size_t nmethods, mall_status *st)
{
	if (s->started)
		return mall_status_set(st, MALL_FAILED_PRECONDITION,
		                       "could not add service %s to rpc server %s: already started",
		                       svc->name, s->service);
	/* check everything first, so a failure leaves the table unchanged */
	for (size_t i = 0; i < nmethods; i++) {
		if (methods[i].fn == NULL ||
		    protobuf_c_service_descriptor_get_method_by_name(svc, methods[i].name) == NULL)
			return mall_status_set(st, MALL_INVALID_ARGUMENT,
			                       "service %s has no method %s (or no handler for it)",
			                       svc->name, methods[i].name);
		char full[512];
		snprintf(full, sizeof(full), "%s/%s", svc->name, methods[i].name);
		bool dup = find_method(s, full) != NULL;
		for (size_t j = 0; j < i && !dup; j++)
			dup = strcmp(methods[j].name, methods[i].name) == 0;
		if (dup)
			return mall_status_set(st, MALL_ALREADY_EXISTS,
			                       "method %s is already served by %s", full,
			                       s->service);
	}
	s->methods = mall_xrealloc(s->methods, (s->nmethods + nmethods) * sizeof(method_entry));
	for (size_t i = 0; i < nmethods; i++) {
		method_entry *e = &s->methods[s->nmethods++];
		size_t n = strlen(svc->name) + strlen(methods[i].name) + 2;
		e->full = mall_xmalloc(n);
		snprintf(e->full, n, "%s/%s", svc->name, methods[i].name);
		e->md = protobuf_c_service_descriptor_get_method_by_name(svc, methods[i].name);
		e->fn = methods[i].fn;
		e->flags = methods[i].flags;
	}
	qsort(s->methods, s->nmethods, sizeof(method_entry), entry_cmp);
	return MALL_OK;
}

/* Called with s->mu held: starts receiving on w.  nng completes aios on its
 * own threads, so the callback never runs inside this call. */
static void
arm_recv(work *w)
{
	w->state = W_RECV;
	nng_ctx_recv(w->ctx, w->aio);
}

static void
set_idle(mall_rpc_server *s, work *w)
{
	w->state = W_IDLE;
	s->nidle++;
	pthread_cond_broadcast(&s->idle);
}

/* work_cb: the aio callback of one context.  Never blocks beyond the server
 * mutex, which is only ever held briefly. */
static void
work_cb(void *arg)
{
	work *w = arg;
	mall_rpc_server *s = w->srv;
	int rv = nng_aio_result(w->aio);
	bool wake = false;

	pthread_mutex_lock(&s->mu);
	switch (w->state) {
	case W_RECV:
		if (rv != 0) {
			if (rv == NNG_ECANCELED || rv == NNG_ECLOSED || s->draining || s->stopping)
				set_idle(s, w);
			else
				arm_recv(w); /* e.g. out of memory: keep serving */
			break;
		}
		w->msg = nng_aio_get_msg(w->aio);
		nng_aio_set_msg(w->aio, NULL);
		clock_gettime(CLOCK_MONOTONIC, &w->start);
		w->state = W_WAIT;
		w->next = NULL;
		if (s->qtail != NULL)
			s->qtail->next = w;
		else
			s->qhead = w;
		s->qtail = w;
		wake = true;
		break;
	case W_SEND:
		if (rv != 0) {
			nng_msg_free(nng_aio_get_msg(w->aio));
			nng_aio_set_msg(w->aio, NULL);
		}
		if (s->draining || s->stopping)
			set_idle(s, w);
		else
			arm_recv(w);
		break;
	case W_IDLE:
	case W_WAIT:
		break;
	}
	pthread_mutex_unlock(&s->mu);
	if (wake)
		pthread_cond_signal(&s->queued); /* one worker is enough */
}

static size_t
varint_size(size_t v)
{
	size_t n = 1;
	for (; v >= 0x80; v >>= 7)
		n++;
	return n;
}

static size_t
put_varint(uint8_t *p, size_t v)
{
	size_t n = 0;
	for (; v >= 0x80; v >>= 7)
		p[n++] = (uint8_t)(v | 0x80);
	p[n++] = (uint8_t)v;
	return n;
}

/* Reply.body (field 2, length-delimited) goes after the packed status as
 * tag, length, bytes: what protobuf-c would write, without packing the body
 * into a buffer first only to copy it. */
#define REPLY_BODY_TAG 0x12

/* Packs the reply envelope into msg, reusing its memory: the status, then the
 * body, given as a message (body) or as packed bytes (packed, packed_len), or
 * neither.  *sent is the code that went out.  Returns 0 or an nng error. */
static int
pack_reply(mall_rpc_server *s, nng_msg *msg, mall_code code, const mall_status *st,
           const ProtobufCMessage *body, const uint8_t *packed, size_t packed_len,
           const char *method, mall_code *sent)
{
	Mall__Rpc__FieldError fe[MALL_STATUS_MAX_FIELDS];
	Mall__Rpc__FieldError *fep[MALL_STATUS_MAX_FIELDS];
	Mall__Rpc__Detail de[MALL_STATUS_MAX_DETAILS];
	Mall__Rpc__Detail *dep[MALL_STATUS_MAX_DETAILS];
	Mall__Rpc__Status pst = MALL__RPC__STATUS__INIT;
	Mall__Rpc__Reply rep = MALL__RPC__REPLY__INIT;
	char message[sizeof(st->message)];

	snprintf(message, sizeof(message), "%s", st->message);
	pst.code = (Mall__Rpc__Code)code;
	pst.message = message;
	int nf = st->nfields < MALL_STATUS_MAX_FIELDS ? st->nfields : MALL_STATUS_MAX_FIELDS;
	for (int i = 0; i < nf; i++) {
		mall__rpc__field_error__init(&fe[i]);
		fe[i].field = (char *)st->fields[i].field;
		fe[i].message = (char *)st->fields[i].message;
		fep[i] = &fe[i];
	}
	pst.n_fields = (size_t)nf;
	pst.fields = nf > 0 ? fep : NULL;
	int nd = st->ndetails < MALL_STATUS_MAX_DETAILS ? st->ndetails : MALL_STATUS_MAX_DETAILS;
	for (int i = 0; i < nd; i++) {
		mall__rpc__detail__init(&de[i]);
		de[i].key = (char *)st->details[i].key;
		de[i].value = st->details[i].value;
		dep[i] = &de[i];
	}
	pst.n_details = (size_t)nd;
	pst.details = nd > 0 ? dep : NULL;
	pst.reason = (char *)st->reason;
	rep.status = &pst; /* rep.body stays empty: appended below */
	size_t blen = 0;
	if (code == MALL_OK)
		blen = body != NULL ? protobuf_c_message_get_packed_size(body) : packed_len;
	size_t total = mall__rpc__reply__get_packed_size(&rep);
	if (blen > 0)
		total += 1 + varint_size(blen) + blen;
	if (total > s->max_msg) {
		snprintf(message, sizeof(message),
		         "reply of %s is %zu bytes, over the limit of %zu bytes", method, total,
		         s->max_msg);
		pst.code = MALL__RPC__CODE__RESOURCE_EXHAUSTED;
		pst.n_fields = 0;
		pst.fields = NULL;
		pst.n_details = 0;
		pst.details = NULL;
		pst.reason = (char *)"";
		blen = 0;
		total = mall__rpc__reply__get_packed_size(&rep);
	}
	*sent = (mall_code)pst.code;
	/* the request was decoded into the arena: its bytes need not survive */
	nng_msg_clear(msg);
	int rv = nng_msg_realloc(msg, total);
	if (rv != 0)
		return rv;
	uint8_t *p = nng_msg_body(msg);
	p += mall__rpc__reply__pack(&rep, p);
	if (blen > 0) {
		*p++ = REPLY_BODY_TAG;
		p += put_varint(p, blen);
		if (body != NULL)
			protobuf_c_message_pack(body, p);
		else
			memcpy(p, packed, blen);
	}
	return 0;
}

/* run_handler: what a mutation hook runs as the handler.  A packed reply is
 * unpacked for the hook, which stores replies by packing them (idem.c). */
static mall_code
run_handler(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
            mall_status *st)
{
	const method_entry *m = ctx->m;
	ctx->has_packed = false;
	mall_code code = m->fn(ctx, req, reply, st);
	if (code != MALL_OK || *reply != NULL || !ctx->has_packed)
		return code;
	ctx->has_packed = false;
	*reply = protobuf_c_message_unpack(m->md->output, mall_arena_pb(ctx->arena),
	                                   ctx->packed_len, ctx->packed);
	if (*reply == NULL)
		return mall_status_set(st, MALL_INTERNAL,
		                       "handler of %s set a packed reply that is not a %s", m->full,
		                       m->md->output->name);
	return MALL_OK;
}

/* serve: decodes the request in w->msg, runs its handler and leaves the packed
 * reply in w->msg.  Returns 0, or an nng error if no reply could be built. */
static int
serve(mall_rpc_server *s, work *w, mall_arena *arena, void *wstate)
{
	mall_status st;
	mall_status_clear(&st);
	mall_code code;
	ProtobufCAllocator *pa = mall_arena_pb(arena);
	const method_entry *m = NULL;
	const char *method = "unknown"; /* metrics label: never an unvetted name */
	ProtobufCMessage *reply = NULL;
	const uint8_t *packed = NULL; /* a packed reply instead of reply */
	size_t packed_len = 0;

	Mall__Rpc__Request *req =
	    mall__rpc__request__unpack(pa, nng_msg_len(w->msg), nng_msg_body(w->msg));
	if (req == NULL) {
		code =
		    mall_status_set(&st, MALL_INVALID_ARGUMENT,
		                    "could not decode the request envelope sent to %s", s->service);
		goto done;
	}
	m = find_method(s, req->method);
	if (m == NULL) {
		code = mall_status_set(&st, MALL_UNIMPLEMENTED,
		                       "method \"%.120s\" is not implemented by %s", req->method,
		                       s->service);
		goto done;
	}
	method = m->full;
	if (req->deadline_unix_ms > 0 && unix_ms() >= req->deadline_unix_ms) {
		code = mall_status_set(&st, MALL_DEADLINE_EXCEEDED,
		                       "deadline of %s passed before %s could serve it", m->full,
		                       s->service);
		goto done;
	}
	ProtobufCMessage *body =
	    protobuf_c_message_unpack(m->md->input, pa, req->body.len, req->body.data);
	if (body == NULL) {
		code = mall_status_set(&st, MALL_INVALID_ARGUMENT,
		                       "could not decode the body of %s as %s", m->full,
		                       m->md->input->name);
		goto done;
	}
	mall_rpc_ctx ctx = {.srv = s, .arena = arena, .worker = wstate, .req = req, .m = m};
	if ((m->flags & MALL_RPC_MUTATING) && s->mutate != NULL)
		code = s->mutate(&ctx, run_handler, body, &reply, &st);
	else
		code = m->fn(&ctx, body, &reply, &st);
	if (code == MALL_OK) {
		if (reply == NULL && ctx.has_packed) {
			packed = ctx.packed;
			packed_len = ctx.packed_len;
		} else if (reply != NULL && ctx.has_packed) {
			code = mall_status_set(
			    &st, MALL_INTERNAL,
			    "handler of %s returned both a reply and a packed reply", m->full);
			reply = NULL;
		} else if (reply == NULL || reply->descriptor != m->md->output) {
			code = mall_status_set(&st, MALL_INTERNAL,
			                       "handler of %s returned %s instead of a %s", m->full,
			                       reply == NULL ? "no reply" : reply->descriptor->name,
			                       m->md->output->name);
			reply = NULL;
		}
		st.nfields = 0;
		if (code == MALL_OK) {
			st.message[0] = '\0';
			st.reason[0] = '\0';
			st.ndetails = 0;
		}
	} else {
		reply = NULL;
		if ((int)code < 0 || code > MALL_CODE_MAX)
			code = MALL_UNKNOWN;
		if (st.message[0] == '\0')
			snprintf(st.message, sizeof(st.message), "%s failed: %s", m->full,
			         mall_code_slug(code));
	}
	st.code = code;
done:;
	mall_code sent = code;
	int rv = pack_reply(s, w->msg, code, &st, reply, packed, packed_len, method, &sent);
	if (rv != 0) {
		mall_log_error(req ? req->trace_id : NULL, "could not build the reply of %s: %s",
		               method, nng_strerror(rv));
		mall_metrics_observe("mall_rpc_server", method, mall_code_name(MALL_INTERNAL),
		                     seconds_since(&w->start));
		return rv;
	}
	mall_metrics_observe("mall_rpc_server", method, mall_code_name(sent),
	                     seconds_since(&w->start));
	if (sent != MALL_OK && mall_log_enabled(MALL_LOG_DEBUG))
		mall_log_debug(req ? req->trace_id : NULL, "%s answered %s: %s", method,
		               mall_code_name(sent), st.message);
	return 0;
}

typedef struct worker_arg {
	mall_rpc_server *srv;
	int index;
} worker_arg;

static void *
worker_main(void *p)
{
	worker_arg wa = *(worker_arg *)p;
	free(p);
	mall_rpc_server *s = wa.srv;
	void *state = s->worker_init ? s->worker_init(s->worker_arg, wa.index) : NULL;
	mall_arena *arena = mall_arena_new();

	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->stopping && s->qhead == NULL)
			pthread_cond_wait(&s->queued, &s->mu);
		if (s->stopping)
			break;
		work *w = s->qhead;
		s->qhead = w->next;
		if (s->qhead == NULL)
			s->qtail = NULL;
		pthread_mutex_unlock(&s->mu);

		int rv = serve(s, w, arena, state);
		mall_arena_reset(arena);

		pthread_mutex_lock(&s->mu);
		if (rv != 0 || s->stopping) {
			/* no reply: the client's deadline covers it */
			nng_msg_free(w->msg);
			w->msg = NULL;
			if (s->stopping || s->draining)
				set_idle(s, w);
			else
				arm_recv(w);
			continue;
		}
		w->state = W_SEND;
		pthread_mutex_unlock(&s->mu);
		/* W_SEND: nothing else touches w until the send completes */
		nng_aio_set_msg(w->aio, w->msg);
		w->msg = NULL;
		nng_ctx_send(w->ctx, w->aio);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);

	mall_arena_free(arena);
	if (s->worker_fini)
		s->worker_fini(state);
	return NULL;
}

mall_code
mall_rpc_server_start(mall_rpc_server *s, mall_status *st)
{
	int rv;
	if (s->started)
		return mall_status_set(st, MALL_FAILED_PRECONDITION,
		                       "rpc server %s is already started", s->service);
	if ((rv = nng_rep0_open(&s->sock)) != 0)
		return mall_status_set(st, MALL_INTERNAL, "could not open rpc socket for %s: %s",
		                       s->service, nng_strerror(rv));
	s->sock_open = true;
	if ((rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, s->max_msg)) != 0)
		return mall_status_set(st, MALL_INTERNAL, "could not set rpc options for %s: %s",
		                       s->service, nng_strerror(rv));
	if ((rv = nng_listen(s->sock, s->listen, NULL, 0)) != 0)
		return mall_status_set(st, MALL_UNAVAILABLE, "could not listen for %s on %s: %s",
		                       s->service, s->listen, nng_strerror(rv));

	s->works = mall_xcalloc((size_t)s->ncontexts, sizeof(work));
	for (int i = 0; i < s->ncontexts; i++) {
		work *w = &s->works[i];
		w->srv = s;
		w->state = W_IDLE;
		if ((rv = nng_aio_alloc(&w->aio, work_cb, w)) != 0 ||
		    (rv = nng_ctx_open(&w->ctx, s->sock)) != 0)
			return mall_status_set(st, MALL_INTERNAL,
			                       "could not create rpc context for %s: %s",
			                       s->service, nng_strerror(rv));
		w->ctx_open = true;
	}
	s->nidle = s->ncontexts;

	s->threads = mall_xcalloc((size_t)s->nworkers, sizeof(pthread_t));
	for (int i = 0; i < s->nworkers; i++) {
		worker_arg *wa = mall_xmalloc(sizeof(*wa));
		wa->srv = s;
		wa->index = i;
		if ((rv = pthread_create(&s->threads[i], NULL, worker_main, wa)) != 0) {
			free(wa);
			return mall_status_set(st, MALL_INTERNAL,
			                       "could not start rpc worker for %s: %s", s->service,
			                       strerror(rv));
		}
		s->nthreads++;
	}

	s->started = true;
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->ncontexts; i++) {
		s->nidle--;
		arm_recv(&s->works[i]);
	}
	pthread_mutex_unlock(&s->mu);
	mall_log_info(NULL, "%s serves rpc on %s (%d contexts, %d workers)", s->service, s->listen,
	              s->ncontexts, s->nworkers);
	return MALL_OK;
}

void
mall_rpc_server_drain(mall_rpc_server *s, int64_t timeout_ms)
{
	if (s == NULL || !s->started)
		return;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	int64_t ns = (int64_t)until.tv_nsec + (timeout_ms > 0 ? timeout_ms : 0) % 1000 * 1000000;
	until.tv_sec += (timeout_ms > 0 ? timeout_ms : 0) / 1000 + ns / 1000000000;
	until.tv_nsec = (long)(ns % 1000000000);

	pthread_mutex_lock(&s->mu);
	s->draining = true;
	/* cancel only the receives: replies being built or sent go out */
	for (int i = 0; i < s->ncontexts; i++)
		if (s->works[i].state == W_RECV)
			nng_aio_cancel(s->works[i].aio);
	while (s->nidle < s->ncontexts) {
		if (pthread_cond_timedwait(&s->idle, &s->mu, &until) != 0)
			break;
	}
	int left = s->ncontexts - s->nidle;
	pthread_mutex_unlock(&s->mu);
	if (left > 0)
		mall_log_warn(NULL,
		              "%s: %d rpc requests still in flight after draining for %lld ms",
		              s->service, left, (long long)timeout_ms);
}

/* A socket being closed by a thread of its own, so that a close that never
 * returns cannot keep the process from exiting. */
typedef struct closer {
	nng_socket sock;
	mall_rpc_server *owner; /* kept reachable while the close runs */
	pthread_mutex_t mu;
	pthread_cond_t done_cv;
	bool done;
} closer;

static void *
close_main(void *arg)
{
	closer *c = arg;
	nng_close(c->sock);
	pthread_mutex_lock(&c->mu);
	c->done = true;
	pthread_cond_signal(&c->done_cv);
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* close_socket: closes s's socket; false if that did not finish within 3 s.
 * Measured: nng 1.5.2's nng_close can wait forever for a pipe after the process
 * was frozen (SIGSTOP) under load, every context and aio already stopped; a
 * draining service then logs it and exits instead of hanging. */
static bool
close_socket(mall_rpc_server *s)
{
	closer *c = mall_xcalloc(1, sizeof(*c));
	c->sock = s->sock;
	c->owner = s;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->done_cv, NULL);
	pthread_t t;
	if (pthread_create(&t, NULL, close_main, c) != 0) {
		close_main(c);
	} else {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 3;
		pthread_mutex_lock(&c->mu);
		while (!c->done)
			if (pthread_cond_timedwait(&c->done_cv, &c->mu, &until) != 0)
				break;
		bool done = c->done;
		pthread_mutex_unlock(&c->mu);
		if (!done) {
			pthread_detach(t);
			mall_log_warn(NULL, "%s: the rpc socket did not close within 3 s; leaving it",
			              s->service);
			return false;
		}
		pthread_join(t, NULL);
	}
	pthread_cond_destroy(&c->done_cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
	return true;
}

void
mall_rpc_server_free(mall_rpc_server *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	s->stopping = true;
	s->draining = true;
	pthread_cond_broadcast(&s->queued);
	pthread_mutex_unlock(&s->mu);
	for (int i = 0; i < s->nthreads; i++)
		pthread_join(s->threads[i], NULL);

	/* stop every aio (waiting for running callbacks) before freeing anything */
	if (s->works != NULL)
		for (int i = 0; i < s->ncontexts; i++)
			if (s->works[i].aio != NULL)
				nng_aio_stop(s->works[i].aio);
	/* the contexts go before their socket */
	if (s->works != NULL)
		for (int i = 0; i < s->ncontexts; i++)
			if (s->works[i].ctx_open) {
				nng_ctx_close(s->works[i].ctx);
				s->works[i].ctx_open = false;
			}
	if (s->sock_open && !close_socket(s))
		return; /* s stays with the closing thread: nng may still use it */
	if (s->works != NULL) {
		for (int i = 0; i < s->ncontexts; i++) {
			work *w = &s->works[i];
			if (w->msg != NULL)
				nng_msg_free(w->msg);
			if (w->aio != NULL) {
				nng_msg *m = nng_aio_get_msg(w->aio);
				if (m != NULL)
					nng_msg_free(m);
				nng_aio_free(w->aio);
			}
		}
	}
	for (size_t i = 0; i < s->nmethods; i++)
		free(s->methods[i].full);
	free(s->methods);
	free(s->works);
	free(s->threads);
	pthread_cond_destroy(&s->queued);
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->mu);
	free(s->service);
	free(s->listen);
	free(s);
}

static mall_code
ping(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply, mall_status *st)
{
	Mall__Rpc__PingReply *r = mall_arena_alloc(ctx->arena, sizeof(*r));
	mall__rpc__ping_reply__init(r);
	r->service = ctx->srv->service;
	r->instance = ctx->srv->instance;
	r->pid = (int64_t)getpid();
	*reply = &r->base;
	return MALL_OK;
}

void
mall_rpc_ctx_set_packed_reply(mall_rpc_ctx *ctx, const uint8_t *data, size_t len)
{
	ctx->packed = data;
	ctx->packed_len = len;
	ctx->has_packed = true;
}

mall_arena *
mall_rpc_ctx_arena(mall_rpc_ctx *ctx)
{
	return ctx->arena;
}

void *
mall_rpc_ctx_worker(mall_rpc_ctx *ctx)
{
	return ctx->worker;
}

const char *
mall_rpc_ctx_method(const mall_rpc_ctx *ctx)
{
	return ctx->m->full;
}

const char *
mall_rpc_ctx_service(const mall_rpc_ctx *ctx)
{
	return ctx->srv->service;
}

const char *
mall_rpc_ctx_trace_id(const mall_rpc_ctx *ctx)
{
	return ctx->req->trace_id ? ctx->req->trace_id : "";
}

const char *
mall_rpc_ctx_idempotency_key(const mall_rpc_ctx *ctx)
{
	return ctx->req->idempotency_key ? ctx->req->idempotency_key : "";
}

int64_t
mall_rpc_ctx_member_id(const mall_rpc_ctx *ctx)
{
	return ctx->req->caller ? ctx->req->caller->member_id : 0;
}

int64_t
mall_rpc_ctx_admin_id(const mall_rpc_ctx *ctx)
{
	return ctx->req->caller ? ctx->req->caller->admin_id : 0;
}

bool
mall_rpc_ctx_has_role(const mall_rpc_ctx *ctx, const char *role)
{
	const Mall__Rpc__Caller *c = ctx->req->caller;
	if (c == NULL)
		return false;
	for (size_t i = 0; i < c->n_roles; i++)
		if (strcmp(c->roles[i], role) == 0)
			return true;
	return false;
}

const ProtobufCBinaryData *
mall_rpc_ctx_body(const mall_rpc_ctx *ctx)
{
	return &ctx->req->body;
}

const ProtobufCMessageDescriptor *
mall_rpc_ctx_reply_desc(const mall_rpc_ctx *ctx)
{
	return ctx->m->md->output;
}
