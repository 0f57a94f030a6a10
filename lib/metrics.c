/*
 * metrics.c: the process-wide registry behind metrics.h.
 *
 * One series per (family, method): request counts per code and a latency
 * histogram with fixed buckets.  Series live in an open-addressing hash table
 * under one mutex; an observation is a lookup and a few additions, cheap next
 * to any request.  The number of series is capped (MAX_SERIES): past it, new
 * methods are counted under method="other", so a caller passing unvetted names
 * cannot grow memory without bound.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#define MAX_SERIES 4096
#define MAX_CODES 24

static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

typedef struct code_count {
	char code[24];
	uint64_t count;
} code_count;

typedef struct series {
	char *family;
	char *method;
	int ncodes;
	code_count codes[MAX_CODES];
	uint64_t bucket[NBUCKETS]; /* not cumulative; summed when rendered */
	uint64_t count;
	double sum;
} series;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static series **table; /* open addressing, capacity a power of two */
static size_t cap, nseries;

/* Gauges: few (one per event source and the like), so a plain array. */
typedef struct gauge {
	char *name, *help, *label, *value;
	double v;
} gauge;
static gauge gauges[MALL_METRICS_MAX_GAUGES];
static size_t ngauges;

static uint64_t
hash2(const char *a, const char *b)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *a; a++)
		h = (h ^ (unsigned char)*a) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;
	for (; *b; b++)
		h = (h ^ (unsigned char)*b) * 1099511628211ull;
	return h;
}

static void
grow(void)
{
	size_t ncap = cap ? cap * 2 : 64;
	series **nt = mall_xcalloc(ncap, sizeof(series *));
	for (size_t i = 0; i < cap; i++) {
		series *s = table[i];
		if (s == NULL)
			continue;
		size_t j = hash2(s->family, s->method) & (ncap - 1);
		while (nt[j] != NULL)
			j = (j + 1) & (ncap - 1);
		nt[j] = s;
	}
	free(table);
	table = nt;
	cap = ncap;
}

/* Finds or creates the series (mu held). */
static series *
lookup(const char *family, const char *method)
{
	if (cap == 0 || (nseries + 1) * 2 > cap)
		grow();
	size_t j = hash2(family, method) & (cap - 1);
	while (table[j] != NULL) {
		if (strcmp(table[j]->family, family) == 0 && strcmp(table[j]->method, method) == 0)
			return table[j];
		j = (j + 1) & (cap - 1);
	}
	if (nseries >= MAX_SERIES && strcmp(method, "other") != 0)
		return lookup(family, "other");
	series *s = mall_xcalloc(1, sizeof(*s));
	s->family = mall_xstrdup(family);
	s->method = mall_xstrdup(method);
	table[j] = s;
	nseries++;
	return s;
}

void
mall_metrics_observe(const char *family, const char *method, const char *code, double seconds)
{
	if (family == NULL || method == NULL || code == NULL)
		return;
	if (!(seconds >= 0)) /* also NaN */
		seconds = 0;
	pthread_mutex_lock(&mu);
	series *s = lookup(family, method);
	int i;
	for (i = 0; i < s->ncodes; i++)
		if (strcmp(s->codes[i].code, code) == 0)
			break;
	if (i == s->ncodes) {
		if (s->ncodes < MAX_CODES) {
			snprintf(s->codes[i].code, sizeof(s->codes[i].code), "%s", code);
			s->ncodes++;
		} else {
			i = MAX_CODES - 1; /* more codes than any protocol has: lump */
		}
	}
	s->codes[i].count++;
	size_t b = 0;
	while (b < NBUCKETS && seconds > buckets[b])
		b++;
	if (b < NBUCKETS)
		s->bucket[b]++;
	s->count++;
	s->sum += seconds;
	pthread_mutex_unlock(&mu);
}

void
mall_metrics_gauge_set(const char *name, const char *help, const char *label, const char *value,
                       double v)
{
	if (name == NULL || label == NULL || value == NULL)
		return;
	pthread_mutex_lock(&mu);
	size_t i;
	for (i = 0; i < ngauges; i++)
		if (strcmp(gauges[i].name, name) == 0 && strcmp(gauges[i].label, label) == 0 &&
		    strcmp(gauges[i].value, value) == 0)
			break;
	if (i == ngauges) {
		if (ngauges == MALL_METRICS_MAX_GAUGES) {
			pthread_mutex_unlock(&mu);
			return;
		}
		gauges[i].name = mall_xstrdup(name);
		gauges[i].help = mall_xstrdup(help ? help : "");
		gauges[i].label = mall_xstrdup(label);
		gauges[i].value = mall_xstrdup(value);
		ngauges++;
	}
	gauges[i].v = v;
	pthread_mutex_unlock(&mu);
}

void
mall_metrics_reset(void)
{
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < ngauges; i++) {
		free(gauges[i].name);
		free(gauges[i].help);
		free(gauges[i].label);
		free(gauges[i].value);
	}
	ngauges = 0;
	for (size_t i = 0; i < cap; i++) {
		if (table[i] == NULL)
			continue;
		free(table[i]->family);
		free(table[i]->method);
		free(table[i]);
	}
	free(table);
	table = NULL;
	cap = nseries = 0;
	pthread_mutex_unlock(&mu);
}

/* ---- rendering ---- */

typedef struct buf {
	char *p;
	size_t len, cap;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(buf *b, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		b->cap = b->cap * 2 + (size_t)n;
		b->p = mall_xrealloc(b->p, b->cap);
	}
}

/* A label value with \, " and newline escaped, as the text format wants. */
static void
put_label(buf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\')
			put(b, "\\\\");
		else if (*v == '"')
			put(b, "\\\"");
		else if (*v == '\n')
			put(b, "\\n");
		else
			put(b, "%c", *v);
	}
}

static int
series_cmp(const void *x, const void *y)
{
	const series *a = *(series *const *)x, *b = *(series *const *)y;
	int c = strcmp(a->family, b->family);
	return c ? c : strcmp(a->method, b->method);
}

char *
mall_metrics_render(size_t *len)
{
	buf b = {mall_xmalloc(4096), 0, 4096};
	b.p[0] = '\0';
	pthread_mutex_lock(&mu);
	series **all = mall_xcalloc(nseries ? nseries : 1, sizeof(series *));
	size_t n = 0;
	for (size_t i = 0; i < cap; i++)
		if (table[i] != NULL)
			all[n++] = table[i];
	qsort(all, n, sizeof(series *), series_cmp);

	for (size_t i = 0; i < n;) {
		const char *fam = all[i]->family;
		size_t end = i;
		while (end < n && strcmp(all[end]->family, fam) == 0)
			end++;
		put(&b, "# HELP %s_requests_total Requests served, by method and result code.\n",
		    fam);
		put(&b, "# TYPE %s_requests_total counter\n", fam);
		for (size_t k = i; k < end; k++) {
			for (int c = 0; c < all[k]->ncodes; c++) {
				put(&b, "%s_requests_total{method=\"", fam);
				put_label(&b, all[k]->method);
				put(&b, "\",code=\"");
				put_label(&b, all[k]->codes[c].code);
				put(&b, "\"} %llu\n", (unsigned long long)all[k]->codes[c].count);
			}
		}
		put(&b, "# HELP %s_duration_seconds Time to serve a request, in seconds.\n", fam);
		put(&b, "# TYPE %s_duration_seconds histogram\n", fam);
		for (size_t k = i; k < end; k++) {
			const series *s = all[k];
			uint64_t cum = 0;
			for (size_t q = 0; q < NBUCKETS; q++) {
				cum += s->bucket[q];
				put(&b, "%s_duration_seconds_bucket{method=\"", fam);
				put_label(&b, s->method);
				put(&b, "\",le=\"%g\"} %llu\n", buckets[q],
				    (unsigned long long)cum);
			}
			put(&b, "%s_duration_seconds_bucket{method=\"", fam);
			put_label(&b, s->method);
			put(&b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)s->count);
			put(&b, "%s_duration_seconds_sum{method=\"", fam);
			put_label(&b, s->method);
			put(&b, "\"} %.9g\n", s->sum);
			put(&b, "%s_duration_seconds_count{method=\"", fam);
			put_label(&b, s->method);
			put(&b, "\"} %llu\n", (unsigned long long)s->count);
		}
		i = end;
	}
	/* gauges, grouped by name (in the order first set) */
	for (size_t i = 0; i < ngauges; i++) {
		bool first = true;
		for (size_t k = 0; k < i && first; k++)
			first = strcmp(gauges[k].name, gauges[i].name) != 0;
		if (!first)
			continue;
		put(&b, "# HELP %s %s\n# TYPE %s gauge\n", gauges[i].name, gauges[i].help,
		    gauges[i].name);
		for (size_t k = i; k < ngauges; k++) {
			if (strcmp(gauges[k].name, gauges[i].name) != 0)
				continue;
			put(&b, "%s{%s=\"", gauges[k].name, gauges[k].label);
			put_label(&b, gauges[k].value);
			put(&b, "\"} %.17g\n", gauges[k].v);
		}
	}
	pthread_mutex_unlock(&mu);
	free(all);
	if (len != NULL)
		*len = b.len;
	return b.p;
}
