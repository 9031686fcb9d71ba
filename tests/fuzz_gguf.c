/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader (not registered with
 * ctest; tests/test_gguf.c runs a seeded truncation / byte-flip loop instead).
 *
 * Build and run (clang):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *         gguf/gguf.c gguf/gguf_get.c gguf/types.c gguf/dump.c gguf/writer.c \
 *         gguf/quant.c gguf/log.c tests/fuzz_gguf.c -lm -o fuzz_gguf
 *   mkdir -p corpus && cp ../shared/models/vocab/ggml-vocab-llama-spm.gguf corpus/
 *   ./fuzz_gguf -max_len=65536 corpus
 *
 * Every accepted input is walked completely (dump of every key and array
 * element, first and last byte of every tensor), so out-of-bounds views are
 * caught, not only parse-time reads.
 */
#include "gguf/gguf.h"
#include "gguf/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *sink;
	struct gguf_ctx *g = NULL;
	volatile uint8_t acc = 0;

	if (!sink) {
		sink = fopen("/dev/null", "w");
		pf_log_set_level(-1);
	}
	/* an exact-size copy, so ASan sees any read past the end */
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (gguf_open_buffer(copy, size, &g) == 0) {
		gguf_dump(g, sink, true);
		for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
			const struct gguf_tensor_info *t = gguf_get_tensor(g, i);
			acc ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
		}
		gguf_free(g);
	}
	(void)acc;
	free(copy);
	return 0;
}
