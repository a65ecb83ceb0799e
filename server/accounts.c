/* Runtime accounts and local passwords: see accounts.h. */
#include "server/accounts.h"
#include "server/json.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/util.h"
#include "server/config.h"

const char *accounts_strerror(int err)
{
	switch (err) {
	case ACCOUNTS_OK:
		return "no error";
	case ACCOUNTS_E_INVALID:
		return "invalid account settings";
	case ACCOUNTS_E_IO:
		return "cannot write account files";
	case ACCOUNTS_E_CRYPT:
		return "cannot hash the password";
	default:
		return "unknown accounts error";
	}
}

char *accounts_file(const char *datadir, const char *name)
{
	return xasprintf("%s/%s/%s.conf", datadir, CONFIG_ACCOUNTS_SUBDIR, name);
}

bool accounts_is_runtime(const config_t *cfg, const config_account_t *a)
{
	if (!a->name || !a->source)
		return false;
	char *f = accounts_file(cfg->datadir, a->name);
	bool r = strcmp(f, a->source) == 0;
	free(f);
	return r;
}

void accounts_put_string(buf_t *b, const char *s)
{
	json_put_quoted(b, s, "\\x%02x");
}

/* Write data to path via a temporary file, mode 0600, fsync, rename. */
static int write_file(const char *path, const char *data, size_t len, bool overwrite, char *err,
		      size_t errlen)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	int fd = -1, rc = ACCOUNTS_E_IO;

	if (!overwrite && access(path, F_OK) == 0) {
		snprintf(err, errlen, "%s already exists; remove the account first", path);
		rc = ACCOUNTS_E_INVALID;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (write(fd, data, len) != (ssize_t)len || fsync(fd) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		goto out;
	}
	rc = ACCOUNTS_OK;
out:
	if (fd >= 0)
		close(fd);
	if (rc != ACCOUNTS_OK)
		unlink(tmp);
	free(tmp);
	return rc;
}

static int make_subdir(const char *datadir, const char *sub, char *err, size_t errlen)
{
	char *dir = xasprintf("%s/%s", datadir, sub);
	int rc = ib_mkdirs(dir, 0700);
	if (rc < 0)
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(-rc));
	free(dir);
	return rc < 0 ? ACCOUNTS_E_IO : ACCOUNTS_OK;
}

int accounts_write(const char *datadir, const accounts_spec_t *sp, char *err, size_t errlen)
{
	buf_t b = BUF_INIT;
	char *path = NULL;
	int rc;
	int n_pw =
	    (sp->password != NULL) + (sp->password_file != NULL) + (sp->password_command != NULL);

	if (!sp->name || !config_account_name_ok(sp->name)) {
		snprintf(err, errlen,
			 "'%s' is not a usable account name; use letters, digits and "
			 ". _ - @ (at most 64)",
			 sp->name ? sp->name : "");
		return ACCOUNTS_E_INVALID;
	}
	if (!sp->host || !*sp->host || !sp->user || !*sp->user) {
		snprintf(err, errlen, "an account needs --host and --user");
		return ACCOUNTS_E_INVALID;
	}
	if (n_pw != 1) {
		snprintf(err, errlen,
			 "give exactly one of --password-stdin, --password-file and "
			 "--password-command");
		return ACCOUNTS_E_INVALID;
	}
	if ((rc = make_subdir(datadir, CONFIG_ACCOUNTS_SUBDIR, err, errlen)) != ACCOUNTS_OK)
		return rc;

	time_t now = time(NULL);
	struct tm tm;
	char when[32];
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	buf_printf(&b,
		   "# Added by `imapbridge account add` on %s.\n"
		   "# Remove with `imapbridge account remove %s`; after editing by hand,\n"
		   "# reload with SIGHUP. Holds the remote password: keep it mode 0600.\n",
		   when, sp->name);
	buf_puts(&b, "name = ");
	accounts_put_string(&b, sp->name);
	buf_puts(&b, ";\nremote = {\n\thost = ");
	accounts_put_string(&b, sp->host);
	buf_puts(&b, ";\n");
	if (sp->port > 0)
		buf_printf(&b, "\tport = %d;\n", sp->port);
	if (sp->tls) {
		buf_puts(&b, "\ttls = ");
		accounts_put_string(&b, sp->tls);
		buf_puts(&b, ";\n");
	}
	buf_puts(&b, "\tuser = ");
	accounts_put_string(&b, sp->user);
	buf_puts(&b, ";\n");
	if (sp->password) {
		buf_puts(&b, "\tpassword = ");
		accounts_put_string(&b, sp->password);
	} else if (sp->password_file) {
		buf_puts(&b, "\tpassword_file = ");
		accounts_put_string(&b, sp->password_file);
	} else {
		buf_puts(&b, "\tpassword_command = ");
		accounts_put_string(&b, sp->password_command);
	}
	buf_puts(&b, ";\n};\n");
	if (sp->maildir) {
		buf_puts(&b, "maildir = { path = ");
		accounts_put_string(&b, sp->maildir);
		buf_puts(&b, "; };\n");
	}
	path = accounts_file(datadir, sp->name);
	rc = write_file(path, b.data + b.off, buf_avail(&b), false, err, errlen);
	free(path);
	buf_free(&b);
	return rc;
}

int accounts_remove(const char *datadir, const char *name, char *err, size_t errlen)
{
	char *path = accounts_file(datadir, name);
	char *pw = xasprintf("%s/%s/%s", datadir, CONFIG_PASSWORDS_SUBDIR, name);
	int rc = ACCOUNTS_OK;

	if (unlink(path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove %s: %s", path, strerror(errno));
		rc = ACCOUNTS_E_IO;
	} else if (unlink(pw) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove %s: %s", pw, strerror(errno));
		rc = ACCOUNTS_E_IO;
	}
	free(path);
	free(pw);
	return rc;
}

int accounts_hash_password(const char *password, char **out, char *err, size_t errlen)
{
	static const char *const prefixes[] = {"$y$", "$6$"};
	*out = NULL;
	for (size_t i = 0; i < IB_ARRAY_LEN(prefixes); i++) {
		/* NULL random bytes: libcrypt takes them from the kernel. */
		const char *salt = crypt_gensalt(prefixes[i], 0, NULL, 0);
		if (!salt)
			continue;
		struct crypt_data *cd = xcalloc(1, sizeof(*cd));
		const char *h = crypt_r(password, salt, cd);
		if (h && h[0] != '*') {
			*out = xstrdup(h);
			free(cd);
			return ACCOUNTS_OK;
		}
		free(cd);
	}
	snprintf(err, errlen, "crypt(3) offers neither yescrypt nor SHA-512: %s", strerror(errno));
	return ACCOUNTS_E_CRYPT;
}

int accounts_set_local_password(const char *datadir, const char *name, const char *password,
				char *err, size_t errlen)
{
	char *hash = NULL, *path = NULL, *line = NULL;
	int rc;

	if (!password || !*password) {
		snprintf(err, errlen, "the password is empty; type one on stdin");
		return ACCOUNTS_E_INVALID;
	}
	if ((rc = make_subdir(datadir, CONFIG_PASSWORDS_SUBDIR, err, errlen)) != ACCOUNTS_OK)
		return rc;
	if ((rc = accounts_hash_password(password, &hash, err, errlen)) != ACCOUNTS_OK)
		return rc;
	path = xasprintf("%s/%s/%s", datadir, CONFIG_PASSWORDS_SUBDIR, name);
	line = xasprintf("%s\n", hash);
	rc = write_file(path, line, strlen(line), true, err, errlen);
	free(line);
	free(path);
	free(hash);
	return rc;
}
