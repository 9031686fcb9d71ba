/*
 * tokview.c — the token view of a turn (the mount's NAME.tokens): one line
 * per sampled token of the reply, in order,
 *
 *     INDEX ID PIECE LOGPROB [ID PIECE LOGPROB]...
 *
 * INDEX counts from 0 within the reply; PIECE is the bytes the token adds
 * to the reply (control tokens add none), escaped so that fields always
 * split on spaces: bytes up to space, DEL, '\' and bytes that are not part
 * of a valid UTF-8 character as \xHH, a leading '"' as \x22, and an empty
 * piece as "".  LOGPROB is log p of the token under the model's raw
 * distribution (log-softmax of the logits as they came out of the model,
 * before any sampler step: bias, penalties, temperature, grammar), "%.6f";
 * "-" where it was not computed.  With logprobs = K the K most likely
 * tokens of that distribution follow, most likely first, each as ID PIECE
 * LOGPROB.  The end-of-generation token that ends a turn is not listed.
 *
 * Cost: nothing unless asked.  A session computes log-probabilities (a
 * softmax over the vocabulary per token, and on CUDA the host sampler)
 * only once its view has been asked for (eng_session_watch_tokens, from
 * the first lookup of NAME.tokens; it stays on for the session) or with
 * logprobs > 0; until then no line is made either.  Asking later fills in
 * the lines of the tokens already sampled from the history, with "-" for
 * their log-probabilities.
 * Everything runs with the model lock held (take_token on the engine
 * thread, watch from any thread).
 */
#include "engine_internal.h"

#include <math.h>
#include <string.h>

/* Length of the valid UTF-8 character at p (p < e), 0 if it is not one. */
static size_t utf8_char(const unsigned char *p, const unsigned char *e)
{
	size_t k = p[0] < 0x80 ? 0 : p[0] >= 0xc2 && p[0] <= 0xdf ? 1 : p[0] >= 0xe0 && p[0] <= 0xef ? 2
	         : p[0] >= 0xf0 && p[0] <= 0xf4 ? 3 : 4;

	if (k == 4 || (size_t)(e - p) <= k)
		return 0;
	for (size_t j = 1; j <= k; j++)
		if ((p[j] & 0xc0) != 0x80)
			return 0;
	if ((k == 2 && p[0] == 0xe0 && p[1] < 0xa0) || (k == 2 && p[0] == 0xed && p[1] >= 0xa0) ||
	    (k == 3 && p[0] == 0xf0 && p[1] < 0x90) || (k == 3 && p[0] == 0xf4 && p[1] >= 0x90))
		return 0; /* overlong, surrogate, above U+10FFFF */
	return k + 1;
}

static void add_piece(struct eng_sb *b, const struct eng_tokenizer *tok, int32_t id)
{
	char piece[264];
	int n = eng_token_piece(tok, id, false, piece, sizeof(piece));
	const unsigned char *p = (const unsigned char *)piece, *e = p + (n > 0 ? n : 0);

	if (n <= 0) {
		eng_sb_str(b, "\"\"");
		return;
	}
	if (*p == '"') {
		eng_sb_str(b, "\\x22");
		p++;
	}
	while (p < e) {
		size_t k = *p > 0x20 && *p != 0x7f && *p != '\\' ? utf8_char(p, e) : 0;

		if (k) {
			eng_sb_add(b, (const char *)p, k);
			p += k;
		} else {
			eng_sb_printf(b, "\\x%02X", *p++);
		}
	}
}

static void add_lp(struct eng_sb *b, float lp)
{
	if (isnan(lp))
		eng_sb_str(b, "-");
	else if (isinf(lp))
		eng_sb_str(b, lp < 0 ? "-inf" : "inf");
	else
		eng_sb_printf(b, "%.6f", (double)lp);
}

static void line(struct eng_session *s, struct eng_turn *t, int32_t id, const struct eng_sample_lp *lp)
{
	const struct eng_tokenizer *tok = s->m->tok;

	eng_sb_printf(&t->tokv, "%d %d ", t->tokv_n++, id);
	add_piece(&t->tokv, tok, id);
	eng_sb_str(&t->tokv, " ");
	add_lp(&t->tokv, lp ? lp->logprob : NAN);
	for (int j = 0; lp && j < lp->n_top && j < ENG_SAMPLE_MAX_TOP; j++) {
		eng_sb_printf(&t->tokv, " %d ", lp->top_id[j]);
		add_piece(&t->tokv, tok, lp->top_id[j]);
		eng_sb_str(&t->tokv, " ");
		add_lp(&t->tokv, lp->top_lp[j]);
	}
	eng_sb_str(&t->tokv, "\n");
}

/* Lines for the turn's sampled tokens [tokv_n, n) from the history. */
static void backfill(struct eng_session *s, struct eng_turn *t, int n)
{
	int base = t->n_keep + t->n_prompt;

	while (t->tokv_n < n && base + t->tokv_n < s->n_past && !t->tokv.oom)
		line(s, t, s->tokens[base + t->tokv_n], NULL);
}

void eng_tokview_request_locked(struct eng_session *s, struct eng_sample_req *r, struct eng_sample_lp *lp)
{
	if (!s->watch_tokens && s->st.logprobs <= 0)
		return;
	memset(lp, 0, sizeof(*lp));
	lp->n_top = s->st.logprobs;
	r->lp = lp;
}

void eng_tokview_add_locked(struct eng_session *s, struct eng_turn *t, int32_t id, const struct eng_sample_lp *lp)
{
	if (!s->watch_tokens && !lp)
		return;
	backfill(s, t, t->n_gen - 1);
	if (!t->tokv.oom)
		line(s, t, id, lp);
}

void eng_session_watch_tokens(struct eng_session *s)
{
	pthread_mutex_lock(&s->m->lock);
	if (!s->watch_tokens) {
		s->watch_tokens = true;
		if (s->n_turns > 0 && s->turns[s->n_turns - 1].started)
			backfill(s, &s->turns[s->n_turns - 1], s->turns[s->n_turns - 1].n_gen);
	}
	pthread_mutex_unlock(&s->m->lock);
}

size_t eng_session_read_tokens(struct eng_session *s, uint64_t off, char *buf, size_t n, bool *final)
{
	size_t got = 0;

	pthread_mutex_lock(&s->m->lock);
	if (s->n_turns == 0) {
		if (final)
			*final = true;
	} else {
		const struct eng_turn *t = &s->turns[s->n_turns - 1];

		if (off < t->tokv.len) {
			got = t->tokv.len - off < n ? t->tokv.len - (size_t)off : n;
			memcpy(buf, t->tokv.p + off, got);
		}
		if (final)
			*final = t->finished;
	}
	pthread_mutex_unlock(&s->m->lock);
	return got;
}
