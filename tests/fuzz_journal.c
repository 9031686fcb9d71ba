/*
 * fuzz_journal.c — libFuzzer target for the state directory's journal
 * parser (fs/journal_parse.c): every byte of a journal is untrusted.
 *
 * Each input is parsed from an exact-size copy (ASan sees any read past the
 * end).  Whatever parses is written back in format 2 and parsed again: the
 * second parse must be clean (no damaged record) and give the same name,
 * settings and turns, so the encoder and the parser agree on every input.
 *
 * Built by the fuzz tree (cmake -DPROMPTFS_FUZZ=ON with clang; see
 * scripts/test.sh), which registers two ctests: fuzz_journal_corpus (every
 * file in tests/corpus/journal/ once) and fuzz_journal_timed (a short run).
 * By hand: build-fuzz/tests/fuzz_journal -max_total_time=600 NEWDIR tests/corpus/journal
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fs_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void encode(const struct fs_jstate *st, struct fs_buf *b)
{
	fs_buf_add(b, "promptfs-journal 2\n", 19);
	if (st->name)
		fs_journal_record(b, 'N', st->name, strlen(st->name), "", 0);
	if (st->has_owner) {
		char o[48];
		int n = snprintf(o, sizeof(o), "%u %u %u", st->uid, st->gid, st->mode);
		fs_journal_record(b, 'O', o, (size_t)n, "", 0);
	}
	for (int i = 0; i < st->n_set; i++) {
		const char *k = st->set[i].key;
		if (st->set[i].val)
			fs_journal_record(b, 'S', k, strlen(k), st->set[i].val, st->set[i].vlen);
		else
			fs_journal_record(b, 'U', k, strlen(k), "", 0);
	}
	for (int i = 0; i < st->n_turns; i++)
		fs_journal_record(b, 'T', st->turns[i].user, st->turns[i].ulen, st->turns[i].reply,
				  st->turns[i].rlen);
}

static void same(const struct fs_jstate *a, const struct fs_jstate *b)
{
	if (b->n_damaged || (!a->name) != (!b->name) || (a->name && strcmp(a->name, b->name)) ||
	    a->n_set != b->n_set || a->n_turns != b->n_turns || a->has_owner != b->has_owner ||
	    (a->has_owner && (a->uid != b->uid || a->gid != b->gid || a->mode != b->mode)))
		abort();
	for (int i = 0; i < a->n_set; i++)
		if (strcmp(a->set[i].key, b->set[i].key) || (!a->set[i].val) != (!b->set[i].val) ||
		    a->set[i].vlen != b->set[i].vlen ||
		    (a->set[i].val && memcmp(a->set[i].val, b->set[i].val, a->set[i].vlen)))
			abort();
	for (int i = 0; i < a->n_turns; i++)
		if (a->turns[i].ulen != b->turns[i].ulen || a->turns[i].rlen != b->turns[i].rlen ||
		    memcmp(a->turns[i].user, b->turns[i].user, a->turns[i].ulen) ||
		    memcmp(a->turns[i].reply, b->turns[i].reply, a->turns[i].rlen))
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	struct fs_jstate st, again;
	struct fs_buf b = {0};
	char *copy = malloc(size ? size : 1);

	if (!quiet) {
		pf_log_set_level(-1);
		quiet = true;
	}
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (fs_journal_parse("fuzz", copy, size, &st) == 0 && (st.name || st.n_set || st.n_turns || st.has_owner)) {
		encode(&st, &b);
		if (b.oom || fs_journal_parse("fuzz-again", b.p, b.len, &again) != 0)
			abort();
		same(&st, &again);
		fs_jstate_free(&again);
	}
	fs_jstate_free(&st);
	free(b.p);
	free(copy);
	return 0;
}
