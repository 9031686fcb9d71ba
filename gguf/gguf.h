/*
 * gguf.h — the GGUF reader, writer and tensor-type table of promptfs.
 *
 * The one public header of the gguf/ module.  Nothing here knows about
 * models; engine/ builds on it.  Dependencies: libc only.
 *
 * ---- The file format (GGUF v2 and v3, little-endian) ----
 *
 *   uint32 magic            "GGUF" (0x46554747 read as little-endian u32)
 *   uint32 version          2 or 3 (v1 used 32-bit counts and is refused)
 *   uint64 n_tensors
 *   uint64 n_kv
 *   n_kv × { gguf_string key; uint32 vtype; value }
 *   n_tensors × { gguf_string name; uint32 n_dims; uint64 ne[n_dims];
 *                 uint32 dtype; uint64 offset }
 *   padding to general.alignment (default 32, a power of two)
 *   tensor data; each tensor's offset is relative to the start of this
 *   section and is a multiple of the alignment.
 *
 *   gguf_string = uint64 len; len bytes (not NUL-terminated in the file)
 *   value       = scalar of vtype, or gguf_string, or for ARRAY:
 *                 uint32 elem_vtype; uint64 n; n × value (arrays may nest)
 *   ne[0] is the fastest-moving dimension (a row has ne[0] elements).
 *
 * ---- Validation ----
 * gguf_open() checks every count, length, dimension, type, offset and
 * product before it is used: string lengths against the bytes left,
 * n_dims <= GGUF_MAX_DIMS, ne[i] >= 0 and the element product against
 * INT64_MAX, ne[0] divisible by the type's block size, data offsets
 * aligned, inside the file and not overlapping, names unique.  A bad file
 * yields -EINVAL (or -errno from the OS) and one log line naming the bad
 * value; never a crash.
 *
 * ---- Ownership ----
 * struct gguf_ctx owns the mmap and the parsed tables.  Every pointer the
 * getters return (strings, array data, tensor data) is a view into it and
 * lives until gguf_free().  Strings returned by getters are NUL-terminated
 * copies owned by the context (the file's bytes are not).
 */
#ifndef PROMPTFS_GGUF_H
#define PROMPTFS_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GGUF_MAGIC 0x46554747u /* "GGUF" */
#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_NAME 256 /* longest accepted tensor name, bytes */

// ---- metadata value types (file values; do not renumber)

enum gguf_vtype {
	GGUF_VTYPE_UINT8 = 0,
	GGUF_VTYPE_INT8 = 1,
	GGUF_VTYPE_UINT16 = 2,
	GGUF_VTYPE_INT16 = 3,
	GGUF_VTYPE_UINT32 = 4,
	GGUF_VTYPE_INT32 = 5,
	GGUF_VTYPE_FLOAT32 = 6,
	GGUF_VTYPE_BOOL = 7,
	GGUF_VTYPE_STRING = 8,
	GGUF_VTYPE_ARRAY = 9,
	GGUF_VTYPE_UINT64 = 10,
	GGUF_VTYPE_INT64 = 11,
	GGUF_VTYPE_FLOAT64 = 12,
	GGUF_VTYPE_COUNT,
};

// ---- tensor types (ggml's numbering; do not renumber)

enum gguf_dtype {
	GGUF_DTYPE_F32 = 0,
	GGUF_DTYPE_F16 = 1,
	GGUF_DTYPE_Q4_0 = 2,
	GGUF_DTYPE_Q4_1 = 3,
	GGUF_DTYPE_Q5_0 = 6,
	GGUF_DTYPE_Q5_1 = 7,
	GGUF_DTYPE_Q8_0 = 8,
	GGUF_DTYPE_Q8_1 = 9, /* activations only */
	GGUF_DTYPE_Q2_K = 10,
	GGUF_DTYPE_Q3_K = 11,
	GGUF_DTYPE_Q4_K = 12,
	GGUF_DTYPE_Q5_K = 13,
	GGUF_DTYPE_Q6_K = 14,
	GGUF_DTYPE_Q8_K = 15, /* activations only */
	GGUF_DTYPE_BF16 = 30,
	GGUF_DTYPE_COUNT = 40, /* size of lookup tables; ids >= this are invalid */
};

struct gguf_type_traits {
	const char *name;   /* "Q4_K"; NULL for ids that are not supported */
	int64_t blck_size;  /* elements per block (1 for F32/F16/BF16) */
	size_t type_size;   /* bytes per block */
	bool is_quantized;
	bool is_weight;     /* may appear as a model weight (not Q8_1/Q8_K) */
};

/* Traits of a type, or NULL when the id is unknown or unsupported. */
const struct gguf_type_traits *gguf_type_traits(int dtype);
/* "Q4_K" or "unknown(17)" (static buffer per thread). */
const char *gguf_dtype_name(int dtype);
/* Bytes of a row of n elements; n must be a multiple of the block size. */
size_t gguf_row_size(enum gguf_dtype type, int64_t n);

// ---- the reader

struct gguf_ctx; /* opaque */

struct gguf_tensor_info {
	const char *name;       /* NUL-terminated, owned by ctx */
	enum gguf_dtype type;
	int n_dims;
	int64_t ne[GGUF_MAX_DIMS]; /* unused dims are 1 */
	uint64_t offset;        /* relative to the data section */
	size_t nbytes;
	const void *data;       /* view into the mmap: nbytes bytes */
};

/* Maps and validates a file.  0 and *out on success; -errno otherwise (EINVAL:
 * malformed, with a log line saying what and where). */
int gguf_open(const char *path, struct gguf_ctx **out);
/* Same, but the file is read into private memory instead of mapped, so a
 * later truncate, rewrite or replace of the file cannot reach the reader
 * (a mapping would give SIGBUS past a new end, or the new bytes). */
int gguf_open_copy(const char *path, struct gguf_ctx **out);
/* For a file opened by gguf_open (mapped): 1 when it changed since it was
 * opened, with the reason in why — its size or modification time (fstat of
 * the file that was opened: a rename over its path is no change), or a read
 * past a new end (SIGBUS, caught: the rest of the mapping reads as zeros, so
 * nothing read from it since can be trusted).  0 when unchanged, and always
 * for copies and buffers.  Cheap (one fstat): callers check once per use. */
int gguf_file_changed(const struct gguf_ctx *ctx, char *why, size_t cap);
/* Same, over a caller-owned buffer (fuzzing, tests); buf must outlive ctx. */
int gguf_open_buffer(const void *buf, size_t size, struct gguf_ctx **out);
void gguf_free(struct gguf_ctx *ctx); /* accepts NULL */

uint32_t gguf_version(const struct gguf_ctx *ctx);
size_t gguf_alignment(const struct gguf_ctx *ctx);
size_t gguf_data_offset(const struct gguf_ctx *ctx); /* file offset of data section */
size_t gguf_file_size(const struct gguf_ctx *ctx);

// ---- metadata: find returns -1 when absent; typed getters assert the type.

int64_t gguf_n_kv(const struct gguf_ctx *ctx);
int64_t gguf_find_key(const struct gguf_ctx *ctx, const char *key);
const char *gguf_kv_key(const struct gguf_ctx *ctx, int64_t id);
enum gguf_vtype gguf_kv_type(const struct gguf_ctx *ctx, int64_t id);

uint8_t gguf_get_u8(const struct gguf_ctx *ctx, int64_t id);
int8_t gguf_get_i8(const struct gguf_ctx *ctx, int64_t id);
uint16_t gguf_get_u16(const struct gguf_ctx *ctx, int64_t id);
int16_t gguf_get_i16(const struct gguf_ctx *ctx, int64_t id);
uint32_t gguf_get_u32(const struct gguf_ctx *ctx, int64_t id);
int32_t gguf_get_i32(const struct gguf_ctx *ctx, int64_t id);
uint64_t gguf_get_u64(const struct gguf_ctx *ctx, int64_t id);
int64_t gguf_get_i64(const struct gguf_ctx *ctx, int64_t id);
float gguf_get_f32(const struct gguf_ctx *ctx, int64_t id);
double gguf_get_f64(const struct gguf_ctx *ctx, int64_t id);
bool gguf_get_bool(const struct gguf_ctx *ctx, int64_t id);
const char *gguf_get_str(const struct gguf_ctx *ctx, int64_t id, size_t *len);

/* Arrays.  gguf_get_arr_data() returns the packed elements of a numeric or
 * bool array (elem size from the vtype); strings go through
 * gguf_get_arr_str(); nested arrays through gguf_get_arr_arr(), which
 * returns a value handle usable with the gguf_val_* functions. */
enum gguf_vtype gguf_get_arr_type(const struct gguf_ctx *ctx, int64_t id);
uint64_t gguf_get_arr_n(const struct gguf_ctx *ctx, int64_t id);
const void *gguf_get_arr_data(const struct gguf_ctx *ctx, int64_t id);
const char *gguf_get_arr_str(const struct gguf_ctx *ctx, int64_t id, uint64_t i, size_t *len);

struct gguf_val; /* a (possibly nested) value, owned by ctx */
const struct gguf_val *gguf_kv_val(const struct gguf_ctx *ctx, int64_t id);
enum gguf_vtype gguf_val_type(const struct gguf_val *v);
uint64_t gguf_val_arr_n(const struct gguf_val *v);
enum gguf_vtype gguf_val_arr_type(const struct gguf_val *v);
const struct gguf_val *gguf_val_arr_get(const struct gguf_val *v, uint64_t i);
/* Scalars of a value: integers (any width, range-checked), floats, strings. */
int gguf_val_int(const struct gguf_val *v, int64_t *out);     /* -EINVAL if not integral */
int gguf_val_float(const struct gguf_val *v, double *out);   /* ints convert */
const char *gguf_val_str(const struct gguf_val *v, size_t *len); /* NULL if not string */

/* Convenience for model code: look up by key, convert any integer or float
 * type.  0 on success, -ENOENT absent, -EINVAL wrong type or out of range. */
int gguf_get_int_key(const struct gguf_ctx *ctx, const char *key, int64_t *out);
int gguf_get_float_key(const struct gguf_ctx *ctx, const char *key, double *out);
int gguf_get_bool_key(const struct gguf_ctx *ctx, const char *key, bool *out);
const char *gguf_get_str_key(const struct gguf_ctx *ctx, const char *key); /* NULL absent/not string */

// ---- tensors

int64_t gguf_n_tensors(const struct gguf_ctx *ctx);
int64_t gguf_find_tensor(const struct gguf_ctx *ctx, const char *name);
const struct gguf_tensor_info *gguf_get_tensor(const struct gguf_ctx *ctx, int64_t id);

/* Writes a gguf-dump-style description (header, every key with scalars and
 * the first elements of arrays, every tensor with type, shape and size). */
int gguf_dump(const struct gguf_ctx *ctx, void *FILE_stream, bool all_kv);

// ---- the writer (tools and tests)

struct gguf_writer; /* opaque; builds the whole file in memory tables */

struct gguf_writer *gguf_writer_init(void);
void gguf_writer_free(struct gguf_writer *w); /* accepts NULL */
void gguf_writer_set_version(struct gguf_writer *w, uint32_t version); /* default 3 */
void gguf_writer_set_alignment(struct gguf_writer *w, size_t align);   /* writes general.alignment */
/* Setters replace an existing key of the same name. 0 / -errno. */
int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v);
int gguf_writer_set_scalar(struct gguf_writer *w, const char *key, enum gguf_vtype t, const void *v);
int gguf_writer_set_arr_data(struct gguf_writer *w, const char *key, enum gguf_vtype t,
                             const void *data, uint64_t n);
int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *strs, uint64_t n);
/* Copies every key of src except general.alignment (and those for which
 * skip returns true, if skip is non-NULL), nested arrays included. */
int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_ctx *src,
                        bool (*skip)(const char *key, void *user), void *user);
/* Adds a tensor; data (nbytes = gguf_row_size(type, ne[0]) * rows) is copied
 * unless data is NULL, in which case the data must come from a later
 * gguf_writer_set_tensor_data() call before writing. */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum gguf_dtype type,
                           int n_dims, const int64_t *ne, const void *data);
int gguf_writer_set_tensor_data(struct gguf_writer *w, const char *name, const void *data);
/* Writes the file (header, KV, tensor table, aligned data). 0 / -errno. */
int gguf_writer_write(struct gguf_writer *w, const char *path);
/* Streams tensors: writes header + tables now, then the caller calls
 * gguf_writer_stream_tensor() once per tensor in add order.  Lets a tool
 * write files larger than memory. */
int gguf_writer_stream_begin(struct gguf_writer *w, const char *path);
int gguf_writer_stream_tensor(struct gguf_writer *w, const void *data, size_t nbytes);
/* In place of the next tensor's bytes: leaves them a hole of the file (it
 * reads as zeros and takes no disk where the filesystem has sparse files). */
int gguf_writer_stream_skip(struct gguf_writer *w);
int gguf_writer_stream_end(struct gguf_writer *w);

#ifdef __cplusplus
}
#endif

#include "quant.h"

#endif /* PROMPTFS_GGUF_H */
