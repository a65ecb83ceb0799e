/* Logging sink: see log.h. */
#include "lib/log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

static struct {
	const char *ident;
	enum log_ui ui;
	bool syslog;
	unsigned cats;
} sink = { "imapbridge", LOG_UI_BASIC, false, 0 };

void log_setup(const char *ident, enum log_ui ui, bool use_syslog)
{
	sink.ident = ident;
	sink.ui = ui;
	if (use_syslog && !sink.syslog)
		openlog(ident, LOG_PID, LOG_MAIL);
	sink.syslog = use_syslog;
}

int log_parse_cats(const char *s, unsigned *mask, const char **bad)
{
	static char word[32];
	static const struct { const char *name; unsigned cat; } names[] = {
		{ "imap", LOG_CAT_IMAP }, { "maildir", LOG_CAT_MAILDIR },
		{ "store", LOG_CAT_STORE }, { "thread", LOG_CAT_THREAD },
		{ "all", LOG_CAT_ALL },
	};
	unsigned m = 0;

	while (*s) {
		size_t n = strcspn(s, ",");
		bool found = false;
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			if (strlen(names[i].name) == n && strncasecmp(s, names[i].name, n) == 0) {
				m |= names[i].cat;
				found = true;
			}
		}
		if (!found && n > 0) {
			snprintf(word, sizeof(word), "%.*s", (int)(n < 31 ? n : 31), s);
			if (bad)
				*bad = word;
			return -1;
		}
		s += n;
		if (*s == ',')
			s++;
	}
	*mask = m;
	return 0;
}

void log_set_cats(unsigned mask)
{
	sink.cats = mask;
}

unsigned log_get_cats(void)
{
	return sink.cats;
}

static void emit(enum log_level lvl, const char *tag, const char *fmt, va_list ap)
{
	static const char *names[] = { "error", "warning", "info", "debug" };
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

	if (sink.ui == LOG_UI_QUIET && lvl > LOG_LVL_ERR && !tag)
		return;
	if (lvl == LOG_LVL_DEBUG && !tag && sink.cats == 0)
		return;
	if (sink.syslog) {
		char line[4096];
		vsnprintf(line, sizeof(line), fmt, ap);
		syslog(prio[lvl], "%s%s%s", tag ? tag : "", tag ? ": " : "", line);
		return;
	}
	char prefix[64] = "";
	if (sink.ui == LOG_UI_BASIC) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		size_t n = strftime(prefix, sizeof(prefix), "%Y-%m-%d %H:%M:%S", &tm);
		snprintf(prefix + n, sizeof(prefix) - n, ".%03ld ", ts.tv_nsec / 1000000);
	}
	flockfile(stderr);
	fputs(prefix, stderr);
	if (tag)
		fprintf(stderr, "%s: ", tag);
	else if (lvl != LOG_LVL_INFO)
		fprintf(stderr, "%s: ", names[lvl]);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	funlockfile(stderr);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(lvl, NULL, fmt, ap);
	va_end(ap);
}

void log_trace(unsigned cat, const char *fmt, ...)
{
	static const char *tags[] = { "imap", "maildir", "store", "thread" };
	const char *tag = "trace";

	if (!(sink.cats & cat))
		return;
	for (unsigned i = 0; i < 4; i++)
		if (cat == (1u << i))
			tag = tags[i];
	va_list ap;
	va_start(ap, fmt);
	emit(LOG_LVL_DEBUG, tag, fmt, ap);
	va_end(ap);
}

/* Append s[0..n) to out with control bytes escaped. */
static size_t put_escaped(char *out, size_t pos, size_t outlen, const char *s, size_t n)
{
	for (size_t i = 0; i < n && pos + 5 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' || c == '\n')
			continue;
		if (c < 0x20 || c == 0x7f)
			pos += (size_t)snprintf(out + pos, outlen - pos, "\\x%02x", c);
		else
			out[pos++] = (char)c;
	}
	out[pos] = '\0';
	return pos;
}

/* Find the end of the n-th space-separated word (n from 0), from s. */
static size_t skip_words(const char *s, size_t len, int n)
{
	size_t i = 0;
	for (int w = 0; w < n; w++) {
		while (i < len && s[i] != ' ')
			i++;
		while (i < len && s[i] == ' ')
			i++;
	}
	return i;
}

void log_redact_imap(const char *line, size_t len, bool in_auth, char *out, size_t outlen)
{
	size_t pos = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	if (in_auth) {
		put_escaped(out, 0, outlen, "***", 3);
		return;
	}
	/* "tag COMMAND ..." */
	size_t cmd = skip_words(line, len, 1);
	size_t cmd_end = cmd;
	while (cmd_end < len && line[cmd_end] != ' ' && line[cmd_end] != '\r' && line[cmd_end] != '\n')
		cmd_end++;
	size_t cmdlen = cmd_end - cmd;
	size_t keep = len;
	if (cmdlen == 5 && strncasecmp(line + cmd, "LOGIN", 5) == 0)
		keep = cmd_end;               /* drop user and password */
	else if (cmdlen == 12 && strncasecmp(line + cmd, "AUTHENTICATE", 12) == 0)
		keep = skip_words(line, len, 3); /* keep the mechanism, drop SASL-IR */
	pos = put_escaped(out, pos, outlen, line, keep);
	if (keep < len) {
		if (pos > 0 && out[pos - 1] != ' ' && pos + 1 < outlen)
			out[pos++] = ' ';
		put_escaped(out, pos, outlen, "***", 3);
	}
}
