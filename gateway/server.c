/*
 * server.c: the gateway's HTTP server on civetweb: one request handler for
 * every path, which checks the request body's size before anything else,
 * then the Host header, then the CSRF token of an unsafe request carrying a
 * session (session.h), then routes by method and path (routes.h) to a
 * handler; and the response helpers every handler answers through
 * (gateway.h).
 *
 * civetweb runs with decode_url=no, so the path arrives as sent and is
 * decoded here (query.h: %00, malformed escapes and bad UTF-8 are refused),
 * and with no document_root, so civetweb itself never serves a file, a
 * directory listing, CGI or SSI: every request reaches handle().
 */
#include "gateway.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "idem.h"
#include "json_pb.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "session.h"

/* ---- responses ---- */

void
mall_gw_header(mall_gw_req *r, const char *name, const char *value)
{
	r->extra =
	    mall_arena_printf(r->arena, "%s%s: %s\r\n", r->extra ? r->extra : "", name, value);
}

/* The connection header to send: civetweb keeps a connection open unless the
 * client asked otherwise (HTTP/1.1) or did not ask to keep it (HTTP/1.0). */
static const char *
connection_header(mall_gw_req *r)
{
	if (r->close)
		return "Connection: close\r\n";
	const char *c = mg_get_header(r->conn, "Connection");
	bool v10 = r->ri->http_version && strcmp(r->ri->http_version, "1.1") != 0;
	if (c != NULL && strcasecmp(c, "close") == 0)
		return "Connection: close\r\n";
	if (v10)
		return (c != NULL && strcasecmp(c, "keep-alive") == 0)
		           ? "Connection: keep-alive\r\n"
		           : "Connection: close\r\n";
	return "";
}

/* The status line and headers of a response into buf (cap bytes). */
static size_t
format_head(mall_gw_req *r, int status, const char *ctype, size_t len, char *buf, size_t cap)
{
	int n = snprintf(buf, cap,
	                 "HTTP/1.1 %d %s\r\n"
	                 "Content-Type: %s\r\n"
	                 "Content-Length: %zu\r\n"
	                 "%s"
	                 "X-Request-Id: %s\r\n"
	                 "X-Content-Type-Options: nosniff\r\n"
	                 "%s%s\r\n",
	                 status, mall_gw_reason(status), ctype, len,
	                 r->api ? "Cache-Control: no-store\r\n" : "", r->trace_id,
	                 r->extra ? r->extra : "", connection_header(r));
	return n < 0 ? 0 : ((size_t)n >= cap ? cap - 1 : (size_t)n);
}

static size_t
head_cap(mall_gw_req *r, const char *ctype)
{
	return 320 + strlen(ctype) + (r->extra ? strlen(r->extra) : 0);
}

/*
 * Closes the connection after the response just sent, without draining the
 * request body (after a 413 the client may still be sending megabytes).
 * civetweb 1.15 has no call that closes a server connection, and reads an
 * unread body to its end before the next request unless its must_close flag
 * is set; mg_send_http_error sets that flag.  Called for a status without a
 * body once our response is out (mg_write marked the response as sent), it
 * writes nothing and only marks the connection to be closed.
 */
static void
close_after_response(mall_gw_req *r)
{
	mg_send_http_error(r->conn, 304, "%s", "");
}

void
mall_gw_respond(mall_gw_req *r, int status, const char *ctype, const void *body, size_t len)
{
	if (r->status != 0) {
		mall_log_error(r->trace_id, "second response to %s %s ignored", r->method,
		               r->path ? r->path : "?");
		return;
	}
	r->status = status;
	r->bytes = r->head ? 0 : len;
	/* headers and body in one write: one TCP segment for small answers */
	size_t hcap = head_cap(r, ctype);
	char *buf = mall_arena_alloc(r->arena, hcap + (r->head ? 0 : len));
	size_t n = format_head(r, status, ctype, len, buf, hcap);
	if (!r->head && len > 0) {
		memcpy(buf + n, body, len);
		n += len;
	}
	mg_write(r->conn, buf, n);
	if (r->close)
		close_after_response(r);
}

void
mall_gw_respond_head(mall_gw_req *r, int status, const char *ctype, size_t len)
{
	r->status = status;
	r->bytes = r->head ? 0 : len;
	size_t cap = head_cap(r, ctype);
	char *buf = mall_arena_alloc(r->arena, cap);
	size_t n = format_head(r, status, ctype, len, buf, cap);
	mg_write(r->conn, buf, n);
}

int
mall_gw_write(mall_gw_req *r, const void *buf, size_t len)
{
	return mg_write(r->conn, buf, len) == (int)len ? 0 : -1;
}

void
mall_gw_respond_error(mall_gw_req *r, int status, const char *slug, const char *message,
                      const mall_status *fields)
{
	size_t len;
	char *body = mall_gw_error_json(r->arena, slug, message, fields, &len);
	mall_gw_respond(r, status, MALL_GW_JSON, body, len);
}

void
mall_gw_respond_status(mall_gw_req *r, const mall_status *st, const char *service)
{
	int http = mall_code_http(st->code);
	char buf[160];
	const char *msg = mall_gw_public_message(st, service, buf, sizeof(buf));
	if (st->code == MALL_INVALID_ARGUMENT && strcmp(st->reason, MALL_IDEM_KEY_REUSED) == 0) {
		/* the service's message names the key as the gateway scoped it */
		http = 422;
		msg = "the Idempotency-Key was already used for a different request";
	}
	if (http >= 500)
		mall_log_warn(r->trace_id, "%s %s: %s: %s", r->method, r->path ? r->path : "?",
		              mall_code_name(st->code), st->message);
	if (st->code == MALL_UNAVAILABLE)
		mall_gw_header(r, "Retry-After", "1");
	const char *slug = http < 500 && st->reason[0] ? st->reason : mall_code_slug(st->code);
	mall_gw_respond_error(r, http, slug, msg, st->nfields || st->ndetails ? st : NULL);
}

const char *
mall_gw_idempotency_key(mall_gw_req *r)
{
	const char *key = mg_get_header(r->conn, "Idempotency-Key");
	if (key == NULL || mall_gw_request_id_valid(key))
		return key;
	mall_status st;
	mall_status_clear(&st);
	mall_status_field(&st, "Idempotency-Key",
	                  "must be 1 to 64 characters of letters, digits, '.', '_' or '-'");
	mall_gw_respond_status(r, &st, "gateway");
	return "";
}

void
mall_gw_respond_pb(mall_gw_req *r, const ProtobufCMessage *m)
{
	mall_gw_respond_pb_opts(r, m, NULL);
}

void
mall_gw_respond_pb_opts(mall_gw_req *r, const ProtobufCMessage *m, const mall_pb_json_opts *opts)
{
	size_t len;
	char *text = mall_pb_to_json_text_opts(m, opts, &len);
	mall_gw_respond(r, 200, MALL_GW_JSON, text, len);
	free(text);
}

void
mall_gw_respond_too_large(mall_gw_req *r)
{
	char msg[128];
	snprintf(msg, sizeof(msg), "request body is larger than the limit of %" PRId64 " bytes",
	         r->limit);
	r->close = true;
	mall_gw_respond_error(r, 413, "payload_too_large", msg, NULL);
}

/* ---- request bodies ---- */

/* Before the first read of a body: a client that sent "Expect: 100-continue"
 * waits for this interim answer before it sends the body (civetweb sends it
 * only for the files it serves itself). */
static void
continue_if_expected(mall_gw_req *r)
{
	const char *e = mg_get_header(r->conn, "Expect");
	if (e != NULL && strcasecmp(e, "100-continue") == 0 && r->ri->http_version != NULL &&
	    strcmp(r->ri->http_version, "1.1") == 0)
		mg_write(r->conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

/* Reads a chunked body in pieces into the arena; stops as soon as it passes
 * the limit.  Returns MALL_OK, RESOURCE_EXHAUSTED (too large) or
 * INVALID_ARGUMENT (broken chunk framing, client gone). */
static mall_code
read_chunked(mall_gw_req *r, mall_status *st)
{
	size_t limit = (size_t)r->limit;
	size_t cap = limit < 16384 ? limit + 1 : 16384;
	size_t len = 0;
	char *buf = mall_arena_alloc(r->arena, cap + 1);
	continue_if_expected(r);
	for (;;) {
		if (len == cap) {
			if (cap > limit)
				return mall_status_set(st, MALL_RESOURCE_EXHAUSTED,
				                       "body too large");
			size_t ncap = cap * 2 > limit + 1 ? limit + 1 : cap * 2;
			char *nbuf = mall_arena_alloc(r->arena, ncap + 1);
			memcpy(nbuf, buf, len);
			buf = nbuf;
			cap = ncap;
		}
		int n = mg_read(r->conn, buf + len, cap - len);
		if (n == 0)
			break;
		if (n < 0)
			return mall_status_set(st, MALL_INVALID_ARGUMENT,
			                       "could not read the request body");
		len += (size_t)n;
		if (len > limit)
			return mall_status_set(st, MALL_RESOURCE_EXHAUSTED, "body too large");
	}
	buf[len] = '\0';
	r->body = buf;
	r->body_len = len;
	r->body_read = true;
	return MALL_OK;
}

mall_code
mall_gw_read_body(mall_gw_req *r, bool utf8, const char **body, size_t *len, mall_status *st)
{
	if (!r->body_read) {
		if (r->body_kind == MALL_GW_BODY_LENGTH) {
			size_t want = (size_t)r->ri->content_length;
			char *buf = mall_arena_alloc(r->arena, want + 1);
			size_t got = 0;
			continue_if_expected(r);
			while (got < want) {
				int n = mg_read(r->conn, buf + got, want - got);
				if (n <= 0)
					break;
				got += (size_t)n;
			}
			if (got < want) {
				r->close = true;
				return mall_status_set(st, MALL_INVALID_ARGUMENT,
				                       "request body ended after %zu of %zu bytes",
				                       got, want);
			}
			r->body = buf;
			r->body_len = got;
		} else {
			r->body = "";
			r->body_len = 0;
		}
		r->body_read = true;
	}
	if (utf8 && !mall_utf8_valid(r->body, r->body_len))
		return mall_status_set(st, MALL_INVALID_ARGUMENT,
		                       "request body is not valid UTF-8");
	*body = r->body;
	*len = r->body_len;
	return MALL_OK;
}

mall_code
mall_gw_read_json(mall_gw_req *r, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out,
                  mall_status *st)
{
	*out = NULL;
	if (!mall_gw_media_is_json(mg_get_header(r->conn, "Content-Type")))
		return mall_status_set(st, MALL_INVALID_ARGUMENT,
		                       "request body must be application/json");
	const char *body = "";
	size_t len = 0;
	mall_code c = mall_gw_read_body(r, true, &body, &len, st);
	if (c != MALL_OK)
		return c;
	return mall_json_to_pb(body, len, desc, r->arena, out, st);
}

/* Answers a failed body read: 413 for RESOURCE_EXHAUSTED, else a 400. */
static void
respond_bad_body(mall_gw_req *r, const mall_status *st)
{
	if (st->code == MALL_RESOURCE_EXHAUSTED)
		mall_gw_respond_too_large(r);
	else
		mall_gw_respond_status(r, st, "gateway");
}

static bool
key_allowed(const char *key, const char *const *allowed)
{
	for (size_t i = 0; allowed[i] != NULL; i++)
		if (strcmp(key, allowed[i]) == 0)
			return true;
	return false;
}

/* The field of desc whose JSON name (lowerCamelCase of the proto name, as
 * json_pb derives it) or proto name is key, or NULL. */
static const ProtobufCFieldDescriptor *
field_of_key(const ProtobufCMessageDescriptor *desc, const char *key)
{
	for (unsigned i = 0; i < desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[i];
		if (strcmp(f->name, key) == 0)
			return f;
		const char *p = f->name, *k = key;
		bool up = false;
		for (; *p && *k; p++) {
			if (*p == '_') {
				up = true;
				continue;
			}
			char want = up && *p >= 'a' && *p <= 'z' ? (char)(*p - 32) : *p;
			up = false;
			if (want != *k)
				break;
			k++;
		}
		if (*p == '\0' && *k == '\0')
			return f;
	}
	return NULL;
}

static bool
is_int_field(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return true;
	default:
		return false;
	}
}

ProtobufCMessage *
mall_gw_read_fields(mall_gw_req *r, const ProtobufCMessageDescriptor *desc,
                    const char *const *allowed, const char *sub_key, char ***mask, size_t *nmask)
{
	mall_status st;
	mall_status_clear(&st);
	if (!mall_gw_media_is_json(mg_get_header(r->conn, "Content-Type"))) {
		mall_status_set(&st, MALL_INVALID_ARGUMENT,
		                "request body must be application/json");
		respond_bad_body(r, &st);
		return NULL;
	}
	const char *body = "";
	size_t len = 0;
	if (mall_gw_read_body(r, true, &body, &len, &st) != MALL_OK) {
		respond_bad_body(r, &st);
		return NULL;
	}
	json_error_t je;
	json_t *obj = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (obj == NULL || !json_is_object(obj)) {
		json_decref(obj);
		mall_status_set(&st, MALL_INVALID_ARGUMENT, "request body must be a JSON object");
		respond_bad_body(r, &st);
		return NULL;
	}
	size_t n = json_object_size(obj);
	char **keys = mall_arena_alloc(r->arena, (n * 2 + 1) * sizeof(char *));
	size_t nkeys = 0;
	const char *k;
	json_t *v;
	json_object_foreach(obj, k, v)
	{
		if (!key_allowed(k, allowed)) {
			mall_status_field(&st, k, "is not a field that can be set here");
			continue;
		}
		const ProtobufCFieldDescriptor *f = field_of_key(desc, k);
		if (f != NULL && is_int_field(f) && f->label != PROTOBUF_C_LABEL_REPEATED &&
		    !json_is_integer(v) && !json_is_null(v)) {
			mall_status_field(&st, k, "must be an integer");
			continue;
		}
		if (sub_key != NULL && strcmp(k, sub_key) == 0 && json_is_object(v)) {
			const char *sk;
			json_t *sv;
			size_t before = nkeys;
			json_object_foreach(v, sk, sv)
			{
				(void)sv;
				if (nkeys < n * 2)
					keys[nkeys++] = mall_arena_printf(r->arena, "%s.%s", k, sk);
			}
			if (before == nkeys && mask != NULL)
				mall_status_field(&st, k, "must name email or sms");
			continue;
		}
		if (nkeys < n * 2)
			keys[nkeys++] = mall_arena_strdup(r->arena, k);
	}
	if (mask != NULL && n == 0)
		mall_status_set(&st, MALL_INVALID_ARGUMENT, "the body names no field to change");
	ProtobufCMessage *msg = NULL;
	if (st.code == MALL_OK)
		mall_json_obj_to_pb(obj, desc, r->arena, &msg, &st);
	json_decref(obj);
	if (st.code != MALL_OK) {
		respond_bad_body(r, &st);
		return NULL;
	}
	if (mask != NULL) {
		*mask = keys;
		*nmask = nkeys;
	}
	return msg;
}

/* ---- dispatch ---- */

typedef void (*handler_fn)(mall_gw_req *r);

static const handler_fn handlers[MALL_GW_ROUTE_COUNT] = {
    [MALL_GW_ROUTE_HEALTHZ] = mall_gw_handle_healthz,
    [MALL_GW_ROUTE_READYZ] = mall_gw_handle_readyz,
    [MALL_GW_ROUTE_METRICS] = mall_gw_handle_metrics,
    [MALL_GW_ROUTE_OPENAPI] = mall_gw_handle_openapi,
    [MALL_GW_ROUTE_PRODUCTS] = mall_gw_handle_products,
    [MALL_GW_ROUTE_PRODUCT] = mall_gw_handle_product,
    [MALL_GW_ROUTE_CATEGORIES] = mall_gw_handle_categories,
    [MALL_GW_ROUTE_MEMBERS] = mall_gw_handle_members,
    [MALL_GW_ROUTE_SESSION_GET] = mall_gw_handle_session_get,
    [MALL_GW_ROUTE_SESSION_LOGIN] = mall_gw_handle_session_login,
    [MALL_GW_ROUTE_SESSION_LOGOUT] = mall_gw_handle_session_logout,
    [MALL_GW_ROUTE_ME_GET] = mall_gw_handle_me_get,
    [MALL_GW_ROUTE_ME_PATCH] = mall_gw_handle_me_patch,
    [MALL_GW_ROUTE_ME_ADDRESSES] = mall_gw_handle_me_addresses,
    [MALL_GW_ROUTE_ME_ADDRESS_ADD] = mall_gw_handle_me_address_add,
    [MALL_GW_ROUTE_ME_ADDRESS_PATCH] = mall_gw_handle_me_address_patch,
    [MALL_GW_ROUTE_ME_ADDRESS_DELETE] = mall_gw_handle_me_address_delete,
    [MALL_GW_ROUTE_CART_GET] = mall_gw_handle_cart_get,
    [MALL_GW_ROUTE_CART_ITEM_ADD] = mall_gw_handle_cart_item_add,
    [MALL_GW_ROUTE_CART_ITEM_PATCH] = mall_gw_handle_cart_item_patch,
    [MALL_GW_ROUTE_CART_ITEM_DELETE] = mall_gw_handle_cart_item_delete,
    [MALL_GW_ROUTE_CART_COUPON_PUT] = mall_gw_handle_cart_coupon_put,
    [MALL_GW_ROUTE_CART_COUPON_DELETE] = mall_gw_handle_cart_coupon_delete,
    [MALL_GW_ROUTE_ORDER_PLACE] = mall_gw_handle_order_place,
    [MALL_GW_ROUTE_ORDERS] = mall_gw_handle_orders,
    [MALL_GW_ROUTE_ORDER_GET] = mall_gw_handle_order_get,
    [MALL_GW_ROUTE_ORDER_CANCEL] = mall_gw_handle_order_cancel,
    [MALL_GW_ROUTE_PAYMENT_CONFIRM] = mall_gw_handle_payment_confirm,
    [MALL_GW_ROUTE_PAYMENT_WEBHOOK_TOSS] = mall_gw_handle_payment_webhook_toss,
    [MALL_GW_ROUTE_STATIC] = mall_gw_handle_static,
};

static int64_t
limit_bytes(const mall_gw *gw, const mall_gw_route *route)
{
	if (route != NULL && route->limit == MALL_GW_LIMIT_UPLOAD)
		return gw->cfg.max_upload;
	return gw->cfg.max_body;
}

/* Whether the request has exactly one Host header (HTTP/1.1 requires it). */
static bool
host_ok(const mall_gw_req *r)
{
	if (r->ri->http_version == NULL || strcmp(r->ri->http_version, "1.0") == 0 ||
	    strcmp(r->ri->http_version, "0.9") == 0)
		return true;
	int n = 0;
	for (int i = 0; i < r->ri->num_headers; i++)
		if (strcasecmp(r->ri->http_headers[i].name, "Host") == 0)
			n++;
	return n == 1;
}

static bool
method_unsafe(const char *m)
{
	return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0 ||
	       strcmp(m, "DELETE") == 0;
}

/* CSRF: an unsafe request carrying a live session must send the session's
 * CSRF token in X-CSRF-Token (constant-time compare).  A request without a
 * session cookie, or with one naming no live session, has no authority to
 * abuse and passes.  Returns false once answered (403, or 503 without
 * Redis). */
static bool
csrf_ok(mall_gw_req *r)
{
	if (!method_unsafe(r->method) || !mall_gw_session_has_cookie(r))
		return true;
	mall_status st;
	mall_status_clear(&st);
	mall_gw_session *s;
	if (mall_gw_session_load(r, &s, &st) != MALL_OK) {
		mall_gw_respond_status(r, &st, "session store");
		return false;
	}
	if (s == NULL || mall_gw_csrf_equal(mg_get_header(r->conn, MALL_GW_CSRF_HEADER), s->csrf))
		return true;
	mall_gw_respond_error(r, 403, "permission_denied",
	                      "missing or wrong X-CSRF-Token header (send the mall_csrf "
	                      "cookie's value)",
	                      NULL);
	return false;
}

static void
serve(mall_gw_req *r)
{
	const struct mg_request_info *ri = r->ri;
	const char *raw = ri->local_uri_raw ? ri->local_uri_raw : ri->request_uri;
	if (raw == NULL)
		raw = "";

	/* the path as sent, decoded by us; matched first only to learn the
	 * route's body limit */
	size_t rawlen = strlen(raw);
	char *path = mall_arena_alloc(r->arena, rawlen + 1);
	size_t plen;
	mall_gw_decode_err perr =
	    raw[0] == '/' ? mall_gw_percent_decode(raw, rawlen, false, true, path, &plen)
	                  : MALL_GW_DECODE_ESCAPE;
	mall_gw_match m;
	if (perr == MALL_GW_DECODE_OK) {
		r->path = path;
		mall_gw_route_match(r->method, path, &m);
		r->api = m.api;
		r->route = m.route;
	} else {
		memset(&m, 0, sizeof(m));
		m.result = MALL_GW_MATCH_NOT_FOUND;
		r->api = mall_gw_path_is_api(raw);
	}

	/* 1. the body's size, before anything is read or routed */
	r->limit = limit_bytes(r->gw, m.route);
	r->body_kind = mall_gw_body_check(ri->content_length,
	                                  mg_get_header(r->conn, "Transfer-Encoding"), r->limit);
	mall_status st;
	mall_status_clear(&st);
	switch (r->body_kind) {
	case MALL_GW_BODY_TOO_LARGE:
		mall_gw_respond_too_large(r);
		return;
	case MALL_GW_BODY_BAD:
		r->close = true;
		mall_gw_respond_error(r, 400, "bad_request",
		                      "unsupported Transfer-Encoding (only chunked, without "
		                      "Content-Length)",
		                      NULL);
		return;
	case MALL_GW_BODY_CHUNKED:
		if (read_chunked(r, &st) != MALL_OK) {
			if (st.code == MALL_RESOURCE_EXHAUSTED) {
				mall_gw_respond_too_large(r);
			} else {
				r->close = true;
				mall_gw_respond_error(r, 400, "bad_request", st.message, NULL);
			}
			return;
		}
		break;
	case MALL_GW_BODY_NONE:
	case MALL_GW_BODY_LENGTH:
		break;
	}

	/* 2. the Host header */
	if (!host_ok(r)) {
		mall_gw_respond_error(r, 400, "bad_request",
		                      "an HTTP/1.1 request needs exactly one Host header", NULL);
		return;
	}

	/* 3. the CSRF token */
	if (!csrf_ok(r))
		return;

	/* 4. the route */
	if (perr != MALL_GW_DECODE_OK) {
		char msg[96];
		snprintf(msg, sizeof(msg), "invalid request path: %s",
		         mall_gw_decode_err_text(perr));
		mall_gw_respond_error(r, 400, "bad_request", msg, NULL);
		return;
	}
	if (m.result == MALL_GW_MATCH_METHOD) {
		char msg[400];
		snprintf(msg, sizeof(msg), "method %.16s is not allowed for %.200s (allowed: %s)",
		         r->method, path, m.allow);
		mall_gw_header(r, "Allow", m.allow);
		mall_gw_respond_error(r, 405, "method_not_allowed", msg, NULL);
		return;
	}
	if (m.result == MALL_GW_MATCH_NOT_FOUND) {
		char msg[300];
		snprintf(msg, sizeof(msg), "no route for %.16s %.200s", r->method, path);
		mall_gw_respond_error(r, 404, "not_found", msg, NULL);
		return;
	}
	if (m.param != NULL)
		r->param = mall_arena_strndup(r->arena, m.param, m.param_len);

	/* 5. the query parameters the route accepts */
	if (!(m.route->flags & MALL_GW_ROUTE_ANY_QUERY)) {
		/* every field error at once: the undecodable ones and the bad values */
		mall_code qc =
		    mall_gw_query_parse(ri->query_string, r->arena, &r->params, &r->nparams, &st);
		mall_code pc = mall_gw_params_check(r->params, r->nparams, m.route->params,
		                                    m.route->nparams, &st);
		if (qc != MALL_OK || pc != MALL_OK) {
			mall_gw_respond_status(r, &st, "gateway");
			return;
		}
	}
	handlers[m.route->id](r);
	if (r->status == 0) {
		mall_log_error(r->trace_id, "handler of %s %s gave no response", r->method, path);
		mall_gw_respond_error(r, 500, "internal", "internal error in gateway", NULL);
	}
}

static double
now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
handle(struct mg_connection *conn, void *cbdata)
{
	double t0 = now_seconds();
	mall_gw_req r;
	memset(&r, 0, sizeof(r));
	r.gw = cbdata;
	r.conn = conn;
	r.ri = mg_get_request_info(conn);
	r.arena = mall_arena_new();
	r.method = r.ri->request_method ? r.ri->request_method : "";
	r.head = strcmp(r.method, "HEAD") == 0;
	const char *rid = mg_get_header(conn, "X-Request-Id");
	if (rid != NULL && mall_gw_request_id_valid(rid))
		snprintf(r.trace_id, sizeof(r.trace_id), "%s", rid);
	else
		mall_rpc_new_id(r.trace_id);

	serve(&r);

	double secs = now_seconds() - t0;
	char label[96], code[8];
	const char *pattern = r.route != NULL ? r.route->pattern : "unmatched";
	snprintf(label, sizeof(label), "%s %s", mall_gw_method_label(r.method), pattern);
	snprintf(code, sizeof(code), "%d", r.status);
	mall_metrics_observe("mall_http", label, code, secs);

	mall_log_level lvl = r.status >= 500   ? MALL_LOG_WARN
	                     : r.status >= 400 ? MALL_LOG_INFO
	                                       : MALL_LOG_DEBUG;
	if (mall_log_enabled(lvl)) {
		const char *q = r.ri->query_string;
		mall_log(lvl, r.trace_id,
		         "http %s %.300s%s%.300s %d %zu bytes %.3f ms route=\"%s\" remote=%s",
		         r.method,
		         r.path ? r.path : (r.ri->local_uri_raw ? r.ri->local_uri_raw : "?"),
		         q ? "?" : "", q ? q : "", r.status, r.bytes, secs * 1000, pattern,
		         r.ri->remote_addr);
	}
	int status = r.status;
	mall_arena_free(r.arena);
	return status > 0 ? status : 500;
}

/* ---- lifecycle ---- */

static int
log_message_cb(const struct mg_connection *conn, const char *message)
{
	(void)conn;
	mall_log_warn(NULL, "civetweb: %s", message);
	return 1;
}

mall_code
mall_gw_start(mall_gw **out, const mall_gw_config *cfg, mall_status *st)
{
	*out = NULL;
	mall_gw *gw = mall_xcalloc(1, sizeof(*gw));
	gw->cfg = *cfg;
	atomic_store(&gw->ready, false);

	mall_rpc_client_opts copts = {.timeout_ms = cfg->rpc_timeout_ms};
	if (copts.timeout_ms < 1000)
		copts.try_timeout_ms = copts.timeout_ms;
	/* the payment service: one try may take a confirm's whole deadline, since
	 * a confirm repeated on another instance would only wait for the first
	 * one's row lock while that one waits for the PG */
	mall_rpc_client_opts popts = copts;
	popts.try_timeout_ms = cfg->rpc_timeout_ms > MALL_GW_CONFIRM_TIMEOUT_MS
	                           ? cfg->rpc_timeout_ms
	                           : MALL_GW_CONFIRM_TIMEOUT_MS;
	mall_code c = mall_rpc_client_new(&gw->catalog, "catalog", cfg->catalog_addrs, &copts, st);
	if (c == MALL_OK)
		c = mall_rpc_client_new(&gw->member, "member", cfg->member_addrs, &copts, st);
	if (c == MALL_OK)
		c = mall_rpc_client_new(&gw->cart, "cart", cfg->cart_addrs, &copts, st);
	if (c == MALL_OK)
		c = mall_rpc_client_new(&gw->order, "order", cfg->order_addrs, &copts, st);
	if (c == MALL_OK)
		c = mall_rpc_client_new(&gw->payment, "payment", cfg->payment_addrs, &popts, st);
	if (c != MALL_OK)
		goto fail;
	char derived[1024];
	const char *events = cfg->order_events_addrs ? cfg->order_events_addrs : "";
	if (*events == '\0') {
		if (mall_events_addrs_from_rpc(cfg->order_addrs, derived, sizeof(derived)) == 0)
			events = derived;
		else
			mall_log_warn(NULL,
			              "could not derive the order relays' addresses from %s: "
			              "payment confirms poll the order (set "
			              "MALL_ORDER_EVENTS_ADDRS)",
			              cfg->order_addrs);
	}
	if (*events != '\0' && (c = mall_gw_watch_start(&gw->watch, events, st)) != MALL_OK)
		goto fail;

	char threads[16], timeout[24];
	snprintf(threads, sizeof(threads), "%d", cfg->threads);
	snprintf(timeout, sizeof(timeout), "%" PRId64, cfg->request_timeout_ms);
	/* clang-format off */
	const char *options[] = {
		"listening_ports", cfg->listen,
		"num_threads", threads,
		"request_timeout_ms", timeout,
		"enable_keep_alive", "yes",
		/* without it a keep-alive answer waits ~40 ms (Nagle + delayed ACK) */
		"tcp_nodelay", "1",
		/* the path is decoded (and checked) by serve(), not by civetweb */
		"decode_url", "no",
		"enable_directory_listing", "no",
		"cgi_pattern", "",
		"ssi_pattern", "",
		/* no cross-origin grants: the storefront is served from this origin */
		"access_control_allow_origin", "",
		"access_control_allow_methods", "",
		"access_control_allow_headers", "",
		NULL,
	};
	/* clang-format on */
	struct mg_callbacks cbs;
	memset(&cbs, 0, sizeof(cbs));
	cbs.log_message = log_message_cb;
	mg_init_library(0);
	gw->mg = mg_start(&cbs, gw, options);
	if (gw->mg == NULL) {
		c = mall_status_set(st, MALL_UNAVAILABLE, "could not listen on %s for HTTP",
		                    cfg->listen);
		goto fail;
	}
	gw->redis = mall_redis_new(cfg->redis_addr,
	                           cfg->rpc_timeout_ms < 1000 ? cfg->rpc_timeout_ms : 1000);
	mg_set_request_handler(gw->mg, "/", handle, gw);
	*out = gw;
	return MALL_OK;

fail:
	mall_gw_watch_stop(gw->watch);
	mall_rpc_client_free(gw->catalog);
	mall_rpc_client_free(gw->member);
	mall_rpc_client_free(gw->cart);
	mall_rpc_client_free(gw->order);
	mall_rpc_client_free(gw->payment);
	free(gw);
	return c;
}

void
mall_gw_set_ready(mall_gw *gw, bool ready)
{
	atomic_store(&gw->ready, ready);
}

void
mall_gw_stop(mall_gw *gw)
{
	if (gw == NULL)
		return;
	mg_stop(gw->mg);
	mall_gw_watch_stop(gw->watch); /* after the last request's wait */
	mall_rpc_client_free(gw->catalog);
	mall_rpc_client_free(gw->member);
	mall_rpc_client_free(gw->cart);
	mall_rpc_client_free(gw->order);
	mall_rpc_client_free(gw->payment);
	mall_redis_free(gw->redis);
	mg_exit_library();
	free(gw);
}
