/*
 * The daemon's configuration, as plain data. server/config.c loads it from a
 * libconfig file (INTERFACE.md's schema) and validates it; sync/ and server/
 * only read it.
 *
 * Ownership: a config_t owns every string and array below; config_free()
 * releases it all. A reload builds a new config_t and swaps it in.
 */
#ifndef IB_CONFIG_H
#define IB_CONFIG_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

enum config_tls {
	CONFIG_TLS_NONE,
	CONFIG_TLS_STARTTLS,
	CONFIG_TLS_IMPLICIT,
};

enum config_auth {
	CONFIG_AUTH_CRAM_MD5,
	CONFIG_AUTH_PLAIN,
	CONFIG_AUTH_LOGIN,
};

typedef struct config_listen {
	char *address;
	int port;
	enum config_tls tls;
} config_listen_t;

typedef struct config_regex {
	char *pattern;   /* as written, for messages */
	regex_t re;      /* compiled with REG_EXTENDED | REG_NOSUB */
} config_regex_t;

typedef struct config_nametrans {
	char *match;     /* POSIX extended regex on the remote name */
	regex_t re;
	char *replace;   /* replacement for the matched part; \1..\9 allowed */
} config_nametrans_t;

typedef struct config_remote {
	char *host;
	int port;                    /* 0: 993 for implicit TLS, else 143 */
	enum config_tls tls;
	char *user;
	char *password;              /* at most one of password, password_file, */
	char *password_file;         /* password_command is set */
	char *password_command;
	enum config_auth auth[3];    /* order to try */
	size_t n_auth;               /* 0: the strongest the server offers */
	char *ca_file;               /* NULL: the system store */
	char *fingerprint;           /* "sha256:AB:CD:..." or NULL */
	char *tunnel;                /* PREAUTH tunnel command, instead of host/port */
	char *reference;             /* LIST reference, "" if none */
	int maxconnections;
	bool readonly;
	config_regex_t *include;     /* folders: a remote name is synced when it matches */
	size_t n_include;            /* any include (or there are none) and no exclude */
	config_regex_t *exclude;
	size_t n_exclude;
	config_nametrans_t *nametrans;
	size_t n_nametrans;
} config_remote_t;

typedef struct config_account {
	char *name;
	double autorefresh;          /* minutes; 0 = only on demand and IDLE */
	char **idle;                 /* folder names watched with IDLE */
	size_t n_idle;
	double max_deletion_ratio;
	char *local_password_hash;   /* crypt(3) hash, or NULL */
	config_remote_t remote;
	char *maildir_path;          /* expanded (~ resolved), or NULL for no Maildir */
	char *maildir_sep;           /* "/" (nested directories, default) or "." */
	char *source;                /* file the account was defined in (the main
	                                config, or <datadir>/accounts/NAME.conf when
	                                added with the admin CLI) */
	int source_line;
} config_account_t;

typedef struct config_mbnames {
	bool enabled;
	char *filename;
	char *header;
	char *peritem;
	char *sep;
	char *footer;
} config_mbnames_t;

typedef struct config {
	char *path;                  /* the file this came from */
	char *datadir;
	config_listen_t *listen;
	size_t n_listen;
	char *tls_cert;
	char *tls_key;
	int maxsyncaccounts;
	bool fsync;                  /* make writes durable before recording them
	                                (default true); read at start only */
	config_mbnames_t mbnames;
	config_account_t *accounts;
	size_t n_accounts;
} config_t;

#endif
