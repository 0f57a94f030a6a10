/*
 * config.c: MALL_* settings with defaults and clear errors.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

void
mall_config_init(mall_config *cfg)
{
	cfg->nerrors = 0;
}

void
mall_config_error(mall_config *cfg, const char *fmt, ...)
{
	if (cfg->nerrors >= MALL_CONFIG_MAX_ERRORS)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cfg->errors[cfg->nerrors++], sizeof(cfg->errors[0]), fmt, ap);
	va_end(ap);
}

const char *
mall_config_str(mall_config *cfg, const char *name, const char *def)
{
	(void)cfg;
	const char *v = getenv(name);
	return (v == NULL || *v == '\0') ? def : v;
}

/* Parses a decimal integer with an optional suffix into *num and *suffix. */
static int
parse_num(const char *v, int64_t *num, const char **suffix)
{
	errno = 0;
	char *end;
	long long n = strtoll(v, &end, 10);
	if (end == v || errno == ERANGE)
		return -1;
	*num = n;
	*suffix = end;
	return 0;
}

static int64_t
range(mall_config *cfg, const char *name, const char *v, int64_t n, int64_t def,
      int64_t min, int64_t max)
{
	if (n < min || n > max) {
		mall_config_error(cfg, "%s: \"%s\" is out of range (%" PRId64 " to %" PRId64 ")",
		                  name, v, min, max);
		return def;
	}
	return n;
}

int64_t
mall_config_int(mall_config *cfg, const char *name, int64_t def, int64_t min, int64_t max)
{
	const char *v = mall_config_str(cfg, name, NULL);
	if (v == NULL)
		return def;
	int64_t n;
	const char *rest;
	if (parse_num(v, &n, &rest) != 0 || *rest != '\0') {
		mall_config_error(cfg, "%s: \"%s\" is not an integer", name, v);
		return def;
	}
	return range(cfg, name, v, n, def, min, max);
}

bool
mall_config_bool(mall_config *cfg, const char *name, bool def)
{
	const char *v = mall_config_str(cfg, name, NULL);
	if (v == NULL)
		return def;
	static const char *yes[] = {"1", "true", "yes", "on"};
	static const char *no[] = {"0", "false", "no", "off"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return true;
		if (strcasecmp(v, no[i]) == 0)
			return false;
	}
	mall_config_error(cfg, "%s: \"%s\" is not a boolean (true/false, on/off, 1/0)", name, v);
	return def;
}

int64_t
mall_config_size(mall_config *cfg, const char *name, int64_t def, int64_t min, int64_t max)
{
	const char *v = mall_config_str(cfg, name, NULL);
	if (v == NULL)
		return def;
	int64_t n;
	const char *s;
	if (parse_num(v, &n, &s) != 0 || n < 0)
		goto bad;
	int64_t mult;
	if (*s == '\0' || strcasecmp(s, "b") == 0)
		mult = 1;
	else if (strcasecmp(s, "k") == 0 || strcasecmp(s, "kib") == 0 || strcasecmp(s, "kb") == 0)
		mult = 1024;
	else if (strcasecmp(s, "m") == 0 || strcasecmp(s, "mib") == 0 || strcasecmp(s, "mb") == 0)
		mult = 1024 * 1024;
	else if (strcasecmp(s, "g") == 0 || strcasecmp(s, "gib") == 0 || strcasecmp(s, "gb") == 0)
		mult = 1024 * 1024 * 1024;
	else
		goto bad;
	if (n > INT64_MAX / mult)
		goto bad;
	return range(cfg, name, v, n * mult, def, min, max);
bad:
	mall_config_error(cfg, "%s: \"%s\" is not a size (bytes, or a number with KiB, MiB or GiB)",
	                  name, v);
	return def;
}

int64_t
mall_config_duration_ms(mall_config *cfg, const char *name, int64_t def_ms, int64_t min_ms,
                        int64_t max_ms)
{
	const char *v = mall_config_str(cfg, name, NULL);
	if (v == NULL)
		return def_ms;
	int64_t n;
	const char *s;
	if (parse_num(v, &n, &s) != 0 || n < 0)
		goto bad;
	int64_t mult;
	if (*s == '\0' || strcmp(s, "ms") == 0)
		mult = 1;
	else if (strcmp(s, "s") == 0)
		mult = 1000;
	else if (strcmp(s, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(s, "h") == 0)
		mult = 3600 * 1000;
	else if (strcmp(s, "d") == 0)
		mult = 24 * 3600 * 1000;
	else
		goto bad;
	if (n > INT64_MAX / mult)
		goto bad;
	return range(cfg, name, v, n * mult, def_ms, min_ms, max_ms);
bad:
	mall_config_error(cfg, "%s: \"%s\" is not a duration (e.g. 250ms, 5s, 2m, 1h, 30d)", name, v);
	return def_ms;
}

const char *
mall_config_listen(mall_config *cfg, const char *name, const char *def)
{
	const char *v = mall_config_str(cfg, name, def);
	const char *colon = v ? strrchr(v, ':') : NULL;
	if (colon == NULL || colon == v) {
		mall_config_error(cfg, "%s: \"%s\" is not host:port", name, v ? v : "");
		return def;
	}
	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || errno != 0 || port < 1 || port > 65535) {
		mall_config_error(cfg, "%s: \"%s\" has no valid port (1 to 65535)", name, v);
		return def;
	}
	return v;
}

int
mall_config_check(const mall_config *cfg)
{
	for (int i = 0; i < cfg->nerrors; i++)
		mall_log_error(NULL, "bad setting: %s", cfg->errors[i]);
	return cfg->nerrors == 0 ? 0 : -1;
}
