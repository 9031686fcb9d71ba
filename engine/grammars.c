/*
 * grammars.c — the model's named grammars and JSON schemas (the mount's
 * grammars/ and schemas/ folders): the source kept as written plus its
 * compiled form, parsed (for a schema: converted, json_schema.h, then
 * parsed) once at put; which grammar a turn gets; and the per-model
 * tables the host sampler needs (grammar vocabulary, DRY sequence
 * breakers), built on first use.  Everything here is protected by the
 * model lock; parsing runs outside it.
 */
#include "engine_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf/log.h"
#include "json_schema.h"

static void lock(struct eng_model *m)
{
	pthread_mutex_lock(&m->lock);
}

static void unlock(struct eng_model *m)
{
	pthread_mutex_unlock(&m->lock);
}

static bool good_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	return n >= 1 && n <= ENG_GRAMMAR_NAME_MAX && name[0] != '.' && !strchr(name, '/');
}

/* The two registries share the code below: schemas differ only in what
 * put compiles.  A registry is named by its list head in the model. */
static struct eng_grammar_entry **head(struct eng_model *m, bool schema)
{
	return schema ? &m->schemas : &m->grammars;
}

static struct eng_grammar_entry **find_in(struct eng_grammar_entry **pp, const char *name)
{
	while (*pp && strcmp((*pp)->name, name))
		pp = &(*pp)->next;
	return pp;
}

static struct eng_grammar_entry **find(struct eng_model *m, const char *name)
{
	return find_in(&m->grammars, name);
}

static void entry_free(struct eng_grammar_entry *e)
{
	if (!e)
		return;
	eng_grammar_unref(e->g);
	free(e->name);
	free(e->text);
	free(e);
}

/* Compiles a schema: JSON Schema → GBNF → grammar. */
static int schema_parse(const char *name, const char *text, size_t len, struct eng_grammar **out)
{
	char *gbnf;
	size_t glen;
	int rc = eng_json_schema_to_gbnf(name, text, len, &gbnf, &glen);

	if (rc < 0)
		return rc;
	rc = eng_grammar_parse(name, gbnf, glen, out);
	free(gbnf);
	return rc;
}

static int put(struct eng_model *m, bool schema, const char *name, const char *text, size_t len)
{
	struct eng_grammar_entry *e, **pp;
	int rc;

	if (!good_name(name)) {
		LOG_ERR("%s name '%.60s': 1-%d bytes, no '/', not starting with '.'", schema ? "schema" : "grammar",
		        name ? name : "", ENG_GRAMMAR_NAME_MAX);
		return -EINVAL;
	}
	if (!(e = calloc(1, sizeof(*e))))
		return -ENOMEM;
	rc = schema ? schema_parse(name, text, len, &e->g) : eng_grammar_parse(name, text, len, &e->g);
	if (rc < 0)
		goto fail;
	rc = -ENOMEM;
	if (!(e->name = strdup(name)) || !(e->text = malloc(len + 1)))
		goto fail;
	memcpy(e->text, text, len);
	e->text[len] = 0;
	e->len = len;
	lock(m);
	pp = find_in(head(m, schema), name);
	if (*pp) {
		e->next = (*pp)->next;
		entry_free(*pp);
	}
	*pp = e;
	unlock(m);
	return 0;
fail:
	entry_free(e);
	return rc;
}

static int remove_one(struct eng_model *m, bool schema, const char *name)
{
	struct eng_grammar_entry **pp, *e;
	int rc = -ENOENT;

	lock(m);
	pp = find_in(head(m, schema), name);
	if ((e = *pp)) {
		*pp = e->next;
		entry_free(e);
		rc = 0;
	}
	unlock(m);
	return rc;
}

static int rename_one(struct eng_model *m, bool schema, const char *from, const char *to)
{
	struct eng_grammar_entry **pp, *e, *old;
	char *nn;
	int rc = -ENOENT;

	if (!good_name(to))
		return -EINVAL;
	if (!(nn = strdup(to)))
		return -ENOMEM;
	lock(m);
	pp = find_in(head(m, schema), from);
	if ((e = *pp)) {
		*pp = e->next;
		pp = find_in(head(m, schema), to);
		if ((old = *pp)) {
			*pp = old->next;
			entry_free(old);
		}
		free(e->name);
		e->name = nn;
		nn = NULL;
		e->next = *head(m, schema);
		*head(m, schema) = e;
		rc = 0;
	}
	unlock(m);
	free(nn);
	return rc;
}

static int text_of(struct eng_model *m, bool schema, const char *name, char **text, size_t *len)
{
	struct eng_grammar_entry *e;
	int rc = -ENOENT;

	*text = NULL;
	*len = 0;
	lock(m);
	if ((e = *find_in(head(m, schema), name))) {
		rc = -ENOMEM;
		if ((*text = malloc(e->len + 1))) {
			memcpy(*text, e->text, e->len + 1);
			*len = e->len;
			rc = 0;
		}
	}
	unlock(m);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int names_of(struct eng_model *m, bool schema, char ***names, int *n)
{
	size_t bytes = 0;
	int k = 0;
	char **v, *p;

	lock(m);
	for (struct eng_grammar_entry *e = *head(m, schema); e; e = e->next) {
		bytes += strlen(e->name) + 1;
		k++;
	}
	v = malloc(sizeof(*v) * (size_t)(k + 1) + bytes);
	if (v) {
		p = (char *)(v + k + 1);
		k = 0;
		for (struct eng_grammar_entry *e = *head(m, schema); e; e = e->next) {
			v[k++] = p;
			strcpy(p, e->name);
			p += strlen(e->name) + 1;
		}
		v[k] = NULL;
	}
	unlock(m);
	if (!v)
		return -ENOMEM;
	qsort(v, (size_t)k, sizeof(*v), cmp_str);
	*names = v;
	*n = k;
	return 0;
}

int eng_grammars_put(struct eng_model *m, const char *name, const char *text, size_t len)
{
	return put(m, false, name, text, len);
}

int eng_grammars_remove(struct eng_model *m, const char *name)
{
	return remove_one(m, false, name);
}

int eng_grammars_rename(struct eng_model *m, const char *from, const char *to)
{
	return rename_one(m, false, from, to);
}

int eng_grammars_text(struct eng_model *m, const char *name, char **text, size_t *len)
{
	return text_of(m, false, name, text, len);
}

int eng_grammars_names(struct eng_model *m, char ***names, int *n)
{
	return names_of(m, false, names, n);
}

int eng_schemas_put(struct eng_model *m, const char *name, const char *text, size_t len)
{
	return put(m, true, name, text, len);
}

int eng_schemas_remove(struct eng_model *m, const char *name)
{
	return remove_one(m, true, name);
}

int eng_schemas_rename(struct eng_model *m, const char *from, const char *to)
{
	return rename_one(m, true, from, to);
}

int eng_schemas_text(struct eng_model *m, const char *name, char **text, size_t *len)
{
	return text_of(m, true, name, text, len);
}

int eng_schemas_names(struct eng_model *m, char ***names, int *n)
{
	return names_of(m, true, names, n);
}

struct eng_grammar *eng_grammar_lookup_locked(struct eng_model *m, const char *name)
{
	struct eng_grammar_entry *e = *find(m, name);

	return e ? eng_grammar_ref(e->g) : NULL;
}

const struct eng_grammar_vocab *eng_model_gvocab_locked(struct eng_model *m)
{
	if (!m->gvocab && eng_grammar_vocab_init(m->tok, &m->gvocab) < 0)
		LOG_ERR("no memory for the grammar vocabulary (%d tokens)", eng_tokenizer_n_vocab(m->tok));
	return m->gvocab;
}

/* llama.cpp's default DRY sequence breakers: a token whose text (control
 * tokens rendered) contains one of them. */
unsigned char *eng_dry_breakers_build(const struct eng_tokenizer *t)
{
	static const char br[] = { '\n', ':', '"', '*' };
	int V = eng_tokenizer_n_vocab(t);
	size_t mp = eng_tokenizer_max_piece(t) + 1;
	char *piece = malloc(mp);
	unsigned char *out = calloc((size_t)V, 1);

	if (!piece || !out) {
		free(piece);
		free(out);
		return NULL;
	}
	for (int32_t id = 0; id < V; id++) {
		int k = eng_token_piece(t, id, true, piece, mp);

		for (size_t b = 0; k > 0 && b < sizeof(br); b++)
			if (memchr(piece, br[b], (size_t)k))
				out[id] = 1;
	}
	free(piece);
	return out;
}

const unsigned char *eng_model_dry_breakers_locked(struct eng_model *m)
{
	if (!m->dry_breaker && !(m->dry_breaker = eng_dry_breakers_build(m->tok)))
		LOG_ERR("no memory for the DRY breaker table");
	return m->dry_breaker;
}

/* llama.cpp's grammars/json.gbnf with `value` as the root: any JSON value. */
static const char json_value_gbnf[] =
	"root   ::= value\n"
	"value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
	"object ::= \"{\" ws ( string \":\" ws value (\",\" ws string \":\" ws value)* )? \"}\" ws\n"
	"array  ::= \"[\" ws ( value (\",\" ws value)* )? \"]\" ws\n"
	"string ::= \"\\\"\" ( [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\bfnrt] | \"u\" [0-9a-fA-F]{4}) )* \"\\\"\" ws\n"
	"number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws\n"
	"ws     ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";

struct eng_grammar *eng_model_json_grammar_locked(struct eng_model *m)
{
	if (!m->json_grammar && eng_grammar_parse("(mode json)", json_value_gbnf, sizeof(json_value_gbnf) - 1,
	                                          &m->json_grammar) < 0)
		return NULL;
	return eng_grammar_ref(m->json_grammar);
}

int eng_turn_bind_grammar_locked(struct eng_session *s)
{
	struct eng_model *m = s->m;
	const struct eng_settings *st = &s->st;
	struct eng_grammar_entry *e;

	eng_grammar_unref(s->grammar);
	s->grammar = NULL;
	if (st->json_schema_g) {
		s->grammar = eng_grammar_ref(st->json_schema_g);
	} else if (st->schema) {
		if (!(e = *find_in(&m->schemas, st->schema))) {
			LOG_ERR("schema '%s': no such schema in schemas/", st->schema);
			return -EINVAL;
		}
		s->grammar = eng_grammar_ref(e->g);
	} else if (st->grammar) {
		if (!(s->grammar = eng_grammar_lookup_locked(m, st->grammar))) {
			LOG_ERR("grammar '%s': no such grammar in grammars/", st->grammar);
			return -EINVAL;
		}
	} else if (st->mode == ENG_MODE_JSON && !(s->grammar = eng_model_json_grammar_locked(m))) {
		return -ENOMEM;
	}
	return 0;
}

void eng_grammars_free(struct eng_model *m)
{
	eng_grammar_unref(m->json_grammar);
	m->json_grammar = NULL;
	for (int k = 0; k < 2; k++)
		while (*head(m, k)) {
			struct eng_grammar_entry *e = *head(m, k);

			*head(m, k) = e->next;
			entry_free(e);
		}
	eng_grammar_vocab_free(m->gvocab);
	m->gvocab = NULL;
	free(m->dry_breaker);
	m->dry_breaker = NULL;
}
