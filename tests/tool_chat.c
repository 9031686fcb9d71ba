/*
 * tool_chat.c — runs a multi-turn conversation through the engine API
 * (chat mode, greedy) and prints each reply followed by a 0x1e byte, for
 * tests/test_cli.sh to compare with llama.cpp given the same conversation
 * rendered by jinja2.
 *
 *   tool_chat MODEL.gguf MAX_TOKENS [--system TEXT] USER1 [USER2 …]
 * Each turn is appended to the same session (the KV cache is reused); the
 * tool also checks that every later turn prefilled only its own tokens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/engine_internal.h"

int main(int argc, char **argv)
{
	struct eng_model_params p;
	struct eng_model *m = NULL;
	struct eng_session *s = NULL;
	struct eng_settings st;
	int first = 3, status = 0;

	if (argc < 4) {
		fprintf(stderr, "usage: tool_chat MODEL.gguf MAX_TOKENS [--system TEXT] USER1 [USER2 …]\n");
		return 2;
	}
	eng_model_params_default(&p);
	p.backend = "cpu";
	p.n_ctx = 2048;
	if (eng_model_load(argv[1], &p, &m) < 0)
		return 1;
	eng_settings_default(m, &st);
	st.temperature = 0;
	st.max_tokens = atoi(argv[2]);
	if (argc > 5 && !strcmp(argv[3], "--system")) {
		eng_settings_set(&st, "system", argv[4], strlen(argv[4]));
		first = 5;
	}
	if (eng_session_init(m, &st, &s) < 0)
		return 1;
	for (int i = first; i < argc; i++) {
		struct eng_session_info in;
		uint64_t off = 0;
		char buf[4096];
		bool final = false;
		size_t n;

		if (eng_session_submit(s, argv[i], strlen(argv[i])) < 0) {
			fprintf(stderr, "tool_chat: submit failed\n");
			status = 1;
			break;
		}
		while (!final) {
			if (eng_step(m) < 0) {
				status = 1;
				break;
			}
			while ((n = eng_session_read_reply(s, off, buf, sizeof(buf), &final)) > 0) {
				fwrite(buf, 1, n, stdout);
				off += n;
			}
		}
		putchar(0x1e);
		eng_session_info(s, &in);
		fprintf(stderr, "turn %d: %s, prompt %d tokens, prefilled %d, reply %d\n", i - first + 1,
		        in.status, in.last_prompt_tokens, in.last_prefill_tokens, in.last_gen_tokens);
		if (i > first && in.last_prefill_tokens > in.last_prompt_tokens + 1) {
			fprintf(stderr, "tool_chat: turn %d re-prefilled the conversation\n", i - first + 1);
			status = 1;
		}
	}
	if (getenv("TOOL_CHAT_DUMP")) { /* the token history, for debugging */
		int32_t *t;
		int n;

		eng_session_tokens(s, &t, &n);
		for (int i = 0; i < n; i++)
			fprintf(stderr, "%d%c", t[i], i + 1 < n ? ' ' : '\n');
		free(t);
	}
	eng_session_free(s);
	eng_settings_free(&st);
	eng_model_free(m);
	return status;
}
