/*
 * config.h: settings from MALL_* environment variables.
 *
 * Each getter takes the variable's name and a default, checks the value, and on
 * a bad one records a clear error ("MALL_CATALOG_WORKERS: \"abc\" is not an
 * integer") in the mall_config and returns the default.  A service reads all its
 * settings, then calls mall_config_check(), which logs every error at once and
 * tells main to exit.  Every setting is listed in the README.
 */
#ifndef MALL_CONFIG_H
#define MALL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MALL_CONFIG_MAX_ERRORS 16

typedef struct mall_config {
	int nerrors;
	char errors[MALL_CONFIG_MAX_ERRORS][256];
} mall_config;

void mall_config_init(mall_config *cfg);

/* mall_config_str: the value, or def when unset or empty.  The string belongs to
 * the environment (or is def); do not free it. */
const char *mall_config_str(mall_config *cfg, const char *name, const char *def);
/* mall_config_int: a decimal integer within [min, max]. */
int64_t mall_config_int(mall_config *cfg, const char *name, int64_t def, int64_t min, int64_t max);
/* mall_config_bool: 1/0, true/false, yes/no, on/off (any case). */
bool mall_config_bool(mall_config *cfg, const char *name, bool def);
/* mall_config_size: bytes, with an optional suffix B, KiB, MiB, GiB (or K, M, G,
 * all powers of 1024), within [min, max]. */
int64_t mall_config_size(mall_config *cfg, const char *name, int64_t def, int64_t min, int64_t max);
/* mall_config_duration_ms: milliseconds, given as "250ms", "5s", "2m", "1h", "30d" or a
 * bare number of milliseconds, within [min_ms, max_ms]. */
int64_t mall_config_duration_ms(mall_config *cfg, const char *name, int64_t def_ms,
                                int64_t min_ms, int64_t max_ms);
/* mall_config_listen: "host:port" with a numeric port 1..65535; returns the value. */
const char *mall_config_listen(mall_config *cfg, const char *name, const char *def);

/* mall_config_error: records an error of the caller's own (cross-field checks). */
void mall_config_error(mall_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* mall_config_check: logs every recorded error; returns 0 if there were none,
 * -1 otherwise (main then exits with status 2). */
int mall_config_check(const mall_config *cfg);

#endif
