/*
 * alloc.c: abort-on-OOM wrappers and the request arena.
 *
 * The arena is a list of blocks; small allocations bump a pointer in the
 * current block, large ones get a block of their own.  Everything is released
 * at once by mall_arena_free or mall_arena_reset.
 */
#include "alloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
oom(size_t n)
{
	fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"out of memory allocating %zu bytes\"}\n", n);
	abort();
}

void *
mall_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		oom(n);
	return p;
}

void *
mall_xcalloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);
	if (p == NULL)
		oom(count * size);
	return p;
}

void *
mall_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		oom(n);
	return q;
}

char *
mall_xstrdup(const char *s)
{
	return mall_xstrndup(s, strlen(s));
}

char *
mall_xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = mall_xmalloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

#define BLOCK_SIZE 8192
#define ALIGN 16

typedef struct block {
	struct block *next;
	size_t size; /* usable bytes after the header */
	size_t used;
	_Alignas(ALIGN) unsigned char data[];
} block;

struct mall_arena {
	block *head; /* current block, where small allocations go */
	size_t total;
	ProtobufCAllocator pb;
};

static void *
pb_alloc(void *data, size_t size)
{
	return mall_arena_alloc(data, size);
}

static void
pb_free(void *data, void *p)
{
	(void)data;
	(void)p;
}

mall_arena *
mall_arena_new(void)
{
	mall_arena *a = mall_xcalloc(1, sizeof(*a));
	a->pb.alloc = pb_alloc;
	a->pb.free = pb_free;
	a->pb.allocator_data = a;
	return a;
}

void
mall_arena_reset(mall_arena *a)
{
	block *b = a->head;
	while (b != NULL) {
		block *next = b->next;
		free(b);
		b = next;
	}
	a->head = NULL;
	a->total = 0;
}

void
mall_arena_free(mall_arena *a)
{
	if (a == NULL)
		return;
	mall_arena_reset(a);
	free(a);
}

void *
mall_arena_alloc(mall_arena *a, size_t n)
{
	size_t need = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
	if (need == 0)
		need = ALIGN;
	block *b = a->head;
	if (b == NULL || b->size - b->used < need) {
		if (need > BLOCK_SIZE / 4) {
			/* large: a block of its own, linked behind the current one */
			block *big = mall_xmalloc(sizeof(block) + need);
			big->size = need;
			big->used = need;
			if (b != NULL) {
				big->next = b->next;
				b->next = big;
			} else {
				big->next = NULL;
				a->head = big;
			}
			a->total += n;
			memset(big->data, 0, need);
			return big->data;
		}
		b = mall_xmalloc(sizeof(block) + BLOCK_SIZE);
		b->size = BLOCK_SIZE;
		b->used = 0;
		b->next = a->head;
		a->head = b;
	}
	void *p = b->data + b->used;
	b->used += need;
	a->total += n;
	memset(p, 0, need);
	return p;
}

char *
mall_arena_strndup(mall_arena *a, const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = mall_arena_alloc(a, len + 1);
	memcpy(p, s, len);
	return p;
}

char *
mall_arena_strdup(mall_arena *a, const char *s)
{
	return mall_arena_strndup(a, s, strlen(s));
}

char *
mall_arena_vprintf(mall_arena *a, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		n = 0;
	char *p = mall_arena_alloc(a, (size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

char *
mall_arena_printf(mall_arena *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *p = mall_arena_vprintf(a, fmt, ap);
	va_end(ap);
	return p;
}

size_t
mall_arena_bytes(const mall_arena *a)
{
	return a->total;
}

ProtobufCAllocator *
mall_arena_pb(mall_arena *a)
{
	return &a->pb;
}
