/* Config loading and validation: see config.h. */
#include "server/config_p.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/util.h"

/* The schema: every option each group may hold. */
static const char *const root_keys[] = {
    "datadir", "listen", "tls_cert", "tls_key", "maxsyncaccounts", "fsync", "mbnames", "accounts", NULL,
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

static void load_listen(struct config_loader *L, config_t *cfg, const config_setting_t *s)
{
	if (config_setting_type(s) != CONFIG_TYPE_LIST) {
		config_wrong_type(L, s, "listen", "a list ( { address = ...; port = ...; }, ... )");
		return;
	}
	int n = config_setting_length(s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
		char *p = xasprintf("listen.[%d]", i);
		if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
			config_wrong_type(L, g, p, "a group { address = ...; port = ...; }");
			free(p);
			continue;
		}
		config_check_keys(L, g, p, listen_keys);
		config_listen_t li = {NULL, 0, CONFIG_TLS_NONE};
		if (!config_get_str(L, g, p, "address", &li.address, false))
			li.address = xstrdup("127.0.0.1");
		config_get_tls(L, g, p, &li.tls);
		if (!config_get_int(L, g, p, "port", &li.port, 1, 65535))
			li.port = li.tls == CONFIG_TLS_IMPLICIT ? 1993 : 1143;
		cfg->listen = xrealloc(cfg->listen, (cfg->n_listen + 1) * sizeof(*cfg->listen));
		cfg->listen[cfg->n_listen++] = li;
		free(p);
	}
}

static void load_mbnames(struct config_loader *L, config_t *cfg, const config_setting_t *g)
{
	config_mbnames_t *m = &cfg->mbnames;
	config_check_keys(L, g, "mbnames", mbnames_keys);
	config_get_bool(L, g, "mbnames", "enabled", &m->enabled);
	config_get_str(L, g, "mbnames", "filename", &m->filename, true);
	config_get_str(L, g, "mbnames", "header", &m->header, false);
	config_get_str(L, g, "mbnames", "peritem", &m->peritem, false);
	config_get_str(L, g, "mbnames", "sep", &m->sep, false);
	config_get_str(L, g, "mbnames", "footer", &m->footer, false);
}

static void idle_each(struct config_loader *L, void *arg, const char *v, const config_setting_t *s,
		      const char *path)
{
	config_account_t *a = arg;
	a->idle = xrealloc(a->idle, (a->n_idle + 1) * sizeof(*a->idle));
	a->idle[a->n_idle++] = xstrdup(v);
}

static void auth_each(struct config_loader *L, void *arg, const char *v, const config_setting_t *s,
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
		config_problem(L, s, path,
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

static void regex_each(struct config_loader *L, void *arg, const char *v, const config_setting_t *s,
		       const char *path)
{
	struct regex_list *rl = arg;
	config_regex_t r;
	int rc = regcomp(&r.re, v, REG_EXTENDED | REG_NOSUB);
	if (rc != 0) {
		char err[256];
		regerror(rc, &r.re, err, sizeof(err));
		config_problem(L, s, path, "bad regular expression '%s': %s", v, err);
		return;
	}
	r.pattern = xstrdup(v);
	*rl->v = xrealloc(*rl->v, (*rl->n + 1) * sizeof(**rl->v));
	(*rl->v)[(*rl->n)++] = r;
}

static void load_nametrans(struct config_loader *L, config_remote_t *r, const config_setting_t *s,
			   const char *path)
{
	if (config_setting_type(s) != CONFIG_TYPE_LIST) {
		config_wrong_type(L, s, path, "a list ( { match = ...; replace = ...; }, ... )");
		return;
	}
	int n = config_setting_length(s);
	for (int i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
		char *p = xasprintf("%s.[%d]", path, i);
		char *match = NULL, *replace = NULL;
		if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
			config_wrong_type(L, g, p, "a group { match = ...; replace = ...; }");
			goto next;
		}
		config_check_keys(L, g, p, nametrans_keys);
		if (!config_get_str(L, g, p, "match", &match, false)) {
			if (!config_member(g, "match"))
				config_problem(L, g, p, "missing 'match' (a regular expression)");
			goto next;
		}
		if (!config_get_str(L, g, p, "replace", &replace, false))
			replace = xstrdup("");
		config_nametrans_t nt;
		int rc = regcomp(&nt.re, match, REG_EXTENDED);
		if (rc != 0) {
			char err[256];
			char *mp = config_join(p, "match");
			regerror(rc, &nt.re, err, sizeof(err));
			config_problem(L, config_member(g, "match"), mp,
				       "bad regular expression '%s': %s", match, err);
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
static void check_secret_file(struct config_loader *L, const config_setting_t *s, const char *path,
			      const char *file)
{
	struct stat st;
	if (stat(file, &st) < 0)
		return;
	if (st.st_mode & (S_IRGRP | S_IROTH))
		config_warning(L, s, path,
			       "%s holds a password and is readable by others; chmod 600 %s", file,
			       file);
}

static void load_remote(struct config_loader *L, config_remote_t *r, const config_setting_t *g,
			const char *path, bool *inline_password)
{
	const config_setting_t *s;

	config_check_keys(L, g, path, remote_keys);
	config_get_str(L, g, path, "host", &r->host, false);
	r->tls = CONFIG_TLS_IMPLICIT;
	config_get_tls(L, g, path, &r->tls);
	if (!config_get_int(L, g, path, "port", &r->port, 1, 65535))
		r->port = r->tls == CONFIG_TLS_IMPLICIT ? 993 : 143;
	config_get_str(L, g, path, "user", &r->user, false);
	config_get_str(L, g, path, "tunnel", &r->tunnel, false);

	int n_pw = 0;
	if (config_get_str(L, g, path, "password", &r->password, false)) {
		n_pw++;
		*inline_password = true;
	}
	if (config_get_str(L, g, path, "password_file", &r->password_file, true)) {
		char *p = config_join(path, "password_file");
		n_pw++;
		check_secret_file(L, config_member(g, "password_file"), p, r->password_file);
		free(p);
	}
	if (config_get_str(L, g, path, "password_command", &r->password_command, false))
		n_pw++;
	if (n_pw > 1)
		config_problem(L, g, path,
			       "set only one of password, password_file and password_command");

	config_get_strings(L, g, path, "auth", auth_each, r);
	config_get_str(L, g, path, "ca_file", &r->ca_file, true);
	if (config_get_str(L, g, path, "fingerprint", &r->fingerprint, false) &&
	    !fingerprint_ok(r->fingerprint)) {
		char *p = config_join(path, "fingerprint");
		config_problem(
		    L, config_member(g, "fingerprint"), p,
		    "'%s' is not a certificate fingerprint; write \"sha256:\" and 32 hex "
		    "bytes, e.g. the output of `openssl x509 -noout -fingerprint -sha256`",
		    r->fingerprint);
		free(p);
	}
	if (!config_get_str(L, g, path, "reference", &r->reference, false))
		r->reference = xstrdup("");
	if (!config_get_int(L, g, path, "maxconnections", &r->maxconnections, 1, 100))
		r->maxconnections = 3;
	config_get_bool(L, g, path, "readonly", &r->readonly);

	char *fp = config_join(path, "folders");
	if ((s = config_get_group(L, g, path, "folders")) != NULL) {
		config_check_keys(L, s, fp, folders_keys);
		struct regex_list inc = {&r->include, &r->n_include};
		struct regex_list exc = {&r->exclude, &r->n_exclude};
		config_get_strings(L, s, fp, "include", regex_each, &inc);
		config_get_strings(L, s, fp, "exclude", regex_each, &exc);
	}
	free(fp);
	if ((s = config_member(g, "nametrans")) != NULL) {
		char *p = config_join(path, "nametrans");
		load_nametrans(L, r, s, p);
		free(p);
	}

	if (r->tunnel && r->host)
		config_problem(L, g, path, "set either host or tunnel, not both");
	else if (!r->tunnel && !r->host && !config_member(g, "host"))
		config_problem(L, g, path,
			       "missing 'host' (the IMAP server) or 'tunnel' (a PREAUTH command)");
	if (!r->tunnel && !r->user && !config_member(g, "user"))
		config_problem(L, g, path, "missing 'user' (the login name on the server)");
}

/* Load one account group into a (zeroed by the caller). */
static void load_account(struct config_loader *L, config_account_t *a, const config_setting_t *g,
			 const char *path, bool *inline_password)
{
	const config_setting_t *s;

	a->source = xstrdup(L->file);
	/* The root of an account file has no line of its own. */
	a->source_line = config_setting_source_line(g) ? config_setting_source_line(g) : 1;
	config_check_keys(L, g, path, account_keys);
	if (config_get_str(L, g, path, "name", &a->name, false)) {
		if (!config_account_name_ok(a->name)) {
			char *p = config_join(path, "name");
			config_problem(
			    L, config_member(g, "name"), p,
			    "'%s' is not a usable account name; use letters, digits and . _ - @",
			    a->name);
			free(p);
		}
	} else if (!config_member(g, "name")) {
		config_problem(L, g, path,
			       "missing 'name' (the account's name, also its local login)");
	}
	a->autorefresh = 5.0;
	config_get_num(L, g, path, "autorefresh", &a->autorefresh, 0, 525600);
	config_get_strings(L, g, path, "idle", idle_each, a);
	a->max_deletion_ratio = 0.5;
	config_get_num(L, g, path, "max_deletion_ratio", &a->max_deletion_ratio, 0, 1);

	char *p = config_join(path, "local");
	if ((s = config_get_group(L, g, path, "local")) != NULL) {
		config_check_keys(L, s, p, local_keys);
		config_get_str(L, s, p, "password_hash", &a->local_password_hash, false);
	}
	free(p);

	p = config_join(path, "remote");
	if ((s = config_get_group(L, g, path, "remote")) != NULL)
		load_remote(L, &a->remote, s, p, inline_password);
	else if (!config_member(g, "remote"))
		config_problem(L, g, path, "missing 'remote' (the server to sync with)");
	free(p);

	p = config_join(path, "maildir");
	if ((s = config_get_group(L, g, path, "maildir")) != NULL) {
		config_check_keys(L, s, p, maildir_keys);
		config_get_str(L, s, p, "path", &a->maildir_path, true);
		if (config_get_str(L, s, p, "sep", &a->maildir_sep, false) &&
		    strcmp(a->maildir_sep, "/") != 0 && strcmp(a->maildir_sep, ".") != 0) {
			char *sp = config_join(p, "sep");
			config_problem(L, config_member(s, "sep"), sp,
				       "'%s' is not a folder separator; use \"/\" or \".\"",
				       a->maildir_sep);
			free(sp);
		}
		if (!config_member(s, "path"))
			config_problem(L, s, p,
				       "missing 'path' (the Maildir root for this account)");
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
static bool read_file(struct config_loader *L, libconfig_t *lc)
{
	config_init(lc);
	if (config_read_file(lc, L->file) == CONFIG_TRUE)
		return true;
	if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
		config_msgs_add(&L->msgs->errors, &L->msgs->n_errors,
				xasprintf("%s: cannot read: %s", L->file, strerror(errno)));
	else
		config_msgs_add(&L->msgs->errors, &L->msgs->n_errors,
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

static void check_secret_config(struct config_loader *L, bool inline_password)
{
	struct stat st;
	if (!inline_password || stat(L->file, &st) < 0)
		return;
	if (st.st_mode & (S_IRGRP | S_IROTH))
		config_msgs_add(
		    &L->msgs->warnings, &L->msgs->n_warnings,
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
		struct config_loader L = {file, msgs};
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
				config_msgs_add(
				    &msgs->errors, &msgs->n_errors,
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
	struct config_loader L = {path, msgs};
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
		config_msgs_add(
		    &msgs->errors, &msgs->n_errors,
		    xasprintf("%s: no such config file; create it (see imapbridge.conf(5)) "
			      "or name another one with -c FILE",
			      path));
		config_free(cfg);
		return CONFIG_E_NOFILE;
	}
	if (!read_file(&L, &lc))
		goto out;
	root = config_root_setting(&lc);
	config_check_keys(&L, root, "", root_keys);

	if (!config_get_str(&L, root, "", "datadir", &cfg->datadir, true) &&
	    !config_member(root, "datadir"))
		config_msgs_add(
		    &msgs->errors, &msgs->n_errors,
		    xasprintf("%s: option datadir: missing; set datadir = \"/var/lib/imapbridge\"; "
			      "(the store, lock and control socket live there)",
			      path));
	if (cfg->datadir && cfg->datadir[0] != '/')
		config_problem(&L, config_member(root, "datadir"), "datadir",
			       "'%s' is not an absolute path; start it with / or ~/", cfg->datadir);
	config_get_str(&L, root, "", "tls_cert", &cfg->tls_cert, true);
	config_get_str(&L, root, "", "tls_key", &cfg->tls_key, true);
	if (!config_get_int(&L, root, "", "maxsyncaccounts", &cfg->maxsyncaccounts, 1, 1000))
		cfg->maxsyncaccounts = 3;
	cfg->fsync = true;
	config_get_bool(&L, root, "", "fsync", &cfg->fsync);

	if ((s = config_member(root, "listen")) != NULL)
		load_listen(&L, cfg, s);
	else {
		cfg->listen = xcalloc(1, sizeof(*cfg->listen));
		cfg->listen[0] = (config_listen_t){xstrdup("127.0.0.1"), 1143, CONFIG_TLS_NONE};
		cfg->n_listen = 1;
	}
	for (size_t i = 0; i < cfg->n_listen; i++)
		if (cfg->listen[i].tls != CONFIG_TLS_NONE && (!cfg->tls_cert || !cfg->tls_key))
			config_problem(&L, config_member(root, "listen"), "listen",
				       "a listener with TLS needs tls_cert and tls_key; set both");

	if ((s = config_get_group(&L, root, "", "mbnames")) != NULL)
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

	if ((s = config_member(root, "accounts")) != NULL) {
		if (config_setting_type(s) != CONFIG_TYPE_LIST) {
			config_wrong_type(&L, s, "accounts", "a list ( { name = ...; ... }, ... )");
		} else {
			int n = config_setting_length(s);
			for (int i = 0; i < n; i++) {
				const config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
				char *p = xasprintf("accounts.[%d]", i);
				if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
					config_wrong_type(&L, g, p,
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
