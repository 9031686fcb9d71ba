/*
 * history_json.c — reads the engine's JSON history (eng_session_history,
 * [{"role":"user","content":…},{"role":"assistant","content":…},…]) back
 * into (user, reply) pairs for the journal.  A small JSON reader: strings
 * with every escape (\uXXXX and surrogate pairs to UTF-8), scalars skipped,
 * roles other than user/assistant ignored.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs_internal.h"


static void skip_ws(const char **p, const char *e)
{
	while (*p < e && (**p == ' ' || **p == '\n' || **p == '\t' || **p == '\r'))
		(*p)++;
}

static void put_utf8(struct fs_buf *b, uint32_t c)
{
	char u[4];
	size_t n;

	if (c < 0x80) { u[0] = (char)c; n = 1; }
	else if (c < 0x800) { u[0] = (char)(0xC0 | c >> 6); u[1] = (char)(0x80 | (c & 63)); n = 2; }
	else if (c < 0x10000) { u[0] = (char)(0xE0 | c >> 12); u[1] = (char)(0x80 | (c >> 6 & 63)); u[2] = (char)(0x80 | (c & 63)); n = 3; }
	else { u[0] = (char)(0xF0 | c >> 18); u[1] = (char)(0x80 | (c >> 12 & 63)); u[2] = (char)(0x80 | (c >> 6 & 63)); u[3] = (char)(0x80 | (c & 63)); n = 4; }
	fs_buf_add(b, u, n);
}

static int hex4(const char *p, const char *e, uint32_t *out)
{
	uint32_t v = 0;

	if (e - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v = v * 16 + (uint32_t)(c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
					: c >= 'A' && c <= 'F' ? c - 'A' + 10 : 99);
		if (v > 0xFFFF)
			return -1;
	}
	*out = v;
	return 0;
}

/* A JSON string at *p (at the opening quote) into b. */
static int json_string(const char **p, const char *e, struct fs_buf *b)
{
	const char *s = *p;

	if (s >= e || *s++ != '"')
		return -1;
	while (s < e && *s != '"') {
		if (*s != '\\') {
			fs_buf_add(b, s++, 1);
			continue;
		}
		if (++s >= e)
			return -1;
		char c = *s++;
		uint32_t cp, lo;
		switch (c) {
		case 'n': fs_buf_add(b, "\n", 1); break;
		case 't': fs_buf_add(b, "\t", 1); break;
		case 'r': fs_buf_add(b, "\r", 1); break;
		case 'b': fs_buf_add(b, "\b", 1); break;
		case 'f': fs_buf_add(b, "\f", 1); break;
		case 'u':
			if (hex4(s, e, &cp) < 0)
				return -1;
			s += 4;
			if (cp >= 0xD800 && cp < 0xDC00 && e - s >= 6 && s[0] == '\\' && s[1] == 'u' &&
			    hex4(s + 2, e, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				s += 6;
			}
			put_utf8(b, cp);
			break;
		default: fs_buf_add(b, &c, 1);
		}
	}
	if (s >= e)
		return -1;
	*p = s + 1;
	return b->oom ? -1 : 0;
}

/* Skips a JSON scalar (number, true, false, null). */
static void json_skip_scalar(const char **p, const char *e)
{
	while (*p < e && **p != ',' && **p != '}' && **p != ']')
		(*p)++;
}

/* One {"role":…,"content":…} object; role: 1 user, 2 assistant, 0 other. */
static int json_message(const char **p, const char *e, int *role, struct fs_buf *content)
{
	skip_ws(p, e);
	if (*p >= e || *(*p)++ != '{')
		return -1;
	*role = 0;
	for (;;) {
		struct fs_buf key = {0}, val = {0};
		skip_ws(p, e);
		if (*p < e && **p == '}') {
			(*p)++;
			return 0;
		}
		if (json_string(p, e, &key) < 0)
			goto out_bad;
		skip_ws(p, e);
		if (*p >= e || *(*p)++ != ':')
			goto out_bad;
		skip_ws(p, e);
		if (*p < e && **p == '"') {
			if (json_string(p, e, &val) < 0)
				goto out_bad;
		} else {
			json_skip_scalar(p, e);
		}
		if (key.len == 4 && !memcmp(key.p, "role", 4))
			*role = val.len == 4 && !memcmp(val.p, "user", 4) ? 1
			      : val.len == 9 && !memcmp(val.p, "assistant", 9) ? 2 : 0;
		else if (key.len == 7 && !memcmp(key.p, "content", 7)) {
			free(content->p);
			*content = val;
			val.p = NULL;
		}
		free(key.p);
		free(val.p);
		skip_ws(p, e);
		if (*p < e && **p == ',')
			(*p)++;
		continue;
out_bad:
		free(key.p);
		free(val.p);
		return -1;
	}
}

void fs_turn_texts_free(struct fs_turn_text *pr, int n)
{
	for (int i = 0; i < n; i++) {
		free(pr[i].user);
		free(pr[i].reply);
	}
	free(pr);
}

/* Complete (user, assistant) pairs of the history, in order. */
int fs_history_turns(const char *js, size_t len, struct fs_turn_text **out)
{
	const char *p = js, *e = js + len;
	struct fs_turn_text *pr = NULL;
	int n = 0, cap = 0;
	bool open_user = false;

	*out = NULL;
	skip_ws(&p, e);
	if (p >= e || *p++ != '[')
		return -EINVAL;
	for (;;) {
		struct fs_buf content = {0};
		int role;

		skip_ws(&p, e);
		if (p < e && *p == ']')
			break;
		if (json_message(&p, e, &role, &content) < 0) {
			free(content.p);
			fs_turn_texts_free(pr, n);
			LOG_ERR("cannot parse the engine's JSON history near byte %zu", (size_t)(p - js));
			return -EINVAL;
		}
		if (role == 1) {
			if (n == cap) {
				cap = cap ? 2 * cap : 8;
				struct fs_turn_text *q = realloc(pr, (size_t)cap * sizeof(*q));
				if (!q) {
					free(content.p);
					fs_turn_texts_free(pr, n);
					return -ENOMEM;
				}
				pr = q;
			}
			pr[n++] = (struct fs_turn_text){content.p, NULL, content.len, 0};
			open_user = true;
		} else if (role == 2 && open_user) {
			pr[n - 1].reply = content.p;
			pr[n - 1].rlen = content.len;
			open_user = false;
		} else {
			free(content.p);
		}
		skip_ws(&p, e);
		if (p < e && *p == ',')
			p++;
	}
	if (n && !pr[n - 1].reply) { /* a user turn without its reply is not finished */
		free(pr[n - 1].user);
		n--;
	}
	*out = pr;
	return n;
}

