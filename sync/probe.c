/*
 * Connection check: see probe.h. Every selected account is probed in
 * parallel on the loop: connect and log in, log the capabilities, LIST the
 * folders under the reference, STATUS each (pipelined), EXAMINE INBOX and
 * fetch the header of its newest message, LOGOUT. A connection dropped on
 * the way is reported and retried with the client's backoff, at most
 * PROBE_ATTEMPTS connections per account, as the daemon would.
 */
#include "sync/probe.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "lib/util.h"
#include "sync/imap_client.h"

#define PROBE_ATTEMPTS 3

struct probe;

struct probe_acct {
	struct probe *pr;
	const config_account_t *acct;
	imap_client_t *c;
	unsigned attempts;
	bool finished;
	int status; /* 0 ok, 1 failed */
	char **folders;
	size_t n_folders;
	size_t status_pending;
	size_t status_ok;
	uint32_t inbox_exists;
	char *subject;
	bool got_header;
};

struct probe {
	struct ev_loop *loop;
	struct probe_acct *accts;
	size_t n;
	size_t running;
	ev_idle cleanup; /* clients are freed outside their callbacks */
};

static void start(struct probe_acct *pa);

static void reset_run(struct probe_acct *pa)
{
	for (size_t i = 0; i < pa->n_folders; i++)
		free(pa->folders[i]);
	free(pa->folders);
	pa->folders = NULL;
	pa->n_folders = pa->status_pending = pa->status_ok = 0;
	pa->inbox_exists = 0;
	free(pa->subject);
	pa->subject = NULL;
	pa->got_header = false;
}

static void finish(struct probe_acct *pa, int status)
{
	if (pa->finished)
		return;
	pa->finished = true;
	pa->status = status;
	pa->pr->running--;
	if (pa->pr->running == 0)
		ev_idle_start(pa->pr->loop, &pa->pr->cleanup);
}

/* A step failed. Connection trouble is handled by lost_cb (retry); a server
 * refusal ends this account's probe. Returns true when the caller stops. */
static bool step_failed(struct probe_acct *pa, const imap_done_t *d, const char *what)
{
	if (d->result == IMAP_R_OK)
		return false;
	if (d->result == IMAP_R_CONN || d->result == IMAP_R_CANCELLED)
		return true; /* lost_cb reports and retries */
	log_err("probe: acct=%s: %s failed: %s%s%s", pa->acct->name, what, d->code ? d->code : "",
		d->code ? " " : "", d->text);
	imap_client_close(pa->c);
	finish(pa, 1);
	return true;
}

static void logout_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct probe_acct *pa = arg;
	finish(pa, 0);
}

static void summary(struct probe_acct *pa)
{
	log_info("probe: acct=%s: ok: %zu folder%s (%zu with STATUS), INBOX has %u message%s%s%s%s",
		 pa->acct->name, pa->n_folders, pa->n_folders == 1 ? "" : "s", pa->status_ok,
		 pa->inbox_exists, pa->inbox_exists == 1 ? "" : "s",
		 pa->subject ? ", newest: \"" : "", pa->subject ? pa->subject : "",
		 pa->subject ? "\"" : "");
	if (imap_client_logout(pa->c, logout_cb, pa) != 0)
		finish(pa, 0);
}

/* Pull the Subject out of a header block, unfolded and cut short. */
static char *header_subject(const char *h, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t eol = i;
		while (eol < len && h[eol] != '\n')
			eol++;
		if (eol - i > 8 && strncasecmp(h + i, "Subject:", 8) == 0) {
			size_t s = i + 8;
			while (s < eol && (h[s] == ' ' || h[s] == '\t'))
				s++;
			size_t e = eol;
			while (e > s && (h[e - 1] == '\r' || h[e - 1] == ' '))
				e--;
			char *out = xstrndup(h + s, e - s > 80 ? 80 : e - s);
			for (char *p = out; *p; p++)
				if ((unsigned char)*p < 0x20)
					*p = ' ';
			return out;
		}
		i = eol + 1;
	}
	return NULL;
}

static bool fetch_untagged_cb(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	struct probe_acct *pa = arg;
	if (!r->name || strcmp(r->name, "FETCH") != 0)
		return false;
	const imap_item_t *hdr = imap_fetch_get(r->args, "BODY[HEADER]");
	if (hdr && hdr->type == IMAP_ITEM_STRING && hdr->str) {
		pa->got_header = true;
		free(pa->subject);
		pa->subject = header_subject(hdr->str, hdr->len);
	}
	return true;
}

static void fetch_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct probe_acct *pa = arg;
	if (step_failed(pa, d, "FETCH of the newest INBOX header"))
		return;
	summary(pa);
}

static bool examine_untagged_cb(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	struct probe_acct *pa = arg;
	if (r->name && strcmp(r->name, "EXISTS") == 0 && r->has_number) {
		pa->inbox_exists = r->number;
		return true;
	}
	return false;
}

static void examine_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct probe_acct *pa = arg;
	if (step_failed(pa, d, "EXAMINE INBOX"))
		return;
	if (pa->inbox_exists == 0) {
		summary(pa);
		return;
	}
	/* "*" is the newest message: its header comes back as a literal. */
	imap_client_cmd(c, fetch_cb, fetch_untagged_cb, pa, "FETCH * (UID BODY.PEEK[HEADER])");
}

static bool status_untagged_cb(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	return r->name && strcmp(r->name, "STATUS") == 0;
}

static void status_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct probe_acct *pa = arg;
	if (d->result == IMAP_R_CONN || d->result == IMAP_R_CANCELLED)
		return;
	if (d->result == IMAP_R_OK)
		pa->status_ok++;
	else
		log_warn("probe: acct=%s: STATUS refused: %s", pa->acct->name, d->text);
	if (--pa->status_pending == 0)
		imap_client_select(c, "INBOX", true, NULL, false, examine_cb, examine_untagged_cb,
				   pa);
}

static bool list_untagged_cb(imap_client_t *c, const imap_resp_t *r, void *arg)
{
	struct probe_acct *pa = arg;
	if (!r->name || strcmp(r->name, "LIST") != 0)
		return false;
	const imap_item_t *flags = imap_item_nth(r->args, 0);
	const imap_item_t *name = imap_item_nth(r->args, 2);
	if (!name || !name->str)
		return true;
	if (flags && flags->type == IMAP_ITEM_LIST)
		for (const imap_item_t *f = flags->child; f; f = f->next)
			if (imap_item_is(f, "\\Noselect") || imap_item_is(f, "\\NonExistent"))
				return true;
	pa->folders = xrealloc(pa->folders, (pa->n_folders + 1) * sizeof(*pa->folders));
	pa->folders[pa->n_folders++] = xstrndup(name->str, name->len);
	return true;
}

static void list_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct probe_acct *pa = arg;
	if (step_failed(pa, d, "LIST"))
		return;
	if (pa->n_folders == 0) {
		imap_client_select(c, "INBOX", true, NULL, false, examine_cb, examine_untagged_cb,
				   pa);
		return;
	}
	/* Names come back already encoded (modified UTF-7): send them as
	 * strings (%q), not through the mailbox encoder again. All STATUS
	 * commands go out at once: pipelining is the point of this client. */
	pa->status_pending = pa->n_folders;
	for (size_t i = 0; i < pa->n_folders; i++)
		imap_client_cmd(c, status_cb, status_untagged_cb, pa,
				"STATUS %q (MESSAGES UIDNEXT UNSEEN)", pa->folders[i]);
}

static void connect_cb(imap_client_t *c, const imap_done_t *d, void *arg)
{
	struct probe_acct *pa = arg;
	if (d->result != IMAP_R_OK) {
		log_err("%s", d->text);
		if (d->result == IMAP_R_CONN && pa->attempts < PROBE_ATTEMPTS) {
			start(pa);
			return;
		}
		finish(pa, 1);
		return;
	}
	log_info("probe: acct=%s: logged in; capabilities: %s", pa->acct->name,
		 imap_client_caps_str(c));
	const char *ref = pa->acct->remote.reference ? pa->acct->remote.reference : "";
	imap_client_cmd(c, list_cb, list_untagged_cb, pa, "LIST %q \"*\"", ref);
}

/* A logged-in connection dropped: report it, and try again (the client
 * waits out its backoff first). */
static void lost_cb(imap_client_t *c, int result, const char *msg, void *arg)
{
	struct probe_acct *pa = arg;
	log_err("%s", msg);
	if (pa->finished)
		return;
	if (pa->attempts >= PROBE_ATTEMPTS) {
		finish(pa, 1);
		return;
	}
	start(pa);
}

static void start(struct probe_acct *pa)
{
	reset_run(pa);
	pa->attempts++;
	if (pa->attempts > 1)
		log_info("probe: acct=%s: connecting again (attempt %u of %d)", pa->acct->name,
			 pa->attempts, PROBE_ATTEMPTS);
	if (imap_client_connect(pa->c, connect_cb, pa) != 0)
		finish(pa, 1);
}

static void cleanup_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	ev_idle_stop(loop, w);
	ev_break(loop, EVBREAK_ONE);
}

static bool selected(const char *only, const char *name)
{
	if (!only)
		return true;
	size_t n = strlen(name);
	for (const char *s = only; *s;) {
		size_t w = strcspn(s, ",");
		if (w == n && strncmp(s, name, n) == 0)
			return true;
		s += w;
		if (*s == ',')
			s++;
	}
	return false;
}

int sync_probe(struct ev_loop *loop, const config_t *cfg, const char *only)
{
	struct probe pr = {.loop = loop};
	int status = 0;

	/* A tunnel that dies leaves a broken pipe: that must be an error on the
	 * connection, not the end of the process (the daemon does the same). */
	signal(SIGPIPE, SIG_IGN);
	pr.accts = xcalloc(cfg->n_accounts ? cfg->n_accounts : 1, sizeof(*pr.accts));
	ev_idle_init(&pr.cleanup, cleanup_cb);
	pr.cleanup.data = &pr;
	for (size_t i = 0; i < cfg->n_accounts; i++) {
		const config_account_t *a = &cfg->accounts[i];
		if (!selected(only, a->name))
			continue;
		struct probe_acct *pa = &pr.accts[pr.n++];
		imap_client_opts_t o;
		imap_client_opts_init(&o);
		pa->pr = &pr;
		pa->acct = a;
		pa->c = imap_client_new(loop, a, &o);
		imap_client_set_lost_cb(pa->c, lost_cb, pa);
		pr.running++;
	}
	if (pr.n == 0) {
		log_err("probe: no account matches \"%s\"; check -a and the config's account names",
			only ? only : "");
		free(pr.accts);
		return 1;
	}
	for (size_t i = 0; i < pr.n; i++)
		start(&pr.accts[i]);
	if (pr.running > 0)
		ev_run(loop, 0);
	for (size_t i = 0; i < pr.n; i++) {
		struct probe_acct *pa = &pr.accts[i];
		if (!pa->finished || pa->status != 0)
			status = 1;
		imap_client_free(pa->c);
		reset_run(pa);
	}
	free(pr.accts);
	return status;
}
