/*
 * static.c: GET/HEAD of the storefront's files from the web root
 * (MALL_GATEWAY_WEB_ROOT): index.html for a directory, Content-Type by
 * extension, a weak ETag from size and modification time with If-None-Match
 * revalidation (Cache-Control: no-cache: the files carry no content hash).
 * Paths are confined to the root by path.h; a refused or missing path is 404.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway.h"
#include "log.h"
#include "path.h"

#define SMALL_FILE (256 * 1024) /* answered with one write */

static void
not_found(mall_gw_req *r)
{
	char msg[300];
	snprintf(msg, sizeof(msg), "no file %.200s", r->path);
	mall_gw_respond_error(r, 404, "not_found", msg, NULL);
}

/* Whether If-None-Match names etag (or is "*"). */
static bool
etag_matches(const char *inm, const char *etag)
{
	if (inm == NULL)
		return false;
	if (strcmp(inm, "*") == 0)
		return true;
	const char *bare = etag + 2; /* without W/ */
	const char *p = inm;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		size_t n = strcspn(p, ",");
		size_t m = n;
		while (m > 0 && p[m - 1] == ' ')
			m--;
		if (m == strlen(bare) && strncmp(p, bare, m) == 0)
			return true;
		p += n;
	}
	return false;
}

void
mall_gw_handle_static(mall_gw_req *r)
{
	/* civetweb's worker threads have small stacks: buffers go to the arena */
	char *rel = mall_arena_alloc(r->arena, PATH_MAX);
	char *file = mall_arena_alloc(r->arena, PATH_MAX);
	if (mall_gw_path_relative(r->path, rel, PATH_MAX) != MALL_GW_PATH_OK ||
	    mall_gw_path_resolve(r->gw->cfg.web_root, rel, file) != 0) {
		not_found(r);
		return;
	}
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		if (fd >= 0)
			close(fd);
		not_found(r);
		return;
	}
	char etag[80];
	snprintf(etag, sizeof(etag), "W/\"%jx-%jx.%lx\"", (uintmax_t)sb.st_size,
	         (uintmax_t)sb.st_mtim.tv_sec, (unsigned long)sb.st_mtim.tv_nsec);
	mall_gw_header(r, "ETag", etag);
	mall_gw_header(r, "Cache-Control", "no-cache");
	const char *ctype = mall_gw_mime_type(file);
	size_t size = (size_t)sb.st_size;
	if (etag_matches(mg_get_header(r->conn, "If-None-Match"), etag)) {
		close(fd);
		/* a 304 has no body; its Content-Length is the one a 200 would have */
		r->head = true;
		mall_gw_respond(r, 304, ctype, "", size);
		return;
	}
	if (r->head) {
		close(fd);
		mall_gw_respond(r, 200, ctype, "", size);
		return;
	}
	if (size <= SMALL_FILE) {
		char *buf = mall_arena_alloc(r->arena, size + 1);
		size_t got = 0;
		while (got < size) {
			ssize_t n = read(fd, buf + got, size - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		close(fd);
		if (got != size) {
			mall_log_warn(r->trace_id, "could not read file \"%s\"", file);
			mall_gw_respond_error(r, 500, "internal", "could not read the file", NULL);
			return;
		}
		mall_gw_respond(r, 200, ctype, buf, size);
		return;
	}
	mall_gw_respond_head(r, 200, ctype, size);
	size_t bufsize = 65536;
	char *buf = mall_arena_alloc(r->arena, bufsize);
	size_t sent = 0;
	while (sent < size) {
		ssize_t n = read(fd, buf, bufsize < size - sent ? bufsize : size - sent);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || mall_gw_write(r, buf, (size_t)n) != 0)
			break;
		sent += (size_t)n;
	}
	close(fd);
	if (sent != size)
		mall_log_warn(r->trace_id, "sent %zu of %zu bytes of file \"%s\"", sent, size,
		              file);
}
