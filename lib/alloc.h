/*
 * alloc.h: memory for mall.
 *
 * Out of memory aborts the process (as Redis's zmalloc does): callers never
 * thread NULL checks for allocation.  The usual owner of short-lived memory is an
 * arena: one per RPC and per HTTP request, freed whole when the request ends.
 * protobuf-c decodes into an arena through mall_arena_pb(), so a decoded message
 * is never freed piece by piece.
 */
#ifndef MALL_ALLOC_H
#define MALL_ALLOC_H

#include <stdarg.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/* mall_xmalloc, mall_xcalloc, mall_xrealloc, mall_xstrdup: as libc, abort on OOM. */
void *mall_xmalloc(size_t n);
void *mall_xcalloc(size_t count, size_t size);
void *mall_xrealloc(void *p, size_t n);
char *mall_xstrdup(const char *s);
char *mall_xstrndup(const char *s, size_t n);

typedef struct mall_arena mall_arena;

/* mall_arena_new: an empty arena; the caller owns it and frees it with _free. */
mall_arena *mall_arena_new(void);
/* mall_arena_free: releases the arena and everything allocated from it. NULL is ok. */
void mall_arena_free(mall_arena *a);
/* mall_arena_reset: frees everything allocated so far but keeps the arena. */
void mall_arena_reset(mall_arena *a);

/* mall_arena_alloc: n bytes, 16-byte aligned, zeroed; lives until the arena ends. */
void *mall_arena_alloc(mall_arena *a, size_t n);
char *mall_arena_strdup(mall_arena *a, const char *s);
char *mall_arena_strndup(mall_arena *a, const char *s, size_t n);
char *mall_arena_printf(mall_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
char *mall_arena_vprintf(mall_arena *a, const char *fmt, va_list ap);
/* mall_arena_bytes: total bytes handed out (for tests and metrics). */
size_t mall_arena_bytes(const mall_arena *a);

/* mall_arena_pb: a protobuf-c allocator drawing from the arena; its free is a
 * no-op.  Valid as long as the arena. */
ProtobufCAllocator *mall_arena_pb(mall_arena *a);

#endif
