/*
 * gateway.h: what the gateway's files share: its settings, the running
 * gateway, one request being served, the response helpers (server.c) and the
 * route handlers (ops_routes.c, catalog_routes.c, member_routes.c,
 * session_routes.c, me_routes.c, cart_routes.c, order_routes.c,
 * payment_routes.c, static.c).
 *
 * A request's memory is its arena (r->arena), freed when the response is out;
 * handlers allocate from it and free nothing.  Every handler answers exactly
 * once through one of the mall_gw_respond* functions, which add the headers
 * every response carries: Content-Length, X-Request-Id (the trace id passed to
 * RPCs), and Cache-Control: no-store for API routes.
 */
#ifndef MALL_GW_GATEWAY_H
#define MALL_GW_GATEWAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <civetweb.h>
#include <protobuf-c/protobuf-c.h>

#include "alloc.h"
#include "http.h"
#include "json_pb.h"
#include "query.h"
#include "redis.h"
#include "routes.h"
#include "rpc.h"
#include "status.h"

/* The settings (MALL_GATEWAY_*, MALL_<SERVICE>_ADDRS, MALL_RPC_TIMEOUT,
 * MALL_PAYMENT_PG_CLIENT_KEY). */
typedef struct mall_gw_config {
	const char *listen;        /* "127.0.0.1:8080" */
	const char *catalog_addrs; /* "tcp://127.0.0.1:7401,..." */
	const char *member_addrs;  /* "tcp://127.0.0.1:7411,..." */
	const char *cart_addrs;    /* "tcp://127.0.0.1:7421,..." */
	const char *order_addrs;   /* "tcp://127.0.0.1:7431,..." */
	const char *payment_addrs; /* "tcp://127.0.0.1:7441,..." */
	const char *web_root;      /* canonical (realpath) */
	int64_t max_body;          /* bytes */
	int64_t max_upload;        /* bytes */
	int threads;
	int64_t request_timeout_ms;
	int64_t rpc_timeout_ms;
	const char *redis_addr;        /* "127.0.0.1:6379" (sessions, login limits) */
	int64_t session_ttl_ms;        /* idle time after which a session ends */
	bool secure_cookies;           /* Secure on the session cookies */
	int64_t login_max_per_ip;      /* failed logins per client IP per window */
	int64_t login_max_per_account; /* failed logins per email per window */
	int64_t login_window_ms;
	/* MALL_PAYMENT_PG_CLIENT_KEY: the PG's client key, public (the browser's
	 * payment window needs it; the secret key stays with the payment service) */
	const char *pg_client_key;
	/* MALL_GATEWAY_PG_WINDOW_URL: the PG's payment window page, where the
	 * browser goes to pay a placed order (handed out with clientKey) */
	const char *pg_window_url;
	/* MALL_GATEWAY_CONFIRM_WAIT: how long a payment confirm waits for the
	 * order to leave pending_payment (payment_routes.c) */
	int64_t confirm_wait_ms;
	/* MALL_GATEWAY_CONFIRM_RECHECK: while it waits, a confirm reads the
	 * order at least this often, whatever it hears */
	int64_t confirm_recheck_ms;
	/* MALL_ORDER_EVENTS_ADDRS: the order service's event relays, heard by
	 * order_watch.c; "" derives them from order_addrs (outbox.h) */
	const char *order_events_addrs;
} mall_gw_config;

/* ---- order_watch.c: waiting for an order to change ---- */

typedef struct mall_gw_watch mall_gw_watch;

/* A waiter's registration for the events of one order, on its stack. */
typedef struct mall_gw_ticket {
	const char *number; /* not copied: must outlive the ticket */
	bool fired;         /* an event of the order came since the last wait */
	struct mall_gw_ticket *next;
} mall_gw_ticket;

/* mall_gw_watch_start: subscribes to the order events published at addrs
 * (comma-separated nng URLs; dialed without blocking). */
mall_code mall_gw_watch_start(mall_gw_watch **out, const char *addrs, mall_status *st);
void mall_gw_watch_stop(mall_gw_watch *w);
/* mall_gw_watch_begin: registers t for the events of order number; call it
 * before reading the order, then _wait as often as needed, then _end.  w may
 * be NULL (no watch): waits are plain sleeps. */
void mall_gw_watch_begin(mall_gw_watch *w, mall_gw_ticket *t, const char *number);
/* mall_gw_watch_wait: until an order.status_changed of t's order has come
 * since begin or the last wait (true), or ms pass (false).  An event is a
 * reason to read the order again, not a guarantee it changed as hoped. */
bool mall_gw_watch_wait(mall_gw_watch *w, mall_gw_ticket *t, int64_t ms);
void mall_gw_watch_end(mall_gw_watch *w, mall_gw_ticket *t);

typedef struct mall_gw {
	mall_gw_config cfg;
	struct mg_context *mg;
	mall_rpc_client *catalog;
	mall_rpc_client *member;
	mall_rpc_client *cart;
	mall_rpc_client *order;
	mall_rpc_client *payment;
	mall_redis *redis; /* one connection, shared (it has a mutex) */
	mall_gw_watch *watch; /* the order events; NULL: none heard */
	atomic_bool ready;
} mall_gw;

typedef struct mall_gw_req {
	mall_gw *gw;
	struct mg_connection *conn;
	const struct mg_request_info *ri;
	mall_arena *arena;
	const char *method;
	const char *path;           /* decoded; NULL when it could not be decoded */
	const mall_gw_route *route; /* matched route (or the path's, for 405) */
	const char *param;          /* the decoded {name} segment, or NULL */
	mall_gw_param *params;      /* the decoded, checked query parameters */
	size_t nparams;
	char trace_id[65];
	bool head;     /* HEAD: headers only */
	bool api;      /* API path: JSON, no-store */
	bool close;    /* close the connection after the response */
	int64_t limit; /* this request's body limit, bytes */
	mall_gw_body body_kind;
	const char *body; /* once read (chunked bodies are read before routing) */
	size_t body_len;
	bool body_read;
	int status;                      /* the status answered, 0 until then */
	size_t bytes;                    /* body bytes answered */
	char *extra;                     /* extra header lines, "Name: value\r\n"... */
	struct mall_gw_session *session; /* session.h: once loaded, NULL if none */
	bool session_loaded;
} mall_gw_req;

/* The shortest deadline of a payment confirm (payment_routes.c): the payment
 * service reads the order, then waits for the PG up to MALL_PAYMENT_PG_TIMEOUT
 * (10 s by default).  MALL_RPC_TIMEOUT applies when it is longer. */
#define MALL_GW_CONFIRM_TIMEOUT_MS 15000

/* ---- server.c ---- */

/* mall_gw_start: connects the service clients (catalog, member, cart, order,
 * payment) and starts
 * civetweb; not ready yet.  On failure nothing is left running. */
mall_code mall_gw_start(mall_gw **out, const mall_gw_config *cfg, mall_status *st);
void mall_gw_set_ready(mall_gw *gw, bool ready);
/* mall_gw_stop: stops civetweb (requests in flight finish), then the
 * clients; frees gw.  NULL is ok. */
void mall_gw_stop(mall_gw *gw);

/* mall_gw_header: adds a header line to the coming response. */
void mall_gw_header(mall_gw_req *r, const char *name, const char *value);
/* mall_gw_respond: answers status with body (not sent for HEAD; its length is). */
void mall_gw_respond(mall_gw_req *r, int status, const char *content_type, const void *body,
                     size_t len);
/* mall_gw_respond_error: answers the JSON error body (http.h). */
void mall_gw_respond_error(mall_gw_req *r, int status, const char *slug, const char *message,
                           const mall_status *fields);
/* mall_gw_respond_status: answers an error status from a service (or the
 * gateway), with mall_code_http's status; server errors are logged with
 * their real message and answered with a public one naming service.  An
 * idempotency key reused for another request (lib/idem.h's reason
 * MALL_IDEM_KEY_REUSED) is 422 idempotency_key_reused, for every route. */
void mall_gw_respond_status(mall_gw_req *r, const mall_status *st, const char *service);
/* mall_gw_idempotency_key: the client's Idempotency-Key header: NULL when it
 * sent none, "" when it sent a bad one (then answered 400 here). */
const char *mall_gw_idempotency_key(mall_gw_req *r);
/* mall_gw_respond_pb: answers 200 with m as JSON (json_pb.h). */
void mall_gw_respond_pb(mall_gw_req *r, const ProtobufCMessage *m);
/* mall_gw_respond_pb_opts: as mall_gw_respond_pb, leaving out the fields opts
 * skips (mall_pb_to_json_text_opts; opts NULL: none). */
void mall_gw_respond_pb_opts(mall_gw_req *r, const ProtobufCMessage *m,
                             const mall_pb_json_opts *opts);
/* mall_gw_respond_head: sends status and headers for a body of len bytes
 * that the caller then writes with mall_gw_write (static files). */
void mall_gw_respond_head(mall_gw_req *r, int status, const char *content_type, size_t len);
/* mall_gw_write: writes body bytes after mall_gw_respond_head; -1 when the
 * client is gone. */
int mall_gw_write(mall_gw_req *r, const void *buf, size_t len);

/* mall_gw_read_body: the request body (up to the route's limit), read into
 * the arena and checked to be UTF-8 text when utf8 is set.  Too large is
 * RESOURCE_EXHAUSTED (answer 413 with mall_gw_respond_too_large), a short body
 * or bad UTF-8 INVALID_ARGUMENT. */
mall_code mall_gw_read_body(mall_gw_req *r, bool utf8, const char **body, size_t *len,
                            mall_status *st);
/* mall_gw_read_json: the body as a message of type desc (mall_json_to_pb):
 * Content-Type must be JSON, unknown fields and wrong types are field errors. */
mall_code mall_gw_read_json(mall_gw_req *r, const ProtobufCMessageDescriptor *desc,
                            ProtobufCMessage **out, mall_status *st);
/* mall_gw_respond_too_large: 413 and close the connection. */
void mall_gw_respond_too_large(mall_gw_req *r);

/*
 * mall_gw_read_fields: the JSON body (Content-Type JSON, one object, no
 * duplicate keys) bound to a new desc message with json_pb, accepting only
 * the top-level keys in allowed (JSON names, NULL-terminated).  Every key not
 * allowed is a field error ("is not a field that can be set here"), and so
 * is an integer field sent as anything but a JSON integer (json_pb alone
 * would take "3" and 3.0): the API's numbers are JSON numbers.
 *
 * With mask set, the keys present become (*mask)[0..*nmask) (arena) for an
 * update mask, an object value of the key sub_key (NULL: none) naming its own
 * keys ("marketingConsent.email"), and an empty object is refused.  Returns
 * NULL once it has answered the error (400, 413).
 */
ProtobufCMessage *mall_gw_read_fields(mall_gw_req *r, const ProtobufCMessageDescriptor *desc,
                                      const char *const *allowed, const char *sub_key, char ***mask,
                                      size_t *nmask);

/* ---- handlers, one per mall_gw_route_id ---- */

void mall_gw_handle_healthz(mall_gw_req *r);
void mall_gw_handle_readyz(mall_gw_req *r);
void mall_gw_handle_metrics(mall_gw_req *r);
void mall_gw_handle_openapi(mall_gw_req *r);
void mall_gw_handle_products(mall_gw_req *r);
void mall_gw_handle_product(mall_gw_req *r);
void mall_gw_handle_categories(mall_gw_req *r);
void mall_gw_handle_members(mall_gw_req *r);
void mall_gw_handle_session_get(mall_gw_req *r);
void mall_gw_handle_session_login(mall_gw_req *r);
void mall_gw_handle_session_logout(mall_gw_req *r);
/* me_routes.c: the signed-in member's profile and address book */
void mall_gw_handle_me_get(mall_gw_req *r);
void mall_gw_handle_me_patch(mall_gw_req *r);
void mall_gw_handle_me_addresses(mall_gw_req *r);
void mall_gw_handle_me_address_add(mall_gw_req *r);
void mall_gw_handle_me_address_patch(mall_gw_req *r);
void mall_gw_handle_me_address_delete(mall_gw_req *r);
/* cart_routes.c: the shopper's cart (a member's, or the session's guest cart) */
void mall_gw_handle_cart_get(mall_gw_req *r);
void mall_gw_handle_cart_item_add(mall_gw_req *r);
void mall_gw_handle_cart_item_patch(mall_gw_req *r);
void mall_gw_handle_cart_item_delete(mall_gw_req *r);
void mall_gw_handle_cart_coupon_put(mall_gw_req *r);
void mall_gw_handle_cart_coupon_delete(mall_gw_req *r);
/* order_routes.c: placing, reading and cancelling orders */
void mall_gw_handle_order_place(mall_gw_req *r);
void mall_gw_handle_orders(mall_gw_req *r);
void mall_gw_handle_order_get(mall_gw_req *r);
void mall_gw_handle_order_cancel(mall_gw_req *r);
/* payment_routes.c: the payment window's return and the PG's deposit callback */
void mall_gw_handle_payment_confirm(mall_gw_req *r);
void mall_gw_handle_payment_webhook_toss(mall_gw_req *r);
void mall_gw_handle_static(mall_gw_req *r);

/* ---- cart_routes.c: the guest cart's move into a member's ---- */

/*
 * mall_gw_cart_merge: merges the guest cart guest_id into the member cart of
 * s (a member session holding guest_id in its "cart" field) with
 * CartService.MergeGuestCart under the idempotency key "merge-<guest_id>",
 * then drops the field.  Called at login and, while the field stays (the cart
 * service was down at login), before every cart route of that session.  A
 * failure the service may get over (5xx: unavailable, timeout) keeps the
 * field for the next try and returns its code; one it will not (4xx) is
 * logged, the field dropped and MALL_OK returned: a guest cart that cannot be
 * merged must not block the member's own cart forever.
 */
mall_code mall_gw_cart_merge(mall_gw_req *r, struct mall_gw_session *s, const char *guest_id,
                             mall_status *st);

#endif
