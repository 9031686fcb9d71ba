/*
 * template.c — chat template families: detection from the Jinja text of
 * tokenizer.chat_template and a C renderer per family (template.h).
 *
 * The renderers follow the reference templates (Hugging Face
 * tokenizer_config.json / the GGUF's own text) exactly, including their
 * whitespace trimming: Python's str.strip() for Llama 2 ("content.strip()"),
 * Jinja's `trim` for Llama 3 and Gemma.  tests/test_template.py checks each
 * family against jinja2 running the real template.
 *
 * Families and their turn shapes (S = special token, text in quotes):
 *   chatml   S<|im_start|> "system\n" sys S<|im_end|> "\n" … "user\n" u … "assistant\n"
 *   llama3   S<bos> S<|start_header_id|> "user" S<|end_header_id|> "\n\n" trim(u) S<|eot_id|> …
 *   llama2   S<s> "[INST] " strip("<<SYS>>\n" sys "\n<</SYS>>\n\n" u) " [/INST]"  reply " " S</s>
 *   mistral  S<s> "[INST] " u " [/INST]"  reply S</s>
 *   gemma    S<bos> S<start_of_turn> "user\n" [sys "\n\n"] trim(u) S<end_of_turn> "\n" … "model\n"
 *   phi3     [S<s>] [S<|system|> "\n" sys S<|end|> "\n"] S<|user|> "\n" u S<|end|> "\n" S<|assistant|> "\n"
 *   zephyr   S<|system|> "\n" sys S</s> "\n" S<|user|> "\n" u S</s> "\n" S<|assistant|> "\n"
 */
#include "template.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"

static const char *const family_names[ENG_TMPL_COUNT] = {
	[ENG_TMPL_NONE] = "none",       [ENG_TMPL_CHATML] = "chatml",
	[ENG_TMPL_LLAMA3] = "llama3",   [ENG_TMPL_LLAMA2] = "llama2",
	[ENG_TMPL_MISTRAL] = "mistral", [ENG_TMPL_GEMMA] = "gemma",
	[ENG_TMPL_PHI3] = "phi3",       [ENG_TMPL_ZEPHYR] = "zephyr",
};

const char *eng_template_family_name(enum eng_tmpl_family f)
{
	if ((int)f < 0 || f >= ENG_TMPL_COUNT)
		return "unknown";
	return family_names[f];
}

// ---- detection

/* The default system prompt of a ChatML template: the first literal
 * "<|im_start|>system\n…<|im_end|>" whose body is plain text (not an
 * expression such as "' + messages[0]['content'] + '").  The newline may be
 * a real one or the two characters \n inside a Jinja string literal. */
static char *chatml_default_system(const char *j)
{
	const char *mark = "<|im_start|>system";
	const char *p = j;

	while ((p = strstr(p, mark)) != NULL) {
		const char *b = p + strlen(mark), *e;
		char *out, *o;

		p = b;
		if (*b == '\n')
			b += 1;
		else if (b[0] == '\\' && b[1] == 'n')
			b += 2;
		else
			continue;
		e = strstr(b, "<|im_end|>");
		if (!e || e == b)
			continue;
		if (memchr(b, '\'', (size_t)(e - b)) || memchr(b, '"', (size_t)(e - b)) ||
		    memchr(b, '{', (size_t)(e - b)) || memchr(b, '}', (size_t)(e - b)))
			continue;
		out = malloc((size_t)(e - b) + 1);
		if (!out)
			return NULL;
		for (o = out; b < e; b++) {
			if (b[0] == '\\' && b + 1 < e && b[1] == 'n') {
				*o++ = '\n';
				b++;
			} else {
				*o++ = *b;
			}
		}
		*o = 0;
		return out;
	}
	return NULL;
}

static enum eng_tmpl_family detect_family(const char *j)
{
	if (!j || !*j)
		return ENG_TMPL_NONE;
	if (strstr(j, "<|im_start|>"))
		return ENG_TMPL_CHATML;
	if (strstr(j, "<|start_header_id|>"))
		return ENG_TMPL_LLAMA3;
	if (strstr(j, "<start_of_turn>"))
		return ENG_TMPL_GEMMA;
	if (strstr(j, "[INST]"))
		return strstr(j, "<<SYS>>") ? ENG_TMPL_LLAMA2 : ENG_TMPL_MISTRAL;
	if (strstr(j, "<|user|>") && strstr(j, "<|end|>"))
		return ENG_TMPL_PHI3;
	if (strstr(j, "<|user|>") && strstr(j, "eos_token"))
		return ENG_TMPL_ZEPHYR;
	return ENG_TMPL_NONE;
}

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

int eng_template_init(const char *jinja, const char *bos, const char *eos, struct eng_template *out)
{
	struct eng_template t = { 0 };

	t.family = detect_family(jinja);
	t.bos = dup_or_empty(bos);
	t.eos = dup_or_empty(eos);
	if (!t.bos || !t.eos)
		goto fail_alloc;
	switch (t.family) {
	case ENG_TMPL_CHATML:
		t.default_system = chatml_default_system(jinja);
		break;
	case ENG_TMPL_LLAMA2:
	case ENG_TMPL_MISTRAL:
	case ENG_TMPL_LLAMA3:
	case ENG_TMPL_GEMMA:
		t.bos_first = true;
		break;
	case ENG_TMPL_PHI3:
		t.bos_first = strstr(jinja, "bos_token") != NULL;
		break;
	default:
		break;
	}
	switch (t.family) {
	case ENG_TMPL_MISTRAL:
		t.eos_space = strstr(jinja, "eos_token + ' '") != NULL;
		break;
	default:
		break;
	}
	switch (t.family) {
	case ENG_TMPL_LLAMA2:
	case ENG_TMPL_MISTRAL:
	case ENG_TMPL_GEMMA:
		t.system_mode = ENG_TMPL_SYSTEM_PREFIX;
		break;
	case ENG_TMPL_PHI3:
		t.system_mode = strstr(jinja, "<|system|>") ? ENG_TMPL_SYSTEM_BLOCK : ENG_TMPL_SYSTEM_DROP;
		break;
	default:
		t.system_mode = ENG_TMPL_SYSTEM_BLOCK;
		break;
	}
	*out = t;
	return 0;

fail_alloc:
	eng_template_free(&t);
	return -ENOMEM;
}

void eng_template_free(struct eng_template *t)
{
	if (!t)
		return;
	free(t->default_system);
	free(t->bos);
	free(t->eos);
	memset(t, 0, sizeof(*t));
}

// ---- segments and trimming

#define MAX_SEGS 16

struct segs {
	int n;
	struct {
		enum eng_tmpl_seg kind;
		const char *s;
		size_t n;
	} v[MAX_SEGS];
};

static void seg_add(struct segs *g, enum eng_tmpl_seg kind, const char *s, size_t n)
{
	PF_ASSERT(g->n < MAX_SEGS);
	g->v[g->n].kind = kind;
	g->v[g->n].s = s;
	g->v[g->n].n = n;
	g->n++;
}

static void seg_str(struct segs *g, enum eng_tmpl_seg kind, const char *s)
{
	seg_add(g, kind, s, strlen(s));
}

static int seg_emit(const struct segs *g, eng_tmpl_emit_fn emit, void *arg)
{
	int i, rc;

	for (i = 0; i < g->n; i++) {
		if (!g->v[i].n)
			continue;
		rc = emit(arg, g->v[i].kind, g->v[i].s, g->v[i].n);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Length of the whitespace character starting at s (Python's str.isspace:
 * ASCII \t\n\v\f\r, space, \x1c-\x1f, and the Unicode spaces), 0 if none. */
static size_t ws_at(const unsigned char *s, size_t n)
{
	if (n >= 1 && ((s[0] >= 0x09 && s[0] <= 0x0d) || s[0] == ' ' || (s[0] >= 0x1c && s[0] <= 0x1f)))
		return 1;
	if (n >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
		return 2;
	if (n >= 3 && s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80) /* U+1680 */
		return 3;
	if (n >= 3 && s[0] == 0xe2 && s[1] == 0x80 &&
	    (s[2] <= 0x8a || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf)) /* U+2000-200A, 2028, 2029, 202F */
		return 3;
	if (n >= 3 && s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f) /* U+205F */
		return 3;
	if (n >= 3 && s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80) /* U+3000 */
		return 3;
	return 0;
}

/* Length of the whitespace character ending at s[n-1], 0 if none. */
static size_t ws_before(const unsigned char *s, size_t n)
{
	size_t k;

	for (k = 1; k <= 3 && k <= n; k++) {
		/* the character must start at n-k: not a continuation byte */
		if ((s[n - k] & 0xc0) == 0x80)
			continue;
		return ws_at(s + n - k, k) == k ? k : 0;
	}
	return 0;
}

/* str.strip() over the concatenation of segments a..b-1. */
static void seg_strip(struct segs *g, int a, int b)
{
	int i;

	for (i = a; i < b; i++) {
		size_t w;

		while (g->v[i].n && (w = ws_at((const unsigned char *)g->v[i].s, g->v[i].n)) > 0) {
			g->v[i].s += w;
			g->v[i].n -= w;
		}
		if (g->v[i].n)
			break;
	}
	for (i = b - 1; i >= a; i--) {
		size_t w;

		while (g->v[i].n && (w = ws_before((const unsigned char *)g->v[i].s, g->v[i].n)) > 0)
			g->v[i].n -= w;
		if (g->v[i].n)
			break;
	}
}

static void seg_content(struct segs *g, const char *s, size_t n)
{
	seg_add(g, ENG_TMPL_SEG_CONTENT, s ? s : "", s ? n : 0);
}

/* The user message (trimmed where the family trims), with the system
 * prompt prefixed for PREFIX families (sys may be NULL). */
static void user_body(const struct eng_template *t, struct segs *g, const char *sys, size_t slen,
                      const char *u, size_t ulen)
{
	int a = g->n;

	switch (t->family) {
	case ENG_TMPL_LLAMA2:
		if (sys) {
			seg_str(g, ENG_TMPL_SEG_MARKUP, "<<SYS>>\n");
			seg_content(g, sys, slen);
			seg_str(g, ENG_TMPL_SEG_MARKUP, "\n<</SYS>>\n\n");
		}
		seg_content(g, u, ulen);
		seg_strip(g, a, g->n);
		break;
	case ENG_TMPL_MISTRAL:
	case ENG_TMPL_GEMMA:
		if (sys) {
			seg_content(g, sys, slen);
			seg_str(g, ENG_TMPL_SEG_MARKUP, "\n\n");
		}
		seg_content(g, u, ulen);
		if (t->family == ENG_TMPL_GEMMA)
			seg_strip(g, g->n - 1, g->n); /* only the message is trimmed */
		break;
	case ENG_TMPL_LLAMA3:
		seg_content(g, u, ulen);
		seg_strip(g, a, g->n);
		break;
	default:
		seg_content(g, u, ulen);
		break;
	}
}

// ---- per-family turn pieces

/* "<header for role>" before a message body. */
static void role_open(const struct eng_template *t, struct segs *g, const char *role)
{
	switch (t->family) {
	case ENG_TMPL_CHATML:
		seg_str(g, ENG_TMPL_SEG_SPECIAL, "<|im_start|>");
		seg_str(g, ENG_TMPL_SEG_MARKUP, role);
		seg_str(g, ENG_TMPL_SEG_MARKUP, "\n");
		break;
	case ENG_TMPL_LLAMA3:
		seg_str(g, ENG_TMPL_SEG_SPECIAL, "<|start_header_id|>");
		seg_str(g, ENG_TMPL_SEG_MARKUP, role);
		seg_str(g, ENG_TMPL_SEG_SPECIAL, "<|end_header_id|>");
		seg_str(g, ENG_TMPL_SEG_MARKUP, "\n\n");
		break;
	case ENG_TMPL_GEMMA:
		seg_str(g, ENG_TMPL_SEG_SPECIAL, "<start_of_turn>");
		seg_str(g, ENG_TMPL_SEG_MARKUP, !strcmp(role, "assistant") ? "model" : role);
		seg_str(g, ENG_TMPL_SEG_MARKUP, "\n");
		break;
	case ENG_TMPL_PHI3:
	case ENG_TMPL_ZEPHYR:
		seg_str(g, ENG_TMPL_SEG_SPECIAL, !strcmp(role, "user") ? "<|user|>"
		                                 : !strcmp(role, "system") ? "<|system|>" : "<|assistant|>");
		seg_str(g, ENG_TMPL_SEG_MARKUP, "\n");
		break;
	case ENG_TMPL_LLAMA2: /* bos_token before every [INST] */
		seg_str(g, ENG_TMPL_SEG_SPECIAL, t->bos);
		seg_str(g, ENG_TMPL_SEG_MARKUP, "[INST] ");
		break;
	case ENG_TMPL_MISTRAL: /* bos_token once, at the start */
		seg_str(g, ENG_TMPL_SEG_MARKUP, "[INST] ");
		break;
	default:
		break;
	}
}

/* What ends a user or system message (and, for the families that put it
 * there, opens the assistant's reply). */
static void msg_close(const struct eng_template *t, struct segs *g)
{
	switch (t->family) {
	case ENG_TMPL_CHATML:
		seg_str(g, ENG_TMPL_SEG_SPECIAL, "<|im_end|>");
		seg_str(g, ENG_TMPL_SEG_MARKUP, "\n");
		break;
	case ENG_TMPL_LLAMA3:
		seg_str(g, ENG_TMPL_SEG_SPECIAL, "<|eot_id|>");
		break;
	case ENG_TMPL_GEMMA:
		seg_str(g, ENG_TMPL_SEG_SPECIAL, "<end_of_turn>");
		seg_str(g, ENG_TMPL_SEG_MARKUP, "\n");
		break;
	case ENG_TMPL_PHI3:
		seg_str(g, ENG_TMPL_SEG_SPECIAL, "<|end|>");
		seg_str(g, ENG_TMPL_SEG_MARKUP, "\n");
		break;
	case ENG_TMPL_ZEPHYR:
		seg_str(g, ENG_TMPL_SEG_SPECIAL, t->eos);
		seg_str(g, ENG_TMPL_SEG_MARKUP, "\n");
		break;
	case ENG_TMPL_LLAMA2:
	case ENG_TMPL_MISTRAL:
		seg_str(g, ENG_TMPL_SEG_MARKUP, " [/INST]");
		break;
	default:
		break;
	}
}

/* The assistant header after a user message. */
static void assistant_open(const struct eng_template *t, struct segs *g)
{
	switch (t->family) {
	case ENG_TMPL_LLAMA2:
	case ENG_TMPL_MISTRAL:
		break; /* the reply follows " [/INST]" directly */
	default:
		role_open(t, g, "assistant");
		break;
	}
}

static int user_turn(const struct eng_template *t, struct segs *g, const char *sys, size_t slen,
                     const char *u, size_t ulen, eng_tmpl_emit_fn emit, void *arg)
{
	role_open(t, g, "user");
	user_body(t, g, sys, slen, u, ulen);
	msg_close(t, g);
	assistant_open(t, g);
	return seg_emit(g, emit, arg);
}

// ---- public rendering

int eng_template_first_turn(const struct eng_template *t, const char *system, size_t slen,
                            const char *user, size_t ulen, eng_tmpl_emit_fn emit, void *arg)
{
	struct segs g = { 0 };
	const char *prefix = NULL;
	size_t plen = 0;
	int rc;

	if (!system && t->default_system) {
		system = t->default_system;
		slen = strlen(system);
	}
	if (t->bos_first && t->family != ENG_TMPL_LLAMA2)
		seg_str(&g, ENG_TMPL_SEG_SPECIAL, t->bos);
	if (system) {
		switch (t->system_mode) {
		case ENG_TMPL_SYSTEM_BLOCK:
			role_open(t, &g, "system");
			seg_content(&g, system, slen);
			if (t->family == ENG_TMPL_LLAMA3)
				seg_strip(&g, g.n - 1, g.n);
			msg_close(t, &g);
			break;
		case ENG_TMPL_SYSTEM_PREFIX:
			prefix = system;
			plen = slen;
			break;
		case ENG_TMPL_SYSTEM_DROP:
			break;
		}
	}
	rc = seg_emit(&g, emit, arg);
	if (rc < 0)
		return rc;
	g.n = 0;
	return user_turn(t, &g, prefix, plen, user, ulen, emit, arg);
}

int eng_template_end_reply(const struct eng_template *t, eng_tmpl_emit_fn emit, void *arg)
{
	struct segs g = { 0 };

	switch (t->family) {
	case ENG_TMPL_LLAMA2:
		seg_str(&g, ENG_TMPL_SEG_MARKUP, " ");
		seg_str(&g, ENG_TMPL_SEG_SPECIAL, t->eos);
		break;
	case ENG_TMPL_MISTRAL:
		seg_str(&g, ENG_TMPL_SEG_SPECIAL, t->eos);
		if (t->eos_space)
			seg_str(&g, ENG_TMPL_SEG_MARKUP, " ");
		break;
	default:
		msg_close(t, &g);
		break;
	}
	return seg_emit(&g, emit, arg);
}

int eng_template_next_turn(const struct eng_template *t, const char *user, size_t ulen,
                           eng_tmpl_emit_fn emit, void *arg)
{
	struct segs g = { 0 };
	int rc = eng_template_end_reply(t, emit, arg);

	if (rc < 0)
		return rc;
	return user_turn(t, &g, NULL, 0, user, ulen, emit, arg);
}

int eng_template_reply(const struct eng_template *t, const char *reply, size_t rlen,
                       eng_tmpl_emit_fn emit, void *arg)
{
	struct segs g = { 0 };

	seg_content(&g, reply, rlen);
	switch (t->family) {
	case ENG_TMPL_LLAMA2:
	case ENG_TMPL_LLAMA3:
	case ENG_TMPL_GEMMA:
		seg_strip(&g, 0, 1);
		break;
	default:
		break;
	}
	if (t->family == ENG_TMPL_LLAMA2) {
		/* ' ' + content.strip(): the space opens the reply */
		struct segs h = { 0 };

		seg_str(&h, ENG_TMPL_SEG_MARKUP, " ");
		h.v[h.n++] = g.v[0];
		return seg_emit(&h, emit, arg);
	}
	return seg_emit(&g, emit, arg);
}
