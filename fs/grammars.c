/*
 * grammars.c — the grammars/ and schemas/ folders: every file of
 * grammars/ is a GBNF grammar, every file of schemas/ a JSON Schema, bound
 * to sessions by name (`setfattr -n user.grammar -v NAME s`, `user.schema`,
 * or `grammar =` / `schema =` in defaults).
 *
 * The engine owns them (eng_grammars_*, eng_schemas_*: the text as written
 * and the compiled rules, made once when the file is written); this file
 * keeps only what FUSE needs: one inode number per name and folder (never
 * reused) and files that an open has created but not yet written (`cp`
 * creates, writes, closes).  Writing is all or nothing at close: a grammar
 * that does not parse, or a schema that does not convert, fails the close
 * with EINVAL (the log names line:column, or the keyword) and the file
 * keeps its previous content (a new file disappears).  A created file that
 * is closed without data disappears too (`touch` makes nothing).  Every
 * change is handed to the state directory's store (gramstore.c), which
 * writes it from its own thread.  Everything runs with fs->lock held.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs_internal.h"

/* The engine's registry behind each folder. */
static const struct reg {
	int (*put)(struct eng_model *, const char *, const char *, size_t);
	int (*remove)(struct eng_model *, const char *);
	int (*rename)(struct eng_model *, const char *, const char *);
	int (*text)(struct eng_model *, const char *, char **, size_t *);
	int (*names)(struct eng_model *, char ***, int *);
} regs[2] = {
	{ eng_grammars_put, eng_grammars_remove, eng_grammars_rename, eng_grammars_text, eng_grammars_names },
	{ eng_schemas_put, eng_schemas_remove, eng_schemas_rename, eng_schemas_text, eng_schemas_names },
};

static bool is_schema_dir(uint64_t dir)
{
	return dir == FS_INO_SCHEMAS;
}

static struct fs_gram *by_ino(struct fs *fs, uint64_t ino)
{
	if (ino < FS_INO_FIRST_GRAMMAR || ino - FS_INO_FIRST_GRAMMAR >= (uint64_t)fs->n_gram)
		return NULL;
	return &fs->gram[ino - FS_INO_FIRST_GRAMMAR];
}

static struct fs_gram *by_name(struct fs *fs, bool schema, const char *name, bool add)
{
	struct fs_gram *g;

	for (int i = 0; i < fs->n_gram; i++)
		if (fs->gram[i].schema == schema && !strcmp(fs->gram[i].name, name))
			return &fs->gram[i];
	if (!add)
		return NULL;
	if (fs->n_gram == fs->cap_gram) {
		int cap = fs->cap_gram ? 2 * fs->cap_gram : 16;
		struct fs_gram *v = realloc(fs->gram, sizeof(*v) * (size_t)cap);

		if (!v)
			return NULL;
		fs->gram = v;
		fs->cap_gram = cap;
	}
	g = &fs->gram[fs->n_gram];
	if (!(g->name = strdup(name)))
		return NULL;
	g->ino = FS_INO_FIRST_GRAMMAR + (uint64_t)fs->n_gram++;
	g->pending = 0;
	g->schema = schema;
	return g;
}

static bool in_engine(struct fs *fs, bool schema, const char *name, size_t *len)
{
	char *text;
	size_t n;

	if (!fs->model) /* a settings parser run without a mount (tests, fuzz_settings) */
		return false;
	if (regs[schema].text(fs->model, name, &text, &n) < 0)
		return false;
	free(text);
	if (len)
		*len = n;
	return true;
}

bool fs_gram_exists(struct fs *fs, uint64_t ino)
{
	struct fs_gram *g = by_ino(fs, ino);

	return g && (g->pending > 0 || in_engine(fs, g->schema, g->name, NULL));
}

uint64_t fs_gram_lookup(struct fs *fs, uint64_t dir, const char *name)
{
	bool schema = is_schema_dir(dir);
	struct fs_gram *g = by_name(fs, schema, name, false);

	if (g && g->pending > 0)
		return g->ino;
	if (!in_engine(fs, schema, name, NULL))
		return 0;
	g = by_name(fs, schema, name, true);
	return g ? g->ino : 0;
}

bool fs_gram_is_schema(struct fs *fs, uint64_t ino)
{
	struct fs_gram *g = by_ino(fs, ino);

	return g && g->schema;
}

const char *fs_gram_name(struct fs *fs, uint64_t ino)
{
	struct fs_gram *g = by_ino(fs, ino);

	return g ? g->name : NULL;
}

int fs_gram_attr(struct fs *fs, uint64_t ino, struct stat *st)
{
	struct fs_gram *g = by_ino(fs, ino);
	size_t len = 0;

	if (!g || (!in_engine(fs, g->schema, g->name, &len) && g->pending == 0))
		return -ENOENT;
	st->st_mode = S_IFREG | 0644;
	st->st_nlink = 1;
	st->st_size = (off_t)len;
	st->st_blocks = (st->st_size + 511) / 512;
	return 0;
}

int fs_gram_create(struct fs *fs, uint64_t dir, const char *name, uint64_t *ino)
{
	struct fs_gram *g;
	int rc = fs_name_check(name);

	if (rc < 0)
		return rc;
	if (!(g = by_name(fs, is_schema_dir(dir), name, true)))
		return -ENOMEM;
	g->pending++;
	*ino = g->ino;
	return 0;
}

int fs_gram_text(struct fs *fs, uint64_t ino, char **text, size_t *len)
{
	struct fs_gram *g = by_ino(fs, ino);
	int rc;

	if (!g)
		return -ENOENT;
	rc = regs[g->schema].text(fs->model, g->name, text, len);
	if (rc == -ENOENT && g->pending > 0) {
		*text = NULL;
		*len = 0;
		return 0;
	}
	return rc;
}

int fs_gram_commit(struct fs *fs, uint64_t ino, const char *buf, size_t len)
{
	struct fs_gram *g = by_ino(fs, ino);
	int rc;

	if (!g)
		return -ENOENT;
	rc = regs[g->schema].put(fs->model, g->name, buf, len);
	if (rc == 0)
		fs_gramstore_post(fs, g->schema, g->name);
	return rc;
}

void fs_gram_unpend(struct fs *fs, uint64_t ino)
{
	struct fs_gram *g = by_ino(fs, ino);

	if (g && g->pending > 0)
		g->pending--;
}

int fs_gram_unlink(struct fs *fs, uint64_t dir, const char *name)
{
	bool schema = is_schema_dir(dir);
	int rc = regs[schema].remove(fs->model, name);

	if (rc == 0)
		fs_gramstore_post(fs, schema, name);
	return rc;
}

int fs_gram_rename(struct fs *fs, uint64_t dir, const char *from, const char *to)
{
	bool schema = is_schema_dir(dir);
	int rc = fs_name_check(to);

	if (rc == 0)
		rc = regs[schema].rename(fs->model, from, to);
	if (rc == 0) {
		fs_gramstore_post(fs, schema, from);
		fs_gramstore_post(fs, schema, to);
	}
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int fs_gram_names(struct fs *fs, uint64_t dir, char ***names, int *n)
{
	bool schema = is_schema_dir(dir);
	char **eng, **v;
	int k, m = 0;
	size_t bytes = 0;
	char *p;
	int rc = regs[schema].names(fs->model, &eng, &k);

	if (rc < 0)
		return rc;
	for (int i = 0; i < k; i++)
		bytes += strlen(eng[i]) + 1;
	for (int i = 0; i < fs->n_gram; i++)
		if (fs->gram[i].pending > 0 && fs->gram[i].schema == schema)
			bytes += strlen(fs->gram[i].name) + 1;
	v = malloc(sizeof(*v) * (size_t)(k + fs->n_gram + 1) + bytes);
	if (!v) {
		free(eng);
		return -ENOMEM;
	}
	p = (char *)(v + k + fs->n_gram + 1);
	for (int i = 0; i < k; i++) {
		v[m++] = strcpy(p, eng[i]);
		p += strlen(eng[i]) + 1;
	}
	for (int i = 0; i < fs->n_gram; i++) {
		bool dup = false;

		if (fs->gram[i].pending == 0 || fs->gram[i].schema != schema)
			continue;
		for (int j = 0; j < k && !dup; j++)
			dup = !strcmp(eng[j], fs->gram[i].name);
		if (!dup) {
			v[m++] = strcpy(p, fs->gram[i].name);
			p += strlen(fs->gram[i].name) + 1;
		}
	}
	v[m] = NULL;
	free(eng);
	qsort(v, (size_t)m, sizeof(*v), cmp_str);
	*names = v;
	*n = m;
	return 0;
}

void fs_gram_free_all(struct fs *fs)
{
	for (int i = 0; i < fs->n_gram; i++)
		free(fs->gram[i].name);
	free(fs->gram);
	fs->gram = NULL;
	fs->n_gram = fs->cap_gram = 0;
}

int fs_gram_known(struct fs *fs, int key, const char *value, size_t size)
{
	bool schema = key == ENG_KEY_SCHEMA;
	char name[ENG_GRAMMAR_NAME_MAX + 1];
	size_t a = 0, b = size;

	if (key != ENG_KEY_GRAMMAR && key != ENG_KEY_SCHEMA)
		return 0;
	while (a < b && (value[a] == ' ' || value[a] == '\t' || value[a] == '\n'))
		a++;
	while (b > a && (value[b - 1] == ' ' || value[b - 1] == '\t' || value[b - 1] == '\n'))
		b--;
	if (a == b || b - a > ENG_GRAMMAR_NAME_MAX)
		return 0; /* empty: no grammar; too long: eng_settings_set says why */
	memcpy(name, value + a, b - a);
	name[b - a] = 0;
	if (!in_engine(fs, schema, name, NULL)) {
		LOG_ERR("%s '%s': no such file in %s/", schema ? "schema" : "grammar", name, schema ? "schemas" : "grammars");
		return -EINVAL;
	}
	return 0;
}
