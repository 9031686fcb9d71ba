/*
 * gguf_internal.h — the reader's internal structures, shared by gguf.c
 * (parsing, lookups) and gguf_get.c (typed getters, value handles).  Not
 * part of the public API: callers use gguf.h.
 */
#ifndef PROMPTFS_GGUF_INTERNAL_H
#define PROMPTFS_GGUF_INTERNAL_H

#include <sys/stat.h>
#include "gguf.h"

#include <stdatomic.h>

// ---- internal types

struct gguf_val {
	uint32_t type;     /* enum gguf_vtype */
	uint32_t arr_type; /* element vtype when type == ARRAY */
	uint64_t n;        /* string length (bytes, no NUL) or array length */
	union {
		uint8_t raw[8];
		uint8_t u8; int8_t i8; uint16_t u16; int16_t i16;
		uint32_t u32; int32_t i32; uint64_t u64; int64_t i64;
		float f32; double f64;
		const char *str;        /* NUL-terminated arena copy */
		struct gguf_val *elems; /* string and nested arrays: n handles */
		const void *data;       /* numeric / bool arrays: n packed elements */
	} u;
	_Atomic(struct gguf_val *) lazy; /* numeric arrays: handles, built on demand */
};

struct gguf_kv {
	const char *key;
	struct gguf_val val;
};

struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	_Alignas(16) unsigned char data[];
};

struct gguf_ctx {
	const uint8_t *base; /* the file's bytes */
	size_t size;
	void *map;           /* owned mapping, or NULL for gguf_open_buffer */
	uint32_t version;
	size_t alignment;
	size_t data_offset;
	int64_t n_kv;
	struct gguf_kv *kv;
	int64_t *kv_sorted;  /* kv ids sorted by key */
	int64_t n_tensors;
	struct gguf_tensor_info *tensors;
	int64_t *tensor_sorted; /* tensor ids sorted by name */
	struct arena_block *arena;
	int fd;              /* mapped files: kept open to notice changes; else -1 */
	struct stat st0;     /* mapped files: fstat at open */
	int guard;           /* mapped files: guard.c slot, or -1 */
};

/* guard.c: SIGBUS past the end of a mapped file that shrank.  add returns
 * the slot (-1: not guarded, logged); faults counts the faults taken. */
int gguf_guard_add(const void *map, size_t len);
void gguf_guard_remove(int slot);
unsigned gguf_guard_faults(int slot);

/* Bytes of one scalar of value type t; 0 for string, array and invalid ids. */
size_t gguf_vtype_size(uint32_t t);

#endif /* PROMPTFS_GGUF_INTERNAL_H */
