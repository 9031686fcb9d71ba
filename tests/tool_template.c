/*
 * tool_template.c — renders a conversation with engine/template.c for
 * tests/test_template.py, which renders the same conversation with jinja2
 * from the real template text and compares the strings.
 *
 *   tool_template family TEMPLATE_FILE
 *       prints "<family>\n<default system prompt or empty>"
 *   tool_template render TEMPLATE_FILE BOS EOS < MESSAGES
 *       MESSAGES: role NUL content NUL role NUL content NUL …  (an optional
 *       system message first, then user/assistant alternating, user first);
 *       prints the rendered prompt: first turn, each reply, next turns, and
 *       the end-of-reply markup when the last message is the assistant's.
 *   --segments (after render) marks segments as [S:…] [M:…] [C:…] instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/template.h"

static int show_segments;

static int emit(void *arg, enum eng_tmpl_seg kind, const char *text, size_t len)
{
	(void)arg;
	if (show_segments)
		printf("[%c:", kind == ENG_TMPL_SEG_SPECIAL ? 'S' : kind == ENG_TMPL_SEG_MARKUP ? 'M' : 'C');
	fwrite(text, 1, len, stdout);
	if (show_segments)
		printf("]");
	return 0;
}

static char *read_all(FILE *f, size_t *n)
{
	size_t cap = 4096, len = 0;
	char *b = malloc(cap + 1);

	while (b) {
		size_t r = fread(b + len, 1, cap - len, f);

		len += r;
		if (len < cap)
			break;
		cap *= 2;
		b = realloc(b, cap + 1);
	}
	if (b)
		b[len] = 0;
	*n = len;
	return b;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	size_t n;
	char *s;

	if (!f)
		return NULL;
	s = read_all(f, &n);
	fclose(f);
	return s;
}

int main(int argc, char **argv)
{
	struct eng_template t;
	char *jinja, *in;
	size_t n, i = 0;
	int k = 0;
	const char *role[64], *content[64];
	size_t clen[64];

	if (argc < 3) {
		fprintf(stderr, "usage: tool_template family|render TEMPLATE_FILE [BOS EOS [--segments]]\n");
		return 2;
	}
	jinja = strcmp(argv[2], "-") ? read_file(argv[2]) : NULL;
	if (strcmp(argv[2], "-") && !jinja) {
		perror(argv[2]);
		return 1;
	}
	if (eng_template_init(jinja, argc > 3 ? argv[3] : "", argc > 4 ? argv[4] : "", &t) < 0)
		return 1;
	if (!strcmp(argv[1], "family")) {
		printf("%s\n%s", eng_template_family_name(t.family), t.default_system ? t.default_system : "");
		goto done;
	}
	show_segments = argc > 5 && !strcmp(argv[5], "--segments");
	in = read_all(stdin, &n);
	while (i < n && k < 64) {
		role[k] = in + i;
		i += strlen(in + i) + 1;
		if (i >= n)
			break;
		content[k] = in + i;
		clen[k] = strlen(in + i);
		i += clen[k] + 1;
		k++;
	}
	{
		int j = 0;
		const char *sys = NULL;
		size_t slen = 0;

		if (k > 0 && !strcmp(role[0], "system")) {
			sys = content[0];
			slen = clen[0];
			j = 1;
		}
		if (j >= k || strcmp(role[j], "user")) {
			fprintf(stderr, "the first message after the system prompt must be the user's\n");
			return 2;
		}
		eng_template_first_turn(&t, sys, slen, content[j], clen[j], emit, NULL);
		for (j++; j < k; j++) {
			if (!strcmp(role[j], "assistant"))
				eng_template_reply(&t, content[j], clen[j], emit, NULL);
			else
				eng_template_next_turn(&t, content[j], clen[j], emit, NULL);
		}
		if (!strcmp(role[k - 1], "assistant"))
			eng_template_end_reply(&t, emit, NULL);
	}
	free(in);
done:
	eng_template_free(&t);
	free(jinja);
	return 0;
}
