/*
 * backend.h — the interface every compute backend implements (CPU in
 * engine/cpu/, CUDA in cuda/).  The engine drives a backend only through
 * struct eng_backend_ops and never branches on which one it has.
 *
 * A backend owns: its copy or view of the weights, the KV pool, scratch
 * memory.  The engine owns: sessions, token histories, page tables, the
 * page allocator, sampling settings.
 *
 * ---- KV cache ----
 * The KV cache is a pool of n_pages pages of ENG_KV_PAGE token slots, for
 * every layer.  A sequence's page table maps its KV position p to page
 * pages[p / ENG_KV_PAGE], slot p % ENG_KV_PAGE.  K and V are stored as F16
 * on every backend (as llama.cpp's default cache type), layout per layer and
 * page: K[P][G][D], V[P][G][D] (the backend may lay pages out as it likes
 * internally; only this indexing is part of the contract).
 *
 * Sliding-window layers (eng_layer.swa, models with cfg.n_swa) keep their
 * K/V in a second pool of n_wpages window pages: for those layers position
 * p lives in window page wpages[p / ENG_KV_PAGE], the page table `pages`
 * naming the other layers' page.  A query at p reads keys p - n_swa < j <= p
 * only, so a sequence's wpages need be valid only for the pages holding
 * positions [pos0 + 1 - n_swa, pos0 + n_tokens); the engine hands the window
 * pages of older positions back to the pool (engine/window.c) and marks
 * them -1, and a backend never reads them.  With n_wpages == 0 (no
 * sliding-window layer) wpages is NULL and `pages` covers every layer.
 *
 * ---- forward() ----
 * One call runs the transformer over a batch of S sequences, each with
 * n_tokens new tokens at positions pos0 .. pos0+n_tokens-1.  Positions
 * [0, pos0) of that sequence must already be in its pages (written by earlier
 * calls); the call writes K/V for the new positions, then attends causally
 * over [0, pos) for each token.  Sequences never see each other.
 * Output rows: for each sequence in order, n_tokens rows if logits_all, else
 * one row (its last token).  If `logits` is non-NULL the backend writes
 * [rows][V] floats there (host memory).  If `samp` is non-NULL, the backend
 * samples one token per sequence from that sequence's last row with
 * eng_sample semantics (sampler.h) and writes it to tokens_out[s]; only the
 * chosen tokens need cross to the host.
 * Returns 0, or -errno (-EIO for a device failure, with a log line).  After
 * a failure the KV content of the batch's new positions is unspecified.
 */
#ifndef PROMPTFS_ENGINE_BACKEND_H
#define PROMPTFS_ENGINE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ENG_KV_PAGE 64 /* P: token slots per KV page */

struct eng_backend; /* opaque, one per loaded model */

struct eng_backend_params {
	int n_threads;        /* CPU worker threads (0 = all cores) */
	int n_pages;          /* KV pages to allocate (the layers that are not sliding-window) */
	int max_batch_tokens; /* most tokens one forward() will carry (sum over sequences) */
	int max_seqs;         /* most sequences in one forward() */
	int max_ctx;          /* longest sequence (positions) any forward() will use */
	int device;           /* device ordinal (CUDA) */
	int n_wpages;         /* window pages of the sliding-window layers (0: none, every layer
	                       * in the n_pages pool: no window pages released) */
};

struct eng_batch_seq {
	const int32_t *tokens; /* [n_tokens] */
	int n_tokens;
	int pos0;              /* position of tokens[0] */
	const int32_t *pages;  /* page table covering positions [0, pos0 + n_tokens) */
	bool logits_all;       /* rows for every token (tests, perplexity) or the last only */
	const int32_t *wpages; /* window pages of the same page indices, -1 where released
	                        * (see KV cache above); NULL when n_wpages == 0 */
};

struct eng_batch {
	int n_seqs;                      /* S */
	const struct eng_batch_seq *seqs; /* [S] */
};

struct eng_backend_ops {
	const char *name; /* "cpu", "cuda" */
	/* Number of usable devices (CPU: 1).  0 means this backend cannot run here. */
	int (*probe)(void);
	/* Builds the backend for a bound model.  The weights' data pointers stay
	 * valid until free().  0 / -errno (-ENOMEM: KV pool does not fit). */
	int (*init)(const struct eng_config *cfg, const struct eng_weights *w,
	            const struct eng_backend_params *p, struct eng_backend **out);
	void (*free)(struct eng_backend *be); /* accepts NULL */
	/* "CPU (2 threads, AVX2)" / "NVIDIA H100 80GB HBM3 (cc 9.0, 79 GiB)" */
	const char *(*device_name)(const struct eng_backend *be);
	/* Bytes of device (or host) memory held for weights, KV and scratch. */
	void (*memory)(const struct eng_backend *be, size_t *weights, size_t *kv, size_t *scratch);
	int (*forward)(struct eng_backend *be, const struct eng_batch *b, float *logits,
	               const struct eng_sample_req *samp, int32_t *tokens_out);
	/* Measured memory bandwidth of the device in bytes/s, the roofline of
	 * decode that `bench` compares with (0 when not measured; may be NULL).
	 * CUDA: a device-to-device copy, bytes read plus written; CPU: reads by
	 * the backend's threads (engine/cpu/membw.c).  Engine thread, between
	 * forward passes. */
	double (*mem_bandwidth)(struct eng_backend *be);
	/* One page, every layer, K and V: copy page src to page dst inside the
	 * pool, and window page wsrc to wdst for the sliding-window layers
	 * (both -1: none; models without such layers pass -1).  The engine's
	 * copy-on-write of shared pages; engine thread, between forward passes. */
	int (*kv_page_copy)(struct eng_backend *be, int dst, int wdst, int src, int wsrc);
	/* One page between the pool and host memory: eng_kv_page_bytes() bytes
	 * laid out [L][K|V][P][G][D] halves in the backend's own element order
	 * (a file saved from one backend is only valid for the same backend);
	 * the sliding-window layers' parts come from / go to window page wpage
	 * (-1: read as zeros, not written).  May be called from any thread
	 * while forward() runs, for pages that forward() does not write.
	 * 0 / -EINVAL (a page outside the pool) / -EIO. */
	int (*kv_page_read)(struct eng_backend *be, int page, int wpage, void *dst);
	int (*kv_page_write)(struct eng_backend *be, int page, int wpage, const void *src);
};

/* Whether a kv_page_* call's page (0..n_pages) and window page (-1, or
 * 0..n_wpages) are in the pool; logs the bad one.  For the backends. */
bool eng_kv_pages_ok(const struct eng_backend_params *p, int page, int wpage);

/* Bytes of one KV page (all layers, K and V) for a config; of its part in
 * the sliding-window layers (a window page; 0 without such layers). */
size_t eng_kv_page_bytes(const struct eng_config *cfg);
size_t eng_kv_wpage_bytes(const struct eng_config *cfg);

/* Backend registry: "cpu" is always there; "cuda" when the CUDA library was
 * linked in (it defines cuda_backend_get()).  name = "auto" picks CUDA when
 * its probe finds a device, else CPU.  NULL (with a log line listing the
 * known backends) for an unknown or unusable name. */
const struct eng_backend_ops *eng_backend_find(const char *name);

extern const struct eng_backend_ops eng_cpu_backend_ops;

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_ENGINE_BACKEND_H */
