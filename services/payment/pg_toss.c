/*
 * pg_toss.c: the PG client over libcurl (contract in pg_toss.h).  One easy
 * handle per request (no handle is shared between threads); the answer is
 * read into a buffer of at most 1 MiB.  pg_exchange rows are written on the
 * record pool, each statement its own transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "log.h"
#include "pg_toss.h"

#define MAX_ANSWER ((size_t)1 << 20)

struct pg_toss {
	char *url;
	char *auth; /* "Authorization: Basic ..." */
	int64_t connect_timeout_ms;
	int64_t timeout_ms;
	mall_db *record;
};

mall_code
pg_toss_global_init(mall_status *st)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return mall_status_set(st, MALL_INTERNAL, "could not initialize libcurl");
	if (sodium_init() < 0)
		return mall_status_set(st, MALL_INTERNAL, "could not initialize libsodium");
	return MALL_OK;
}

mall_code
pg_toss_new(pg_toss **out, const pg_toss_opts *opts, mall_status *st)
{
	*out = NULL;
	if (opts->url == NULL || *opts->url == '\0' || opts->secret_key == NULL ||
	    *opts->secret_key == '\0')
		return mall_status_set(st, MALL_INVALID_ARGUMENT,
		                       "the PG needs a URL and a secret key");
	pg_toss *pg = mall_xcalloc(1, sizeof(*pg));
	pg->url = mall_xstrdup(opts->url);
	size_t n = strlen(pg->url);
	while (n > 0 && pg->url[n - 1] == '/')
		pg->url[--n] = '\0';
	/* Basic auth: the secret key as the user name, an empty password */
	size_t klen = strlen(opts->secret_key);
	char *user = mall_xmalloc(klen + 2);
	memcpy(user, opts->secret_key, klen);
	user[klen] = ':';
	user[klen + 1] = '\0';
	size_t b64len = sodium_base64_encoded_len(klen + 1, sodium_base64_VARIANT_ORIGINAL);
	char *b64 = mall_xmalloc(b64len);
	sodium_bin2base64(b64, b64len, (const unsigned char *)user, klen + 1,
	                  sodium_base64_VARIANT_ORIGINAL);
	size_t alen = b64len + 32;
	pg->auth = mall_xmalloc(alen);
	snprintf(pg->auth, alen, "Authorization: Basic %s", b64);
	sodium_memzero(user, klen + 2);
	sodium_memzero(b64, b64len);
	free(user);
	free(b64);
	pg->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 3000;
	pg->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 10000;
	pg->record = opts->record;
	*out = pg;
	return MALL_OK;
}

void
pg_toss_free(pg_toss *pg)
{
	if (pg == NULL)
		return;
	sodium_memzero(pg->auth, strlen(pg->auth));
	free(pg->auth);
	free(pg->url);
	free(pg);
}

/* ---- JSON ---- */

static const char *
jstr(mall_arena *a, json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_string(v) ? mall_arena_strdup(a, json_string_value(v)) : "";
}

static int64_t
jint(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

pg_toss_payment *
pg_toss_parse_payment(mall_arena *a, const char *json, size_t len)
{
	json_error_t err;
	json_t *root = json_loadb(json, len, 0, &err);
	if (!json_is_object(root) || !json_is_string(json_object_get(root, "paymentKey")) ||
	    !json_is_string(json_object_get(root, "status"))) {
		json_decref(root);
		return NULL;
	}
	pg_toss_payment *p = mall_arena_alloc(a, sizeof(*p));
	p->payment_key = jstr(a, root, "paymentKey");
	p->order_id = jstr(a, root, "orderId");
	p->method = jstr(a, root, "method");
	p->status = jstr(a, root, "status");
	p->total_amount = jint(root, "totalAmount");
	p->balance_amount = jint(root, "balanceAmount");
	p->currency = jstr(a, root, "currency");
	p->approved_at = jstr(a, root, "approvedAt");
	p->last_transaction_key = jstr(a, root, "lastTransactionKey");
	p->secret = jstr(a, root, "secret");
	json_t *va = json_object_get(root, "virtualAccount");
	p->has_virtual_account = json_is_object(va);
	p->va_bank = jstr(a, va, "bankCode");
	if (!*p->va_bank)
		p->va_bank = jstr(a, va, "bank");
	p->va_account_number = jstr(a, va, "accountNumber");
	p->va_customer_name = jstr(a, va, "customerName");
	p->va_due_date = jstr(a, va, "dueDate");
	json_t *ep = json_object_get(root, "easyPay");
	p->easy_pay_provider = jstr(a, ep, "provider");
	json_t *card = json_object_get(root, "card");
	p->card_company = jstr(a, card, "company");
	p->card_number = jstr(a, card, "number");
	p->card_approve_no = jstr(a, card, "approveNo");
	json_t *f = json_object_get(root, "failure");
	p->failure_code = jstr(a, f, "code");
	p->failure_message = jstr(a, f, "message");
	json_t *cancels = json_object_get(root, "cancels");
	size_t nc = json_is_array(cancels) ? json_array_size(cancels) : 0;
	json_t *last = nc > 0 ? json_array_get(cancels, nc - 1) : NULL;
	p->cancel_transaction_key = jstr(a, last, "transactionKey");
	p->cancel_amount = jint(last, "cancelAmount");
	p->cancel_reason = jstr(a, last, "cancelReason");
	p->canceled_at = jstr(a, last, "canceledAt");
	json_decref(root);
	return p;
}

static void
mask_in(json_t *v, bool refund_account)
{
	if (json_is_array(v)) {
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e) mask_in(e, false);
		return;
	}
	if (!json_is_object(v))
		return;
	const char *k;
	json_t *e;
	json_object_foreach(v, k, e)
	{
		if (strcmp(k, "secret") == 0 && json_is_string(e) && json_string_length(e) > 0) {
			json_object_set_new(v, k, json_string("***"));
		} else if (refund_account && strcmp(k, "accountNumber") == 0 && json_is_string(e)) {
			const char *s = json_string_value(e);
			size_t n = strlen(s);
			char buf[32];
			snprintf(buf, sizeof(buf), "***%s", n > 4 ? s + n - 4 : "");
			json_object_set_new(v, k, json_string(buf));
		} else {
			mask_in(e, strcmp(k, "refundReceiveAccount") == 0);
		}
	}
}

char *
pg_toss_mask(mall_arena *a, const char *body, size_t len)
{
	json_error_t err;
	json_t *root = json_loadb(body, len, 0, &err);
	if (root == NULL)
		return mall_arena_strndup(a, body, len);
	mask_in(root, false);
	char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	char *out = mall_arena_strdup(a, s ? s : "");
	free(s);
	return out;
}

/* ---- pg_exchange ---- */

static int64_t
record_request(pg_toss *pg, mall_arena *a, const char *trace, const char *method, const char *path,
               const char *key, const char *body)
{
	if (pg->record == NULL)
		return 0;
	mall_status st;
	mall_status_clear(&st);
	mall_db_conn *c = mall_db_acquire(pg->record);
	const char *params[4] = {method, path, key ? key : "",
	                         body ? pg_toss_mask(a, body, strlen(body)) : ""};
	PGresult *res = mall_db_exec(c, &st,
	                             "INSERT INTO pg_exchange (method, path, idempotency_key, "
	                             "request_body) VALUES ($1, $2, $3, $4) RETURNING id",
	                             4, params);
	int64_t id = 0;
	if (res != NULL)
		id = mall_db_int64(res, 0, 0);
	else
		mall_log_warn(trace, "could not record the PG request %s %s: %s", method, path,
		              st.message);
	PQclear(res);
	mall_db_release(c);
	return id;
}

static void
record_answer(pg_toss *pg, mall_arena *a, const char *trace, int64_t id, long status,
              const char *body, size_t len, const char *error, int64_t ms)
{
	if (pg->record == NULL || id == 0)
		return;
	mall_status st;
	mall_status_clear(&st);
	mall_db_conn *c = mall_db_acquire(pg->record);
	char ids[24], sts[16], mss[24];
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	snprintf(sts, sizeof(sts), "%ld", status);
	snprintf(mss, sizeof(mss), "%lld", (long long)ms);
	const char *params[5] = {ids, sts, body ? pg_toss_mask(a, body, len) : "",
	                         error ? error : "", mss};
	if (mall_db_exec_cmd(c, &st,
	                     "UPDATE pg_exchange SET status = $2::integer, response_body = $3, "
	                     "error = $4, duration_ms = $5::integer, answered_at = now() "
	                     "WHERE id = $1::bigint",
	                     5, params) < 0)
		mall_log_warn(trace, "could not record the PG's answer (exchange %lld): %s",
		              (long long)id, st.message);
	mall_db_release(c);
}

/* ---- HTTP ---- */

typedef struct buf {
	char *data;
	size_t len;
	bool overflow;
} buf;

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	buf *b = arg;
	size_t n = size * nmemb;
	if (b->len + n > MAX_ANSWER) {
		b->overflow = true;
		return 0;
	}
	b->data = mall_xrealloc(b->data, b->len + n + 1);
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static mall_code
pg_error(mall_status *st, mall_arena *a, long status, const char *what, const char *body,
         size_t len)
{
	json_error_t err;
	json_t *root = body ? json_loadb(body, len, 0, &err) : NULL;
	const char *code = jstr(a, root, "code");
	const char *msg = jstr(a, root, "message");
	json_decref(root);
	mall_code c;
	if (status >= 500 || !*code)
		c = MALL_UNAVAILABLE;
	else if (status == 404)
		c = MALL_NOT_FOUND;
	else if (status == 401)
		c = MALL_INTERNAL;
	else if (status == 409 || status == 429)
		c = MALL_UNAVAILABLE;
	else
		c = MALL_FAILED_PRECONDITION;
	if (c == MALL_UNAVAILABLE && (status >= 500 || !*code))
		return mall_status_reason(st, c, "pg_unavailable",
		                          "could not %s: the PG answered %ld %s", what, status,
		                          code);
	char reason[48];
	size_t i = 0;
	for (; code[i] && i + 1 < sizeof(reason); i++) {
		char ch = code[i];
		reason[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a')
		            : ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) ? ch
		                                                                     : '_';
	}
	reason[i] = '\0';
	return mall_status_reason(st, c, reason, "could not %s: the PG answered %ld %s: %.120s",
	                          what, status, code, msg);
}

/* request: one HTTP exchange; body NULL is a GET. */
static mall_code
request(pg_toss *pg, mall_arena *a, const char *trace, const char *path, const char *body,
        const char *key, const char *what, pg_toss_payment **out, mall_status *st)
{
	*out = NULL;
	const char *method = body ? "POST" : "GET";
	int64_t id = record_request(pg, a, trace, method, path, key, body);
	CURL *h = curl_easy_init();
	if (h == NULL)
		return mall_status_set(st, MALL_INTERNAL, "could not %s: no curl handle", what);
	char *url = mall_arena_printf(a, "%s%s", pg->url, path);
	struct curl_slist *hdr = NULL;
	hdr = curl_slist_append(hdr, pg->auth);
	hdr = curl_slist_append(hdr, "Accept: application/json");
	if (body != NULL) {
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
		if (key != NULL)
			hdr = curl_slist_append(hdr,
			                        mall_arena_printf(a, "Idempotency-Key: %s", key));
	}
	char errbuf[CURL_ERROR_SIZE] = "";
	buf b = {0};
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)pg->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)pg->timeout_ms);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (body != NULL) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	int64_t t0 = now_ms();
	CURLcode rc = curl_easy_perform(h);
	int64_t ms = now_ms() - t0;
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(h);
	mall_code code;
	if (rc != CURLE_OK) {
		const char *e =
		    b.overflow ? "answer over 1 MiB" : (*errbuf ? errbuf : curl_easy_strerror(rc));
		record_answer(pg, a, trace, id, 0, b.data, b.len, e, ms);
		code = mall_status_reason(st, MALL_UNAVAILABLE,
		                          rc == CURLE_OPERATION_TIMEDOUT ? "pg_timeout"
		                                                         : "pg_unavailable",
		                          "could not %s: %s", what, e);
	} else {
		record_answer(pg, a, trace, id, status, b.data, b.len, NULL, ms);
		if (status >= 200 && status < 300) {
			*out = b.data ? pg_toss_parse_payment(a, b.data, b.len) : NULL;
			code = *out ? MALL_OK
			            : mall_status_reason(
			                  st, MALL_UNAVAILABLE, "pg_unavailable",
			                  "could not %s: the PG's answer is not a payment", what);
		} else {
			code = pg_error(st, a, status, what, b.data, b.len);
		}
	}
	free(b.data);
	return code;
}

static char *
escape_path(mall_arena *a, const char *s)
{
	CURL *h = curl_easy_init();
	char *e = h ? curl_easy_escape(h, s, 0) : NULL;
	char *out = mall_arena_strdup(a, e ? e : "");
	curl_free(e);
	if (h)
		curl_easy_cleanup(h);
	return out;
}

static char *
dump(mall_arena *a, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	char *out = mall_arena_strdup(a, s ? s : "{}");
	free(s);
	return out;
}

mall_code
pg_toss_confirm(pg_toss *pg, mall_arena *a, const char *trace, const char *payment_key,
                const char *order_id, int64_t amount, const char *key, pg_toss_payment **out,
                mall_status *st)
{
	json_t *o = json_object();
	json_object_set_new(o, "paymentKey", json_string(payment_key));
	json_object_set_new(o, "orderId", json_string(order_id));
	json_object_set_new(o, "amount", json_integer((json_int_t)amount));
	char *what = mall_arena_printf(a, "confirm the payment of order %s at the PG", order_id);
	return request(pg, a, trace, "/v1/payments/confirm", dump(a, o), key, what, out, st);
}

mall_code
pg_toss_get(pg_toss *pg, mall_arena *a, const char *trace, const char *payment_key,
            pg_toss_payment **out, mall_status *st)
{
	char *path = mall_arena_printf(a, "/v1/payments/%s", escape_path(a, payment_key));
	return request(pg, a, trace, path, NULL, NULL, "look the payment up at the PG", out, st);
}

mall_code
pg_toss_get_by_order(pg_toss *pg, mall_arena *a, const char *trace, const char *order_id,
                     pg_toss_payment **out, mall_status *st)
{
	char *path = mall_arena_printf(a, "/v1/payments/orders/%s", escape_path(a, order_id));
	char *what = mall_arena_printf(a, "look the payment of order %s up at the PG", order_id);
	return request(pg, a, trace, path, NULL, NULL, what, out, st);
}

mall_code
pg_toss_cancel(pg_toss *pg, mall_arena *a, const char *trace, const char *payment_key,
               const char *reason, int64_t amount, const pg_toss_refund_account *refund,
               const char *key, pg_toss_payment **out, mall_status *st)
{
	json_t *o = json_object();
	json_object_set_new(o, "cancelReason", json_string(reason));
	if (amount > 0)
		json_object_set_new(o, "cancelAmount", json_integer((json_int_t)amount));
	if (refund != NULL)
		json_object_set_new(o, "refundReceiveAccount",
		                    json_pack("{ssssss}", "bank", refund->bank, "accountNumber",
		                              refund->account_number, "holderName",
		                              refund->holder_name));
	char *path = mall_arena_printf(a, "/v1/payments/%s/cancel", escape_path(a, payment_key));
	return request(pg, a, trace, path, dump(a, o), key, "cancel the payment at the PG", out,
	               st);
}
