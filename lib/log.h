/*
 * Logging: the one piece of global mutable state (the sink), by design.
 *
 * Levels: error, warning, info, debug. Trace categories (-d imap,maildir,
 * store,thread) are independent of the level. Messages carry their context in
 * the prefix, e.g. log_info("sync: acct=%s box=%s: 12 new", ...).
 *
 * Credentials never reach this module: callers redact before they log
 * (see log_redact_imap()).
 */
#ifndef IB_LOG_H
#define IB_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
	LOG_LVL_ERR = 0,
	LOG_LVL_WARN = 1,
	LOG_LVL_INFO = 2,
	LOG_LVL_DEBUG = 3,
};

enum log_cat {
	LOG_CAT_IMAP = 1 << 0,
	LOG_CAT_MAILDIR = 1 << 1,
	LOG_CAT_STORE = 1 << 2,
	LOG_CAT_THREAD = 1 << 3,
	LOG_CAT_ALL = 0xff,
};

enum log_ui {
	LOG_UI_BASIC,   /* timestamps, one line per event */
	LOG_UI_QUIET,   /* errors only */
	LOG_UI_TTY,     /* short lines for a terminal, no timestamps */
};

/* Configure the sink. ident is the program name used in syslog and prefixes. */
void log_setup(const char *ident, enum log_ui ui, bool use_syslog);
/* Parse "imap,maildir" into a category mask; returns -1 and sets *bad to the
 * offending word (static storage) on an unknown name. */
int log_parse_cats(const char *s, unsigned *mask, const char **bad);
void log_set_cats(unsigned mask);
unsigned log_get_cats(void);
static inline bool log_cat_on(unsigned cat)
{
	return (log_get_cats() & cat) != 0;
}

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Trace lines are printed only when the category is enabled. */
void log_trace(unsigned cat, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

/*
 * Copy one line of IMAP traffic (client side) to out (size outlen, always
 * NUL-terminated), replacing credentials with "***": the arguments of LOGIN,
 * the payload of AUTHENTICATE (inline SASL-IR too), and continuation lines
 * answering an AUTHENTICATE challenge when in_auth is true. Control bytes are
 * escaped so a trace line stays one line.
 */
void log_redact_imap(const char *line, size_t len, bool in_auth, char *out, size_t outlen);

#endif
