/*
 * log.c: JSON-lines logger.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static char service_name[64] = "mall";
static atomic_int min_level = MALL_LOG_INFO;
static atomic_int out_fd = 1;

static const char *level_names[] = {"debug", "info", "warn", "error"};

int
mall_log_init(const char *service)
{
	snprintf(service_name, sizeof(service_name), "%s", service);
	const char *lv = getenv("MALL_LOG_LEVEL");
	if (lv == NULL || *lv == '\0')
		return 0;
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(lv, level_names[i]) == 0) {
			min_level = i;
			return 0;
		}
	}
	mall_log_error(NULL, "MALL_LOG_LEVEL: unknown level \"%s\" (debug, info, warn or error)", lv);
	return -1;
}

void
mall_log_set_fd(int fd)
{
	out_fd = fd;
}

void
mall_log_set_level(mall_log_level level)
{
	min_level = level;
}

int
mall_log_enabled(mall_log_level level)
{
	return (int)level >= min_level;
}

/* Length of the valid UTF-8 sequence at s, or 0 if it is not valid. */
static size_t
utf8_seq(const unsigned char *s)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t n;
	unsigned int cp;
	if ((c & 0xE0) == 0xC0) {
		n = 2;
		cp = c & 0x1F;
	} else if ((c & 0xF0) == 0xE0) {
		n = 3;
		cp = c & 0x0F;
	} else if ((c & 0xF8) == 0xF0) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

static size_t
put(char *buf, size_t len, size_t cap, const char *s, size_t n)
{
	if (len + n >= cap)
		return len;
	memcpy(buf + len, s, n);
	len += n;
	buf[len] = '\0';
	return len;
}

size_t
mall_json_escape(char *buf, size_t len, size_t cap, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned char c = *p;
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			len = put(buf, len, cap, esc, 2);
			p++;
		} else if (c < 0x20) {
			int n = snprintf(esc, sizeof(esc), "\\u%04x", c);
			len = put(buf, len, cap, esc, (size_t)n);
			p++;
		} else {
			size_t n = utf8_seq(p);
			if (n == 0) {
				len = put(buf, len, cap, "\xEF\xBF\xBD", 3);
				p++;
			} else {
				len = put(buf, len, cap, (const char *)p, n);
				p += n;
			}
		}
	}
	return len;
}

void
mall_log(mall_log_level level, const char *trace_id, const char *fmt, ...)
{
	if (!mall_log_enabled(level))
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);

	char line[4096];
	size_t len = (size_t)snprintf(line, sizeof(line),
	    "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"service\":\"",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    ts.tv_nsec / 1000000, level_names[level]);
	len = mall_json_escape(line, len, sizeof(line) - 4, service_name);
	len = put(line, len, sizeof(line) - 4, "\"", 1);
	if (trace_id != NULL && *trace_id != '\0') {
		len = put(line, len, sizeof(line) - 4, ",\"trace_id\":\"", 13);
		len = mall_json_escape(line, len, sizeof(line) - 4, trace_id);
		len = put(line, len, sizeof(line) - 4, "\"", 1);
	}
	len = put(line, len, sizeof(line) - 4, ",\"msg\":\"", 8);
	len = mall_json_escape(line, len, sizeof(line) - 4, msg);
	/* room for the closing "}\n was reserved above */
	memcpy(line + len, "\"}\n", 3);
	len += 3;
	ssize_t w = write(out_fd, line, len);
	(void)w;
}
