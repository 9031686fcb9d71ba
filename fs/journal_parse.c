/*
 * journal_parse.c — the journal's on-disk format: record encoding and a
 * strict parser that treats every byte as untrusted (fs/journal.c owns the
 * files; tests/fuzz_journal.c drives this file alone).
 *
 * Format 2 (written):
 *     promptfs-journal 2\n                           first line
 *     <type> <a> <b> <crc>\n<a + b payload bytes>\n   each record
 * type N (a = name, b = 0), S (a = key, b = value), U (a = key, b = 0: the
 * override is removed), T (a = user text, b = reply: one finished turn), R
 * (a = b = 0: reset, the turns before are dropped), O (a = "UID GID MODE",
 * decimal, b = 0: the session's owner and permission bits; none = the
 * mount's owner, 0666 & ~umask).  a and b are decimal
 * without sign or leading zeros, at most 12 digits; crc is the CRC-32
 * (IEEE, zlib's) of the header line up to and including the space before
 * it, then of the payload, as 8 lower-case hex digits.
 *
 * Parsing: a record that fails any check (type, numbers, length against the
 * bytes left, the closing newline, the checksum) is damaged.  It is skipped
 * with a log line naming the file and the offset, and parsing resumes at
 * the next line start where an intact record begins, so one damaged byte
 * costs at most the record it is in — the first line included.
 *
 * Format 1 (read for old state dirs): the same records without the numbers
 * that a type does not use and without a checksum ("N 5\nname\n", "R\n");
 * with nothing to tell damage from data, parsing stops at the first damaged
 * record.  The daemon rewrites such a file in format 2 after loading it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_internal.h"

#define NUM_DIGITS_MAX 12

// ---- CRC-32 (IEEE 802.3, reflected, as zlib's crc32())

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

uint32_t fs_crc32(uint32_t crc, const void *p, size_t n)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	const unsigned char *b = p;

	pthread_once(&once, crc_init);
	crc = ~crc;
	while (n--)
		crc = crc_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

// ---- encoding

void fs_journal_record(struct fs_buf *b, char type, const void *a, size_t alen, const void *c,
		       size_t clen)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "%c %zu %zu ", type, alen, clen);
	uint32_t crc = fs_crc32(0, line, (size_t)n);

	crc = fs_crc32(crc, a, alen);
	crc = fs_crc32(crc, c, clen);
	n += snprintf(line + n, sizeof(line) - (size_t)n, "%08x\n", crc);
	fs_buf_add(b, line, (size_t)n);
	fs_buf_add(b, a, alen);
	fs_buf_add(b, c, clen);
	fs_buf_add(b, "\n", 1);
}

// ---- parsing

/* A decimal number at *p, strictly: digits only, no sign, no leading zero,
 * at most NUM_DIGITS_MAX digits.  Advances *p; false if none. */
static bool get_num(const char **p, const char *e, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;
	int n = 0;

	while (s < e && *s >= '0' && *s <= '9' && n <= NUM_DIGITS_MAX) {
		x = x * 10 + (uint64_t)(*s - '0');
		s++;
		n++;
	}
	if (n == 0 || n > NUM_DIGITS_MAX || (n > 1 && **p == '0'))
		return false;
	*p = s;
	*v = x;
	return true;
}

static bool get_char(const char **p, const char *e, char c)
{
	if (*p >= e || **p != c)
		return false;
	(*p)++;
	return true;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* One record at p in the given format: its bounds, or false if damaged. */
struct rec {
	char type;
	const char *a, *c; /* payload parts */
	uint64_t alen, clen;
	const char *end;   /* after the record */
};

static bool parse_header(const char *p, const char *e, int version, struct rec *r)
{
	const char *s = p;
	uint64_t a = 0, c = 0;
	char t;

	if (s >= e)
		return false;
	t = *s++;
	if (!strchr(version == 2 ? "NSUTRO" : "NSUTR", t) || t == 0)
		return false;
	if (version == 2) {
		if (!get_char(&s, e, ' ') || !get_num(&s, e, &a) || !get_char(&s, e, ' ') ||
		    !get_num(&s, e, &c) || !get_char(&s, e, ' '))
			return false;
		const char *crc_at = s;
		uint32_t want = 0;
		for (int i = 0; i < 8; i++) {
			int h = s < e ? hexval(*s) : -1;
			if (h < 0)
				return false;
			want = want << 4 | (uint32_t)h;
			s++;
		}
		if (!get_char(&s, e, '\n'))
			return false;
		if ((t == 'R' && (a || c)) || ((t == 'N' || t == 'U' || t == 'O') && c))
			return false;
		if ((uint64_t)(e - s) < a || (uint64_t)(e - s) - a < c ||
		    (uint64_t)(e - s) - a - c < 1 || s[a + c] != '\n')
			return false;
		uint32_t crc = fs_crc32(0, p, (size_t)(crc_at - p));
		if (fs_crc32(crc, s, (size_t)(a + c)) != want)
			return false;
	} else {
		int nums = t == 'R' ? 0 : t == 'S' || t == 'T' ? 2 : 1;
		if (nums >= 1 && (!get_char(&s, e, ' ') || !get_num(&s, e, &a)))
			return false;
		if (nums == 2 && (!get_char(&s, e, ' ') || !get_num(&s, e, &c)))
			return false;
		if (!get_char(&s, e, '\n'))
			return false;
		if (t != 'R' && ((uint64_t)(e - s) < a || (uint64_t)(e - s) - a < c ||
				 (uint64_t)(e - s) - a - c < 1 || s[a + c] != '\n'))
			return false;
	}
	r->type = t;
	r->a = s;
	r->alen = a;
	r->c = s + a;
	r->clen = c;
	r->end = version == 1 && t == 'R' ? s : s + a + c + 1;
	return true;
}

static char *dup_bytes(const char *p, size_t n)
{
	char *s = malloc(n + 1);

	if (s) {
		memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

static int set_setting(struct fs_jstate *st, const struct rec *r)
{
	int i;

	if (r->alen == 0 || r->alen >= sizeof(st->set[0].key) || memchr(r->a, 0, r->alen))
		return -EINVAL;
	for (i = 0; i < st->n_set; i++)
		if (strlen(st->set[i].key) == r->alen && !memcmp(st->set[i].key, r->a, r->alen))
			break;
	if (i == st->n_set) {
		if (st->n_set == FS_JOURNAL_MAX_SET)
			return -EINVAL;
		memcpy(st->set[i].key, r->a, r->alen);
		st->set[i].key[r->alen] = 0;
		st->n_set++;
	}
	free(st->set[i].val);
	st->set[i].val = NULL;
	st->set[i].vlen = 0;
	if (r->type == 'S') {
		if (!(st->set[i].val = dup_bytes(r->c, r->clen)))
			return -ENOMEM;
		st->set[i].vlen = r->clen;
	}
	return 0;
}

static void drop_turns(struct fs_jstate *st)
{
	eng_turn_texts_free(st->turns, st->n_turns);
	st->turns = NULL;
	st->n_turns = st->cap_turns = 0;
}

static int add_turn(struct fs_jstate *st, const struct rec *r)
{
	struct eng_turn_text t;

	if (r->alen == 0)
		return -EINVAL; /* a turn always has user text */
	if (st->n_turns == st->cap_turns) {
		int cap = st->cap_turns ? 2 * st->cap_turns : 8;
		struct eng_turn_text *v = realloc(st->turns, (size_t)cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		st->turns = v;
		st->cap_turns = cap;
	}
	t.user = dup_bytes(r->a, r->alen);
	t.reply = dup_bytes(r->c, r->clen);
	t.ulen = r->alen;
	t.rlen = r->clen;
	if (!t.user || !t.reply) {
		free(t.user);
		free(t.reply);
		return -ENOMEM;
	}
	st->turns[st->n_turns++] = t;
	return 0;
}

/* "UID GID MODE" (decimal each, MODE at most 0666). */
static int set_owner(struct fs_jstate *st, const struct rec *r)
{
	const char *p = r->a, *e = r->a + r->alen;
	uint64_t u, g, m;

	if (!get_num(&p, e, &u) || !get_char(&p, e, ' ') || !get_num(&p, e, &g) ||
	    !get_char(&p, e, ' ') || !get_num(&p, e, &m) || p != e || u > UINT32_MAX - 1 ||
	    g > UINT32_MAX - 1 || (m & ~(uint64_t)0666))
		return -EINVAL;
	st->has_owner = true;
	st->uid = (uint32_t)u;
	st->gid = (uint32_t)g;
	st->mode = (uint32_t)m;
	return 0;
}

/* Applies an intact record: 0, -EINVAL (well-formed but meaningless: counted
 * as damaged), -ENOMEM. */
static int apply(struct fs_jstate *st, const struct rec *r)
{
	switch (r->type) {
	case 'N':
		if (r->alen == 0 || r->alen > FS_NAME_MAX || memchr(r->a, 0, r->alen))
			return -EINVAL;
		free(st->name);
		st->name = dup_bytes(r->a, r->alen);
		return st->name ? 0 : -ENOMEM;
	case 'S':
	case 'U':
		return set_setting(st, r);
	case 'T':
		return add_turn(st, r);
	case 'R':
		drop_turns(st);
		return 0;
	case 'O':
		return set_owner(st, r);
	}
	return -EINVAL;
}

/* The next line start after p where an intact record begins, or NULL. */
static const char *resync(const char *p, const char *e, int version, struct rec *r)
{
	while (p < e) {
		const char *nl = memchr(p, '\n', (size_t)(e - p));
		if (!nl)
			return NULL;
		p = nl + 1;
		if (parse_header(p, e, version, r))
			return p;
	}
	return NULL;
}

int fs_journal_parse(const char *what, const char *buf, size_t len, struct fs_jstate *st)
{
	const char *p = buf, *e = buf + len;
	struct rec r;
	int rc = 0;

	memset(st, 0, sizeof(*st));
	st->version = 2;
	if (len >= 19 && !memcmp(buf, "promptfs-journal 2\n", 19)) {
		p += 19;
	} else if (len >= 19 && !memcmp(buf, "promptfs-journal 1\n", 19)) {
		p += 19;
		st->version = 1;
	} else {
		LOG_WARN("%s: damaged first line (not 'promptfs-journal 2'); looking for intact records", what);
		st->n_damaged++;
		p = parse_header(p, e, 2, &r) ? p : resync(p, e, 2, &r);
		if (!p)
			return -EINVAL;
	}
	while (p && p < e) {
		if (!parse_header(p, e, st->version, &r) || (rc = apply(st, &r)) == -EINVAL) {
			size_t at = (size_t)(p - buf);
			st->n_damaged++;
			if (st->version == 1) {
				LOG_WARN("%s: damaged record at byte %zu (format 1 has no checksums: the %zu bytes from there are ignored)",
					 what, at, (size_t)(e - p));
				break;
			}
			p = resync(p, e, 2, &r);
			LOG_WARN("%s: damaged record at byte %zu; skipped %zu bytes", what, at,
				 (size_t)((p ? p : e) - (buf + at)));
			rc = 0;
			continue;
		}
		if (rc < 0)
			return rc; /* -ENOMEM: the caller frees st */
		st->n_records++;
		p = r.end;
	}
	return st->n_records ? 0 : -EINVAL;
}

void fs_jstate_free(struct fs_jstate *st)
{
	free(st->name);
	for (int i = 0; i < st->n_set; i++)
		free(st->set[i].val);
	drop_turns(st);
	memset(st, 0, sizeof(*st));
}

// ---- a byte buffer for records

void fs_buf_add(struct fs_buf *b, const void *s, size_t n)
{
	if (b->oom || n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}
