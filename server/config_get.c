/* Typed access to libconfig settings with problem reporting: see config_p.h. */
#include "server/config_p.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/util.h"

void config_msgs_add(char ***v, size_t *n, char *s)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = s;
}

static void vreport(struct config_loader *L, bool error, const config_setting_t *s,
		    const char *path, const char *fmt, va_list ap)
{
	char what[1024];
	vsnprintf(what, sizeof(what), fmt, ap);
	int line = s ? config_setting_source_line(s) : 0;
	char *msg;
	if (path && *path)
		msg = xasprintf("%s:%d: option %s: %s", L->file, line, path, what);
	else
		msg = xasprintf("%s:%d: %s", L->file, line, what);
	if (error)
		config_msgs_add(&L->msgs->errors, &L->msgs->n_errors, msg);
	else
		config_msgs_add(&L->msgs->warnings, &L->msgs->n_warnings, msg);
}

void config_problem(struct config_loader *L, const config_setting_t *s, const char *path,
		    const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(L, true, s, path, fmt, ap);
	va_end(ap);
}

void config_warning(struct config_loader *L, const config_setting_t *s, const char *path,
		    const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(L, false, s, path, fmt, ap);
	va_end(ap);
}

size_t config_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return (size_t)-1;
	size_t row[65];
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost =
			    tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1])
				? 0
				: 1;
			size_t best = diag + cost;
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

bool config_account_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 64 || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (!isalnum(c) && c != '.' && c != '_' && c != '-' && c != '@')
			return false;
	}
	return true;
}

char *config_join(const char *path, const char *key)
{
	return *path ? xasprintf("%s.%s", path, key) : xstrdup(key);
}

/* Report every member of group whose name is not in known (NULL-terminated). */
void config_check_keys(struct config_loader *L, const config_setting_t *group, const char *path,
		       const char *const *known)
{
	int n = config_setting_length(group);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(s);
		const char *best = NULL;
		size_t best_d = (size_t)-1;
		bool found = false;
		if (!name)
			continue;
		for (const char *const *k = known; *k; k++) {
			if (strcmp(*k, name) == 0) {
				found = true;
				break;
			}
			size_t d = config_edit_distance(name, *k);
			if (d < best_d) {
				best_d = d;
				best = *k;
			}
		}
		if (found)
			continue;
		char *p = config_join(path, name);
		if (best && best_d <= 2 && best_d < strlen(name))
			config_problem(L, s, p, "unknown option (did you mean '%s'?)", best);
		else
			config_problem(L, s, p, "unknown option");
		free(p);
	}
}

static const char *type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP:
		return "a group { ... }";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a number";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "true or false";
	case CONFIG_TYPE_ARRAY:
		return "an array [ ... ]";
	case CONFIG_TYPE_LIST:
		return "a list ( ... )";
	default:
		return "nothing";
	}
}

void config_wrong_type(struct config_loader *L, const config_setting_t *s, const char *path,
		       const char *expected)
{
	config_problem(L, s, path, "expected %s, found %s", expected,
		       type_name(config_setting_type(s)));
}

/* Getters: return the member or NULL when absent or of the wrong type
 * (reported). *pathp receives the member's path for later messages. */
const config_setting_t *config_member(const config_setting_t *group, const char *key)
{
	return group ? config_setting_get_member(group, key) : NULL;
}

bool config_get_str(struct config_loader *L, const config_setting_t *g, const char *path,
		    const char *key, char **out, bool expand)
{
	const config_setting_t *s = config_member(g, key);
	if (!s)
		return false;
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		char *p = config_join(path, key);
		config_wrong_type(L, s, p, "a string in double quotes");
		free(p);
		return false;
	}
	free(*out);
	*out = expand ? ib_expand_home(config_setting_get_string(s))
		      : xstrdup(config_setting_get_string(s));
	return true;
}

bool config_get_int(struct config_loader *L, const config_setting_t *g, const char *path,
		    const char *key, int *out, int min, int max)
{
	const config_setting_t *s = config_member(g, key);
	if (!s)
		return false;
	char *p = config_join(path, key);
	bool ok = false;
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
		config_wrong_type(L, s, p, "an integer");
	} else {
		long long v = config_setting_get_int64(s);
		if (t == CONFIG_TYPE_INT)
			v = config_setting_get_int(s);
		if (v < min || v > max) {
			config_problem(L, s, p, "%lld is out of range (%d to %d)", v, min, max);
		} else {
			*out = (int)v;
			ok = true;
		}
	}
	free(p);
	return ok;
}

bool config_get_num(struct config_loader *L, const config_setting_t *g, const char *path,
		    const char *key, double *out, double min, double max)
{
	const config_setting_t *s = config_member(g, key);
	if (!s)
		return false;
	char *p = config_join(path, key);
	bool ok = false;
	double v = 0;
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		v = config_setting_get_int(s);
		ok = true;
		break;
	case CONFIG_TYPE_INT64:
		v = (double)config_setting_get_int64(s);
		ok = true;
		break;
	case CONFIG_TYPE_FLOAT:
		v = config_setting_get_float(s);
		ok = true;
		break;
	default:
		config_wrong_type(L, s, p, "a number");
	}
	if (ok && (v < min || v > max)) {
		config_problem(L, s, p, "%g is out of range (%g to %g)", v, min, max);
		ok = false;
	}
	if (ok)
		*out = v;
	free(p);
	return ok;
}

bool config_get_bool(struct config_loader *L, const config_setting_t *g, const char *path,
		     const char *key, bool *out)
{
	const config_setting_t *s = config_member(g, key);
	if (!s)
		return false;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		char *p = config_join(path, key);
		config_wrong_type(L, s, p, "true or false");
		free(p);
		return false;
	}
	*out = config_setting_get_bool(s) != 0;
	return true;
}

/* A group member that must be a group (or absent). */
const config_setting_t *config_get_group(struct config_loader *L, const config_setting_t *g,
					 const char *path, const char *key)
{
	const config_setting_t *s = config_member(g, key);
	if (!s)
		return NULL;
	if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
		char *p = config_join(path, key);
		config_wrong_type(L, s, p, "a group { ... }");
		free(p);
		return NULL;
	}
	return s;
}

void config_get_strings(struct config_loader *L, const config_setting_t *g, const char *path,
			const char *key, config_str_each_fn each, void *arg)
{
	const config_setting_t *s = config_member(g, key);
	if (!s)
		return;
	char *p = config_join(path, key);
	int t = config_setting_type(s);
	if (t == CONFIG_TYPE_STRING) {
		/* A single string where a list is expected is taken as a list of one. */
		each(L, arg, config_setting_get_string(s), s, p);
	} else if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
		config_wrong_type(L, s, p, "an array of strings [ \"...\", ... ]");
	} else {
		int n = config_setting_length(s);
		for (int i = 0; i < n; i++) {
			const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
			char *ep = xasprintf("%s.[%d]", p, i);
			if (config_setting_type(e) != CONFIG_TYPE_STRING)
				config_wrong_type(L, e, ep, "a string in double quotes");
			else
				each(L, arg, config_setting_get_string(e), e, ep);
			free(ep);
		}
	}
	free(p);
}

bool config_get_tls(struct config_loader *L, const config_setting_t *g, const char *path,
		    enum config_tls *out)
{
	char *v = NULL;
	bool set = false;
	if (!config_get_str(L, g, path, "tls", &v, false))
		return false;
	if (strcmp(v, "none") == 0)
		*out = CONFIG_TLS_NONE;
	else if (strcmp(v, "starttls") == 0)
		*out = CONFIG_TLS_STARTTLS;
	else if (strcmp(v, "implicit") == 0)
		*out = CONFIG_TLS_IMPLICIT;
	else {
		char *p = config_join(path, "tls");
		config_problem(L, config_member(g, "tls"), p,
			       "'%s' is not a TLS mode; use \"none\", \"starttls\" or \"implicit\"",
			       v);
		free(p);
		free(v);
		return false;
	}
	set = true;
	free(v);
	return set;
}
