/* SASL helpers: see imap_auth.h. */
#include "sync/imap_auth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "lib/log.h"
#include "lib/md5.h"
#include "lib/util.h"
#include "sync/imap_client_p.h"
#include "sync/password.h"

const char *imap_auth_strerror(int err)
{
	switch (err) {
	case IMAP_AUTH_OK:
		return "no error";
	case IMAP_AUTH_ERR_NONE_USABLE:
		return "the server offers none of the configured auth mechanisms";
	case IMAP_AUTH_ERR_LOGINDISABLED:
		return "the server disabled LOGIN (LOGINDISABLED) and offers no other mechanism";
	case IMAP_AUTH_ERR_CHALLENGE:
		return "the server sent a malformed challenge";
	}
	return "unknown error";
}

const char *imap_auth_mech_name(enum config_auth mech)
{
	switch (mech) {
	case CONFIG_AUTH_CRAM_MD5:
		return "CRAM-MD5";
	case CONFIG_AUTH_PLAIN:
		return "PLAIN";
	case CONFIG_AUTH_LOGIN:
		return "LOGIN";
	}
	return "?";
}

bool imap_auth_mech_plaintext(enum config_auth mech)
{
	return mech != CONFIG_AUTH_CRAM_MD5;
}

static bool offered(const imap_auth_offer_t *o, enum config_auth m)
{
	switch (m) {
	case CONFIG_AUTH_CRAM_MD5:
		return o->cram_md5;
	case CONFIG_AUTH_PLAIN:
		return o->plain;
	case CONFIG_AUTH_LOGIN:
		return !o->logindisabled;
	}
	return false;
}

int imap_auth_choose(const config_remote_t *remote, const imap_auth_offer_t *offer,
		     enum config_auth *mech)
{
	static const enum config_auth strongest[] = {
	    CONFIG_AUTH_CRAM_MD5,
	    CONFIG_AUTH_PLAIN,
	    CONFIG_AUTH_LOGIN,
	};
	static const enum config_auth fastest_private[] = {
	    CONFIG_AUTH_PLAIN,
	    CONFIG_AUTH_CRAM_MD5,
	    CONFIG_AUTH_LOGIN,
	};
	const enum config_auth *list = strongest;
	size_t n = IB_ARRAY_LEN(strongest);
	bool wanted_login = false;

	if (offer->private_path && offer->sasl_ir)
		list = fastest_private;

	if (remote && remote->n_auth > 0) {
		list = remote->auth;
		n = remote->n_auth;
	}
	for (size_t i = 0; i < n; i++) {
		if (list[i] == CONFIG_AUTH_LOGIN)
			wanted_login = true;
		if (offered(offer, list[i])) {
			*mech = list[i];
			return 0;
		}
	}
	return wanted_login && offer->logindisabled ? IMAP_AUTH_ERR_LOGINDISABLED
						    : IMAP_AUTH_ERR_NONE_USABLE;
}

char *imap_auth_b64_encode(const void *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

char *imap_auth_b64_decode(const char *s, size_t *outlen)
{
	size_t n = strlen(s);
	size_t pad = 0;
	char *out;
	int rc;

	if (n % 4 != 0)
		return NULL;
	out = xmalloc(n / 4 * 3 + 1);
	rc = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
	if (rc < 0) {
		free(out);
		return NULL;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if (n >= 1 && s[n - 1] == '=')
		pad++;
	if (n >= 2 && s[n - 2] == '=')
		pad++;
	*outlen = (size_t)rc - pad;
	out[*outlen] = '\0';
	return out;
}

char *imap_auth_plain(const char *user, const char *password)
{
	size_t ul = strlen(user), pl = strlen(password);
	size_t n = 1 + ul + 1 + pl;
	char *raw = xmalloc(n);
	char *out;

	raw[0] = '\0';
	memcpy(raw + 1, user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, password, pl);
	out = imap_auth_b64_encode(raw, n);
	OPENSSL_cleanse(raw, n);
	free(raw);
	return out;
}

char *imap_auth_cram_md5(const char *user, const char *password, const char *challenge_b64)
{
	unsigned char md[MD5_LEN];
	size_t clen;
	char *chal = imap_auth_b64_decode(challenge_b64, &clen);
	char *resp, *out;
	size_t ul = strlen(user);

	if (!chal || clen == 0) {
		free(chal);
		return NULL;
	}
	hmac_md5(password, strlen(password), chal, clen, md);
	free(chal);
	resp = xmalloc(ul + 1 + 2 * MD5_LEN + 1);
	memcpy(resp, user, ul);
	resp[ul] = ' ';
	for (unsigned i = 0; i < MD5_LEN; i++) {
		static const char hex[] = "0123456789abcdef";
		resp[ul + 1 + 2 * i] = hex[md[i] >> 4];
		resp[ul + 2 + 2 * i] = hex[md[i] & 15];
	}
	resp[ul + 1 + 2 * MD5_LEN] = '\0';
	out = imap_auth_b64_encode(resp, strlen(resp));
	OPENSSL_cleanse(resp, strlen(resp));
	free(resp);
	return out;
}

void imap_auth_wipe(char *s)
{
	if (!s)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

/* ---- login sequence -------------------------------------------------------
 * Driven by imap_client.c through imap_client_p.h: the greeting, then
 * CAPABILITY, STARTTLS, authentication and COMPRESS as needed. */

void imap_cmd_send_internal(imap_client_t *c, internal_fn fn, unsigned flags,
			    enum trace_kind lit_tr, const char *fmt, ...)
{
	struct cmd *cmd = imap_cmd_new(c);
	va_list ap;
	cmd->internal = fn;
	cmd->flags = flags;
	va_start(ap, fmt);
	imap_cmd_build(c, cmd, lit_tr, fmt, ap);
	va_end(ap);
	imap_cmd_enqueue(c, cmd);
}

static void capability_done(imap_client_t *c, struct cmd *cmd, const imap_resp_t *r)
{
	if (!imap_resp_ok(r)) {
		imap_client_drop(c, IMAP_R_CONN,
				 "acct=%s: %s refused CAPABILITY (%s); is this an IMAP server?",
				 c->name, imap_client_host(c), r && r->text ? r->text : "");
		return;
	}
	imap_login_next(c);
}

static void starttls_done(imap_client_t *c, struct cmd *cmd, const imap_resp_t *r)
{
	if (!imap_resp_ok(r)) {
		imap_client_drop(c, IMAP_R_TLS,
				 "acct=%s: %s refused STARTTLS (%s); use tls = \"implicit\" on "
				 "port 993 if it offers that",
				 c->name, imap_client_host(c), r && r->text ? r->text : "");
		return;
	}
	const config_remote_t *rm = &c->acct->remote;
	imap_tls_opts_t o = {rm->host, imap_client_port(c), rm->ca_file, rm->fingerprint};
	/* Whatever the server sent before TLS is forgotten, capabilities too. */
	c->caps = 0;
	imap_conn_start_tls(c->conn, &o, c->opts.connect_timeout);
}

static void compress_done(imap_client_t *c, struct cmd *cmd, const imap_resp_t *r)
{
	/* A refusal is harmless: go on uncompressed. */
	if (imap_resp_ok(r) && imap_conn_start_compress(c->conn) < 0) {
		imap_client_drop(c, IMAP_R_CONN, "acct=%s: cannot start compression; reconnecting",
				 c->name);
		return;
	}
	imap_login_next(c);
}

static void auth_done(imap_client_t *c, struct cmd *cmd, const imap_resp_t *r)
{
	const config_remote_t *rm = &c->acct->remote;
	if (!imap_resp_ok(r)) {
		char code[128] = "";
		if (r && r->code)
			snprintf(code, sizeof(code), "[%s] ", r->code);
		char text[512];
		snprintf(text, sizeof(text), "%s", r && r->text ? r->text : "");
		size_t n = strlen(text);
		while (n > 0 && (text[n - 1] == '.' || text[n - 1] == ' '))
			text[--n] = '\0';
		imap_client_drop(
		    c, IMAP_R_AUTH,
		    "acct=%s: login as %s rejected by %s: %s%s; check remote.password%s", c->name,
		    rm->user ? rm->user : "?", imap_client_host(c), code, text,
		    rm->password_file	   ? "_file"
		    : rm->password_command ? "_command"
					   : "");
		return;
	}
	c->preauth = true; /* authenticated from here on */
	if (r->code && strcmp(r->code, "CAPABILITY") == 0)
		imap_client_set_caps(c, r->code_args);
	else
		c->caps = 0;
	imap_login_next(c);
}

/* AUTHENTICATE continuations: answer the challenge, or cancel with "*". */
static void auth_cont(imap_client_t *c, struct cmd *cmd, const char *text)
{
	const config_remote_t *rm = &c->acct->remote;
	char *resp = NULL;
	int step = cmd->auth_step++;

	/* One answer per exchange; a second challenge is not part of PLAIN or
	 * CRAM-MD5, so it is cancelled with "*" and the server says NO. */
	if (step == 0 && cmd->secret) {
		if (strcmp(cmd->name, "PLAIN") == 0)
			resp = imap_auth_plain(rm->user ? rm->user : "", cmd->secret);
		else
			resp = imap_auth_cram_md5(rm->user ? rm->user : "", cmd->secret, text);
	}
	password_free(cmd->secret);
	cmd->secret = NULL;
	struct part *p = imap_cmd_add_part(cmd, PART_DATA, TR_SECRET);
	p->data = xasprintf("%s\r\n", resp ? resp : "*");
	p->len = strlen(p->data);
	imap_auth_wipe(resp);
	imap_client_pump(c);
}

static void auth_send(imap_client_t *c, char *pw);

/* The password arrived (at once, or when password_command finished). */
static void auth_password_cb(int rc, char *pw, const char *errmsg, void *arg)
{
	imap_client_t *c = arg;
	const config_remote_t *rm = &c->acct->remote;

	c->pw_req = NULL;
	if (rc < 0) {
		imap_client_drop(c, IMAP_R_AUTH, "acct=%s: no password for %s: %s", c->name,
				 rm->user ? rm->user : "?",
				 errmsg ? errmsg : password_strerror(rc));
		return;
	}
	imap_client_touch(c);
	auth_send(c, pw);
}

static void do_auth(imap_client_t *c)
{
	const config_remote_t *rm = &c->acct->remote;
	imap_auth_offer_t offer = {
	    .plain = c->caps & IMAP_CAP_AUTH_PLAIN,
	    .login_mech = c->caps & IMAP_CAP_AUTH_LOGIN,
	    .cram_md5 = c->caps & IMAP_CAP_AUTH_CRAM_MD5,
	    .logindisabled = c->caps & IMAP_CAP_LOGINDISABLED,
	    .sasl_ir = c->caps & IMAP_CAP_SASL_IR,
	    .private_path = imap_conn_is_tls(c->conn) || imap_conn_is_loopback(c->conn),
	};
	int rc = imap_auth_choose(rm, &offer, &c->auth_mech);

	if (rc < 0) {
		imap_client_drop(
		    c, IMAP_R_AUTH, "acct=%s: cannot log in to %s: %s (it offers: %s); %s", c->name,
		    imap_client_host(c), imap_auth_strerror(rc), c->caps_str ? c->caps_str : "",
		    rc == IMAP_AUTH_ERR_LOGINDISABLED && !c->tls_done
			? "use tls = \"starttls\" or \"implicit\""
			: "adjust remote.auth");
		return;
	}
	/* A password_command may take its time (a keyring prompt): the loop
	 * goes on meanwhile. */
	password_req_t *q = password_get_async(c->loop, rm, auth_password_cb, c);
	if (q)
		c->pw_req = q;
}

/* Send LOGIN or AUTHENTICATE with the chosen mechanism; takes pw. */
static void auth_send(imap_client_t *c, char *pw)
{
	const config_remote_t *rm = &c->acct->remote;

	if (imap_auth_mech_plaintext(c->auth_mech) && !imap_conn_is_tls(c->conn) &&
	    !imap_conn_is_local(c->conn) && !c->warned_plaintext) {
		/* A warning, not an error: the user chose tls = "none". */
		c->warned_plaintext = true;
		log_warn("acct=%s: sending the password to %s unencrypted (%s); set tls = "
			 "\"starttls\" or \"implicit\"",
			 c->name, imap_client_host(c), imap_auth_mech_name(c->auth_mech));
	}
	struct cmd *cmd = imap_cmd_new(c);
	cmd->internal = auth_done;
	cmd->flags = CMD_AUTH;
	if (c->auth_mech == CONFIG_AUTH_LOGIN) {
		buf_t t = BUF_INIT;
		buf_printf(&t, "%s LOGIN ", cmd->tag);
		imap_cmd_put_string(c, cmd, &t, rm->user ? rm->user : "",
				    strlen(rm->user ? rm->user : ""), TR_SECRET);
		buf_puts(&t, " ");
		imap_cmd_put_string(c, cmd, &t, pw, strlen(pw), TR_SECRET);
		buf_puts(&t, "\r\n");
		imap_cmd_add_data(cmd, buf_head(&t), buf_avail(&t),
				  imap_cmd_text_trace(cmd, TR_SECRET));
		memset(t.data, 0, t.cap);
		buf_free(&t);
		snprintf(cmd->name, sizeof(cmd->name), "LOGIN");
	} else if (c->auth_mech == CONFIG_AUTH_PLAIN && (c->caps & IMAP_CAP_SASL_IR)) {
		char *ir = imap_auth_plain(rm->user ? rm->user : "", pw);
		char *line = xasprintf("%s AUTHENTICATE PLAIN %s\r\n", cmd->tag, ir);
		imap_cmd_add_data(cmd, line, strlen(line), TR_LINE);
		imap_auth_wipe(ir);
		imap_auth_wipe(line);
		cmd->auth_step = 1; /* a further "+" gets "*" */
		cmd->cont = auth_cont;
		snprintf(cmd->name, sizeof(cmd->name), "PLAIN");
	} else {
		char *line = xasprintf("%s AUTHENTICATE %s\r\n", cmd->tag,
				       imap_auth_mech_name(c->auth_mech));
		imap_cmd_add_data(cmd, line, strlen(line), TR_LINE);
		free(line);
		imap_cmd_add_part(cmd, PART_WAIT_CONT, TR_LINE);
		cmd->cont = auth_cont;
		snprintf(cmd->name, sizeof(cmd->name), "%s",
			 imap_auth_mech_name(c->auth_mech));
		cmd->secret = pw;
		pw = NULL;
	}
	password_free(pw);
	imap_cmd_enqueue(c, cmd);
}

static void become_ready(imap_client_t *c)
{
	c->state = ST_READY;
	c->ready_since = ev_now(c->loop);
	c->attempt = 0;
	imap_client_connect_finish(c, IMAP_R_OK, "");
}

/* Decide the next step of the login sequence from what we know. */
void imap_login_next(imap_client_t *c)
{
	const config_remote_t *rm = &c->acct->remote;

	c->state = ST_LOGIN;
	if (!c->caps_str || !c->caps) {
		imap_cmd_send_internal(c, capability_done, 0, TR_LINE, "CAPABILITY");
		return;
	}
	if (!c->preauth) {
		if (rm->tls == CONFIG_TLS_STARTTLS && !c->tls_done) {
			if (!(c->caps & IMAP_CAP_STARTTLS)) {
				imap_client_drop(
				    c, IMAP_R_TLS,
				    "acct=%s: %s does not offer STARTTLS, and tls = \"starttls\" "
				    "forbids going on in plaintext; "
				    "use tls = \"implicit\" (port 993) if the server has it",
				    c->name, imap_client_host(c));
				return;
			}
			imap_cmd_send_internal(c, starttls_done, 0, TR_LINE, "STARTTLS");
			return;
		}
		do_auth(c);
		return;
	}
	if (c->opts.compress && (c->caps & IMAP_CAP_COMPRESS_DEFLATE) && !c->compress_tried) {
		/* Ask once per connection, so a refusal does not loop. */
		c->compress_tried = true;
		imap_cmd_send_internal(c, compress_done, 0, TR_LINE, "COMPRESS DEFLATE");
		return;
	}
	become_ready(c);
}

void imap_login_greeting(imap_client_t *c, const imap_resp_t *r)
{
	const config_remote_t *rm = &c->acct->remote;

	if (r->kind != IMAP_RESP_UNTAGGED ||
	    (r->status != IMAP_STATUS_OK && r->status != IMAP_STATUS_PREAUTH)) {
		imap_client_drop(c, IMAP_R_CONN,
				 "acct=%s: %s did not greet as an IMAP server (%s%s); check host, "
				 "port and tunnel",
				 c->name, imap_client_host(c),
				 r->status == IMAP_STATUS_BYE ? "BYE " : "",
				 r->text ? r->text : "");
		return;
	}
	if (r->status == IMAP_STATUS_PREAUTH) {
		if (!rm->tunnel && rm->tls == CONFIG_TLS_STARTTLS) {
			imap_client_drop(c, IMAP_R_TLS,
					 "acct=%s: %s logged us in before STARTTLS (PREAUTH), so "
					 "the session cannot be "
					 "encrypted; use tls = \"implicit\" or a tunnel",
					 c->name, imap_client_host(c));
			return;
		}
		c->preauth = true;
	} else if (rm->tunnel) {
		/* A tunnel that asks for a login would need the password sent
		 * through it; the tunnel is there to avoid exactly that. */
		imap_client_drop(
		    c, IMAP_R_AUTH,
		    "acct=%s: the tunnel command did not log in (no PREAUTH greeting: %s); "
		    "check that remote.tunnel runs an IMAP server for the user",
		    c->name, r->text ? r->text : "");
		return;
	}
	if (r->code && strcmp(r->code, "CAPABILITY") == 0)
		imap_client_set_caps(c, r->code_args);
	imap_login_next(c);
}
