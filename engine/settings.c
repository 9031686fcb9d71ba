/*
 * settings.c — per-session settings: defaults, copy, and the text form of
 * every key (the `defaults` file and the xattrs of fs/ use it).
 *
 * Values are parsed strictly: a number must be the whole value (surrounding
 * whitespace allowed) and in range, or the call fails with -EINVAL and a log
 * line naming the key and value; the settings are then unchanged.
 *   temperature  >= 0 finite (0 = greedy)        top_k       >= 0 integer (0 = off)
 *   top_p        in (0, 1]                        min_p       in [0, 1]
 *   repeat_penalty > 0 finite (1 = off)           repeat_last_n >= 0 integer
 *   seed         integer >= -1 (-1 = random)      max_tokens  >= 0 integer (0 = no limit)
 *   mode         chat | raw | json                system      UTF-8 text ("" = none)
 *   stop         strings separated by "|", escapes \n \t \r \\ \| ("" = none)
 *   presence_penalty, frequency_penalty  finite in [-1e6, 1e6] (0 = off)
 *   typical_p    in (0, 1]                        dry_multiplier >= 0 (0 = off)
 *   dry_base     >= 1                             dry_allowed_length >= 0 integer
 *   dry_penalty_last_n integer >= -1 (-1 = the whole context, 0 = off)
 *   xtc_probability in [0, 1] (0 = off)           xtc_threshold in [0, 1]
 *   logit_bias   "id:bias" items separated by commas or spaces; bias finite,
 *                -inf (forbid) or inf; a repeated id keeps the last ("" = none)
 *   logprobs     integer in [0, ENG_MAX_LOGPROBS]  grammar  a grammar name ("" = none)
 *   json_schema  a JSON Schema of at most ENG_MAX_SCHEMA bytes, converted to
 *                a grammar and compiled here ("" = none)
 *   schema       a name in schemas/ ("" = none)
 * The value is parsed here once and kept parsed; fs/ copies parsed values
 * with eng_settings_take() and never stores the text.
 */
#include "engine_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"
#include "json_schema.h"

_Static_assert(ENG_MAX_BIAS == ENG_SAMPLE_MAX_BIAS, "a request carries every logit_bias entry of the settings");

const char *const eng_settings_keys[] = {
	"temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n",
	"seed", "max_tokens", "mode", "system", "stop",
	"presence_penalty", "frequency_penalty", "typical_p",
	"dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
	"xtc_probability", "xtc_threshold", "logit_bias", "logprobs", "grammar", "json_schema", "schema", NULL,
};
_Static_assert(sizeof(eng_settings_keys) / sizeof(eng_settings_keys[0]) == ENG_KEY_COUNT + 1,
               "eng_settings_keys matches enum eng_key");

int eng_settings_key_index(const char *key)
{
	for (int i = 0; i < ENG_KEY_COUNT; i++)
		if (!strcmp(key, eng_settings_keys[i]))
			return i;
	return -1;
}

#define MAX_STOP_LEN 256
#define MAX_REPEAT_LAST_N (1 << 20)

void eng_settings_default(const struct eng_model *m, struct eng_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->temperature = 0.8f;
	s->top_k = 40;
	s->top_p = 0.95f;
	s->min_p = 0.05f;
	s->repeat_penalty = 1.0f;
	s->repeat_last_n = 64;
	s->seed = -1;
	s->max_tokens = 0;
	s->typical_p = 1.0f;
	s->dry_base = 1.75f;
	s->dry_allowed_length = 2;
	s->dry_penalty_last_n = -1;
	s->xtc_threshold = 0.1f;
	s->mode = (!m || m->tmpl.family != ENG_TMPL_NONE) ? ENG_MODE_CHAT : ENG_MODE_RAW;
}

void eng_settings_free(struct eng_settings *s)
{
	if (!s)
		return;
	free(s->system);
	s->system = NULL;
	free(s->bias);
	s->bias = NULL;
	s->n_bias = 0;
	free(s->grammar);
	s->grammar = NULL;
	free(s->json_schema);
	s->json_schema = NULL;
	eng_grammar_unref(s->json_schema_g);
	s->json_schema_g = NULL;
	free(s->schema);
	s->schema = NULL;
	for (int i = 0; i < s->n_stop; i++) {
		free(s->stop[i]);
		s->stop[i] = NULL;
	}
	s->n_stop = 0;
}

int eng_settings_copy(struct eng_settings *dst, const struct eng_settings *src)
{
	struct eng_settings t = *src;

	t.system = NULL;
	t.grammar = NULL;
	t.json_schema = NULL;
	t.json_schema_g = NULL;
	t.schema = NULL;
	t.bias = NULL;
	t.n_bias = 0;
	t.n_stop = 0;
	memset(t.stop, 0, sizeof(t.stop));
	if (src->system && !(t.system = strdup(src->system)))
		goto fail;
	if (src->grammar && !(t.grammar = strdup(src->grammar)))
		goto fail;
	if (src->schema && !(t.schema = strdup(src->schema)))
		goto fail;
	if (src->json_schema) {
		if (!(t.json_schema = strdup(src->json_schema)))
			goto fail;
		t.json_schema_g = eng_grammar_ref(src->json_schema_g);
	}
	if (src->n_bias) {
		if (!(t.bias = malloc(sizeof(*t.bias) * (size_t)src->n_bias)))
			goto fail;
		memcpy(t.bias, src->bias, sizeof(*t.bias) * (size_t)src->n_bias);
		t.n_bias = src->n_bias;
	}
	for (int i = 0; i < src->n_stop; i++) {
		if (!(t.stop[i] = strdup(src->stop[i])))
			goto fail;
		t.n_stop = i + 1;
	}
	*dst = t;
	return 0;
fail:
	eng_settings_free(&t);
	return -ENOMEM;
}

// ---- parsing helpers

/* Copies val into buf without surrounding whitespace; -EINVAL if too long
 * or it contains a NUL. */
static int trimmed(const char *val, size_t len, char *buf, size_t n)
{
	while (len && isspace((unsigned char)*val)) {
		val++;
		len--;
	}
	while (len && isspace((unsigned char)val[len - 1]))
		len--;
	if (len >= n || memchr(val, 0, len))
		return -EINVAL;
	memcpy(buf, val, len);
	buf[len] = 0;
	return 0;
}

/* Plain decimal only: strtod would also take hex ("0x10" = 16), "inf",
 * "nan"; strtoll leading spaces.  frac: digits, '.', an exponent. */
static bool decimal(const char *s, bool frac)
{
	if (*s == '-' || *s == '+')
		s++;
	if (!(*s >= '0' && *s <= '9') && !(frac && *s == '.'))
		return false;
	for (; *s; s++)
		if (!(*s >= '0' && *s <= '9') &&
		    !(frac && (*s == '.' || *s == 'e' || *s == 'E' || *s == '-' || *s == '+')))
			return false;
	return true;
}

static int parse_float(const char *key, const char *val, size_t len, double lo, double hi,
                       bool lo_open, float *out)
{
	char buf[64], *end;
	double v;

	if (trimmed(val, len, buf, sizeof(buf)) < 0 || !buf[0] || !decimal(buf, true))
		goto bad;
	errno = 0;
	v = strtod(buf, &end);
	if (*end || errno || !isfinite(v) || v < lo || v > hi || (lo_open && v == lo))
		goto bad;
	*out = (float)v;
	return 0;
bad:
	LOG_ERR("%s: bad value '%.*s' (a number in %s%g, %g])", key, (int)(len > 60 ? 60 : len), val,
	        lo_open ? "(" : "[", lo, hi);
	return -EINVAL;
}

static int parse_int(const char *key, const char *val, size_t len, long long lo, long long hi,
                     long long *out)
{
	char buf[64], *end;
	long long v;

	if (trimmed(val, len, buf, sizeof(buf)) < 0 || !buf[0] || !decimal(buf, false))
		goto bad;
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (*end || errno || v < lo || v > hi)
		goto bad;
	*out = v;
	return 0;
bad:
	LOG_ERR("%s: bad value '%.*s' (an integer in [%lld, %lld])", key, (int)(len > 60 ? 60 : len), val,
	        lo, hi);
	return -EINVAL;
}

/* Strict UTF-8 check (no overlongs, no surrogates, <= U+10FFFF, no NUL). */
static bool valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i];
		size_t k;
		uint32_t cp;

		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			k = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 3, cp = c & 0x07;
		else
			return false;
		if (i + k >= n)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

/* "a|b\|c|\n" → {"a", "b|c", "\n"}; empty items are skipped. */
static int parse_stop(const char *val, size_t len, struct eng_settings *s)
{
	char *items[ENG_MAX_STOP] = { 0 };
	char cur[MAX_STOP_LEN + 1];
	size_t n = 0, i;
	int k = 0, rc = -EINVAL;

	if (!valid_utf8((const unsigned char *)val, len))
		goto bad;
	for (i = 0; i <= len; i++) {
		char c = i < len ? val[i] : '|';

		if (c == '\\' && i + 1 < len) {
			char e = val[++i];

			c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
		} else if (c == '|') {
			if (n == 0)
				continue;
			if (k == ENG_MAX_STOP)
				goto bad;
			cur[n] = 0;
			if (!(items[k++] = strdup(cur))) {
				rc = -ENOMEM;
				goto fail;
			}
			n = 0;
			continue;
		}
		if (n == MAX_STOP_LEN)
			goto bad;
		cur[n++] = c;
	}
	for (i = 0; i < (size_t)s->n_stop; i++)
		free(s->stop[i]);
	memcpy(s->stop, items, sizeof(items));
	s->n_stop = k;
	return 0;
bad:
	LOG_ERR("stop: bad value '%.*s' (at most %d strings of at most %d bytes, UTF-8, separated by '|')",
	        (int)(len > 60 ? 60 : len), val, ENG_MAX_STOP, MAX_STOP_LEN);
fail:
	for (i = 0; i < (size_t)k; i++)
		free(items[i]);
	return rc;
}

static int set_system(struct eng_settings *s, const char *val, size_t len)
{
	char *v = NULL;

	if (len > ENG_MAX_SYSTEM || !valid_utf8((const unsigned char *)val, len)) {
		LOG_ERR("system: bad value (%zu bytes; at most %d bytes of UTF-8 text)", len, ENG_MAX_SYSTEM);
		return -EINVAL;
	}
	if (len) {
		v = malloc(len + 1);
		if (!v)
			return -ENOMEM;
		memcpy(v, val, len);
		v[len] = 0;
	}
	free(s->system);
	s->system = v;
	return 0;
}

/* "id:bias id:bias" (commas or spaces between items) → s->bias. */
static int parse_bias(const char *val, size_t len, struct eng_settings *s)
{
	struct eng_logit_bias *v = NULL;
	char item[64];
	size_t i = 0;
	int n = 0, rc = -EINVAL;

	while (i < len) {
		size_t j;
		char *colon, *end;
		long long id;
		double b;

		while (i < len && (val[i] == ',' || isspace((unsigned char)val[i])))
			i++;
		for (j = i; j < len && val[j] != ',' && !isspace((unsigned char)val[j]); j++)
			;
		if (j == i)
			break;
		if (j - i >= sizeof(item) || memchr(val + i, 0, j - i))
			goto bad;
		memcpy(item, val + i, j - i);
		item[j - i] = 0;
		i = j;
		colon = strchr(item, ':');
		if (!colon || colon == item)
			goto bad;
		*colon = 0;
		errno = 0;
		id = strtoll(item, &end, 10);
		if (*end || errno || id < 0 || id > INT32_MAX)
			goto bad;
		b = strtod(colon + 1, &end);
		if (*end || !colon[1] || isnan(b) || (isfinite(b) && fabs(b) > 1e6))
			goto bad;
		int k;
		for (k = 0; k < n && v[k].id != (int32_t)id; k++)
			;
		if (k == n) {
			struct eng_logit_bias *g;

			if (n == ENG_MAX_BIAS)
				goto bad;
			if (!(g = realloc(v, sizeof(*v) * (size_t)(n + 1)))) {
				rc = -ENOMEM;
				goto fail;
			}
			v = g;
			n++;
		}
		v[k] = (struct eng_logit_bias){ (int32_t)id, (float)b };
	}
	free(s->bias);
	s->bias = v;
	s->n_bias = n;
	return 0;
bad:
	LOG_ERR("logit_bias: bad value '%.*s' (at most %d items id:bias, id >= 0, bias a number, -inf or inf)",
	        (int)(len > 60 ? 60 : len), val, ENG_MAX_BIAS);
fail:
	free(v);
	return rc;
}

/* A grammar or schema name: "" (none) or 1-255 bytes of UTF-8, no '/',
 * not starting with '.'.  Whether it exists is checked when a turn starts
 * (the file may be copied into grammars/ or schemas/ after the setting). */
static int set_name(const char *key, char **field, const char *val, size_t len)
{
	char buf[ENG_GRAMMAR_NAME_MAX + 1], *v = NULL;

	if (trimmed(val, len, buf, sizeof(buf)) < 0 || buf[0] == '.' || strchr(buf, '/') ||
	    !valid_utf8((const unsigned char *)buf, strlen(buf))) {
		LOG_ERR("%s: bad name '%.*s' (1-%d bytes, no '/', not starting with '.')", key,
		        (int)(len > 60 ? 60 : len), val, ENG_GRAMMAR_NAME_MAX);
		return -EINVAL;
	}
	if (buf[0] && !(v = strdup(buf)))
		return -ENOMEM;
	free(*field);
	*field = v;
	return 0;
}

int eng_schema_gbnf(const char *text, size_t len, char **gbnf, size_t *glen)
{
	return eng_json_schema_to_gbnf("json_schema", text, len, gbnf, glen);
}

/* A JSON Schema: converted to GBNF and compiled now, so a bad one is
 * refused at setfattr (the log names the keyword); whitespace only: none. */
static int set_json_schema(struct eng_settings *s, const char *val, size_t len)
{
	struct eng_grammar *g = NULL;
	char *gbnf = NULL, *text = NULL;
	size_t glen, a = 0;
	int rc;

	while (a < len && isspace((unsigned char)val[a]))
		a++;
	if (a == len)
		goto store;
	if (len > ENG_MAX_SCHEMA) {
		LOG_ERR("json_schema: %zu bytes (at most %d)", len, ENG_MAX_SCHEMA);
		return -EINVAL;
	}
	if ((rc = eng_schema_gbnf(val, len, &gbnf, &glen)) < 0)
		return rc;
	rc = eng_grammar_parse("json_schema", gbnf, glen, &g);
	free(gbnf);
	if (rc < 0)
		return rc;
	if (!(text = malloc(len + 1))) {
		eng_grammar_unref(g);
		return -ENOMEM;
	}
	memcpy(text, val, len);
	text[len] = 0;
store:
	free(s->json_schema);
	eng_grammar_unref(s->json_schema_g);
	s->json_schema = text;
	s->json_schema_g = g;
	return 0;
}

static int set_mode(struct eng_settings *s, const char *val, size_t len)
{
	char buf[16];
	int rc = trimmed(val, len, buf, sizeof(buf));

	if (rc == 0 && !strcmp(buf, "chat"))
		s->mode = ENG_MODE_CHAT;
	else if (rc == 0 && !strcmp(buf, "raw"))
		s->mode = ENG_MODE_RAW;
	else if (rc == 0 && !strcmp(buf, "json"))
		s->mode = ENG_MODE_JSON;
	else {
		LOG_ERR("mode: bad value '%.*s' (chat, raw or json)", (int)(len > 60 ? 60 : len), val);
		return -EINVAL;
	}
	return 0;
}

#define FLOAT_KEY(K, field, lo, hi, open)                                               \
	case K:                                                                         \
		if ((rc = parse_float(key, val, len, lo, hi, open, &fv)) == 0)          \
			s->field = fv;                                                  \
		return rc
#define INT_KEY(K, field, lo, hi)                                                       \
	case K:                                                                         \
		if ((rc = parse_int(key, val, len, lo, hi, &iv)) == 0)                  \
			s->field = iv;                                                  \
		return rc

int eng_settings_set(struct eng_settings *s, const char *key, const char *val, size_t len)
{
	long long iv;
	float fv;
	int rc;

	switch (eng_settings_key_index(key)) {
	case ENG_KEY_SYSTEM: return set_system(s, val, len);
	case ENG_KEY_STOP: return parse_stop(val, len, s);
	case ENG_KEY_MODE: return set_mode(s, val, len);
	case ENG_KEY_LOGIT_BIAS: return parse_bias(val, len, s);
	case ENG_KEY_GRAMMAR: return set_name("grammar", &s->grammar, val, len);
	case ENG_KEY_SCHEMA: return set_name("schema", &s->schema, val, len);
	case ENG_KEY_JSON_SCHEMA: return set_json_schema(s, val, len);
	FLOAT_KEY(ENG_KEY_TEMPERATURE, temperature, 0, 1e6, false);
	FLOAT_KEY(ENG_KEY_TOP_P, top_p, 0, 1, true);
	FLOAT_KEY(ENG_KEY_MIN_P, min_p, 0, 1, false);
	FLOAT_KEY(ENG_KEY_REPEAT_PENALTY, repeat_penalty, 0, 1e6, true);
	FLOAT_KEY(ENG_KEY_PRESENCE_PENALTY, presence_penalty, -1e6, 1e6, false);
	FLOAT_KEY(ENG_KEY_FREQUENCY_PENALTY, frequency_penalty, -1e6, 1e6, false);
	FLOAT_KEY(ENG_KEY_TYPICAL_P, typical_p, 0, 1, true);
	FLOAT_KEY(ENG_KEY_DRY_MULTIPLIER, dry_multiplier, 0, 1e6, false);
	FLOAT_KEY(ENG_KEY_DRY_BASE, dry_base, 1, 1e6, false);
	FLOAT_KEY(ENG_KEY_XTC_PROBABILITY, xtc_probability, 0, 1, false);
	FLOAT_KEY(ENG_KEY_XTC_THRESHOLD, xtc_threshold, 0, 1, false);
	INT_KEY(ENG_KEY_TOP_K, top_k, 0, INT32_MAX);
	INT_KEY(ENG_KEY_REPEAT_LAST_N, repeat_last_n, 0, MAX_REPEAT_LAST_N);
	INT_KEY(ENG_KEY_SEED, seed, -1, INT64_MAX);
	INT_KEY(ENG_KEY_MAX_TOKENS, max_tokens, 0, INT32_MAX);
	INT_KEY(ENG_KEY_DRY_ALLOWED_LENGTH, dry_allowed_length, 0, 1 << 20);
	INT_KEY(ENG_KEY_DRY_PENALTY_LAST_N, dry_penalty_last_n, -1, MAX_REPEAT_LAST_N);
	INT_KEY(ENG_KEY_LOGPROBS, logprobs, 0, ENG_MAX_LOGPROBS);
	}
	return -ENOENT;
}

int eng_settings_take(struct eng_settings *dst, const struct eng_settings *src, enum eng_key key)
{
	struct eng_settings t;
	int rc;

	switch (key) {
	case ENG_KEY_SYSTEM:
	case ENG_KEY_STOP:
	case ENG_KEY_LOGIT_BIAS:
	case ENG_KEY_GRAMMAR:
	case ENG_KEY_JSON_SCHEMA:
	case ENG_KEY_SCHEMA:
		/* owned values: deep-copy src, move the one field over */
		if ((rc = eng_settings_copy(&t, src)) < 0)
			return rc;
		if (key == ENG_KEY_SYSTEM) {
			char *x = dst->system; dst->system = t.system; t.system = x;
		} else if (key == ENG_KEY_GRAMMAR) {
			char *x = dst->grammar; dst->grammar = t.grammar; t.grammar = x;
		} else if (key == ENG_KEY_SCHEMA) {
			char *x = dst->schema; dst->schema = t.schema; t.schema = x;
		} else if (key == ENG_KEY_JSON_SCHEMA) {
			char *x = dst->json_schema; struct eng_grammar *g = dst->json_schema_g;
			dst->json_schema = t.json_schema; dst->json_schema_g = t.json_schema_g;
			t.json_schema = x; t.json_schema_g = g;
		} else if (key == ENG_KEY_LOGIT_BIAS) {
			struct eng_logit_bias *x = dst->bias; int n = dst->n_bias;
			dst->bias = t.bias; dst->n_bias = t.n_bias; t.bias = x; t.n_bias = n;
		} else {
			char *x[ENG_MAX_STOP]; int n = dst->n_stop;
			memcpy(x, dst->stop, sizeof(x));
			memcpy(dst->stop, t.stop, sizeof(x));
			dst->n_stop = t.n_stop;
			memcpy(t.stop, x, sizeof(x));
			t.n_stop = n;
		}
		eng_settings_free(&t);
		return 0;
	case ENG_KEY_TEMPERATURE: dst->temperature = src->temperature; return 0;
	case ENG_KEY_TOP_K: dst->top_k = src->top_k; return 0;
	case ENG_KEY_TOP_P: dst->top_p = src->top_p; return 0;
	case ENG_KEY_MIN_P: dst->min_p = src->min_p; return 0;
	case ENG_KEY_REPEAT_PENALTY: dst->repeat_penalty = src->repeat_penalty; return 0;
	case ENG_KEY_REPEAT_LAST_N: dst->repeat_last_n = src->repeat_last_n; return 0;
	case ENG_KEY_SEED: dst->seed = src->seed; return 0;
	case ENG_KEY_MAX_TOKENS: dst->max_tokens = src->max_tokens; return 0;
	case ENG_KEY_MODE: dst->mode = src->mode; return 0;
	case ENG_KEY_PRESENCE_PENALTY: dst->presence_penalty = src->presence_penalty; return 0;
	case ENG_KEY_FREQUENCY_PENALTY: dst->frequency_penalty = src->frequency_penalty; return 0;
	case ENG_KEY_TYPICAL_P: dst->typical_p = src->typical_p; return 0;
	case ENG_KEY_DRY_MULTIPLIER: dst->dry_multiplier = src->dry_multiplier; return 0;
	case ENG_KEY_DRY_BASE: dst->dry_base = src->dry_base; return 0;
	case ENG_KEY_DRY_ALLOWED_LENGTH: dst->dry_allowed_length = src->dry_allowed_length; return 0;
	case ENG_KEY_DRY_PENALTY_LAST_N: dst->dry_penalty_last_n = src->dry_penalty_last_n; return 0;
	case ENG_KEY_XTC_PROBABILITY: dst->xtc_probability = src->xtc_probability; return 0;
	case ENG_KEY_XTC_THRESHOLD: dst->xtc_threshold = src->xtc_threshold; return 0;
	case ENG_KEY_LOGPROBS: dst->logprobs = src->logprobs; return 0;
	case ENG_KEY_COUNT: break;
	}
	return -ENOENT;
}

// ---- formatting

static int put(char *buf, size_t n, const char *s, size_t len)
{
	if (n) {
		size_t c = len < n - 1 ? len : n - 1;

		memcpy(buf, s, c);
		buf[c] = 0;
	}
	return len > INT32_MAX ? INT32_MAX : (int)len;
}

/* Stop strings joined with "|", escaping \ | and \n \t \r. */
static int format_stop(const struct eng_settings *s, char *buf, size_t n)
{
	size_t cap = 1, len = 0;
	char *o;
	int rc;

	for (int i = 0; i < s->n_stop; i++)
		cap += 2 * strlen(s->stop[i]) + 1;
	o = malloc(cap);
	if (!o)
		return -ENOMEM;
	for (int i = 0; i < s->n_stop; i++) {
		if (i)
			o[len++] = '|';
		for (const char *p = s->stop[i]; *p; p++) {
			char c = *p;

			if (c == '\n' || c == '\t' || c == '\r' || c == '\\' || c == '|') {
				o[len++] = '\\';
				c = c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : c;
			}
			o[len++] = c;
		}
	}
	rc = put(buf, n, o, len);
	free(o);
	return rc;
}

static int format_bias(const struct eng_settings *s, char *buf, size_t n)
{
	size_t cap = (size_t)s->n_bias * 40 + 1, len = 0;
	char *o = malloc(cap);
	int rc;

	if (!o)
		return -ENOMEM;
	o[0] = 0;
	for (int i = 0; i < s->n_bias; i++) {
		float b = s->bias[i].bias;

		if (isinf(b))
			len += (size_t)snprintf(o + len, cap - len, "%s%d:%sinf", i ? "," : "",
			                        s->bias[i].id, b < 0 ? "-" : "");
		else
			len += (size_t)snprintf(o + len, cap - len, "%s%d:%g", i ? "," : "", s->bias[i].id, b);
	}
	rc = put(buf, n, o, len);
	free(o);
	return rc;
}

int eng_settings_get(const struct eng_settings *s, const char *key, char *buf, size_t n)
{
	char t[64];

	switch (eng_settings_key_index(key)) {
	case ENG_KEY_SYSTEM: return s->system ? put(buf, n, s->system, strlen(s->system)) : put(buf, n, "", 0);
	case ENG_KEY_GRAMMAR: return s->grammar ? put(buf, n, s->grammar, strlen(s->grammar)) : put(buf, n, "", 0);
	case ENG_KEY_SCHEMA: return s->schema ? put(buf, n, s->schema, strlen(s->schema)) : put(buf, n, "", 0);
	case ENG_KEY_JSON_SCHEMA:
		return s->json_schema ? put(buf, n, s->json_schema, strlen(s->json_schema)) : put(buf, n, "", 0);
	case ENG_KEY_STOP: return format_stop(s, buf, n);
	case ENG_KEY_LOGIT_BIAS: return format_bias(s, buf, n);
	case ENG_KEY_TEMPERATURE: snprintf(t, sizeof(t), "%g", s->temperature); break;
	case ENG_KEY_TOP_K: snprintf(t, sizeof(t), "%d", s->top_k); break;
	case ENG_KEY_TOP_P: snprintf(t, sizeof(t), "%g", s->top_p); break;
	case ENG_KEY_MIN_P: snprintf(t, sizeof(t), "%g", s->min_p); break;
	case ENG_KEY_REPEAT_PENALTY: snprintf(t, sizeof(t), "%g", s->repeat_penalty); break;
	case ENG_KEY_REPEAT_LAST_N: snprintf(t, sizeof(t), "%d", s->repeat_last_n); break;
	case ENG_KEY_SEED: snprintf(t, sizeof(t), "%lld", (long long)s->seed); break;
	case ENG_KEY_MAX_TOKENS: snprintf(t, sizeof(t), "%d", s->max_tokens); break;
	case ENG_KEY_MODE:
		snprintf(t, sizeof(t), "%s", s->mode == ENG_MODE_RAW ? "raw" : s->mode == ENG_MODE_JSON ? "json" : "chat");
		break;
	case ENG_KEY_PRESENCE_PENALTY: snprintf(t, sizeof(t), "%g", s->presence_penalty); break;
	case ENG_KEY_FREQUENCY_PENALTY: snprintf(t, sizeof(t), "%g", s->frequency_penalty); break;
	case ENG_KEY_TYPICAL_P: snprintf(t, sizeof(t), "%g", s->typical_p); break;
	case ENG_KEY_DRY_MULTIPLIER: snprintf(t, sizeof(t), "%g", s->dry_multiplier); break;
	case ENG_KEY_DRY_BASE: snprintf(t, sizeof(t), "%g", s->dry_base); break;
	case ENG_KEY_DRY_ALLOWED_LENGTH: snprintf(t, sizeof(t), "%d", s->dry_allowed_length); break;
	case ENG_KEY_DRY_PENALTY_LAST_N: snprintf(t, sizeof(t), "%d", s->dry_penalty_last_n); break;
	case ENG_KEY_XTC_PROBABILITY: snprintf(t, sizeof(t), "%g", s->xtc_probability); break;
	case ENG_KEY_XTC_THRESHOLD: snprintf(t, sizeof(t), "%g", s->xtc_threshold); break;
	case ENG_KEY_LOGPROBS: snprintf(t, sizeof(t), "%d", s->logprobs); break;
	default: return -ENOENT;
	}
	return put(buf, n, t, strlen(t));
}
