/*
 * member_account.c: member accounts: signup, the login check, profile reads
 * and updates, and the list of membership grades.
 *
 * Passwords are stored as libsodium argon2id strings (crypto_pwhash_str with
 * the INTERACTIVE limits: about 0.1 s and 64 MiB each), computed on the RPC
 * worker threads, never on nng's.  The login check answers one message for an
 * unknown email and a wrong password, and verifies against a stand-in hash when
 * the email is unknown so that both take as long.
 *
 * Signup records the event member.signed_up in the outbox in its own
 * transaction (lib/outbox.h; docs/architecture.md, "Events").
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "json_pb.h"
#include "log.h"
#include "member.h"
#include "outbox.h"

#define LOGIN_FAILED "email or password is incorrect"

/* ---- the account as the API shows it ---- */

/* clang-format off */
#define ACCOUNT_COLUMNS \
	"m.id, m.email, m.name, m.phone, " \
	"m.email_consent, " MEMBER_RFC3339("m.email_consented_at") ", " \
	"m.sms_consent, " MEMBER_RFC3339("m.sms_consented_at") ", " \
	"g.code, g.name, " MEMBER_RFC3339("m.created_at") ", " MEMBER_RFC3339("m.last_login_at")
/* clang-format on */

static char *
col(mall_arena *a, const PGresult *res, int row, int c)
{
	return mall_arena_strdup(a, PQgetvalue(res, row, c));
}

/* The account of row 0 of a result of ACCOUNT_COLUMNS, in a. */
static Mall__Member__Account *
account_from_row(mall_arena *a, const PGresult *res)
{
	Mall__Member__Account *m =
	    (Mall__Member__Account *)mall_pb_new(&mall__member__account__descriptor, a);
	Mall__Member__MarketingConsent *c = (Mall__Member__MarketingConsent *)mall_pb_new(
	    &mall__member__marketing_consent__descriptor, a);
	Mall__Member__GradeRef *g =
	    (Mall__Member__GradeRef *)mall_pb_new(&mall__member__grade_ref__descriptor, a);
	m->id = mall_db_int64(res, 0, 0);
	m->email = col(a, res, 0, 1);
	m->name = col(a, res, 0, 2);
	m->phone = col(a, res, 0, 3);
	c->email = mall_db_bool(res, 0, 4);
	c->email_consented_at = col(a, res, 0, 5);
	c->sms = mall_db_bool(res, 0, 6);
	c->sms_consented_at = col(a, res, 0, 7);
	g->code = col(a, res, 0, 8);
	g->name = col(a, res, 0, 9);
	m->created_at = col(a, res, 0, 10);
	m->last_login_at = col(a, res, 0, 11);
	m->marketing_consent = c;
	m->grade = g;
	return m;
}

/* The account of member id, read on conn; NOT_FOUND when there is none. */
static mall_code
load_account(mall_db_conn *conn, mall_arena *a, int64_t id, Mall__Member__Account **out,
             mall_status *st)
{
	const char *params[] = {mall_arena_printf(a, "%lld", (long long)id)};
	PGresult *res = mall_db_exec(conn, st,
	    "SELECT " ACCOUNT_COLUMNS " FROM member m JOIN grade g ON g.code = m.grade_code "
	    "WHERE m.id = $1",
	    1, params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_NOT_FOUND, "member %lld not found", (long long)id);
	}
	*out = account_from_row(a, res);
	PQclear(res);
	return MALL_OK;
}

static mall_code
member_row(mall_db_conn *conn, mall_arena *a, int64_t id, const char *sql, mall_status *st)
{
	const char *params[] = {mall_arena_printf(a, "%lld", (long long)id)};
	PGresult *res = mall_db_exec(conn, st, sql, 1, params);
	if (res == NULL)
		return st->code;
	int n = PQntuples(res);
	PQclear(res);
	if (n == 0)
		return mall_status_set(st, MALL_NOT_FOUND, "member %lld not found", (long long)id);
	return MALL_OK;
}

mall_code
member_lock(mall_db_conn *conn, mall_arena *a, int64_t id, mall_status *st)
{
	return member_row(conn, a, id, "SELECT 1 FROM member WHERE id = $1 FOR UPDATE", st);
}

mall_code
member_exists(mall_db_conn *conn, mall_arena *a, int64_t id, mall_status *st)
{
	return member_row(conn, a, id, "SELECT 1 FROM member WHERE id = $1", st);
}

static mall_code
record_signed_up(mall_db_conn *conn, mall_arena *a, const Mall__Member__Account *m,
                 mall_status *st)
{
	Mall__Member__MemberSignedUp *ev = (Mall__Member__MemberSignedUp *)mall_pb_new(
	    &mall__member__member_signed_up__descriptor, a);
	ev->member_id = m->id;
	ev->email = m->email;
	ev->name = m->name;
	ev->phone = m->phone;
	ev->marketing_consent = m->marketing_consent;
	ev->grade_code = m->grade->code;
	ev->signed_up_at = m->created_at;
	return mall_outbox_add(conn, a, "member.signed_up", &ev->base, st);
}

/* ---- passwords ---- */

static char dummy_hash[crypto_pwhash_STRBYTES];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static int dummy_ok;

static void
make_dummy_hash(void)
{
	char pw[33];
	unsigned char rnd[16];
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(pw, sizeof(pw), rnd, sizeof(rnd));
	dummy_ok = crypto_pwhash_str(dummy_hash, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                             crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0;
}

int
member_account_init(void)
{
	if (sodium_init() < 0)
		return -1;
	pthread_once(&dummy_once, make_dummy_hash);
	return dummy_ok ? 0 : -1;
}

static mall_code
hash_password(const char *password, char out[crypto_pwhash_STRBYTES], mall_status *st)
{
	if (crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
		return mall_status_set(st, MALL_RESOURCE_EXHAUSTED,
		                       "could not hash the password: out of memory");
	return MALL_OK;
}

/* ---- handlers ---- */

mall_code
member_sign_up(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
               mall_status *st)
{
	const Mall__Member__SignUpRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	char *email = mall_check_email(st, a, "email", req->email);
	member_check_password(st, "password", req->password);
	mall_check_text(st, "name", req->name, 1, 50);
	char *phone = mall_check_phone(st, a, "phone", req->phone);
	if (req->marketing_consent == NULL)
		mall_status_field(st, "marketingConsent",
		                  "is required: {\"email\": true|false, \"sms\": true|false}");
	if (st->code != MALL_OK)
		return st->code;

	/* a taken email is answered before the slow hash; the unique index
	 * settles a race between two signups */
	const char *check[] = {email};
	PGresult *res =
	    mall_db_exec(conn, st, "SELECT 1 FROM member WHERE lower(email) = $1", 1, check);
	if (res == NULL)
		return st->code;
	int taken = PQntuples(res);
	PQclear(res);
	char hash[crypto_pwhash_STRBYTES];
	if (!taken && hash_password(req->password, hash, st) != MALL_OK)
		return st->code;
	const bool e = req->marketing_consent->email, s = req->marketing_consent->sms;
	const char *params[] = {email, hash, req->name, phone, e ? "true" : "false",
	                        s ? "true" : "false"};
	if (!taken)
		res = mall_db_exec(conn, st,
		    "INSERT INTO member (email, password_hash, name, phone, grade_code,"
		    " email_consent, email_consented_at, sms_consent, sms_consented_at)"
		    " SELECT $1, $2, $3, $4, code, $5::boolean, CASE WHEN $5::boolean THEN now() END,"
		    " $6::boolean, CASE WHEN $6::boolean THEN now() END FROM grade WHERE is_default"
		    " RETURNING id",
		    6, params);
	sodium_memzero(hash, sizeof(hash));
	if (taken || (res == NULL && st->code == MALL_ALREADY_EXISTS)) {
		mall_status_field(st, "email", "is already registered");
		return mall_status_set(st, MALL_ALREADY_EXISTS,
		                       "a member with email %s exists already", email);
	}
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_FAILED_PRECONDITION,
		                       "no membership grade is the default: cannot sign up");
	}
	int64_t id = mall_db_int64(res, 0, 0);
	PQclear(res);
	Mall__Member__Account *m;
	if (load_account(conn, a, id, &m, st) != MALL_OK || record_signed_up(conn, a, m, st) != MALL_OK)
		return st->code;
	mall_log_info(mall_rpc_ctx_trace_id(ctx), "member %lld signed up", (long long)id);
	*reply = &m->base;
	return MALL_OK;
}

mall_code
member_verify_login(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                    mall_status *st)
{
	const Mall__Member__VerifyLoginRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	if (req->email[0] == '\0')
		mall_status_field(st, "email", "is required");
	if (req->password[0] == '\0')
		mall_status_field(st, "password", "is required");
	if (st->code != MALL_OK)
		return st->code;

	/* a malformed email or an over-long password cannot belong to anyone:
	 * answered like an unknown email, after as long */
	mall_status ignore;
	mall_status_clear(&ignore);
	char *email = mall_check_email(&ignore, a, "email", req->email);
	size_t pwlen = strlen(req->password);
	bool plausible = email != NULL && pwlen <= 4 * MEMBER_PASSWORD_MAX;
	char *stored = NULL;
	int64_t id = 0;
	if (plausible) {
		const char *params[] = {email};
		PGresult *res = mall_db_exec(conn, st,
		    "SELECT id, password_hash FROM member WHERE lower(email) = $1", 1, params);
		if (res == NULL)
			return st->code;
		if (PQntuples(res) == 1) {
			id = mall_db_int64(res, 0, 0);
			stored = col(a, res, 0, 1);
		}
		PQclear(res);
	}
	pthread_once(&dummy_once, make_dummy_hash);
	bool ok = crypto_pwhash_str_verify(stored ? stored : dummy_hash, req->password,
	                                   plausible ? pwlen : 0) == 0 &&
	          stored != NULL;
	if (!ok)
		return mall_status_set(st, MALL_UNAUTHENTICATED, LOGIN_FAILED);

	/* the hash parameters grew since it was stored: store a new one */
	char fresh[crypto_pwhash_STRBYTES];
	const char *hash = NULL;
	if (crypto_pwhash_str_needs_rehash(stored, crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                                   crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0 &&
	    hash_password(req->password, fresh, st) == MALL_OK)
		hash = fresh;
	mall_status_clear(st);
	const char *params[] = {mall_arena_printf(a, "%lld", (long long)id), hash};
	int64_t n = mall_db_exec_cmd(conn, st,
	    "UPDATE member SET last_login_at = now(),"
	    " password_hash = coalesce($2, password_hash) WHERE id = $1",
	    2, params);
	sodium_memzero(fresh, sizeof(fresh));
	if (n < 0)
		return st->code;
	Mall__Member__Account *m;
	if (load_account(conn, a, id, &m, st) != MALL_OK)
		return st->code;
	*reply = &m->base;
	return MALL_OK;
}

mall_code
member_get(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
           mall_status *st)
{
	const Mall__Member__GetMemberRequest *req = (const void *)req_;
	mall_check_id(st, "id", req->id);
	if (st->code != MALL_OK)
		return st->code;
	Mall__Member__Account *m;
	if (load_account(mall_rpc_ctx_worker(ctx), mall_rpc_ctx_arena(ctx), req->id, &m, st) !=
	    MALL_OK)
		return st->code;
	*reply = &m->base;
	return MALL_OK;
}

static const char *const updatable[] = {"name", "phone", "marketingConsent",
                                        "marketingConsent.email", "marketingConsent.sms"};
enum { U_NAME, U_PHONE, U_CONSENT, U_CONSENT_EMAIL, U_CONSENT_SMS, U_COUNT };

mall_code
member_update(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
              mall_status *st)
{
	const Mall__Member__UpdateMemberRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	bool set[U_COUNT] = {false};
	mall_check_id(st, "id", req->id);
	mall_update_mask_parse(req->update_mask, req->n_update_mask, updatable, U_COUNT, set, st);
	if (set[U_CONSENT])
		set[U_CONSENT_EMAIL] = set[U_CONSENT_SMS] = true;
	if (set[U_NAME])
		mall_check_text(st, "name", req->name, 1, 50);
	char *phone = set[U_PHONE] ? mall_check_phone(st, a, "phone", req->phone) : NULL;
	if ((set[U_CONSENT_EMAIL] || set[U_CONSENT_SMS]) && req->marketing_consent == NULL)
		mall_status_field(st, "marketingConsent", "is required by the update mask");
	if (st->code != MALL_OK)
		return st->code;
	const Mall__Member__ConsentChoice *c = req->marketing_consent;
	const char *params[] = {
	    mall_arena_printf(a, "%lld", (long long)req->id),
	    set[U_NAME] ? req->name : NULL,
	    phone,
	    set[U_CONSENT_EMAIL] ? (c->email ? "true" : "false") : NULL,
	    set[U_CONSENT_SMS] ? (c->sms ? "true" : "false") : NULL};
	/* a consent keeps the time it was first given; a refusal clears it */
	int64_t n = mall_db_exec_cmd(conn, st,
	    "UPDATE member SET name = coalesce($2, name), phone = coalesce($3, phone),"
	    " email_consent = coalesce($4::boolean, email_consent),"
	    " email_consented_at = CASE WHEN $4::boolean IS NULL THEN email_consented_at"
	    "  WHEN $4::boolean THEN coalesce(email_consented_at, now()) END,"
	    " sms_consent = coalesce($5::boolean, sms_consent),"
	    " sms_consented_at = CASE WHEN $5::boolean IS NULL THEN sms_consented_at"
	    "  WHEN $5::boolean THEN coalesce(sms_consented_at, now()) END,"
	    " updated_at = now() WHERE id = $1",
	    5, params);
	if (n < 0)
		return st->code;
	if (n == 0)
		return mall_status_set(st, MALL_NOT_FOUND, "member %lld not found",
		                       (long long)req->id);
	Mall__Member__Account *m;
	if (load_account(conn, a, req->id, &m, st) != MALL_OK)
		return st->code;
	*reply = &m->base;
	return MALL_OK;
}

mall_code
member_list_grades(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                   mall_status *st)
{
	(void)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	PGresult *res = mall_db_exec(mall_rpc_ctx_worker(ctx), st,
	    "SELECT code, name, position, is_default FROM grade ORDER BY position, code", 0, NULL);
	if (res == NULL)
		return st->code;
	Mall__Member__ListGradesReply *out = (Mall__Member__ListGradesReply *)mall_pb_new(
	    &mall__member__list_grades_reply__descriptor, a);
	int n = PQntuples(res);
	out->n_grades = (size_t)n;
	out->grades = mall_arena_alloc(a, sizeof(*out->grades) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++) {
		Mall__Member__Grade *g =
		    (Mall__Member__Grade *)mall_pb_new(&mall__member__grade__descriptor, a);
		g->code = col(a, res, i, 0);
		g->name = col(a, res, i, 1);
		g->position = (int32_t)mall_db_int64(res, i, 2);
		g->is_default = mall_db_bool(res, i, 3);
		out->grades[i] = g;
	}
	PQclear(res);
	*reply = &out->base;
	return MALL_OK;
}
