/*
 * path.c: static-file paths confined to the web root (see path.h).
 */
#include "path.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

mall_gw_path_result
mall_gw_path_relative(const char *path, char *out, size_t cap)
{
	size_t o = 0;
	const char *p = path;
	if (cap == 0)
		return MALL_GW_PATH_TOO_LONG;
	out[0] = '\0';
	while (*p) {
		while (*p == '/')
			p++;
		if (*p == '\0')
			break;
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (p[0] == '.' || memchr(p, '\\', n) != NULL)
			return MALL_GW_PATH_REFUSED;
		if (o + (o ? 1 : 0) + n + 1 > cap)
			return MALL_GW_PATH_TOO_LONG;
		if (o)
			out[o++] = '/';
		memcpy(out + o, p, n);
		o += n;
		out[o] = '\0';
		p += n;
	}
	return MALL_GW_PATH_OK;
}

/* Whether canonical path f is root or lies inside it. */
static bool
inside(const char *root, const char *f)
{
	size_t rl = strlen(root);
	if (rl == 1 && root[0] == '/')
		return f[0] == '/';
	return strncmp(f, root, rl) == 0 && (f[rl] == '\0' || f[rl] == '/');
}

static int
resolve(const char *root, const char *rel, char *out, char *joined, size_t cap)
{
	int n = snprintf(joined, cap, "%s/%s", root, rel);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	if (realpath(joined, out) == NULL || !inside(root, out))
		return -1;
	struct stat sb;
	if (stat(out, &sb) != 0)
		return -1;
	if (S_ISDIR(sb.st_mode)) {
		n = snprintf(joined, cap, "%s/index.html", out);
		if (n < 0 || (size_t)n >= cap)
			return -1;
		if (realpath(joined, out) == NULL || !inside(root, out))
			return -1;
		if (stat(out, &sb) != 0)
			return -1;
	}
	if (!S_ISREG(sb.st_mode)) {
		errno = ENOENT;
		return -1;
	}
	return 0;
}

int
mall_gw_path_resolve(const char *root, const char *rel, char *out)
{
	/* on the heap: civetweb's worker threads have small stacks */
	size_t cap = PATH_MAX;
	char *joined = malloc(cap);
	if (joined == NULL)
		return -1;
	int rc = resolve(root, rel, out, joined, cap);
	free(joined);
	return rc;
}
static const struct {
	const char *ext;
	const char *type;
} mime[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json; charset=utf-8"},
    {"map", "application/json; charset=utf-8"},
    {"txt", "text/plain; charset=utf-8"},
    {"xml", "application/xml; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"webmanifest", "application/manifest+json"},
    {"pdf", "application/pdf"},
};

const char *
mall_gw_mime_type(const char *path)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	const char *dot = strrchr(base, '.');
	if (dot == NULL || dot == base)
		return "application/octet-stream";
	for (size_t i = 0; i < sizeof(mime) / sizeof(mime[0]); i++)
		if (strcasecmp(dot + 1, mime[i].ext) == 0)
			return mime[i].type;
	return "application/octet-stream";
}
