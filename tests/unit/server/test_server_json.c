/* The control protocol's JSON: parse what we write, reject what is not JSON. */
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "server/json.h"
#include "testutil.h"

static json_t *parse(const char *s)
{
	json_t *j = NULL;
	int rc = json_parse(s, strlen(s), &j);
	CHECK((rc == JSON_OK) == (j != NULL));
	return j;
}

static void test_values(void)
{
	json_t *j = parse(" {\"cmd\":\"account.add\",\"port\":993,\"purge\":true,\"none\":null,"
			  "\"list\":[1,\"two\",{\"x\":false}],\"esc\":\"a\\\"b\\\\c\\n\\u00e9\"} ");
	CHECK(j != NULL);
	CHECK_EQ_INT(json_type(j), JSON_OBJ);
	CHECK(strcmp(json_get_str(j, "cmd"), "account.add") == 0);
	CHECK_EQ_INT(json_get_num(j, "port", 0), 993);
	CHECK(json_get_bool(j, "purge", false));
	CHECK_EQ_INT(json_type(json_get(j, "none")), JSON_NULL);
	CHECK(json_get_str(j, "none") == NULL);
	CHECK(json_get_str(j, "absent") == NULL);
	CHECK_EQ_INT(json_get_num(j, "cmd", -1), -1);
	const json_t *l = json_get(j, "list");
	CHECK_EQ_INT(json_len(l), 3);
	CHECK(strcmp(json_str(json_at(l, 1)), "two") == 0);
	CHECK(!json_get_bool(json_at(l, 2), "x", true));
	CHECK(json_at(l, 3) == NULL);
	CHECK(strcmp(json_get_str(j, "esc"), "a\"b\\c\n\xc3\xa9") == 0);
	json_free(j);
}

static void test_bad(void)
{
	static const char *const bad[] = {
	    "",		  "{",	   "{\"a\":}", "{\"a\" 1}",	"[1,]",
	    "{\"a\":1}x", "tru",   "\"abc",    "\"a\\u0000b\"", "\"\x01\"",
	    "{a:1}",	  "[1 2]", "-",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *j = NULL;
		int rc = json_parse(bad[i], strlen(bad[i]), &j);
		if (rc == JSON_OK)
			fprintf(stderr, "accepted: %s\n", bad[i]);
		CHECK(rc != JSON_OK);
		CHECK(j == NULL);
	}
	char deep[64];
	memset(deep, '[', sizeof(deep));
	json_t *j = NULL;
	CHECK_EQ_INT(json_parse(deep, sizeof(deep), &j), JSON_E_DEPTH);
}

static void test_roundtrip(void)
{
	const char *nasty = "quote\" back\\ nl\n tab\t ctl\x01 utf8 \xc3\xa9";
	buf_t b = BUF_INIT;
	buf_puts(&b, "{");
	json_put_kv(&b, true, "k", nasty);
	json_put_kv(&b, false, "n", NULL);
	buf_puts(&b, "}");
	json_t *j = parse(buf_cstr(&b));
	CHECK(j && strcmp(json_get_str(j, "k"), nasty) == 0);
	CHECK(j && json_type(json_get(j, "n")) == JSON_NULL);
	json_free(j);
	buf_free(&b);
}

int main(void)
{
	test_values();
	test_bad();
	test_roundtrip();
	return test_done("test_server_json");
}
