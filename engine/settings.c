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
 *   mode         chat | raw                       system      UTF-8 text ("" = none)
 *   stop         strings separated by "|", escapes \n \t \r \\ \| ("" = none)
 */
#include "engine_internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"

const char *const eng_settings_keys[] = {
	"temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n",
	"seed", "max_tokens", "mode", "system", "stop", NULL,
};

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
	s->mode = (!m || m->tmpl.family != ENG_TMPL_NONE) ? ENG_MODE_CHAT : ENG_MODE_RAW;
}

void eng_settings_free(struct eng_settings *s)
{
	if (!s)
		return;
	free(s->system);
	s->system = NULL;
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
	t.n_stop = 0;
	memset(t.stop, 0, sizeof(t.stop));
	if (src->system && !(t.system = strdup(src->system)))
		goto fail;
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

int eng_settings_set(struct eng_settings *s, const char *key, const char *val, size_t len)
{
	long long iv;
	float fv;
	int rc;

	if (!strcmp(key, "system"))
		return set_system(s, val, len);
	if (!strcmp(key, "stop"))
		return parse_stop(val, len, s);
	if (!strcmp(key, "temperature")) {
		if ((rc = parse_float(key, val, len, 0, 1e6, false, &fv)) == 0)
			s->temperature = fv;
	} else if (!strcmp(key, "top_p")) {
		if ((rc = parse_float(key, val, len, 0, 1, true, &fv)) == 0)
			s->top_p = fv;
	} else if (!strcmp(key, "min_p")) {
		if ((rc = parse_float(key, val, len, 0, 1, false, &fv)) == 0)
			s->min_p = fv;
	} else if (!strcmp(key, "repeat_penalty")) {
		if ((rc = parse_float(key, val, len, 0, 1e6, true, &fv)) == 0)
			s->repeat_penalty = fv;
	} else if (!strcmp(key, "top_k")) {
		if ((rc = parse_int(key, val, len, 0, INT32_MAX, &iv)) == 0)
			s->top_k = (int)iv;
	} else if (!strcmp(key, "repeat_last_n")) {
		if ((rc = parse_int(key, val, len, 0, MAX_REPEAT_LAST_N, &iv)) == 0)
			s->repeat_last_n = (int)iv;
	} else if (!strcmp(key, "seed")) {
		if ((rc = parse_int(key, val, len, -1, INT64_MAX, &iv)) == 0)
			s->seed = iv;
	} else if (!strcmp(key, "max_tokens")) {
		if ((rc = parse_int(key, val, len, 0, INT32_MAX, &iv)) == 0)
			s->max_tokens = (int)iv;
	} else if (!strcmp(key, "mode")) {
		char buf[16];

		rc = trimmed(val, len, buf, sizeof(buf));
		if (rc == 0 && !strcmp(buf, "chat"))
			s->mode = ENG_MODE_CHAT;
		else if (rc == 0 && !strcmp(buf, "raw"))
			s->mode = ENG_MODE_RAW;
		else {
			LOG_ERR("mode: bad value '%.*s' (chat or raw)", (int)(len > 60 ? 60 : len), val);
			rc = -EINVAL;
		}
	} else {
		return -ENOENT;
	}
	return rc;
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

int eng_settings_get(const struct eng_settings *s, const char *key, char *buf, size_t n)
{
	char t[64];

	if (!strcmp(key, "system"))
		return s->system ? put(buf, n, s->system, strlen(s->system)) : put(buf, n, "", 0);
	if (!strcmp(key, "stop"))
		return format_stop(s, buf, n);
	if (!strcmp(key, "temperature"))
		snprintf(t, sizeof(t), "%g", s->temperature);
	else if (!strcmp(key, "top_k"))
		snprintf(t, sizeof(t), "%d", s->top_k);
	else if (!strcmp(key, "top_p"))
		snprintf(t, sizeof(t), "%g", s->top_p);
	else if (!strcmp(key, "min_p"))
		snprintf(t, sizeof(t), "%g", s->min_p);
	else if (!strcmp(key, "repeat_penalty"))
		snprintf(t, sizeof(t), "%g", s->repeat_penalty);
	else if (!strcmp(key, "repeat_last_n"))
		snprintf(t, sizeof(t), "%d", s->repeat_last_n);
	else if (!strcmp(key, "seed"))
		snprintf(t, sizeof(t), "%lld", (long long)s->seed);
	else if (!strcmp(key, "max_tokens"))
		snprintf(t, sizeof(t), "%d", s->max_tokens);
	else if (!strcmp(key, "mode"))
		snprintf(t, sizeof(t), "%s", s->mode == ENG_MODE_RAW ? "raw" : "chat");
	else
		return -ENOENT;
	return put(buf, n, t, strlen(t));
}
