/*
 * backend.c — the backend registry.  The CPU backend is always linked; the
 * CUDA backend is found through a weak reference to cuda_backend_get(),
 * defined by cuda/ when promptfs is built with CUDA, so the engine never
 * includes a CUDA header and builds the same with or without it.
 */
#include "backend.h"

#include <string.h>

#include "../gguf/log.h"

const struct eng_backend_ops *cuda_backend_get(void) __attribute__((weak));

size_t eng_kv_page_bytes(const struct eng_config *cfg)
{
	/* K and V, F16, every layer: 2 * L * P * G * D * 2 bytes */
	return (size_t)2 * (size_t)cfg->n_layer * ENG_KV_PAGE * (size_t)cfg->n_head_kv *
	       (size_t)cfg->head_dim * 2;
}

bool eng_kv_pages_ok(const struct eng_backend_params *p, int page, int wpage)
{
	if (page < 0 || page >= p->n_pages) {
		LOG_ERR("KV page %d outside the pool of %d", page, p->n_pages);
		return false;
	}
	if (wpage < -1 || wpage >= p->n_wpages || (wpage >= 0 && !p->n_wpages)) {
		LOG_ERR("window page %d outside the pool of %d", wpage, p->n_wpages);
		return false;
	}
	return true;
}

size_t eng_kv_wpage_bytes(const struct eng_config *cfg)
{
	return (size_t)2 * (size_t)cfg->n_layer_swa * ENG_KV_PAGE * (size_t)cfg->n_head_kv *
	       (size_t)cfg->head_dim * 2;
}

static const struct eng_backend_ops *cuda_ops(void)
{
	return cuda_backend_get ? cuda_backend_get() : NULL;
}

const struct eng_backend_ops *eng_backend_find(const char *name)
{
	const struct eng_backend_ops *cuda = cuda_ops();

	if (!name || !strcmp(name, "auto")) {
		if (cuda && cuda->probe() > 0)
			return cuda;
		return &eng_cpu_backend_ops;
	}
	if (!strcmp(name, "cpu"))
		return &eng_cpu_backend_ops;
	if (!strcmp(name, "cuda")) {
		if (!cuda) {
			LOG_ERR("backend 'cuda': this promptfs was built without CUDA (rebuild with the CUDA toolkit installed)");
			return NULL;
		}
		if (cuda->probe() <= 0) {
			LOG_ERR("backend 'cuda': no usable CUDA device found");
			return NULL;
		}
		return cuda;
	}
	LOG_ERR("unknown backend '%s' (known: auto, cpu%s)", name, cuda ? ", cuda" : "");
	return NULL;
}
