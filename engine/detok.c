/*
 * detok.c — the streaming detokeniser: token pieces in, valid UTF-8 out.
 *
 * A character split across tokens (Qwen writes many emoji as two or three
 * byte tokens) is held back until its last byte arrives; bytes that can
 * never form a character become U+FFFD, one per maximal invalid subpart
 * (the Unicode / WHATWG "replacement of maximal subparts" practice, which
 * is also what Python's bytes.decode(errors="replace") does).  So every
 * chunk written is valid UTF-8 on its own, and the concatenation of all
 * chunks equals decoding the whole byte stream at once.
 */
#include <string.h>

#include "tokenizer.h"
#include "unicode.h"

static const char k_fffd[3] = {'\xef', '\xbf', '\xbd'};

/* Decodes s[0..n) into out; a trailing incomplete character goes to the
 * pending buffer.  Returns bytes written. */
static size_t decode_run(struct eng_detok *d, const unsigned char *s, size_t n, char *out)
{
	size_t w = 0, i = 0;

	while (i < n) {
		size_t bad;
		int r = eng_uni_valid_char(s + i, n - i, &bad);
		if (r > 0) {
			memcpy(out + w, s + i, (size_t)r);
			w += (size_t)r;
			i += (size_t)r;
		} else if (r == 0) {
			memcpy(d->pending, s + i, n - i); /* at most 3 bytes */
			d->n_pending = (int)(n - i);
			break;
		} else {
			memcpy(out + w, k_fffd, 3);
			w += 3;
			i += bad;
		}
	}
	return w;
}

size_t eng_detok_push(struct eng_detok *d, const char *piece, size_t n, char *out)
{
	const unsigned char *p = (const unsigned char *)piece;
	size_t w = 0, used = 0;

	if (d->n_pending > 0) {
		/* complete (or reject) the held-back character with the first
		 * bytes of this piece */
		unsigned char tmp[8];
		size_t k = (size_t)d->n_pending, take = n < 4 ? n : 4, bad;
		memcpy(tmp, d->pending, k);
		memcpy(tmp + k, p, take);
		int r = eng_uni_valid_char(tmp, k + take, &bad);
		if (r == 0) { /* still incomplete: the whole piece was taken */
			memcpy(d->pending, tmp, k + take);
			d->n_pending = (int)(k + take);
			return 0;
		}
		d->n_pending = 0;
		if (r > 0) {
			memcpy(out, tmp, (size_t)r);
			w = (size_t)r;
			used = (size_t)r - k;
		} else {
			/* the held bytes were a valid prefix, so the invalid
			 * subpart ends inside this piece (bad >= k) */
			memcpy(out, k_fffd, 3);
			w = 3;
			used = bad - k;
		}
	}
	return w + decode_run(d, p + used, n - used, out + w);
}

size_t eng_detok_flush(struct eng_detok *d, char *out)
{
	if (d->n_pending == 0)
		return 0;
	d->n_pending = 0;
	memcpy(out, k_fffd, 3);
	return 3;
}
