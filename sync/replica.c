/* Helpers of the replica interface: see replica.h. */
#include "sync/replica.h"

#include <stdlib.h>

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib/util.h"

const char *replica_strerror(int status)
{
	switch (status) {
	case REPLICA_OK: return "ok";
	case REPLICA_MSG_BAD: return "message refused or gone";
	case REPLICA_FOLDER_BAD: return "folder unusable";
	case REPLICA_BAD: return "replica unreachable or session lost";
	case REPLICA_CANCELLED: return "cancelled";
	default: return "unknown replica status";
	}
}

static const struct {
	const char *name;
	unsigned bit;
} flag_names[] = {
	{ "\\Seen", REPLICA_F_SEEN },
	{ "\\Answered", REPLICA_F_ANSWERED },
	{ "\\Flagged", REPLICA_F_FLAGGED },
	{ "\\Deleted", REPLICA_F_DELETED },
	{ "\\Draft", REPLICA_F_DRAFT },
};

unsigned replica_flag_from_name(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(flag_names) / sizeof(flag_names[0]); i++)
		if (strlen(flag_names[i].name) == len && strncasecmp(flag_names[i].name, name, len) == 0)
			return flag_names[i].bit;
	return 0;
}

void replica_flags_to_str(unsigned flags, char *out, size_t outlen)
{
	size_t off = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	for (size_t i = 0; i < sizeof(flag_names) / sizeof(flag_names[0]); i++) {
		if (!(flags & flag_names[i].bit))
			continue;
		int n = snprintf(out + off, outlen - off, "%s%s", off ? " " : "", flag_names[i].name);
		if (n < 0 || (size_t)n >= outlen - off)
			return;
		off += (size_t)n;
	}
}

/* ---------------------------------------------------------- keyword sets */

char **replica_kw_split(const char *kw, size_t *n)
{
	size_t cap = 0, cnt = 0;
	char **v = NULL;
	const char *p = kw ? kw : "";

	while (*p) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 8;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[cnt++] = xstrndup(p, (size_t)(e - p));
		p = e;
	}
	*n = cnt;
	return v;
}

void replica_kw_free_vec(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int kw_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *replica_kw_join(const char *const *v, size_t n)
{
	const char **s = xmalloc((n ? n : 1) * sizeof(*s));
	size_t total = 1;
	char *out, *o;

	for (size_t i = 0; i < n; i++) {
		s[i] = v[i];
		total += strlen(v[i]) + 1;
	}
	if (n)
		qsort(s, n, sizeof(*s), kw_cmp);
	out = o = xmalloc(total);
	*o = '\0';
	for (size_t i = 0; i < n; i++) {
		if (!*s[i] || (i > 0 && strcmp(s[i], s[i - 1]) == 0))
			continue;
		if (o != out)
			*o++ = ' ';
		size_t l = strlen(s[i]);
		memcpy(o, s[i], l);
		o += l;
		*o = '\0';
	}
	free(s);
	return out;
}

char *replica_kw_canon(const char *kw)
{
	size_t n;
	char **v = replica_kw_split(kw, &n);
	char *out = replica_kw_join((const char *const *)v, n);

	replica_kw_free_vec(v, n);
	return out;
}

static bool kw_has(char **v, size_t n, const char *k)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], k) == 0)
			return true;
	return false;
}

char *replica_kw_merge(const char *a, const char *r, const char *s)
{
	size_t na, nr, ns, nout = 0;
	char **va = replica_kw_split(a, &na);
	char **vr = replica_kw_split(r, &nr);
	char **vs = replica_kw_split(s, &ns);
	const char **out = xmalloc((na + nr + ns + 1) * sizeof(*out));
	char **all[3] = { va, vr, vs };
	size_t cnt[3] = { na, nr, ns };
	char *res;

	for (int w = 0; w < 3; w++) {
		for (size_t i = 0; i < cnt[w]; i++) {
			const char *k = all[w][i];
			bool in_a = kw_has(va, na, k), in_r = kw_has(vr, nr, k);
			bool in_s = kw_has(vs, ns, k);
			bool keep = in_r != in_a ? in_r : in_s;
			if (keep)
				out[nout++] = k;
		}
	}
	res = replica_kw_join(out, nout);
	free(out);
	replica_kw_free_vec(va, na);
	replica_kw_free_vec(vr, nr);
	replica_kw_free_vec(vs, ns);
	return res;
}

void replica_kw_diff(const char *from, const char *to, char **add, char **del)
{
	size_t nf, nt, na = 0, nd = 0;
	char **vf = replica_kw_split(from, &nf);
	char **vt = replica_kw_split(to, &nt);
	const char **va = xmalloc((nt + 1) * sizeof(*va));
	const char **vd = xmalloc((nf + 1) * sizeof(*vd));

	for (size_t i = 0; i < nt; i++)
		if (!kw_has(vf, nf, vt[i]))
			va[na++] = vt[i];
	for (size_t i = 0; i < nf; i++)
		if (!kw_has(vt, nt, vf[i]))
			vd[nd++] = vf[i];
	*add = replica_kw_join(va, na);
	*del = replica_kw_join(vd, nd);
	free(va);
	free(vd);
	replica_kw_free_vec(vf, nf);
	replica_kw_free_vec(vt, nt);
}
