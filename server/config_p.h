/*
 * Private to server/config*.c: typed access to libconfig settings that
 * reports every problem as "FILE:LINE: option PATH: what is wrong".
 *
 * libconfig calls its handle config_t, as lib/config.h calls ours: this
 * header renames libconfig's to libconfig_t (the library's symbols are
 * functions, so the rename is invisible to the linker). Include it before
 * anything that includes lib/config.h.
 *
 * Every getter leaves *out alone when the member is absent, and reports and
 * returns false when it has the wrong type or is out of range. Paths are
 * dotted option paths such as "accounts.[0].remote"; "" is the root.
 * Strings returned by config_join() are the caller's to free.
 */
#ifndef IB_SERVER_CONFIG_P_H
#define IB_SERVER_CONFIG_P_H

#define config_t libconfig_t
#include <libconfig.h>
#undef config_t

#include <stdbool.h>

#include "server/config.h"

/* One loading pass: the file being read and where problems go. */
struct config_loader {
	const char *file;
	config_msgs_t *msgs;
};

/* Append s (taken over) to a message vector. */
void config_msgs_add(char ***v, size_t *n, char *s);

void config_problem(struct config_loader *L, const config_setting_t *s, const char *path,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void config_warning(struct config_loader *L, const config_setting_t *s, const char *path,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* path.key, or key at the root; a new string. */
char *config_join(const char *path, const char *key);

/* Report every member of group whose name is not in known (NULL-terminated),
 * with a did-you-mean suggestion when one is close. */
void config_check_keys(struct config_loader *L, const config_setting_t *group, const char *path,
		       const char *const *known);

void config_wrong_type(struct config_loader *L, const config_setting_t *s, const char *path,
		       const char *expected);

/* The member key of group, or NULL (also when group is NULL). */
const config_setting_t *config_member(const config_setting_t *group, const char *key);

/* A string (expand: resolve a leading ~/); replaces *out. */
bool config_get_str(struct config_loader *L, const config_setting_t *g, const char *path,
		    const char *key, char **out, bool expand);
bool config_get_int(struct config_loader *L, const config_setting_t *g, const char *path,
		    const char *key, int *out, int min, int max);
/* An integer or a float. */
bool config_get_num(struct config_loader *L, const config_setting_t *g, const char *path,
		    const char *key, double *out, double min, double max);
bool config_get_bool(struct config_loader *L, const config_setting_t *g, const char *path,
		     const char *key, bool *out);
/* A member that must be a group; NULL when absent or not a group. */
const config_setting_t *config_get_group(struct config_loader *L, const config_setting_t *g,
					 const char *path, const char *key);

/* Called for each string of a list or array; path names the element. */
typedef void (*config_str_each_fn)(struct config_loader *L, void *arg, const char *value,
				   const config_setting_t *s, const char *path);
/* A list or array of strings (a single string counts as a list of one). */
void config_get_strings(struct config_loader *L, const config_setting_t *g, const char *path,
			const char *key, config_str_each_fn each, void *arg);

/* The member "tls": none, starttls or implicit. */
bool config_get_tls(struct config_loader *L, const config_setting_t *g, const char *path,
		    enum config_tls *out);

#endif
