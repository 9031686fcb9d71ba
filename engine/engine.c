/*
 * engine.c — the model object of engine.h: load (GGUF → weights, tokenizer,
 * chat template, backend, KV page pool), describe, stats, and the engine
 * thread that loops eng_step() (step.c) while there is work.
 *
 * KV pool sizing: kv_bytes (default: 8 full contexts, at most a quarter of
 * RAM) / eng_kv_page_bytes() pages, at least one.  A pool smaller than one
 * full context is allowed (tests use it to force evictions); a session that
 * outgrows it ends its turn with ENOSPC.
 *
 * With sliding-window layers (window.c) the same bytes are split between
 * pages of the other layers and window pages, by default for the most
 * sessions at full context (each needs max_pages_seq pages and the window
 * pages a window spans), with at least half of what the unsplit pool had
 * as window pages (short sessions, which need as many window pages as
 * pages, keep half their room), at most all of it; window_pages sets the
 * count.  Never fewer than one session's window and a full prefill chunk
 * (a little over kv_bytes then: a turn that can never get its window would
 * wait forever).
 */
#include "engine_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../gguf/log.h"

void eng_model_params_default(struct eng_model_params *p)
{
	memset(p, 0, sizeof(*p));
}

static size_t ram_quarter(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);

	if (pages <= 0 || psz <= 0)
		return (size_t)1 << 30;
	return (size_t)pages * (size_t)psz / 4;
}

/* Gemma files without tokenizer.chat_template (the 270M base model) still
 * have the <start_of_turn>/<end_of_turn> tokens their family's template
 * uses; chat mode then uses the Gemma template, as the model was trained
 * with it.  Other families without a template stay raw. */
const char *eng_chat_template_text(const struct gguf_ctx *g, const struct eng_config *cfg,
                                   const struct eng_tokenizer *tok)
{
	const char *jinja = gguf_get_str_key(g, "tokenizer.chat_template");
	const bool gemma = cfg->arch == ENG_ARCH_GEMMA3 || cfg->arch == ENG_ARCH_GEMMA2;

	if (!jinja && gemma && eng_token_find(tok, "<start_of_turn>") >= 0 &&
	    eng_token_find(tok, "<end_of_turn>") >= 0)
		return "<start_of_turn>"; /* detect_family's Gemma marker */
	return jinja;
}

static int init_template(struct eng_model *m)
{
	const char *jinja = gguf_get_str_key(m->g, "tokenizer.chat_template");
	const char *text = eng_chat_template_text(m->g, &m->cfg, m->tok);
	int32_t bos = eng_token_bos(m->tok), eos = eng_token_eos(m->tok);
	int rc;

	rc = eng_template_init(text, bos >= 0 ? eng_token_text(m->tok, bos) : "",
	                       eos >= 0 ? eng_token_text(m->tok, eos) : "", &m->tmpl);
	if (rc < 0)
		return rc;
	if (jinja && m->tmpl.family == ENG_TMPL_NONE)
		LOG_INFO("chat template of an unknown family: sessions default to raw mode");
	else if (!jinja && text)
		LOG_INFO("no chat template in the model: the %s family's Gemma template is used",
		         eng_arch_name(m->cfg.arch));
	else if (!jinja)
		LOG_INFO("no chat template in the model: sessions default to raw mode");
	return 0;
}

/* Resolves the zeros of the caller's params and sizes the page pool. */
static void resolve_params(struct eng_model *m, const struct eng_model_params *p)
{
	size_t kv;

	m->p = *p;
	m->n_ctx = p->n_ctx > 0 ? p->n_ctx : (m->cfg.n_ctx_train > 0 && m->cfg.n_ctx_train < 4096 ? m->cfg.n_ctx_train : 4096);
	if (m->cfg.n_ctx_train > 0 && m->n_ctx > m->cfg.n_ctx_train)
		LOG_WARN("context %d is longer than the model was trained for (%d)", m->n_ctx, m->cfg.n_ctx_train);
	m->p.n_ctx = m->n_ctx;
	m->p.max_sessions = p->max_sessions > 0 ? p->max_sessions : 256;
	m->p.max_batch_tokens = p->max_batch_tokens > 0 ? p->max_batch_tokens : 512;
	/* sequences per pass: the backend keeps a logits row for each */
	if (p->max_batch_seqs > ENG_MAX_BATCH_SEQS)
		LOG_WARN("max_batch_seqs %d is above %d: using %d", p->max_batch_seqs, ENG_MAX_BATCH_SEQS,
		         ENG_MAX_BATCH_SEQS);
	m->max_seqs = p->max_batch_seqs > 0 ? p->max_batch_seqs : 128;
	if (m->max_seqs > ENG_MAX_BATCH_SEQS)
		m->max_seqs = ENG_MAX_BATCH_SEQS;
	if (m->max_seqs > m->p.max_sessions)
		m->max_seqs = m->p.max_sessions;
	if (m->max_seqs > m->p.max_batch_tokens)
		m->max_seqs = m->p.max_batch_tokens;
	m->p.max_batch_seqs = m->max_seqs;
	m->page_bytes = eng_kv_page_bytes(&m->cfg);
	m->max_pages_seq = (m->n_ctx + 1 + ENG_KV_PAGE - 1) / ENG_KV_PAGE;
	kv = p->kv_bytes;
	if (!kv) {
		kv = (size_t)8 * (size_t)m->max_pages_seq * m->page_bytes;
		if (kv > ram_quarter())
			kv = ram_quarter();
	}
	m->wpage_bytes = m->cfg.n_swa > 0 ? eng_kv_wpage_bytes(&m->cfg) : 0;
	m->gpage_bytes = m->page_bytes - m->wpage_bytes;
	m->n_pages = (int)(kv / m->page_bytes > (size_t)INT32_MAX / 2 ? INT32_MAX / 2 : kv / m->page_bytes);
	if (m->n_pages < 1)
		m->n_pages = 1;
	m->n_wpages = 0;
	if (m->wpage_bytes && m->gpage_bytes) {
		/* a session holds the window parts of (n_swa - 1) / P + 2 pages at
		 * most; a batch's prefill chunks add max_batch_tokens / P + 1 */
		int64_t span = (m->cfg.n_swa - 1) / ENG_KV_PAGE + 2, extra = m->p.max_batch_tokens / ENG_KV_PAGE + 1;
		int64_t full = (int64_t)(kv / ((size_t)m->max_pages_seq * m->gpage_bytes + (size_t)span * m->wpage_bytes));
		int64_t peq = m->n_pages, nw = full * span + extra;
		size_t rest;

		if (nw < peq / 2)
			nw = peq / 2; /* short sessions keep at least half the pages they had */
		if (nw > peq)
			nw = peq;
		if (p->window_pages > 0)
			nw = p->window_pages;
		if (nw < span + extra) {
			/* a turn that can never get its window would wait forever */
			if (p->window_pages > 0)
				LOG_WARN("--window-pages %d is fewer than one session's window and chunk: %lld",
				         p->window_pages, (long long)(span + extra));
			nw = span + extra;
		}
		m->n_wpages = nw > INT32_MAX / 2 ? INT32_MAX / 2 : (int)nw;
		rest = kv > (size_t)m->n_wpages * m->wpage_bytes ? kv - (size_t)m->n_wpages * m->wpage_bytes : 0;
		m->n_pages = (int)(rest / m->gpage_bytes > (size_t)INT32_MAX / 2 ? INT32_MAX / 2 : rest / m->gpage_bytes);
		if (m->n_pages < 1)
			m->n_pages = 1;
	} else if (m->wpage_bytes) {
		m->n_wpages = m->n_pages; /* every layer slides */
	}
	m->p.kv_bytes = (size_t)m->n_pages * m->gpage_bytes + (size_t)m->n_wpages * m->wpage_bytes;
}

static int init_arena(struct eng_model *m)
{
	struct step_arena *a = &m->arena;
	size_t S = (size_t)m->p.max_sessions;

	a->seqs = calloc(S, sizeof(*a->seqs));
	a->reqs = calloc(S, sizeof(*a->reqs));
	a->out = calloc(S, sizeof(*a->out));
	a->ent = calloc(S, sizeof(*a->ent));
	a->notify = calloc(3 * S, sizeof(*a->notify));
	a->events = calloc(4 * S, sizeof(*a->events));
	a->pending = calloc((size_t)m->p.max_batch_tokens / ENG_KV_PAGE + S + 1, sizeof(*a->pending));
	a->found = calloc((size_t)m->max_pages_seq, sizeof(*a->found));
	m->free_pages = malloc(sizeof(*m->free_pages) * (size_t)m->n_pages);
	m->page_refs = calloc((size_t)m->n_pages, sizeof(*m->page_refs));
	if (!a->seqs || !a->reqs || !a->out || !a->ent || !a->notify || !a->events || !a->pending || !a->found ||
	    !m->free_pages || !m->page_refs)
		return -ENOMEM;
	if (!m->p.no_prefix_share && eng_prefix_init(m) < 0)
		return -ENOMEM;
	if (eng_window_init(m, m->n_wpages) < 0)
		return -ENOMEM;
	for (int i = 0; i < m->n_pages; i++)
		m->free_pages[i] = m->n_pages - 1 - i; /* page 0 is handed out first */
	m->n_free = m->n_pages;
	return 0;
}

int eng_model_load(const char *path, const struct eng_model_params *p, struct eng_model **out)
{
	struct eng_model_params defp;
	struct eng_backend_params bp;
	struct eng_model *m;
	int rc;

	if (!p) {
		eng_model_params_default(&defp);
		p = &defp;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	snprintf(m->path, sizeof(m->path), "%s", path);
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->work, NULL);
	rc = p->copy_weights ? gguf_open_copy(path, &m->g) : gguf_open(path, &m->g);
	if (rc < 0) {
		LOG_ERR("cannot load model '%s': %s", path, strerror(-rc));
		goto fail;
	}
	if ((rc = eng_model_bind(m->g, &m->cfg, &m->w)) < 0)
		goto fail;
	if ((rc = eng_tokenizer_init(m->g, &m->tok)) < 0)
		goto fail;
	if (eng_tokenizer_n_vocab(m->tok) > m->cfg.n_vocab) {
		LOG_ERR("tokenizer has %d tokens but the model's output has %d rows",
		        eng_tokenizer_n_vocab(m->tok), m->cfg.n_vocab);
		rc = -EINVAL;
		goto fail;
	}
	if ((rc = init_template(m)) < 0)
		goto fail;
	m->ops = eng_backend_find(p->backend);
	if (!m->ops) {
		rc = -ENODEV;
		goto fail;
	}
	resolve_params(m, p);
	if ((rc = init_arena(m)) < 0)
		goto fail;
	memset(&bp, 0, sizeof(bp));
	bp.n_threads = p->n_threads;
	bp.n_pages = m->n_pages;
	bp.n_wpages = m->n_wpages;
	bp.max_batch_tokens = m->p.max_batch_tokens;
	bp.max_seqs = m->max_seqs;
	bp.max_ctx = m->n_ctx;
	rc = m->ops->init(&m->cfg, &m->w, &bp, &m->be);
	if (rc == -ENOTSUP && m->ops != &eng_cpu_backend_ops && (!p->backend || !strcmp(p->backend, "auto"))) {
		/* the device backend does not run this architecture (its log line says why) */
		LOG_WARN("backend '%s' does not run %s models: using the CPU backend", m->ops->name,
		         eng_arch_name(m->cfg.arch));
		m->ops = &eng_cpu_backend_ops;
		rc = m->ops->init(&m->cfg, &m->w, &bp, &m->be);
	}
	if (rc < 0) {
		LOG_ERR("backend '%s' failed to start: %s", m->ops->name, strerror(-rc));
		goto fail;
	}
	if (m->n_wpages)
		LOG_INFO("%s: %s, context %d, KV pool %d pages of %d tokens + %d window pages of its %d "
		         "sliding-window layers (%.1f MiB), backend %s",
		         path, eng_arch_name(m->cfg.arch), m->n_ctx, m->n_pages, ENG_KV_PAGE, m->n_wpages,
		         m->cfg.n_layer_swa, (double)m->p.kv_bytes / (1 << 20), m->ops->device_name(m->be));
	else
		LOG_INFO("%s: %s, context %d, KV pool %d pages of %d tokens (%.1f MiB), backend %s",
		         path, eng_arch_name(m->cfg.arch), m->n_ctx, m->n_pages, ENG_KV_PAGE,
		         (double)m->p.kv_bytes / (1 << 20), m->ops->device_name(m->be));
	*out = m;
	return 0;
fail:
	eng_model_free(m);
	return rc;
}

void eng_model_free(struct eng_model *m)
{
	struct step_arena *a;

	if (!m)
		return;
	eng_model_stop(m);
	while (m->sessions) {
		struct eng_session *s = m->sessions;

		m->sessions = s->next;
		s->refs = 1; /* no step runs now: the engine's references are gone */
		s->dead = true;
		eng_session_unref_locked(s);
	}
	if (m->be)
		m->ops->free(m->be);
	eng_grammars_free(m);
	eng_tokenizer_free(m->tok);
	eng_weights_free(&m->w);
	eng_template_free(&m->tmpl);
	gguf_free(m->g);
	a = &m->arena;
	free(a->seqs);
	free(a->reqs);
	free(a->out);
	free(a->ent);
	free(a->notify);
	free(a->events);
	free(a->pending);
	free(a->found);
	free(a->buf);
	eng_prefix_free(m);
	eng_window_free(m);
	free(m->free_pages);
	free(m->page_refs);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->work);
	free(m);
}

// ---- accessors

const struct eng_config *eng_model_config(const struct eng_model *m) { return &m->cfg; }
const struct eng_tokenizer *eng_model_tokenizer(const struct eng_model *m) { return m->tok; }
const char *eng_model_backend_name(const struct eng_model *m) { return m->ops->name; }
int eng_model_n_ctx(const struct eng_model *m) { return m->n_ctx; }
int eng_model_kv_limit(const struct eng_model *m)
{
	int64_t pool = (int64_t)m->n_pages * ENG_KV_PAGE;
	return pool < m->n_ctx ? (int)pool : m->n_ctx;
}
const struct eng_template *eng_model_template(const struct eng_model *m) { return &m->tmpl; }
const struct eng_weights *eng_model_weights(const struct eng_model *m) { return &m->w; }
size_t eng_model_page_bytes(const struct eng_model *m) { return m->page_bytes; }

struct eng_backend *eng_model_backend(const struct eng_model *m, const struct eng_backend_ops **ops)
{
	if (ops)
		*ops = m->ops;
	return m->be;
}

void eng_model_set_notify(struct eng_model *m, eng_notify_fn fn, void *user)
{
	m->notify = fn;
	m->notify_user = user;
}

void eng_model_set_events(struct eng_model *m, eng_event_fn fn, void *user)
{
	m->on_event = fn;
	m->event_user = user;
}

void eng_model_stats(struct eng_model *m, struct eng_stats *o)
{
	pthread_mutex_lock(&m->lock);
	*o = m->stats;
	o->n_sessions = m->n_sessions;
	o->n_busy = 0;
	for (struct eng_session *s = m->sessions; s; s = s->next)
		o->n_busy += eng_session_has_work_locked(s);
	o->kv_pages_total = m->n_pages;
	o->kv_pages_used = m->n_pages - m->n_free;
	o->kv_pages_shared = eng_model_n_pages_shared(m);
	o->prefix_share = m->prefix.bucket != NULL;
	o->prefix_pages = m->prefix.n_in;
	o->max_batch_seqs = m->max_seqs;
	o->kv_wpages_total = m->n_wpages;
	o->kv_wpages_used = eng_window_pages_used(m);
	o->kv_bytes_total = (size_t)m->n_pages * m->gpage_bytes + (size_t)m->n_wpages * m->wpage_bytes;
	o->kv_bytes_used = (size_t)o->kv_pages_used * m->gpage_bytes + (size_t)o->kv_wpages_used * m->wpage_bytes;
	pthread_mutex_unlock(&m->lock);
}

// ---- description

struct sbuf {
	char *s;
	size_t n, cap;
	int err;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (b->err)
		return;
	for (;;) {
		va_start(ap, fmt);
		k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
		va_end(ap);
		if (k < 0) {
			b->err = -EINVAL;
			return;
		}
		if (b->s && b->n + (size_t)k < b->cap) {
			b->n += (size_t)k;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 1024;
		while (cap < b->n + (size_t)k + 1)
			cap *= 2;
		char *t = realloc(b->s, cap);
		if (!t) {
			b->err = -ENOMEM;
			return;
		}
		b->s = t;
		b->cap = cap;
	}
}

static void describe_types(struct sbuf *b, const struct gguf_ctx *g)
{
	int64_t count[GGUF_DTYPE_COUNT] = { 0 };
	uint64_t bytes[GGUF_DTYPE_COUNT] = { 0 };
	int64_t nt = gguf_n_tensors(g);

	for (int64_t i = 0; i < nt; i++) {
		const struct gguf_tensor_info *ti = gguf_get_tensor(g, i);

		if ((int)ti->type >= 0 && ti->type < GGUF_DTYPE_COUNT) {
			count[ti->type]++;
			bytes[ti->type] += ti->nbytes;
		}
	}
	sb_printf(b, "tensors:         %lld\n", (long long)nt);
	for (int t = 0; t < GGUF_DTYPE_COUNT; t++)
		if (count[t])
			sb_printf(b, "tensor_type:     %-5s %4lld tensors %10.2f MiB\n", gguf_dtype_name(t),
			          (long long)count[t], (double)bytes[t] / (1 << 20));
}

int eng_describe(const struct gguf_ctx *g, const struct eng_config *c, const struct eng_weights *w,
                 const struct eng_tokenizer *tok, const struct eng_template *tmpl,
                 const char *backend, const char *device, char **out)
{
	struct sbuf b = { 0 };
	const char *name = gguf_get_str_key(g, "general.name");
	uint64_t np = eng_weights_n_params(c, w);

	sb_printf(&b, "architecture:    %s\n", eng_arch_name(c->arch));
	if (name)
		sb_printf(&b, "name:            %s\n", name);
	sb_printf(&b, "parameters:      %llu (%.1f M)\n", (unsigned long long)np, (double)np / 1e6);
	if (c->n_expert) {
		const uint64_t na = eng_weights_n_active_params(c, w);
		sb_printf(&b, "experts:         %d, %d used per token (width %d; router softmax, top-%d renormalised)\n",
		          c->n_expert, c->n_expert_used, c->n_ff_exp, c->n_expert_used);
		sb_printf(&b, "active_params:   %llu (%.1f M per token)\n", (unsigned long long)na, (double)na / 1e6);
	}
	sb_printf(&b, "layers:          %d\n", c->n_layer);
	sb_printf(&b, "embedding:       %d\n", c->n_embd);
	sb_printf(&b, "heads:           %d\n", c->n_head);
	sb_printf(&b, "kv_heads:        %d\n", c->n_head_kv);
	sb_printf(&b, "head_dim:        %d\n", c->head_dim);
	sb_printf(&b, "feed_forward:    %d\n", c->n_ff);
	sb_printf(&b, "context_train:   %d\n", c->n_ctx_train);
	sb_printf(&b, "vocabulary:      %d\n", c->n_vocab);
	if (tok)
		sb_printf(&b, "tokenizer:       %s (pre %s, BOS %d, EOS %d, add BOS %s)\n",
		          eng_tokenizer_kind(tok) == ENG_TOK_KIND_SPM ? "llama/SentencePiece" : "gpt2/byte-level BPE",
		          eng_tokenizer_pre(tok) ? eng_tokenizer_pre(tok) : "default", eng_token_bos(tok),
		          eng_token_eos(tok), eng_tokenizer_add_bos(tok) ? "yes" : "no");
	sb_printf(&b, "rope:            %s, base %g, %d dims", c->rope_type == ENG_ROPE_TYPE_NEOX ? "neox" : "norm",
	          c->rope_base, c->n_rot);
	if (c->rope_freq_scale > 0 && c->rope_freq_scale != 1.0f)
		sb_printf(&b, ", linear scaling x%g", 1.0 / c->rope_freq_scale);
	sb_printf(&b, "%s\n", w->rope_freqs.data ? ", frequency factors" : "");
	sb_printf(&b, "rms_eps:         %g\n", c->rms_eps);
	sb_printf(&b, "qkv_bias:        %s\n", c->has_qkv_bias ? "yes" : "no");
	sb_printf(&b, "qk_norm:         %s\n", c->has_qk_norm ? "yes" : "no");
	if (c->n_swa) {
		int n_swa_layers = 0;
		for (int il = 0; il < c->n_layer; il++)
			n_swa_layers += w->layers[il].swa;
		sb_printf(&b, "sliding_window:  %d (%d of %d layers; their RoPE base %g)\n", c->n_swa,
		          n_swa_layers, c->n_layer, c->rope_base_swa);
	}
	if (c->attn_softcap || c->final_softcap)
		sb_printf(&b, "softcap:         attention %g, output %g\n", c->attn_softcap, c->final_softcap);
	if (c->ffn_act == ENG_FFN_ACT_GELU || c->has_post_norm || c->embd_scale)
		sb_printf(&b, "gemma:           GELU-gated FFN, post-norms, embedding x sqrt(%d)\n", c->n_embd);
	sb_printf(&b, "tied_output:     %s\n", c->tied_output ? "yes" : "no");
	if (tmpl)
		sb_printf(&b, "chat_template:   %s%s%s%s\n", eng_template_family_name(tmpl->family),
		          tmpl->default_system ? " (default system prompt: \"" : "",
		          tmpl->default_system ? tmpl->default_system : "", tmpl->default_system ? "\")" : "");
	describe_types(&b, g);
	sb_printf(&b, "weights_bytes:   %llu (%.1f MiB)\n", (unsigned long long)eng_weights_nbytes(c, w),
	          (double)eng_weights_nbytes(c, w) / (1 << 20));
	sb_printf(&b, "file_size:       %zu (%.1f MiB, GGUF v%u)\n", gguf_file_size(g),
	          (double)gguf_file_size(g) / (1 << 20), gguf_version(g));
	if (backend)
		sb_printf(&b, "backend:         %s (%s)\n", backend, device ? device : "");
	if (b.err) {
		free(b.s);
		return b.err;
	}
	*out = b.s;
	return 0;
}

int eng_model_describe(const struct eng_model *m, char **out)
{
	struct sbuf b = { 0 };
	char *d = NULL;
	int rc = eng_describe(m->g, &m->cfg, &m->w, m->tok, &m->tmpl, m->ops->name,
	                      m->ops->device_name(m->be), &d);

	if (rc < 0)
		return rc;
	sb_printf(&b, "%scontext:         %d\nkv_pool:         %d pages of %d tokens, %.1f MiB\n", d,
	          m->n_ctx, m->n_pages, ENG_KV_PAGE, (double)m->p.kv_bytes / (1 << 20));
	free(d);
	if (b.err) {
		free(b.s);
		return b.err;
	}
	*out = b.s;
	return 0;
}

// ---- the engine thread

static void *engine_main(void *arg)
{
	struct eng_model *m = arg;

	while (!atomic_load(&m->stop)) {
		int rc;

		pthread_mutex_lock(&m->lock);
		while (!atomic_load(&m->stop) && !eng_model_has_work_locked(m))
			pthread_cond_wait(&m->work, &m->lock);
		pthread_mutex_unlock(&m->lock);
		if (atomic_load(&m->stop))
			break;
		rc = eng_step(m);
		if (rc <= 0) {
			/* nothing could run (or the backend failed): do not spin */
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 5 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_mutex_lock(&m->lock);
			if (!atomic_load(&m->stop))
				pthread_cond_timedwait(&m->work, &m->lock, &ts);
			pthread_mutex_unlock(&m->lock);
		}
	}
	return NULL;
}

int eng_model_start(struct eng_model *m)
{
	int rc;

	if (m->thread_started)
		return 0;
	atomic_store(&m->stop, false);
	rc = pthread_create(&m->thread, NULL, engine_main, m);
	if (rc) {
		LOG_ERR("cannot start the engine thread: %s", strerror(rc));
		return -rc;
	}
	m->thread_started = true;
	return 0;
}

void eng_model_stop(struct eng_model *m)
{
	if (!m || !m->thread_started)
		return;
	pthread_mutex_lock(&m->lock);
	atomic_store(&m->stop, true);
	pthread_cond_broadcast(&m->work);
	pthread_mutex_unlock(&m->lock);
	pthread_join(m->thread, NULL);
	m->thread_started = false;
}
