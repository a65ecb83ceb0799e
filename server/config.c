/* Config loading and validation: see config.h. */

/*
 * libconfig calls its handle config_t, as lib/config.h calls ours: rename
 * libconfig's for this file only (the library's symbols are functions, so the
 * rename is invisible to the linker).
 */
#define config_t libconfig_t
#include <libconfig.h>
#undef config_t

#include "server/config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/util.h"

/* One loading pass: the file being read and where problems go. */
struct loader {
	const char *file;
	config_msgs_t *msgs;
};

static void msgs_add(char ***v, size_t *n, char *s)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = s;
}

static void vreport(struct loader *L, bool error, const config_setting_t *s, const char *path,
		    const char *fmt, va_list ap)
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
		msgs_add(&L->msgs->errors, &L->msgs->n_errors, msg);
	else
		msgs_add(&L->msgs->warnings, &L->msgs->n_warnings, msg);
}

__attribute__((format(printf, 4, 5))) static void
problem(struct loader *L, const config_setting_t *s, const char *path, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(L, true, s, path, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 4, 5))) static void
warning(struct loader *L, const config_setting_t *s, const char *path, const char *fmt, ...)
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

static char *join(const char *path, const char *key)
{
	return *path ? xasprintf("%s.%s", path, key) : xstrdup(key);
}

/* Report every member of group whose name is not in known (NULL-terminated). */
static void check_keys(struct loader *L, const config_setting_t *group, const char *path,
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
		char *p = join(path, name);
		if (best && best_d <= 2 && best_d < strlen(name))
			problem(L, s, p, "unknown option (did you mean '%s'?)", best);
		else
			problem(L, s, p, "unknown option");
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

static void wrong_type(struct loader *L, const config_setting_t *s, const char *path,
		       const char *expected)
{
	problem(L, s, path, "expected %s, found %s", expected, type_name(config_setting_type(s)));
}

/* Getters: return the member or NULL when absent or of the wrong type
 * (reported). *pathp receives the member's path for later messages. */
static const config_setting_t *member(const config_setting_t *group, const char *key)
{
	return group ? config_setting_get_member(group, key) : NULL;
}

static bool get_str(struct loader *L, const config_setting_t *g, const char *path, const char *key,
		    char **out, bool expand)
{
	const config_setting_t *s = member(g, key);
	if (!s)
		return false;
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		char *p = join(path, key);
		wrong_type(L, s, p, "a string in double quotes");
		free(p);
		return false;
	}
	free(*out);
	*out = expand ? ib_expand_home(config_setting_get_string(s))
		      : xstrdup(config_setting_get_string(s));
	return true;
}

static bool get_int(struct loader *L, const config_setting_t *g, const char *path, const char *key,
		    int *out, int min, int max)
{
	const config_setting_t *s = member(g, key);
	if (!s)
		return false;
	char *p = join(path, key);
	bool ok = false;
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
		wrong_type(L, s, p, "an integer");
	} else {
		long long v = config_setting_get_int64(s);
		if (t == CONFIG_TYPE_INT)
			v = config_setting_get_int(s);
		if (v < min || v > max) {
			problem(L, s, p, "%lld is out of range (%d to %d)", v, min, max);
		} else {
			*out = (int)v;
			ok = true;
		}
	}
	free(p);
	return ok;
}

static bool get_num(struct loader *L, const config_setting_t *g, const char *path, const char *key,
		    double *out, double min, double max)
{
	const config_setting_t *s = member(g, key);
	if (!s)
		return false;
	char *p = join(path, key);
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
		wrong_type(L, s, p, "a number");
	}
	if (ok && (v < min || v > max)) {
		problem(L, s, p, "%g is out of range (%g to %g)", v, min, max);
		ok = false;
	}
	if (ok)
		*out = v;
	free(p);
	return ok;
}

static bool get_bool(struct loader *L, const config_setting_t *g, const char *path, const char *key,
		     bool *out)
{
	const config_setting_t *s = member(g, key);
	if (!s)
		return false;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		char *p = join(path, key);
		wrong_type(L, s, p, "true or false");
		free(p);
		return false;
	}
	*out = config_setting_get_bool(s) != 0;
	return true;
}

/* A group member that must be a group (or absent). */
static const config_setting_t *get_group(struct loader *L, const config_setting_t *g,
					 const char *path, const char *key)
{
	const config_setting_t *s = member(g, key);
	if (!s)
		return NULL;
	if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
		char *p = join(path, key);
		wrong_type(L, s, p, "a group { ... }");
		free(p);
		return NULL;
	}
	return s;
}

/* A list or array of strings; calls each(value, element, element path). */
typedef void (*str_each_fn)(struct loader *L, void *arg, const char *value,
			    const config_setting_t *s, const char *path);

static void get_strings(struct loader *L, const config_setting_t *g, const char *path,
			const char *key, str_each_fn each, void *arg)
{
	const config_setting_t *s = member(g, key);
	if (!s)
		return;
	char *p = join(path, key);
	int t = config_setting_type(s);
	if (t == CONFIG_TYPE_STRING) {
		/* A single string where a list is expected is taken as a list of one. */
		each(L, arg, config_setting_get_string(s), s, p);
	} else if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
		wrong_type(L, s, p, "an array of strings [ \"...\", ... ]");
	} else {
		int n = config_setting_length(s);
		for (int i = 0; i < n; i++) {
			const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
			char *ep = xasprintf("%s.[%d]", p, i);
			if (config_setting_type(e) != CONFIG_TYPE_STRING)
				wrong_type(L, e, ep, "a string in double quotes");
			else
				each(L, arg, config_setting_get_string(e), e, ep);
			free(ep);
		}
	}
	free(p);
}

static bool parse_tls(struct loader *L, const config_setting_t *g, const char *path,
		      enum config_tls *out)
{
	char *v = NULL;
	bool set = false;
	if (!get_str(L, g, path, "tls", &v, false))
		return false;
	if (strcmp(v, "none") == 0)
		*out = CONFIG_TLS_NONE;
	else if (strcmp(v, "starttls") == 0)
		*out = CONFIG_TLS_STARTTLS;
	else if (strcmp(v, "implicit") == 0)
		*out = CONFIG_TLS_IMPLICIT;
	else {
		char *p = join(path, "tls");
		problem(L, member(g, "tls"), p,
			"'%s' is not a TLS mode; use \"none\", \"starttls\" or \"implicit\"", v);
		free(p);
		free(v);
		return false;
	}
	set = true;
	free(v);
	return set;
}

/* ------------------------------------------------------------------ */

static const char *const root_keys[] = {
    "datadir", "listen", "tls_cert", "tls_key", "maxsyncaccounts", "mbnames", "accounts", NULL,
};
static const char *const listen_keys[] = {"address", "port", "tls", NULL};
static const char *const mbnames_keys[] = {
    "enabled", "filename", "header", "peritem", "sep", "footer", NULL,
};
static const char *const account_keys[] = {
    "name", "autorefresh", "idle", "max_deletion_ratio", "local", "remote", "maildir", NULL,
};
static const char *const local_keys[] = {"password_hash", NULL};
static const char *const maildir_keys[] = {"path", "sep", NULL};
static const char *const remote_keys[] = {
    "host",
    "port",
    "tls",
    "user",
    "password",
    "password_file",
    "password_command",
    "auth",
    "ca_file",
    "fingerprint",
    "tunnel",
    "reference",
    "maxconnections",
    "readonly",
    "folders",
    "nametrans",
    NULL,
};
static const char *const folders_keys[] = {"include", "exclude", NULL};
static const char *const nametrans_keys[] = {"match", "replace", NULL};

static void load_listen(struct loader *L, config_t *cfg, const config_setting_t *s)
{
	if (config_setting_type(s) != CONFIG_TYPE_LIST) {
		wrong_type(L, s, "listen", "a list ( { address = ...; port = ...; }, ... )");
		return;
	}
	int n = config_setting_length(s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
		char *p = xasprintf("listen.[%d]", i);
		if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
			wrong_type(L, g, p, "a group { address = ...; port = ...; }");
			free(p);
			continue;
		}
		check_keys(L, g, p, listen_keys);
		config_listen_t li = {NULL, 0, CONFIG_TLS_NONE};
		if (!get_str(L, g, p, "address", &li.address, false))
			li.address = xstrdup("127.0.0.1");
		parse_tls(L, g, p, &li.tls);
		if (!get_int(L, g, p, "port", &li.port, 1, 65535))
			li.port = li.tls == CONFIG_TLS_IMPLICIT ? 1993 : 1143;
		cfg->listen = xrealloc(cfg->listen, (cfg->n_listen + 1) * sizeof(*cfg->listen));
		cfg->listen[cfg->n_listen++] = li;
		free(p);
	}
}

static void load_mbnames(struct loader *L, config_t *cfg, const config_setting_t *g)
{
	config_mbnames_t *m = &cfg->mbnames;
	check_keys(L, g, "mbnames", mbnames_keys);
	get_bool(L, g, "mbnames", "enabled", &m->enabled);
	get_str(L, g, "mbnames", "filename", &m->filename, true);
	get_str(L, g, "mbnames", "header", &m->header, false);
	get_str(L, g, "mbnames", "peritem", &m->peritem, false);
	get_str(L, g, "mbnames", "sep", &m->sep, false);
	get_str(L, g, "mbnames", "footer", &m->footer, false);
}

static void idle_each(struct loader *L, void *arg, const char *v, const config_setting_t *s,
		      const char *path)
{
	config_account_t *a = arg;
	a->idle = xrealloc(a->idle, (a->n_idle + 1) * sizeof(*a->idle));
	a->idle[a->n_idle++] = xstrdup(v);
}

static void auth_each(struct loader *L, void *arg, const char *v, const config_setting_t *s,
		      const char *path)
{
	config_remote_t *r = arg;
	enum config_auth m;
	if (strcasecmp(v, "cram-md5") == 0)
		m = CONFIG_AUTH_CRAM_MD5;
	else if (strcasecmp(v, "plain") == 0)
		m = CONFIG_AUTH_PLAIN;
	else if (strcasecmp(v, "login") == 0)
		m = CONFIG_AUTH_LOGIN;
	else {
		problem(L, s, path,
			"'%s' is not an authentication method; use \"cram-md5\", "
			"\"plain\" or \"login\"",
			v);
		return;
	}
	for (size_t i = 0; i < r->n_auth; i++)
		if (r->auth[i] == m)
			return;
	r->auth[r->n_auth++] = m;
}

struct regex_list {
	config_regex_t **v;
	size_t *n;
};

static void regex_each(struct loader *L, void *arg, const char *v, const config_setting_t *s,
		       const char *path)
{
	struct regex_list *rl = arg;
	config_regex_t r;
	int rc = regcomp(&r.re, v, REG_EXTENDED | REG_NOSUB);
	if (rc != 0) {
		char err[256];
		regerror(rc, &r.re, err, sizeof(err));
		problem(L, s, path, "bad regular expression '%s': %s", v, err);
		return;
	}
	r.pattern = xstrdup(v);
	*rl->v = xrealloc(*rl->v, (*rl->n + 1) * sizeof(**rl->v));
	(*rl->v)[(*rl->n)++] = r;
}

static void load_nametrans(struct loader *L, config_remote_t *r, const config_setting_t *s,
			   const char *path)
{
	if (config_setting_type(s) != CONFIG_TYPE_LIST) {
		wrong_type(L, s, path, "a list ( { match = ...; replace = ...; }, ... )");
		return;
	}
	int n = config_setting_length(s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
		char *p = xasprintf("%s.[%d]", path, i);
		char *match = NULL, *replace = NULL;
		if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
			wrong_type(L, g, p, "a group { match = ...; replace = ...; }");
			goto next;
		}
		check_keys(L, g, p, nametrans_keys);
		if (!get_str(L, g, p, "match", &match, false)) {
			if (!member(g, "match"))
				problem(L, g, p, "missing 'match' (a regular expression)");
			goto next;
		}
		if (!get_str(L, g, p, "replace", &replace, false))
			replace = xstrdup("");
		config_nametrans_t nt;
		int rc = regcomp(&nt.re, match, REG_EXTENDED);
		if (rc != 0) {
			char err[256];
			char *mp = join(p, "match");
			regerror(rc, &nt.re, err, sizeof(err));
			problem(L, member(g, "match"), mp, "bad regular expression '%s': %s", match,
				err);
			free(mp);
			goto next;
		}
		nt.match = match;
		nt.replace = replace;
		match = replace = NULL;
		r->nametrans = xrealloc(r->nametrans, (r->n_nametrans + 1) * sizeof(*r->nametrans));
		r->nametrans[r->n_nametrans++] = nt;
	next:
		free(match);
		free(replace);
		free(p);
	}
}

static bool fingerprint_ok(const char *fp)
{
	if (strncasecmp(fp, "sha256:", 7) != 0)
		return false;
	size_t hex = 0;
	for (const char *c = fp + 7; *c; c++) {
		if (isxdigit((unsigned char)*c))
			hex++;
		else if (*c != ':')
			return false;
	}
	return hex == 64;
}

/* Warn when a file holding a password can be read by group or others. */
static void check_secret_file(struct loader *L, const config_setting_t *s, const char *path,
			      const char *file)
{
	struct stat st;
	if (stat(file, &st) < 0)
		return;
	if (st.st_mode & (S_IRGRP | S_IROTH))
		warning(L, s, path, "%s holds a password and is readable by others; chmod 600 %s",
			file, file);
}

static void load_remote(struct loader *L, config_remote_t *r, const config_setting_t *g,
			const char *path, bool *inline_password)
{
	const config_setting_t *s;

	check_keys(L, g, path, remote_keys);
	get_str(L, g, path, "host", &r->host, false);
	r->tls = CONFIG_TLS_IMPLICIT;
	parse_tls(L, g, path, &r->tls);
	if (!get_int(L, g, path, "port", &r->port, 1, 65535))
		r->port = r->tls == CONFIG_TLS_IMPLICIT ? 993 : 143;
	get_str(L, g, path, "user", &r->user, false);
	get_str(L, g, path, "tunnel", &r->tunnel, false);

	int n_pw = 0;
	if (get_str(L, g, path, "password", &r->password, false)) {
		n_pw++;
		*inline_password = true;
	}
	if (get_str(L, g, path, "password_file", &r->password_file, true)) {
		char *p = join(path, "password_file");
		n_pw++;
		check_secret_file(L, member(g, "password_file"), p, r->password_file);
		free(p);
	}
	if (get_str(L, g, path, "password_command", &r->password_command, false))
		n_pw++;
	if (n_pw > 1)
		problem(L, g, path, "set only one of password, password_file and password_command");

	get_strings(L, g, path, "auth", auth_each, r);
	get_str(L, g, path, "ca_file", &r->ca_file, true);
	if (get_str(L, g, path, "fingerprint", &r->fingerprint, false) &&
	    !fingerprint_ok(r->fingerprint)) {
		char *p = join(path, "fingerprint");
		problem(L, member(g, "fingerprint"), p,
			"'%s' is not a certificate fingerprint; write \"sha256:\" and 32 hex "
			"bytes, e.g. the output of `openssl x509 -noout -fingerprint -sha256`",
			r->fingerprint);
		free(p);
	}
	if (!get_str(L, g, path, "reference", &r->reference, false))
		r->reference = xstrdup("");
	if (!get_int(L, g, path, "maxconnections", &r->maxconnections, 1, 100))
		r->maxconnections = 3;
	get_bool(L, g, path, "readonly", &r->readonly);

	char *fp = join(path, "folders");
	if ((s = get_group(L, g, path, "folders")) != NULL) {
		check_keys(L, s, fp, folders_keys);
		struct regex_list inc = {&r->include, &r->n_include};
		struct regex_list exc = {&r->exclude, &r->n_exclude};
		get_strings(L, s, fp, "include", regex_each, &inc);
		get_strings(L, s, fp, "exclude", regex_each, &exc);
	}
	free(fp);
	if ((s = member(g, "nametrans")) != NULL) {
		char *p = join(path, "nametrans");
		load_nametrans(L, r, s, p);
		free(p);
	}

	if (r->tunnel && r->host)
		problem(L, g, path, "set either host or tunnel, not both");
	else if (!r->tunnel && !r->host && !member(g, "host"))
		problem(L, g, path,
			"missing 'host' (the IMAP server) or 'tunnel' (a PREAUTH command)");
	if (!r->tunnel && !r->user && !member(g, "user"))
		problem(L, g, path, "missing 'user' (the login name on the server)");
}

/* Load one account group into a (zeroed by the caller). */
static void load_account(struct loader *L, config_account_t *a, const config_setting_t *g,
			 const char *path, bool *inline_password)
{
	const config_setting_t *s;

	a->source = xstrdup(L->file);
	a->source_line = config_setting_source_line(g);
	check_keys(L, g, path, account_keys);
	if (get_str(L, g, path, "name", &a->name, false)) {
		if (!config_account_name_ok(a->name)) {
			char *p = join(path, "name");
			problem(
			    L, member(g, "name"), p,
			    "'%s' is not a usable account name; use letters, digits and . _ - @",
			    a->name);
			free(p);
		}
	} else if (!member(g, "name")) {
		problem(L, g, path, "missing 'name' (the account's name, also its local login)");
	}
	a->autorefresh = 5.0;
	get_num(L, g, path, "autorefresh", &a->autorefresh, 0, 525600);
	get_strings(L, g, path, "idle", idle_each, a);
	a->max_deletion_ratio = 0.5;
	get_num(L, g, path, "max_deletion_ratio", &a->max_deletion_ratio, 0, 1);

	char *p = join(path, "local");
	if ((s = get_group(L, g, path, "local")) != NULL) {
		check_keys(L, s, p, local_keys);
		get_str(L, s, p, "password_hash", &a->local_password_hash, false);
	}
	free(p);

	p = join(path, "remote");
	if ((s = get_group(L, g, path, "remote")) != NULL)
		load_remote(L, &a->remote, s, p, inline_password);
	else if (!member(g, "remote"))
		problem(L, g, path, "missing 'remote' (the server to sync with)");
	free(p);

	p = join(path, "maildir");
	if ((s = get_group(L, g, path, "maildir")) != NULL) {
		check_keys(L, s, p, maildir_keys);
		get_str(L, s, p, "path", &a->maildir_path, true);
		if (get_str(L, s, p, "sep", &a->maildir_sep, false) &&
		    strcmp(a->maildir_sep, "/") != 0 && strcmp(a->maildir_sep, ".") != 0) {
			char *sp = join(p, "sep");
			problem(L, member(s, "sep"), sp,
				"'%s' is not a folder separator; use \"/\" or \".\"",
				a->maildir_sep);
			free(sp);
		}
		if (!member(s, "path"))
			problem(L, s, p, "missing 'path' (the Maildir root for this account)");
	}
	free(p);
	if (!a->maildir_sep)
		a->maildir_sep = xstrdup("/");
}

static void free_account(config_account_t *a)
{
	config_remote_t *r = &a->remote;
	free(a->name);
	for (size_t i = 0; i < a->n_idle; i++)
		free(a->idle[i]);
	free(a->idle);
	free(a->local_password_hash);
	free(a->maildir_path);
	free(a->maildir_sep);
	free(a->source);
	free(r->host);
	free(r->user);
	free(r->password);
	free(r->password_file);
	free(r->password_command);
	free(r->ca_file);
	free(r->fingerprint);
	free(r->tunnel);
	free(r->reference);
	for (size_t i = 0; i < r->n_include; i++) {
		free(r->include[i].pattern);
		regfree(&r->include[i].re);
	}
	free(r->include);
	for (size_t i = 0; i < r->n_exclude; i++) {
		free(r->exclude[i].pattern);
		regfree(&r->exclude[i].re);
	}
	free(r->exclude);
	for (size_t i = 0; i < r->n_nametrans; i++) {
		free(r->nametrans[i].match);
		free(r->nametrans[i].replace);
		regfree(&r->nametrans[i].re);
	}
	free(r->nametrans);
}

void config_free(config_t *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	free(cfg->datadir);
	for (size_t i = 0; i < cfg->n_listen; i++)
		free(cfg->listen[i].address);
	free(cfg->listen);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->mbnames.filename);
	free(cfg->mbnames.header);
	free(cfg->mbnames.peritem);
	free(cfg->mbnames.sep);
	free(cfg->mbnames.footer);
	for (size_t i = 0; i < cfg->n_accounts; i++)
		free_account(&cfg->accounts[i]);
	free(cfg->accounts);
	free(cfg);
}

void config_msgs_free(config_msgs_t *msgs)
{
	for (size_t i = 0; i < msgs->n_errors; i++)
		free(msgs->errors[i]);
	free(msgs->errors);
	for (size_t i = 0; i < msgs->n_warnings; i++)
		free(msgs->warnings[i]);
	free(msgs->warnings);
	*msgs = (config_msgs_t)CONFIG_MSGS_INIT;
}

const char *config_strerror(int err)
{
	switch (err) {
	case CONFIG_OK:
		return "no error";
	case CONFIG_E_NOFILE:
		return "config file not found";
	case CONFIG_E_INVALID:
		return "config file has problems";
	default:
		return "unknown config error";
	}
}

const config_account_t *config_find_account(const config_t *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_accounts; i++)
		if (cfg->accounts[i].name && strcmp(cfg->accounts[i].name, name) == 0)
			return &cfg->accounts[i];
	return NULL;
}

/* Parse file with libconfig; on a syntax error report it and return false. */
static bool read_file(struct loader *L, libconfig_t *lc)
{
	config_init(lc);
	if (config_read_file(lc, L->file) == CONFIG_TRUE)
		return true;
	if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
		msgs_add(&L->msgs->errors, &L->msgs->n_errors,
			 xasprintf("%s: cannot read: %s", L->file, strerror(errno)));
	else
		msgs_add(&L->msgs->errors, &L->msgs->n_errors,
			 xasprintf("%s:%d: syntax error: %s",
				   config_error_file(lc) ? config_error_file(lc) : L->file,
				   config_error_line(lc), config_error_text(lc)));
	return false;
}

static void add_account(config_t *cfg, config_account_t *a)
{
	cfg->accounts = xrealloc(cfg->accounts, (cfg->n_accounts + 1) * sizeof(*cfg->accounts));
	cfg->accounts[cfg->n_accounts++] = *a;
}

static void check_secret_config(struct loader *L, bool inline_password)
{
	struct stat st;
	if (!inline_password || stat(L->file, &st) < 0)
		return;
	if (st.st_mode & (S_IRGRP | S_IROTH))
		msgs_add(&L->msgs->warnings, &L->msgs->n_warnings,
			 xasprintf("%s: holds a password and is readable by others; chmod 600 %s",
				   L->file, L->file));
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Merge <datadir>/accounts/NAME.conf, each holding one account's members. */
static void load_runtime_accounts(config_t *cfg, config_msgs_t *msgs)
{
	char *dir = xasprintf("%s/%s", cfg->datadir, CONFIG_ACCOUNTS_SUBDIR);
	DIR *d = opendir(dir);
	char **names = NULL;
	size_t n = 0;

	if (!d) {
		free(dir);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.' || len < 6 || strcmp(de->d_name + len - 5, ".conf") != 0)
			continue;
		names = xrealloc(names, (n + 1) * sizeof(*names));
		names[n++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (n > 1)
		qsort(names, n, sizeof(*names), name_cmp);

	for (size_t i = 0; i < n; i++) {
		char *file = xasprintf("%s/%s", dir, names[i]);
		struct loader L = {file, msgs};
		libconfig_t lc;
		bool inline_password = false;
		if (read_file(&L, &lc)) {
			config_account_t a;
			memset(&a, 0, sizeof(a));
			load_account(&L, &a, config_root_setting(&lc), "", &inline_password);
			check_secret_config(&L, inline_password);
			add_account(cfg, &a);
		}
		config_destroy(&lc);
		free(file);
		free(names[i]);
	}
	free(names);
	free(dir);
}

/* Local listener passwords set with `imapbridge passwd` override the config. */
static void load_local_passwords(config_t *cfg)
{
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		config_account_t *a = &cfg->accounts[i];
		if (!a->name || !config_account_name_ok(a->name))
			continue;
		char *file = xasprintf("%s/%s/%s", cfg->datadir, CONFIG_PASSWORDS_SUBDIR, a->name);
		FILE *f = fopen(file, "r");
		free(file);
		if (!f)
			continue;
		char line[512];
		if (fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\r\n")] = '\0';
			if (line[0]) {
				free(a->local_password_hash);
				a->local_password_hash = xstrdup(line);
			}
		}
		fclose(f);
	}
}

static void check_duplicates(config_t *cfg, config_msgs_t *msgs)
{
	for (size_t i = 1; i < cfg->n_accounts; i++) {
		const config_account_t *a = &cfg->accounts[i];
		if (!a->name)
			continue;
		for (size_t j = 0; j < i; j++) {
			const config_account_t *b = &cfg->accounts[j];
			if (b->name && strcmp(a->name, b->name) == 0) {
				char *opt = strcmp(a->source, cfg->path) == 0
						? xasprintf("accounts.[%zu].name", i)
						: xstrdup("name");
				msgs_add(&msgs->errors, &msgs->n_errors,
					 xasprintf(
					     "%s:%d: option %s: account '%s' is already defined at "
					     "%s:%d; give each account its own name",
					     a->source, a->source_line, opt, a->name, b->source,
					     b->source_line));
				free(opt);
				break;
			}
		}
	}
}

int config_load(const char *path, config_t **out, config_msgs_t *msgs)
{
	struct loader L = {path, msgs};
	config_t *cfg = xcalloc(1, sizeof(*cfg));
	libconfig_t lc;
	const config_setting_t *root, *s;
	bool inline_password = false;
	size_t errors_before = msgs->n_errors;
	int rc = CONFIG_E_INVALID;
	struct stat st;

	*out = NULL;
	cfg->path = xstrdup(path);
	if (stat(path, &st) < 0 && errno == ENOENT) {
		msgs_add(&msgs->errors, &msgs->n_errors,
			 xasprintf("%s: no such config file; create it (see imapbridge.conf(5)) "
				   "or name another one with -c FILE",
				   path));
		config_free(cfg);
		return CONFIG_E_NOFILE;
	}
	if (!read_file(&L, &lc))
		goto out;
	root = config_root_setting(&lc);
	check_keys(&L, root, "", root_keys);

	if (!get_str(&L, root, "", "datadir", &cfg->datadir, true) && !member(root, "datadir"))
		msgs_add(
		    &msgs->errors, &msgs->n_errors,
		    xasprintf("%s: option datadir: missing; set datadir = \"/var/lib/imapbridge\"; "
			      "(the store, lock and control socket live there)",
			      path));
	if (cfg->datadir && cfg->datadir[0] != '/')
		problem(&L, member(root, "datadir"), "datadir",
			"'%s' is not an absolute path; start it with / or ~/", cfg->datadir);
	get_str(&L, root, "", "tls_cert", &cfg->tls_cert, true);
	get_str(&L, root, "", "tls_key", &cfg->tls_key, true);
	if (!get_int(&L, root, "", "maxsyncaccounts", &cfg->maxsyncaccounts, 1, 1000))
		cfg->maxsyncaccounts = 3;

	if ((s = member(root, "listen")) != NULL)
		load_listen(&L, cfg, s);
	else {
		cfg->listen = xcalloc(1, sizeof(*cfg->listen));
		cfg->listen[0] = (config_listen_t){xstrdup("127.0.0.1"), 1143, CONFIG_TLS_NONE};
		cfg->n_listen = 1;
	}
	for (size_t i = 0; i < cfg->n_listen; i++)
		if (cfg->listen[i].tls != CONFIG_TLS_NONE && (!cfg->tls_cert || !cfg->tls_key))
			problem(&L, member(root, "listen"), "listen",
				"a listener with TLS needs tls_cert and tls_key; set both");

	if ((s = get_group(&L, root, "", "mbnames")) != NULL)
		load_mbnames(&L, cfg, s);
	config_mbnames_t *m = &cfg->mbnames;
	if (!m->filename)
		m->filename = ib_expand_home("~/Mail/mailboxes");
	if (!m->header)
		m->header = xstrdup("mailboxes ");
	if (!m->peritem)
		m->peritem = xstrdup("+%(accountname)s/%(foldername)s");
	if (!m->sep)
		m->sep = xstrdup(" ");
	if (!m->footer)
		m->footer = xstrdup("\n");

	if ((s = member(root, "accounts")) != NULL) {
		if (config_setting_type(s) != CONFIG_TYPE_LIST) {
			wrong_type(&L, s, "accounts", "a list ( { name = ...; ... }, ... )");
		} else {
			int n = config_setting_length(s);
			for (int i = 0; i < n; i++) {
				const config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
				char *p = xasprintf("accounts.[%d]", i);
				if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
					wrong_type(&L, g, p,
						   "a group { name = ...; remote = ...; }");
				} else {
					config_account_t a;
					memset(&a, 0, sizeof(a));
					load_account(&L, &a, g, p, &inline_password);
					add_account(cfg, &a);
				}
				free(p);
			}
		}
	}
	check_secret_config(&L, inline_password);
	if (cfg->datadir) {
		load_runtime_accounts(cfg, msgs);
		load_local_passwords(cfg);
	}
	check_duplicates(cfg, msgs);
	if (msgs->n_errors == errors_before)
		rc = CONFIG_OK;
out:
	config_destroy(&lc);
	if (rc == CONFIG_OK)
		*out = cfg;
	else
		config_free(cfg);
	return rc;
}

int config_read_datadir(const char *path, char **datadir, char *err, size_t errlen)
{
	libconfig_t lc;
	const char *v = NULL;
	int rc = CONFIG_E_INVALID;

	*datadir = NULL;
	config_init(&lc);
	if (config_read_file(&lc, path) != CONFIG_TRUE) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO) {
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
			if (errno == ENOENT)
				rc = CONFIG_E_NOFILE;
		} else {
			snprintf(err, errlen, "%s:%d: syntax error: %s", path,
				 config_error_line(&lc), config_error_text(&lc));
		}
		goto out;
	}
	if (config_lookup_string(&lc, "datadir", &v) != CONFIG_TRUE) {
		snprintf(err, errlen, "%s: option datadir: missing or not a string", path);
		goto out;
	}
	*datadir = ib_expand_home(v);
	rc = CONFIG_OK;
out:
	config_destroy(&lc);
	return rc;
}
