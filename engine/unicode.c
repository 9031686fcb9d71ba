/*
 * unicode.c — code point classes, UTF-8 decode/encode and the GPT-2 byte
 * mapping for the tokenizer (see unicode.h).  The class table itself is
 * generated into unicode_data.c by engine/gen_unicode.py.
 */
#include "unicode.h"

// ---- code point classes

unsigned eng_uni_flags(uint32_t cpt)
{
	if (cpt < 256)
		return eng_uni_latin1[cpt];
	if (cpt >= ENG_UNI_MAX_CPT)
		return ENG_UNI_UNDEFINED;
	/* binary search for the last range starting at or before cpt */
	size_t lo = 0, hi = eng_uni_n_ranges;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (eng_uni_ranges[mid].start <= cpt)
			lo = mid;
		else
			hi = mid;
	}
	return eng_uni_ranges[lo].flags;
}

// ---- UTF-8

static inline bool is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

uint32_t eng_uni_decode(const char *str, size_t n, size_t *pos)
{
	const unsigned char *s = (const unsigned char *)str + *pos;
	size_t left = n - *pos;
	uint32_t c0 = s[0];
	uint32_t cpt;

	if (!(c0 & 0x80)) {
		*pos += 1;
		return c0;
	}
	if (!(c0 & 0x40))
		goto invalid;
	if (!(c0 & 0x20)) {
		if (left < 2 || !is_cont(s[1]))
			goto invalid;
		*pos += 2;
		return ((c0 & 0x1F) << 6) | (s[1] & 0x3F);
	}
	if (!(c0 & 0x10)) {
		if (left < 3 || !is_cont(s[1]) || !is_cont(s[2]))
			goto invalid;
		*pos += 3;
		return ((c0 & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
	}
	if (!(c0 & 0x08)) {
		if (left < 4 || !is_cont(s[1]) || !is_cont(s[2]) || !is_cont(s[3]))
			goto invalid;
		cpt = ((c0 & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
		      ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
		/* llama.cpp aborts on these (its encoder throws); we treat the
		 * lead byte as invalid instead */
		if (cpt >= ENG_UNI_MAX_CPT)
			goto invalid;
		*pos += 4;
		return cpt;
	}
invalid:
	*pos += 1;
	return ENG_UNI_REPLACEMENT;
}

size_t eng_uni_encode(uint32_t cpt, char out[4])
{
	if (cpt < 0x80) {
		out[0] = (char)cpt;
		return 1;
	}
	if (cpt < 0x800) {
		out[0] = (char)(0xC0 | (cpt >> 6));
		out[1] = (char)(0x80 | (cpt & 0x3F));
		return 2;
	}
	if (cpt < 0x10000) {
		out[0] = (char)(0xE0 | (cpt >> 12));
		out[1] = (char)(0x80 | ((cpt >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cpt & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | ((cpt >> 18) & 0x07));
	out[1] = (char)(0x80 | ((cpt >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cpt >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cpt & 0x3F));
	return 4;
}

int eng_uni_valid_char(const unsigned char *s, size_t n, size_t *bad)
{
	unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the 2nd byte */
	size_t need;
	unsigned char c = s[0];

	*bad = 1;
	if (c < 0x80)
		return 1;
	if (c < 0xC2 || c > 0xF4)
		return -1;
	if (c < 0xE0) {
		need = 2;
	} else if (c < 0xF0) {
		need = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F; /* no surrogates */
	} else {
		need = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F; /* nothing beyond U+10FFFF */
	}
	for (size_t i = 1; i < need; i++) {
		if (i >= n)
			return 0; /* incomplete, so far valid */
		unsigned char ok_lo = i == 1 ? lo : 0x80, ok_hi = i == 1 ? hi : 0xBF;
		if (s[i] < ok_lo || s[i] > ok_hi) {
			*bad = i;
			return -1;
		}
	}
	return (int)need;
}

// ---- GPT-2 byte-level mapping

/* Printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map to themselves; the
 * other 68 map, in byte order, to U+0100..U+0143. */
uint32_t eng_uni_byte_to_cpt(uint8_t b)
{
	if (b <= 0x20)
		return 256u + b;
	if (b >= 0x7F && b <= 0xA0)
		return 256u + 33 + (b - 0x7Fu);
	if (b == 0xAD)
		return 256u + 67;
	return b;
}

int eng_uni_cpt_to_byte(uint32_t c)
{
	if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))
		return (int)c;
	if (c >= 256 && c <= 256 + 32)
		return (int)(c - 256);
	if (c >= 256 + 33 && c <= 256 + 66)
		return (int)(0x7F + (c - 256 - 33));
	if (c == 256 + 67)
		return 0xAD;
	return -1;
}
