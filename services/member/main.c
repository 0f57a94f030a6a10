/*
 * main.c: mall-member, the member service.  The process life (settings,
 * migrations, database pool, RPC server, ops endpoint, drain on SIGTERM) is
 * lib/service.c's; this file names the methods and keeps passwords out of the
 * idempotency records.
 *
 *   mall-member            serve
 *   mall-member migrate    apply pending migrations and exit
 */
#include "idem.h"
#include "member.h"
#include "service.h"

extern const mall_migration_set mall_migrations_member;

/* VerifyLogin writes only the login time (a repeat is harmless), so it needs
 * no idempotency key, and none of its requests, which carry a password, is
 * ever recorded. */
static const mall_rpc_method methods[] = {
    {"SignUp", member_sign_up, MALL_RPC_MUTATING},
    {"VerifyLogin", member_verify_login, 0},
    {"GetMember", member_get, 0},
    {"UpdateMember", member_update, MALL_RPC_MUTATING},
    {"ListAddresses", member_list_addresses, 0},
    {"AddAddress", member_add_address, MALL_RPC_MUTATING},
    {"UpdateAddress", member_update_address, MALL_RPC_MUTATING},
    {"DeleteAddress", member_delete_address, MALL_RPC_MUTATING},
    {"ListGrades", member_list_grades, 0},
};

/* Records the idempotency key with the write (lib/idem.c).  A signup carries
 * a password, which must not reach the idempotency record even as a hash. */
static mall_code
mutate(mall_rpc_ctx *ctx, mall_rpc_handler fn, const ProtobufCMessage *req,
       ProtobufCMessage **reply, mall_status *st)
{
	static const char *const secret[] = {"password", NULL};
	if (req->descriptor == &mall__member__sign_up_request__descriptor)
		return mall_idem_mutate_secret(ctx, fn, req, reply, st, secret);
	return mall_idem_mutate(ctx, fn, req, reply, st);
}

static mall_code
start(const char *db, mall_status *st)
{
	(void)db;
	if (member_account_init() != 0)
		return mall_status_set(st, MALL_INTERNAL, "libsodium could not start");
	return MALL_OK;
}

/* each password hash takes 64 MiB while it runs, one per worker: few workers */
static const mall_service_def member = {
    .name = "member",
    .default_listen = "tcp://127.0.0.1:7411",
    .default_ops_listen = "127.0.0.1:9411",
    .default_workers = 4,
    .max_workers = 64,
    .migrations = &mall_migrations_member,
    .rpc = &mall__member__member__descriptor,
    .methods = methods,
    .nmethods = sizeof(methods) / sizeof(methods[0]),
    .mutate = mutate,
    .events = true, /* member.signed_up */
    .start = start,
};

int
main(int argc, char **argv)
{
	return mall_service_main(&member, argc, argv);
}
