/*
 * member.h: the member service's internal interface (mall-member).
 *
 * Areas: member_account.c answers signup, the login check, profile reads and
 * updates and the grade list; member_address.c the address book;
 * member_check.c validates what clients send (field errors with the JSON
 * names).  main.c wires them to the runtime.
 *
 * Every handler runs on an RPC worker thread whose state is the worker's own
 * mall_db_conn; the MALL_RPC_MUTATING ones run inside the transaction that
 * lib/idem.c opened for their idempotency key and must neither begin nor
 * commit.
 */
#ifndef MALL_MEMBER_H
#define MALL_MEMBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"
#include "db.h"
#include "rpc.h"
#include "status.h"

#include "mall/member.pb-c.h"

/* A timestamptz column as RFC 3339 in UTC, "" for NULL (to_char of NULL). */
#define MEMBER_RFC3339(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* ---- member_account.c ---- */

/* member_account_init: prepares what the login check needs (a hash to verify
 * against when the email is unknown, so both answers take as long).  Call
 * once from main before serving; -1 if libsodium cannot start. */
int member_account_init(void);

mall_code member_sign_up(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                         mall_status *st);
mall_code member_verify_login(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                              ProtobufCMessage **reply, mall_status *st);
mall_code member_get(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                     mall_status *st);
mall_code member_update(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                        mall_status *st);
mall_code member_list_grades(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                             ProtobufCMessage **reply, mall_status *st);

/* member_lock: locks member id's row for the rest of the transaction (address
 * changes of one member go one at a time); NOT_FOUND when there is none. */
mall_code member_lock(mall_db_conn *conn, mall_arena *a, int64_t id, mall_status *st);
/* member_exists: NOT_FOUND unless member id exists. */
mall_code member_exists(mall_db_conn *conn, mall_arena *a, int64_t id, mall_status *st);

/* ---- member_address.c ---- */

mall_code member_list_addresses(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                ProtobufCMessage **reply, mall_status *st);
mall_code member_add_address(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                             ProtobufCMessage **reply, mall_status *st);
mall_code member_update_address(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                ProtobufCMessage **reply, mall_status *st);
mall_code member_delete_address(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                ProtobufCMessage **reply, mall_status *st);

/* ---- member_check.c (text, email, phone, postal code, ids: lib/check.h) ---- */

#define MEMBER_PASSWORD_MIN 8
#define MEMBER_PASSWORD_MAX 128

/* member_check_password: MEMBER_PASSWORD_MIN..MAX characters of UTF-8. */
void member_check_password(mall_status *st, const char *field, const char *v);

#endif
