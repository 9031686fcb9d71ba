/*
 * test_tokenizer_vocab.c — the tokenizer against llama.cpp's own test
 * vectors (shared/models/vocab/ggml-vocab-*.gguf + .inp/.out: the ids
 * llama.cpp's test-tokenizer-0 expects, no BOS, special tokens not parsed),
 * plus:
 *   - round trip: the pieces of the ids concatenate back to the text (BPE)
 *     or to " " + text (SPM, whose space prefix llama.cpp's detokenizer
 *     strips), as llama.cpp's token_to_piece gives;
 *   - stories260K's SentencePiece vocabulary loads and round-trips;
 *   - speed: 1 MB of mixed text tokenizes in well under the limit for every
 *     vocabulary (an O(n^2) merge loop would take minutes);
 *   - validation: handcrafted GGUFs with a wrong array type, unequal array
 *     lengths, an out-of-range special id, a duplicate token, an unknown
 *     model, or gpt2 without merges are refused with -EINVAL.
 *
 * Run: ctest -R tokenizer_vocab  (needs PROMPTFS_SHARED)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/tokenizer.h"
#include "gguf/gguf.h"
#include "gguf/log.h"
#include "check.h"


/* Seconds allowed for 1 MB (about 0.05-0.3 s here; ~10x under ASan). */
#if defined(__SANITIZE_ADDRESS__)
#define SPEED_LIMIT_S 20.0
#else
#define SPEED_LIMIT_S 3.0
#endif


static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long sz;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (sz = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)sz + 1);
		if (buf && fread(buf, 1, (size_t)sz, f) == (size_t)sz) {
			buf[sz] = '\0';
			*len = (size_t)sz;
		} else {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

static struct eng_tokenizer *load(const char *path, struct gguf_ctx **g)
{
	struct eng_tokenizer *t = NULL;
	int rc = gguf_open(path, g);
	CHECK(rc == 0, "gguf_open(%s) = %d", path, rc);
	if (rc != 0)
		return NULL;
	rc = eng_tokenizer_init(*g, &t);
	CHECK(rc == 0, "eng_tokenizer_init(%s) = %d", path, rc);
	return t;
}

/* Concatenated pieces (render_special false) of ids; malloc'd. */
static char *pieces(const struct eng_tokenizer *t, const int32_t *ids, size_t n, size_t *len)
{
	size_t cap = eng_tokenizer_max_piece(t) * (n + 1) + 1, w = 0;
	char *s = malloc(cap);
	for (size_t i = 0; s && i < n; i++) {
		int m = eng_token_piece(t, ids[i], false, s + w, cap - w);
		if (m < 0)
			CHECK(0, "piece of %d = %d", (int)ids[i], m);
		else
			w += (size_t)m;
	}
	*len = w;
	return s;
}

static void check_round_trip(const struct eng_tokenizer *t, const char *text, size_t len,
                             const int32_t *ids, size_t n, const char *what)
{
	size_t plen;
	char *p = pieces(t, ids, n, &plen);
	bool spm = eng_tokenizer_kind(t) == ENG_TOK_KIND_SPM;
	bool ok = p && (spm && n > 0 ? plen == len + 1 && p[0] == ' ' && memcmp(p + 1, text, len) == 0
	                             : plen == len && memcmp(p, text, len) == 0);
	CHECK(ok, "%s: round trip of '%.*s' gives '%.*s'", what, (int)len, text, (int)plen, p ? p : "");
	free(p);
}

// ---- llama.cpp's vectors

static void test_vocab(const char *dir, const char *name)
{
	char path[1200], inp_path[1300], out_path[1300];
	struct gguf_ctx *g = NULL;
	struct eng_tokenizer *t;
	size_t inp_len, out_len, n_str = 0, n_ok = 0;
	char *inp, *out;
	static const char sep[] = "\n__ggml_vocab_test__\n";

	snprintf(path, sizeof(path), "%s/ggml-vocab-%s.gguf", dir, name);
	snprintf(inp_path, sizeof(inp_path), "%s.inp", path);
	snprintf(out_path, sizeof(out_path), "%s.out", path);
	inp = read_file(inp_path, &inp_len);
	out = read_file(out_path, &out_len);
	CHECK(inp && out, "cannot read %s / %s", inp_path, out_path);
	t = load(path, &g);
	if (!inp || !out || !t)
		goto free_all;

	char *s = inp, *line = out;
	for (;;) {
		char *end = strstr(s, sep);
		if (!end)
			break;
		char *nl = strchr(line, '\n');
		CHECK(nl != NULL, "%s: .out has fewer lines than .inp has strings", name);
		if (!nl)
			break;
		*nl = '\0';
		int32_t want[4096];
		size_t n_want = 0;
		for (char *q = line; *q;) {
			char *e;
			long v = strtol(q, &e, 10);
			if (e == q)
				break;
			if (n_want < 4096)
				want[n_want++] = (int32_t)v;
			q = e;
		}
		int32_t *ids;
		size_t n;
		int rc = eng_tokenize(t, s, (size_t)(end - s), 0, &ids, &n);
		bool same = rc == 0 && n == n_want && memcmp(ids, want, n * sizeof(*ids)) == 0;
		CHECK(same, "%s: '%.*s' → %zu ids, llama.cpp %zu (rc %d)", name, (int)(end - s), s, n, n_want, rc);
		if (!same && rc == 0) {
			fprintf(stderr, "   ours:");
			for (size_t i = 0; i < n; i++)
				fprintf(stderr, " %d", (int)ids[i]);
			fprintf(stderr, "\n   want:%s\n", line);
		}
		n_str++;
		n_ok += same;
		if (rc == 0) {
			check_round_trip(t, s, (size_t)(end - s), ids, n, name);
			free(ids);
		}
		s = end + strlen(sep);
		line = nl + 1;
	}
	CHECK(n_str > 0, "%s: no test strings", name);
	printf("vocab %-10s %zu/%zu strings match llama.cpp\n", name, n_ok, n_str);
free_all:
	eng_tokenizer_free(t);
	gguf_free(g);
	free(inp);
	free(out);
}

// ---- stories260K

static void test_stories(const char *shared)
{
	char path[1200];
	struct gguf_ctx *g = NULL;
	struct eng_tokenizer *t;
	static const char *texts[] = {"Once upon a time, there was a little girl named Lily.",
	                              "  two  spaces\tand a tab\nnewline", "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\xa6\x99"};

	snprintf(path, sizeof(path), "%s/models/stories260K.gguf", shared);
	t = load(path, &g);
	if (!t)
		goto free_all;
	CHECK(eng_tokenizer_kind(t) == ENG_TOK_KIND_SPM, "stories260K is SentencePiece");
	CHECK(eng_tokenizer_n_vocab(t) == 512, "512 tokens, got %d", eng_tokenizer_n_vocab(t));
	CHECK(eng_token_bos(t) == 1 && eng_token_eos(t) == 2, "bos %d eos %d", eng_token_bos(t), eng_token_eos(t));
	CHECK(eng_tokenizer_add_bos(t), "SPM adds BOS by default");
	CHECK(eng_token_is_eog(t, 2) && !eng_token_is_eog(t, 1), "EOS is end of generation, BOS is not");
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		int32_t *ids;
		size_t n;
		int rc = eng_tokenize(t, texts[i], strlen(texts[i]), ENG_TOK_ADD_BOS, &ids, &n);
		CHECK(rc == 0 && n > 1 && ids[0] == 1, "stories260K tokenize '%s' rc %d", texts[i], rc);
		if (rc == 0) {
			check_round_trip(t, texts[i], strlen(texts[i]), ids + 1, n - 1, "stories260K");
			free(ids);
		}
	}
free_all:
	eng_tokenizer_free(t);
	gguf_free(g);
}

// ---- speed

static char *make_mb_text(size_t *len)
{
	static const char *parts[] = {"the ", "quick ", "brown ", "fox ", "jumps ", "over ", "lazy ", "dog",
	                              ". ", ", ", "\n", "\n\n", "    ", "\t", "12345", "3.14159 ",
	                              "it's ", "they'RE ", "int main(void) { return 0; }\n", "caf\xc3\xa9 ",
	                              "\xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97 ", "\xf0\x9f\xa6\x99 ",
	                              "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 ", "aaaaaaaaaaaaaaaa",
	                              "<html><body>", "!!!???", "___", "=====\n"};
	size_t cap = (1 << 20) + 64, n = 0;
	char *s = malloc(cap);
	uint64_t x = 88172645463325252ull;
	while (s && n < (1 << 20)) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		const char *p = parts[x % (sizeof(parts) / sizeof(parts[0]))];
		size_t k = strlen(p);
		if (n + k > cap)
			break;
		memcpy(s + n, p, k);
		n += k;
	}
	*len = n;
	return s;
}

static void test_speed(const char *dir, const char *name, const char *text, size_t len)
{
	char path[1200];
	struct gguf_ctx *g = NULL;
	struct eng_tokenizer *t;
	struct timespec a, b;
	int32_t *ids;
	size_t n;

	snprintf(path, sizeof(path), "%s/ggml-vocab-%s.gguf", dir, name);
	if (!(t = load(path, &g)))
		goto free_all;
	clock_gettime(CLOCK_MONOTONIC, &a);
	int rc = eng_tokenize(t, text, len, 0, &ids, &n);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
	CHECK(rc == 0, "%s: tokenizing 1 MB failed: %d", name, rc);
	/* generous: this machine is shared; an O(n^2) loop takes minutes */
	CHECK(s < SPEED_LIMIT_S, "%s: 1 MB took %.2f s", name, s);
	printf("speed %-10s %zu bytes -> %zu tokens in %.3f s\n", name, len, rc == 0 ? n : 0, s);
	if (rc == 0) {
		check_round_trip(t, text, len, ids, n, name);
		free(ids);
	}
	/* one enormous word: 1 MB of letters without a break */
	char *word = malloc(len);
	for (size_t i = 0; word && i < len; i++)
		word[i] = "abcdefghij"[(i * 7 + i / 3) % 10];
	clock_gettime(CLOCK_MONOTONIC, &a);
	rc = word ? eng_tokenize(t, word, len, 0, &ids, &n) : -ENOMEM;
	clock_gettime(CLOCK_MONOTONIC, &b);
	s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
	CHECK(rc == 0 && s < SPEED_LIMIT_S, "%s: 1 MB single word: rc %d, %.2f s", name, rc, s);
	printf("speed %-10s 1 MB single word in %.3f s\n", name, s);
	if (rc == 0)
		free(ids);
	free(word);
free_all:
	eng_tokenizer_free(t);
	gguf_free(g);
}

// ---- validation of handcrafted files

enum mutation { M_NONE, M_SCORES_SHORT, M_TYPES_WRONG, M_EOS_RANGE, M_DUP, M_MODEL, M_NO_MODEL, M_BPE_NO_MERGES };

static int build_and_load(enum mutation m)
{
	static const char *toks[] = {"<unk>", "<s>", "</s>", "a", "b", "ab", "\xe2\x96\x81"};
	float scores[7] = {0, 0, 0, -1, -2, -0.5f, -3};
	int32_t types[7] = {2, 3, 3, 1, 1, 1, 1};
	char path[] = "/tmp/pf_tok_XXXXXX";
	struct gguf_writer *w = gguf_writer_init();
	struct gguf_ctx *g = NULL;
	struct eng_tokenizer *t = NULL;
	int fd = mkstemp(path), rc;

	if (fd < 0 || !w)
		return -EIO;
	close(fd);
	if (m == M_DUP)
		toks[4] = "a";
	if (m != M_NO_MODEL)
		gguf_writer_set_str(w, "tokenizer.ggml.model", m == M_MODEL ? "bert" : m == M_BPE_NO_MERGES ? "gpt2" : "llama");
	gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 7);
	gguf_writer_set_arr_data(w, "tokenizer.ggml.scores", GGUF_VTYPE_FLOAT32, scores, m == M_SCORES_SHORT ? 6 : 7);
	if (m == M_TYPES_WRONG)
		gguf_writer_set_arr_data(w, "tokenizer.ggml.token_type", GGUF_VTYPE_FLOAT32, scores, 7);
	else
		gguf_writer_set_arr_data(w, "tokenizer.ggml.token_type", GGUF_VTYPE_INT32, types, 7);
	gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", m == M_EOS_RANGE ? 7 : 2);
	toks[4] = "b";
	rc = gguf_writer_write(w, path);
	gguf_writer_free(w);
	if (rc == 0 && (rc = gguf_open(path, &g)) == 0)
		rc = eng_tokenizer_init(g, &t);
	if (rc == 0 && m == M_NONE) {
		int32_t *ids;
		size_t n;
		/* "ab" = "▁" + "ab": ▁a is not a token, so ab merges and ▁ stays */
		rc = eng_tokenize(t, "ab", 2, 0, &ids, &n);
		CHECK(rc == 0 && n == 2 && ids[0] == 6 && ids[1] == 5, "tiny vocab: 'ab' → [6 5], got n=%zu", n);
		if (rc == 0)
			free(ids);
	}
	eng_tokenizer_free(t);
	gguf_free(g);
	unlink(path);
	return rc;
}

static void test_validation(void)
{
	static const char *names[] = {"valid", "scores short", "token_type float", "eos out of range",
	                              "duplicate token", "model bert", "no model", "gpt2 without merges"};
	int level = pf_log_get_level();
	for (int m = M_NONE; m <= M_BPE_NO_MERGES; m++) {
		pf_log_set_level(m == M_NONE ? level : -1); /* the expected errors stay quiet */
		int rc = build_and_load((enum mutation)m);
		pf_log_set_level(level);
		if (m == M_NONE)
			CHECK(rc == 0, "valid handcrafted vocabulary refused: %d", rc);
		else
			CHECK(rc == -EINVAL, "%s: got %d, want -EINVAL", names[m], rc);
	}
}

int main(void)
{
	const char *shared = getenv("PROMPTFS_SHARED");
	char dir[1024];
	static const char *vocabs[] = {"qwen2", "llama-bpe", "gpt-2", "llama-spm", "phi-3"};

	if (!shared) {
		fprintf(stderr, "PROMPTFS_SHARED is not set\n");
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s/models/vocab", shared);
	for (size_t i = 0; i < 5; i++)
		test_vocab(dir, vocabs[i]);
	test_stories(shared);
	size_t len;
	char *text = make_mb_text(&len);
	for (size_t i = 0; text && i < 5; i++)
		test_speed(dir, vocabs[i], text, len);
	free(text);
	test_validation();
	return check_summary();
}
