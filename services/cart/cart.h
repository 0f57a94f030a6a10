/*
 * cart.h: the cart service's internal interface (mall-cart).
 *
 * Areas:
 *   main.c         the method table, settings, the mutation hook (below)
 *   cart_store.c   where cart lines live: a guest's in Redis, a member's in
 *                  PostgreSQL, behind one interface
 *   cart_items.c   the cart RPCs (GetCart, AddItem, ...): validate, look the
 *                  SKUs up in the catalog, change the store, price the result
 *   cart_pricing.c the pricing rules, pure functions of their inputs (unit
 *                  tested without a database)
 *   cart_promo.c   the promotion RPCs (shipping policy, coupons, gift rules,
 *                  redemptions) and the loaders that feed cart_pricing.c
 *
 * Every handler runs on an RPC worker thread whose state is the worker's own
 * mall_db_conn.  Mutations of member carts and of promotions run inside the
 * transaction lib/idem.c opened for their idempotency key and must neither
 * begin nor commit.  Mutations of guest carts run outside any transaction:
 * the Redis script that changes the cart checks the idempotency key and
 * records it with the change in one atomic step (cart_store.c), so a retried
 * call changes nothing twice and a refused change records nothing.
 */
#ifndef MALL_CART_H
#define MALL_CART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "db.h"
#include "redis.h"
#include "rpc.h"
#include "status.h"

#include "mall/cart.pb-c.h"
#include "mall/catalog.pb-c.h"

#define CART_QTY_MAX 99
#define CART_LINES_MAX 100     /* distinct SKUs in one cart */
#define CART_GUEST_ID_LEN 32   /* hex digits */

/* A timestamptz column as RFC 3339 in UTC, "" for NULL (to_char of NULL). */
#define CART_RFC3339(col) "coalesce(to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')"

/* ---- main.c: what the process shares ---- */

typedef struct cart_env {
	mall_rpc_client *catalog;  /* MALL_CATALOG_ADDRS */
	mall_redis **redis;        /* MALL_REDIS_ADDR: nredis connections */
	size_t nredis;
	int64_t guest_ttl_ms;      /* MALL_CART_GUEST_TTL, default 30 days */
	int64_t rpc_timeout_ms;    /* MALL_RPC_TIMEOUT */
} cart_env;

/* cart_env_get: the process's environment (set up by main.c's start). */
const cart_env *cart_env_get(void);
/* cart_redis: one of the Redis connections (spread over callers). */
mall_redis *cart_redis(void);

/* ---- cart_store.c: the lines of one cart ---- */

typedef struct cart_line {
	int64_t sku_id;
	int32_t quantity;
	int64_t added_ms;          /* Unix ms */
} cart_line;

typedef struct cart_contents {
	cart_line *lines;          /* oldest first; in the arena */
	size_t n;
	const char *coupon_code;   /* NULL: none */
} cart_contents;

/* cart_ref_check: field errors ("cart.memberId", "cart.guestId") unless
 * exactly one of member_id > 0 and a 32-hex-digit guest_id is set. */
void cart_ref_check(mall_status *st, const Mall__Cart__CartRef *ref);
/* cart_ref_is_guest: the reference names a guest cart. */
bool cart_ref_is_guest(const Mall__Cart__CartRef *ref);

/* cart_store_load: the cart's lines and coupon (empty when it has none).
 * For a member cart inside a transaction, lock also makes and locks the
 * cart's row (changes of one cart go one at a time; outside a transaction
 * lock is ignored); a guest cart's expiry is pushed back. */
mall_code cart_store_load(mall_db_conn *conn, mall_arena *a, const Mall__Cart__CartRef *ref,
                          bool lock, cart_contents *out, mall_status *st);

/* The changes.  key is the call's idempotency key (guest carts record it in
 * Redis with the change; member carts ignore it: lib/idem.c has it).  A
 * repeat of a key already applied changes nothing and answers MALL_OK.
 *
 * cart_store_add: adds qty to the SKU's line; the line may hold at most max
 * (the smaller of 99 and the stock).  Over it: FAILED_PRECONDITION with
 * *current set to the line's quantity now (0 without a line), nothing
 * changed.  A new line beyond CART_LINES_MAX is FAILED_PRECONDITION too, with
 * the reason "cart_full" (the other has no reason: the caller gives it).
 * Lines added in one transaction keep their order (clock_timestamp()). */
mall_code cart_store_add(mall_db_conn *conn, mall_arena *a, const Mall__Cart__CartRef *ref,
                         const char *key, int64_t sku_id, int32_t qty, int32_t max,
                         int32_t *current, mall_status *st);
/* cart_store_set: sets the line's quantity; NOT_FOUND without the line. */
mall_code cart_store_set(mall_db_conn *conn, mall_arena *a, const Mall__Cart__CartRef *ref,
                         const char *key, int64_t sku_id, int32_t qty, mall_status *st);
/* cart_store_remove: removes the line; NOT_FOUND without it. */
mall_code cart_store_remove(mall_db_conn *conn, mall_arena *a, const Mall__Cart__CartRef *ref,
                            const char *key, int64_t sku_id, mall_status *st);
/* cart_store_set_coupon: code NULL removes the coupon. */
mall_code cart_store_set_coupon(mall_db_conn *conn, mall_arena *a, const Mall__Cart__CartRef *ref,
                                const char *key, const char *code, mall_status *st);
/* cart_store_clear: removes every line and the coupon, or, with n taken
 * lines (a paid order's), takes those quantities off their lines (a line left
 * at 0 goes) and the coupon when it is coupon (NULL: the coupon stays). */
mall_code cart_store_clear(mall_db_conn *conn, mall_arena *a, const Mall__Cart__CartRef *ref,
                           const char *key, Mall__Cart__TakenLine *const *taken, size_t n,
                           const char *coupon, mall_status *st);
/* cart_store_guest_delete: deletes a guest cart from Redis (after a merge
 * committed). */
mall_code cart_store_guest_delete(const char *guest_id, mall_status *st);

/* ---- cart_pricing.c: the rules, pure ---- */

/* One line as the catalog sees it now. */
typedef struct cart_price_line {
	int64_t sku_id;
	int32_t quantity;
	int64_t unit_price;        /* won */
	int64_t available;         /* the catalog's available stock */
	bool known;                /* false: the catalog has no such SKU */
	bool purchasable;          /* the product is published */
} cart_price_line;

typedef struct cart_policy {
	int64_t fee;               /* won */
	int64_t free_threshold;    /* won; 0: never free */
} cart_policy;

typedef struct cart_gift_rule {
	int64_t id;
	const char *name;
	int64_t min_subtotal;      /* 0: any */
	int64_t trigger_sku_id;    /* 0: none needed */
	int64_t gift_sku_id;
	int32_t gift_quantity;
	int64_t starts_s, ends_s;  /* Unix seconds; 0: open */
	int64_t gift_available;    /* the catalog's available stock of the gift */
	bool gift_purchasable;     /* the gift's product is published */
} cart_gift_rule;

typedef enum cart_coupon_kind { CART_COUPON_FIXED, CART_COUPON_PERCENTAGE } cart_coupon_kind;

typedef struct cart_coupon {
	const char *code;
	const char *name;
	cart_coupon_kind kind;
	int64_t amount;            /* FIXED */
	int32_t percent;           /* PERCENTAGE */
	int64_t max_discount;      /* PERCENTAGE cap; 0: none */
	int64_t min_subtotal;
	int64_t starts_s, ends_s;  /* Unix seconds; 0: open */
	int32_t total_limit, per_member_limit; /* 0: unlimited */
	bool member_only;
	bool active;
	int64_t used_total;        /* redemptions of the coupon */
	int64_t used_by_member;    /* of them, by this cart's member */
} cart_coupon;

/* Why a coupon does not apply; the reason slugs of cart.proto. */
typedef enum cart_coupon_verdict {
	CART_COUPON_OK,
	CART_COUPON_INACTIVE,      /* "coupon_inactive" */
	CART_COUPON_MEMBERS_ONLY,  /* "coupon_members_only" */
	CART_COUPON_NOT_STARTED,   /* "coupon_not_started" */
	CART_COUPON_EXPIRED,       /* "coupon_expired" */
	CART_COUPON_EXHAUSTED,     /* "coupon_exhausted" */
	CART_COUPON_MEMBER_LIMIT,  /* "coupon_member_limit" */
	CART_COUPON_MIN_SPEND,     /* "coupon_min_spend" */
} cart_coupon_verdict;

/* cart_coupon_reason: the slug of a verdict ("" for OK); cart_coupon_message:
 * a sentence for the shopper ("this coupon needs a subtotal of at least
 * 30,000 won"), in buf. */
const char *cart_coupon_reason(cart_coupon_verdict v);
const char *cart_coupon_message(cart_coupon_verdict v, const cart_coupon *c, char *buf,
                                size_t cap);

/* cart_coupon_check: whether c applies to a subtotal for member_id (0: a
 * guest) at now_s, the checks in this order: active, members only (a coupon
 * with a per-member limit is members-only too: a guest cannot be counted),
 * not started, expired, total limit, per-member limit, minimum spend. */
cart_coupon_verdict cart_coupon_check(const cart_coupon *c, int64_t subtotal, int64_t member_id,
                                      int64_t now_s);
/* cart_coupon_discount: what c takes off subtotal: FIXED min(amount,
 * subtotal); PERCENTAGE floor(subtotal * percent / 100) capped by
 * max_discount when set.  Never negative, never above subtotal. */
int64_t cart_coupon_discount(const cart_coupon *c, int64_t subtotal);

typedef struct cart_price_input {
	const cart_price_line *lines;
	size_t nlines;
	cart_policy policy;
	const cart_gift_rule *rules;
	size_t nrules;
	const cart_coupon *coupon; /* NULL: none applied */
	int64_t member_id;         /* 0: a guest */
	int64_t now_s;
} cart_price_input;

typedef struct cart_quote {
	Mall__Cart__Availability *availability; /* per line, nlines entries (caller's) */
	int64_t subtotal;          /* AVAILABLE lines */
	int64_t discount;
	int64_t shipping_fee;
	int64_t total;
	int64_t to_free_shipping;  /* 0 once free, or when the threshold is 0 */
	int32_t item_count;        /* all lines' quantities */
	bool orderable;            /* some line, and all AVAILABLE */
	cart_coupon_verdict coupon_verdict; /* OK when no coupon */
	bool *gift_applies;        /* per rule, nrules entries (caller's) */
} cart_quote;

/* cart_price: prices a cart.  A line is UNAVAILABLE when unknown or not
 * purchasable, SOLD_OUT with no stock, INSUFFICIENT_STOCK with less than its
 * quantity, else AVAILABLE.  The fee is waived from the threshold (subtotal
 * before the coupon) and when no line is AVAILABLE.  A gift rule applies when
 * it is in its window, the subtotal reaches its minimum, an AVAILABLE line
 * holds its trigger SKU, and the gift's stock left after the paid lines of
 * the same SKU and the gifts before it covers its quantity. */
void cart_price(const cart_price_input *in, cart_quote *out);

/* ---- cart_promo.c: promotion RPCs and what pricing needs ---- */

mall_code cart_get_shipping_policy(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                   ProtobufCMessage **reply, mall_status *st);
mall_code cart_set_shipping_policy(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                   ProtobufCMessage **reply, mall_status *st);
mall_code cart_create_coupon(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                             ProtobufCMessage **reply, mall_status *st);
mall_code cart_list_coupons(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                            ProtobufCMessage **reply, mall_status *st);
mall_code cart_update_coupon(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                             ProtobufCMessage **reply, mall_status *st);
mall_code cart_redeem_coupon(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                             ProtobufCMessage **reply, mall_status *st);
mall_code cart_release_coupon(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                              ProtobufCMessage **reply, mall_status *st);
mall_code cart_create_gift_rule(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                ProtobufCMessage **reply, mall_status *st);
mall_code cart_list_gift_rules(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                               ProtobufCMessage **reply, mall_status *st);
mall_code cart_set_gift_rule_active(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                    ProtobufCMessage **reply, mall_status *st);

/* cart_coupon_code_normalize: the code without surrounding blanks,
 * upper-cased, into a; NULL (with a field error on field) unless it is 3..32
 * of [A-Za-z0-9_-]. */
char *cart_coupon_code_normalize(mall_status *st, mall_arena *a, const char *field,
                                 const char *code);

/* What pricing a cart needs from the database, loaded in one place. */
typedef struct cart_promotions {
	cart_policy policy;
	cart_gift_rule *rules;     /* active ones (their gift stock still 0) */
	size_t nrules;
	cart_coupon *coupon;       /* the named coupon, NULL if none was named
	                            * or it does not exist */
	int64_t now_s;             /* the database's clock */
} cart_promotions;

/* cart_promotions_load: the policy, the active gift rules, and the coupon
 * with this code (NULL: none) with its use counts for member_id. */
mall_code cart_promotions_load(mall_db_conn *conn, mall_arena *a, const char *coupon_code,
                               int64_t member_id, cart_promotions *out, mall_status *st);

/* ---- cart_items.c: the cart RPCs ---- */

mall_code cart_get(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                   mall_status *st);
mall_code cart_add_item(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                        mall_status *st);
mall_code cart_set_item_quantity(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                 ProtobufCMessage **reply, mall_status *st);
mall_code cart_remove_item(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                           ProtobufCMessage **reply, mall_status *st);
mall_code cart_apply_coupon(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                            ProtobufCMessage **reply, mall_status *st);
mall_code cart_remove_coupon(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                             ProtobufCMessage **reply, mall_status *st);
mall_code cart_merge_guest(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                           ProtobufCMessage **reply, mall_status *st);
mall_code cart_clear(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                     mall_status *st);

/* cart_skus_fetch: the catalog's view of the SKUs ids[0..n) into out[i]
 * (NULL where the catalog has none), one GetSkus call. */
mall_code cart_skus_fetch(mall_rpc_ctx *ctx, const int64_t *ids, size_t n,
                          Mall__Catalog__SkuView **out, mall_status *st);

#endif
