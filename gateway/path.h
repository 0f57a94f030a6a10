/*
 * path.h: request paths as static-file paths, confined to the web root.
 *
 * Two fences: mall_gw_path_relative refuses dot segments ("..", ".", hidden
 * files) and backslashes in the decoded path, and mall_gw_path_resolve
 * canonicalizes with realpath(3) and checks the result is inside the canonical
 * root, so a symbolic link that points out of the root is refused as well.
 */
#ifndef MALL_GW_PATH_H
#define MALL_GW_PATH_H

#include <stddef.h>

typedef enum mall_gw_path_result {
	MALL_GW_PATH_OK = 0,
	MALL_GW_PATH_REFUSED, /* dot segment, hidden file, backslash: answer 404 */
	MALL_GW_PATH_TOO_LONG,
} mall_gw_path_result;

/* mall_gw_path_relative: the decoded request path (starting with '/') as a
 * path relative to the web root, in out (cap bytes): empty segments are
 * dropped, "/" gives "", "/css//site.css" gives "css/site.css".  A segment that
 * is "." or ".." or starts with '.', or contains '\\', is refused. */
mall_gw_path_result mall_gw_path_relative(const char *path, char *out, size_t cap);

/* mall_gw_path_resolve: the canonical path of the file rel names under the
 * canonical root (itself from realpath), into out (PATH_MAX bytes).  A
 * directory means its index.html.  Returns 0, or -1 when the file does not
 * exist, is not a regular file, or resolves outside root (symlinks included). */
int mall_gw_path_resolve(const char *root, const char *rel, char *out);

/* mall_gw_mime_type: the Content-Type for a file name by its extension
 * ("text/html; charset=utf-8"); "application/octet-stream" when unknown. */
const char *mall_gw_mime_type(const char *path);

#endif
