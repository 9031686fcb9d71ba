/*
 * test_settings.c — engine/settings.c: every key parses its documented
 * range and refuses what is outside it (settings unchanged), formats back
 * to a value that parses to the same setting, and eng_settings_take copies
 * exactly one key.  The key list has one owner (eng_settings_keys).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "engine/engine.h"
#include "gguf/log.h"

static int set(struct eng_settings *s, const char *k, const char *v)
{
	return eng_settings_set(s, k, v, strlen(v));
}

int main(void)
{
	static const struct { const char *key, *good, *bad; } cases[] = {
		{ "presence_penalty", "0.5", "nan" }, { "presence_penalty", "-1.5", "1e9" },
		{ "frequency_penalty", "0.25", "x" }, { "typical_p", "0.9", "0" },
		{ "typical_p", "1", "1.5" }, { "dry_multiplier", "0.8", "-1" },
		{ "dry_base", "1.75", "0.5" }, { "dry_allowed_length", "2", "-1" },
		{ "dry_penalty_last_n", "-1", "-2" }, { "xtc_probability", "0.5", "2" },
		{ "xtc_threshold", "0.1", "-0.1" }, { "logprobs", "5", "21" },
		{ "logit_bias", "11:2.5, 12:-inf 13:inf", "11" }, { "logit_bias", "", "x:1" },
		{ "logit_bias", "7:1,7:2", "-1:1" }, { "logit_bias", "3:+1", "3:nan" },
		{ "grammar", "json.gbnf", "../x" }, { "grammar", "", ".hidden" },
		{ "grammar", "my grammar", "a/b" }, { "mode", "json", "xml" },
		{ "schema", "person.json", "../x" }, { "schema", "", ".hidden" },
		{ "json_schema", "{\"type\":\"integer\",\"minimum\":1}", "{\"type\":\"integer\",\"multipleOf\":2}" },
		{ "json_schema", "{\"enum\":[\"a\",\"b\"]}", "{\"enum\":[\"a\",]}" },
		{ "json_schema", "", "{\"type\":\"string\",\"pattern\":\"x\"}" },
		{ "temperature", "0.3", "-1" }, { "top_k", "0", "1.5" },
	};
	struct eng_settings s, t, u;
	char buf[256];
	int n_keys = 0;

	pf_log_set_level(-1); /* the refusals log by design */
	for (const char *const *k = eng_settings_keys; *k; k++, n_keys++)
		CHECK(eng_settings_key_index(*k) == n_keys, "key %s has index %d", *k, eng_settings_key_index(*k));
	CHECK(n_keys == ENG_KEY_COUNT, "%d keys listed, enum has %d", n_keys, ENG_KEY_COUNT);
	CHECK(eng_settings_key_index("nope") == -1, "unknown key has no index");

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *k = cases[i].key;
		char before[256], after[256];

		eng_settings_default(NULL, &s);
		CHECK(set(&s, k, cases[i].good) == 0, "%s = '%s' accepted", k, cases[i].good);
		eng_settings_get(&s, k, before, sizeof(before));
		CHECK(set(&s, k, cases[i].bad) == -EINVAL, "%s = '%s' refused with EINVAL", k, cases[i].bad);
		eng_settings_get(&s, k, after, sizeof(after));
		CHECK(!strcmp(before, after), "%s unchanged by a bad value ('%s' → '%s')", k, before, after);
		/* the formatted value parses back to the same value */
		eng_settings_default(NULL, &t);
		CHECK(set(&t, k, before) == 0, "%s: formatted '%s' parses", k, before);
		eng_settings_get(&t, k, buf, sizeof(buf));
		CHECK(!strcmp(buf, before), "%s round trip '%s' → '%s'", k, before, buf);
		eng_settings_free(&s);
		eng_settings_free(&t);
	}

	eng_settings_default(NULL, &s);
	CHECK(set(&s, "logit_bias", "5:1, 5:-2, 9:-inf") == 0 && s.n_bias == 2 && s.bias[0].id == 5 &&
	      s.bias[0].bias == -2.0f && s.bias[1].id == 9 && isinf(s.bias[1].bias) && s.bias[1].bias < 0,
	      "a repeated id keeps the last bias; -inf parses");
	/* take copies one key and leaves the others */
	eng_settings_default(NULL, &t);
	CHECK(set(&t, "grammar", "g1") == 0 && set(&t, "temperature", "0.1") == 0, "setup");
	eng_settings_default(NULL, &u);
	CHECK(eng_settings_take(&u, &t, ENG_KEY_GRAMMAR) == 0 && u.grammar && !strcmp(u.grammar, "g1") &&
	      u.temperature == 0.8f, "take grammar only");
	CHECK(eng_settings_take(&u, &s, ENG_KEY_LOGIT_BIAS) == 0 && u.n_bias == 2 && u.bias != s.bias,
	      "take logit_bias deep-copies");
	CHECK(eng_settings_take(&u, &t, ENG_KEY_TEMPERATURE) == 0 && u.temperature == 0.1f, "take temperature");
	eng_settings_free(&t); /* copy overwrites its destination */
	CHECK(eng_settings_copy(&t, &u) == 0 && t.grammar != u.grammar && !strcmp(t.grammar, "g1") &&
	      t.bias != u.bias && t.n_bias == 2, "copy deep-copies grammar and bias");
	eng_settings_free(&s);
	eng_settings_free(&t);
	eng_settings_free(&u);

	/* json_schema: compiled once at set; copy and take share the grammar */
	eng_settings_default(NULL, &s);
	CHECK(set(&s, "json_schema", "{\"type\":\"boolean\"}") == 0 && s.json_schema && s.json_schema_g,
	      "json_schema compiled at set");
	CHECK(eng_settings_copy(&t, &s) == 0 && t.json_schema != s.json_schema &&
	      !strcmp(t.json_schema, s.json_schema) && t.json_schema_g == s.json_schema_g, "copy shares the grammar");
	eng_settings_default(NULL, &u);
	CHECK(eng_settings_take(&u, &t, ENG_KEY_JSON_SCHEMA) == 0 && u.json_schema_g == s.json_schema_g &&
	      u.temperature == 0.8f, "take json_schema only");
	CHECK(set(&u, "json_schema", "  ") == 0 && !u.json_schema && !u.json_schema_g, "blank json_schema: none");
	eng_settings_free(&t);
	eng_settings_free(&u);
	eng_settings_free(&s);
	return check_summary();
}
