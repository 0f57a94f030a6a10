/*
 * redis.h: Redis through hiredis (0.14: no RESP3, no connect options).
 *
 * A mall_redis is one connection guarded by a mutex, so threads may share it;
 * hot paths give each worker its own.  It connects on first use and
 * reconnects after an I/O error, retrying the failed command once (commands
 * sent through it must be safe to repeat, or be sent inside MULTI/EXEC by the
 * caller who checks the result).  Every command has the connection's timeout.
 */
#ifndef MALL_REDIS_H
#define MALL_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "status.h"

typedef struct mall_redis mall_redis;

/* mall_redis_new: for addr "host:port"; connects lazily. The caller owns it. */
mall_redis *mall_redis_new(const char *addr, int64_t timeout_ms);
void mall_redis_free(mall_redis *r);

/* mall_redis_command: a command in hiredis's format; the reply is the caller's
 * (freeReplyObject).  NULL with st UNAVAILABLE when Redis cannot be reached;
 * a REDIS_REPLY_ERROR reply is returned as NULL with st INTERNAL and the
 * message. */
redisReply *mall_redis_command(mall_redis *r, mall_status *st, const char *fmt, ...);
redisReply *mall_redis_argv(mall_redis *r, mall_status *st, int argc, const char **argv,
                            const size_t *argvlen);

#endif
