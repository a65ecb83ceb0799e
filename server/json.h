/*
 * Minimal JSON for the control socket's line protocol: a parser into a small
 * tree, and a string writer. Enough for one request or response per line;
 * not a general-purpose library (no \u surrogate pairs beyond the BMP are
 * combined, numbers are doubles, depth is limited to JSON_MAX_DEPTH).
 *
 * Ownership: json_parse() gives the caller a tree that json_free() releases.
 * Every pointer returned by the accessors lives as long as the tree.
 */
#ifndef IB_SERVER_JSON_H
#define IB_SERVER_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

#define JSON_MAX_DEPTH 16

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ };

enum json_err {
	JSON_OK = 0,
	JSON_E_SYNTAX = -1, /* not JSON, or trailing bytes */
	JSON_E_DEPTH = -2,  /* nested too deeply */
};

typedef struct json json_t;

/* Parse exactly one value from s[0..len) (surrounding white space allowed). */
int json_parse(const char *s, size_t len, json_t **out);
void json_free(json_t *j);
const char *json_strerror(int err);

enum json_type json_type(const json_t *j);
/* Member key of obj, or NULL (also when obj is not an object). */
const json_t *json_get(const json_t *obj, const char *key);
/* Elements of an array or members of an object. */
size_t json_len(const json_t *j);
const json_t *json_at(const json_t *j, size_t i);
/* The key of an object member returned by json_at(), or NULL. */
const char *json_key(const json_t *j);
/* Scalar values; NULL / def when j is NULL or of another type. */
const char *json_str(const json_t *j);
double json_num(const json_t *j, double def);
bool json_bool(const json_t *j, bool def);
/* Shorthands: json_str(json_get(obj, key)) etc. */
const char *json_get_str(const json_t *obj, const char *key);
double json_get_num(const json_t *obj, const char *key, double def);
bool json_get_bool(const json_t *obj, const char *key, bool def);

/* Append s as a quoted, escaped JSON string (NULL becomes null). */
void json_put_str(buf_t *b, const char *s);
/*
 * s as a double-quoted string with ", \, \n, \r and \t escaped and other
 * control bytes written with ctl_fmt (a printf format taking the byte, e.g.
 * "\\u%04x" for JSON, "\\x%02x" for libconfig).
 */
void json_put_quoted(buf_t *b, const char *s, const char *ctl_fmt);
/* Append "key":"value", with a leading comma unless first. */
void json_put_kv(buf_t *b, bool first, const char *key, const char *val);

#endif
