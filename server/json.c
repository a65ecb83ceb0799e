/* Minimal JSON: see json.h. */
#include "server/json.h"

#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

struct json {
	enum json_type type;
	char *key; /* when a member of an object */
	char *str;
	double num;
	bool b;
	json_t **kids;
	size_t n_kids;
};

struct parser {
	const char *p, *end;
};

static void skip_ws(struct parser *P)
{
	while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\r' || *P->p == '\n'))
		P->p++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parse a string at P->p (on the opening quote) into a new C string. */
static int parse_string(struct parser *P, char **out)
{
	buf_t b = BUF_INIT;
	P->p++;
	while (P->p < P->end && *P->p != '"') {
		unsigned char c = (unsigned char)*P->p++;
		if (c < 0x20)
			goto bad;
		if (c != '\\') {
			buf_append(&b, &c, 1);
			continue;
		}
		if (P->p >= P->end)
			goto bad;
		char e = *P->p++;
		switch (e) {
		case '"':
		case '\\':
		case '/':
			buf_append(&b, &e, 1);
			break;
		case 'b':
			buf_puts(&b, "\b");
			break;
		case 'f':
			buf_puts(&b, "\f");
			break;
		case 'n':
			buf_puts(&b, "\n");
			break;
		case 'r':
			buf_puts(&b, "\r");
			break;
		case 't':
			buf_puts(&b, "\t");
			break;
		case 'u': {
			unsigned v = 0;
			if (P->end - P->p < 4)
				goto bad;
			for (int i = 0; i < 4; i++) {
				int h = hexval(P->p[i]);
				if (h < 0)
					goto bad;
				v = v * 16 + (unsigned)h;
			}
			P->p += 4;
			if (v == 0)
				goto bad; /* a NUL would cut the C string short */
			char u[3];
			if (v < 0x80) {
				u[0] = (char)v;
				buf_append(&b, u, 1);
			} else if (v < 0x800) {
				u[0] = (char)(0xc0 | (v >> 6));
				u[1] = (char)(0x80 | (v & 0x3f));
				buf_append(&b, u, 2);
			} else {
				u[0] = (char)(0xe0 | (v >> 12));
				u[1] = (char)(0x80 | ((v >> 6) & 0x3f));
				u[2] = (char)(0x80 | (v & 0x3f));
				buf_append(&b, u, 3);
			}
			break;
		}
		default:
			goto bad;
		}
	}
	if (P->p >= P->end)
		goto bad;
	P->p++;
	*out = xstrdup(b.data ? buf_cstr(&b) : "");
	buf_free(&b);
	return JSON_OK;
bad:
	buf_free(&b);
	return JSON_E_SYNTAX;
}

static int parse_value(struct parser *P, int depth, json_t **out);

static void add_kid(json_t *j, json_t *k)
{
	j->kids = xrealloc(j->kids, (j->n_kids + 1) * sizeof(*j->kids));
	j->kids[j->n_kids++] = k;
}

static int parse_container(struct parser *P, int depth, json_t *j)
{
	bool obj = j->type == JSON_OBJ;
	char close = obj ? '}' : ']';
	int rc;

	P->p++;
	skip_ws(P);
	if (P->p < P->end && *P->p == close) {
		P->p++;
		return JSON_OK;
	}
	for (;;) {
		char *key = NULL;
		json_t *kid = NULL;
		skip_ws(P);
		if (obj) {
			if (P->p >= P->end || *P->p != '"')
				return JSON_E_SYNTAX;
			if ((rc = parse_string(P, &key)) != JSON_OK)
				return rc;
			skip_ws(P);
			if (P->p >= P->end || *P->p != ':') {
				free(key);
				return JSON_E_SYNTAX;
			}
			P->p++;
		}
		if ((rc = parse_value(P, depth + 1, &kid)) != JSON_OK) {
			free(key);
			return rc;
		}
		kid->key = key;
		add_kid(j, kid);
		skip_ws(P);
		if (P->p >= P->end)
			return JSON_E_SYNTAX;
		if (*P->p == ',') {
			P->p++;
			continue;
		}
		if (*P->p == close) {
			P->p++;
			return JSON_OK;
		}
		return JSON_E_SYNTAX;
	}
}

static bool take(struct parser *P, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(P->end - P->p) < n || memcmp(P->p, word, n) != 0)
		return false;
	P->p += n;
	return true;
}

static int parse_value(struct parser *P, int depth, json_t **out)
{
	json_t *j;
	int rc = JSON_OK;

	if (depth > JSON_MAX_DEPTH)
		return JSON_E_DEPTH;
	skip_ws(P);
	if (P->p >= P->end)
		return JSON_E_SYNTAX;
	j = xcalloc(1, sizeof(*j));
	switch (*P->p) {
	case '{':
		j->type = JSON_OBJ;
		rc = parse_container(P, depth, j);
		break;
	case '[':
		j->type = JSON_ARR;
		rc = parse_container(P, depth, j);
		break;
	case '"':
		j->type = JSON_STR;
		rc = parse_string(P, &j->str);
		break;
	case 't':
		j->type = JSON_BOOL;
		j->b = true;
		rc = take(P, "true") ? 0 : JSON_E_SYNTAX;
		break;
	case 'f':
		j->type = JSON_BOOL;
		rc = take(P, "false") ? 0 : JSON_E_SYNTAX;
		break;
	case 'n':
		j->type = JSON_NULL;
		rc = take(P, "null") ? 0 : JSON_E_SYNTAX;
		break;
	default: {
		char tmp[64];
		size_t n = 0;
		while (P->p + n < P->end && n < sizeof(tmp) - 1 &&
		       strchr("+-0123456789.eE", P->p[n]))
			n++;
		if (n == 0) {
			rc = JSON_E_SYNTAX;
			break;
		}
		memcpy(tmp, P->p, n);
		tmp[n] = '\0';
		char *end;
		j->type = JSON_NUM;
		j->num = strtod(tmp, &end);
		if (*end)
			rc = JSON_E_SYNTAX;
		P->p += n;
	}
	}
	if (rc != JSON_OK) {
		json_free(j);
		return rc;
	}
	*out = j;
	return JSON_OK;
}

int json_parse(const char *s, size_t len, json_t **out)
{
	struct parser P = {s, s + len};
	json_t *j = NULL;
	*out = NULL;
	int rc = parse_value(&P, 0, &j);
	if (rc != JSON_OK)
		return rc;
	skip_ws(&P);
	if (P.p != P.end) {
		json_free(j);
		return JSON_E_SYNTAX;
	}
	*out = j;
	return JSON_OK;
}

void json_free(json_t *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n_kids; i++)
		json_free(j->kids[i]);
	free(j->kids);
	free(j->key);
	free(j->str);
	free(j);
}

const char *json_strerror(int err)
{
	switch (err) {
	case JSON_OK:
		return "no error";
	case JSON_E_SYNTAX:
		return "not valid JSON";
	case JSON_E_DEPTH:
		return "JSON nested too deeply";
	default:
		return "unknown JSON error";
	}
}

enum json_type json_type(const json_t *j)
{
	return j ? j->type : JSON_NULL;
}

const json_t *json_get(const json_t *obj, const char *key)
{
	if (!obj || obj->type != JSON_OBJ)
		return NULL;
	for (size_t i = 0; i < obj->n_kids; i++)
		if (strcmp(obj->kids[i]->key, key) == 0)
			return obj->kids[i];
	return NULL;
}

size_t json_len(const json_t *j)
{
	return j && (j->type == JSON_ARR || j->type == JSON_OBJ) ? j->n_kids : 0;
}

const json_t *json_at(const json_t *j, size_t i)
{
	return i < json_len(j) ? j->kids[i] : NULL;
}

const char *json_key(const json_t *j)
{
	return j ? j->key : NULL;
}
const char *json_str(const json_t *j)
{
	return j && j->type == JSON_STR ? j->str : NULL;
}
double json_num(const json_t *j, double def)
{
	return j && j->type == JSON_NUM ? j->num : def;
}
bool json_bool(const json_t *j, bool def)
{
	return j && j->type == JSON_BOOL ? j->b : def;
}

const char *json_get_str(const json_t *obj, const char *key)
{
	return json_str(json_get(obj, key));
}

double json_get_num(const json_t *obj, const char *key, double def)
{
	return json_num(json_get(obj, key), def);
}

bool json_get_bool(const json_t *obj, const char *key, bool def)
{
	return json_bool(json_get(obj, key), def);
}

void json_put_quoted(buf_t *b, const char *s, const char *ctl_fmt)
{
	buf_puts(b, "\"");
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		switch (*c) {
		case '"':
			buf_puts(b, "\\\"");
			break;
		case '\\':
			buf_puts(b, "\\\\");
			break;
		case '\n':
			buf_puts(b, "\\n");
			break;
		case '\r':
			buf_puts(b, "\\r");
			break;
		case '\t':
			buf_puts(b, "\\t");
			break;
		default:
			if (*c < 0x20 || *c == 0x7f)
				buf_printf(b, ctl_fmt, *c);
			else
				buf_append(b, c, 1);
		}
	}
	buf_puts(b, "\"");
}

void json_put_str(buf_t *b, const char *s)
{
	if (!s) {
		buf_puts(b, "null");
		return;
	}
	json_put_quoted(b, s, "\\u%04x");
}

void json_put_kv(buf_t *b, bool first, const char *key, const char *val)
{
	if (!first)
		buf_puts(b, ",");
	json_put_str(b, key);
	buf_puts(b, ":");
	json_put_str(b, val);
}
