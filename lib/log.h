/*
 * log.h: JSON-lines logging to stdout.
 *
 * One line per event: {"ts":"2026-11-27T21:06:13.123Z","level":"info",
 * "service":"catalog","trace_id":"...","msg":"..."}.  Each line is written with
 * a single write(2), so lines from many threads never interleave.  The level
 * comes from MALL_LOG_LEVEL (debug, info, warn, error; default info).
 */
#ifndef MALL_LOG_H
#define MALL_LOG_H

#include <stddef.h>

typedef enum mall_log_level {
	MALL_LOG_DEBUG = 0,
	MALL_LOG_INFO = 1,
	MALL_LOG_WARN = 2,
	MALL_LOG_ERROR = 3,
} mall_log_level;

/* mall_log_init: names the service in every line and reads MALL_LOG_LEVEL;
 * returns -1 (and logs why) for an unknown level.  Call once from main. */
int mall_log_init(const char *service);
/* mall_log_set_fd: where lines go (default 1); for tests. */
void mall_log_set_fd(int fd);
void mall_log_set_level(mall_log_level level);
int mall_log_enabled(mall_log_level level);

/* mall_log: one line at level; trace_id may be NULL or "". */
void mall_log(mall_log_level level, const char *trace_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define mall_log_debug(trace, ...) mall_log(MALL_LOG_DEBUG, trace, __VA_ARGS__)
#define mall_log_info(trace, ...) mall_log(MALL_LOG_INFO, trace, __VA_ARGS__)
#define mall_log_warn(trace, ...) mall_log(MALL_LOG_WARN, trace, __VA_ARGS__)
#define mall_log_error(trace, ...) mall_log(MALL_LOG_ERROR, trace, __VA_ARGS__)

/* mall_json_escape: appends s as the inside of a JSON string to buf (at most
 * cap-1 bytes, always terminated); invalid UTF-8 becomes U+FFFD.  Returns the
 * new length. */
size_t mall_json_escape(char *buf, size_t len, size_t cap, const char *s);

#endif
