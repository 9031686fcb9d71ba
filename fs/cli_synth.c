/*
 * cli_synth.c — `promptfs synth`: write a synthetic model (engine/synth.h).
 *
 *   promptfs synth (--like REAL.gguf | --preset NAME) -o OUT.gguf
 *                  [--seed N] [--type TYPE] [--vocab VOCAB.gguf] [-t THREADS] [-q] [--sparse]
 *   promptfs synth --list-presets
 *
 * Exit status: 0 written, 1 failed (log line says why), 2 usage error.
 */
#include "fs.h"

#include "../engine/synth.h"
#include "../gguf/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

static void synth_usage(FILE *f)
{
	fprintf(f,
		"usage: promptfs synth (--like REAL.gguf | --preset NAME) -o OUT.gguf [options]\n"
		"  --like REAL.gguf   same metadata, tensor names, shapes and types as REAL; random weights\n"
		"  --preset NAME      a built-in layout, MODEL-FILETYPE (--list-presets)\n"
		"  -o OUT.gguf        output file\n"
		"  --seed N           random seed (default 1); same seed, same file\n"
		"  --type TYPE        every matrix in TYPE (F16, Q8_0, Q4_K, …); rows that do not\n"
		"                     split into TYPE's blocks fall back as llama.cpp does\n"
		"  --vocab V.gguf     tokenizer for presets (default the preset's, from shared/models/vocab/)\n"
		"  -t N               threads (default: all CPUs)\n"
		"  -q                 no progress output\n"
		"  --sparse           header and tensor table, no random weights (holes that read as\n"
		"                     zeros: no disk, no time): a layout for llama-quantize --dry-run,\n"
		"                     promptfs info, gguf-dump\n");
}

static int parse_type(const char *s)
{
	for (int id = 0; id < GGUF_DTYPE_COUNT; id++) {
		const struct gguf_type_traits *t = gguf_type_traits(id);
		if (t && t->is_weight && !strcasecmp(t->name, s))
			return id;
	}
	return -1;
}

/* Value of option argv[*i] (the next word), or NULL when missing. */
static const char *opt_arg(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc) {
		fprintf(stderr, "synth: %s needs a value\n", argv[*i]);
		return NULL;
	}
	return argv[++*i];
}

int fs_cli_synth(int argc, char **argv)
{
	struct eng_synth_opts o = { .seed = 1, .type = -1, .verbose = 1 };
	const char *v;
	char *end;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			synth_usage(stdout);
			return 0;
		} else if (!strcmp(a, "--list-presets")) {
			char name[96];
			for (int k = 0; eng_synth_preset_name(k, name, sizeof(name)) == 0; k++)
				printf("%s\n", name);
			return 0;
		} else if (!strcmp(a, "-q")) {
			o.verbose = 0;
		} else if (!strcmp(a, "--sparse")) {
			o.sparse = true;
		} else if (!strcmp(a, "--like") || !strcmp(a, "--preset") || !strcmp(a, "-o") ||
			   !strcmp(a, "--vocab") || !strcmp(a, "--seed") || !strcmp(a, "--type") ||
			   !strcmp(a, "-t") || !strcmp(a, "--threads")) {
			if (!(v = opt_arg(argc, argv, &i)))
				return 2;
			if (!strcmp(a, "--like"))
				o.like = v;
			else if (!strcmp(a, "--preset"))
				o.preset = v;
			else if (!strcmp(a, "-o"))
				o.out = v;
			else if (!strcmp(a, "--vocab"))
				o.vocab = v;
			else if (!strcmp(a, "--seed")) {
				o.seed = strtoull(v, &end, 0);
				if (*end) {
					fprintf(stderr, "synth: bad seed '%s'\n", v);
					return 2;
				}
			} else if (!strcmp(a, "--type")) {
				if ((o.type = parse_type(v)) < 0) {
					fprintf(stderr, "synth: unknown weight type '%s'\n", v);
					return 2;
				}
			} else {
				o.n_threads = (int)strtol(v, &end, 10);
				if (*end || o.n_threads < 1) {
					fprintf(stderr, "synth: bad thread count '%s'\n", v);
					return 2;
				}
			}
		} else {
			fprintf(stderr, "synth: unknown argument '%s'\n", a);
			synth_usage(stderr);
			return 2;
		}
	}
	if (!o.out || !o.like == !o.preset) {
		synth_usage(stderr);
		return 2;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int err = eng_synth(&o);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (err) {
		fprintf(stderr, "synth: failed (%s)\n", strerror(-err));
		return 1;
	}
	struct stat st;
	if (o.verbose && stat(o.out, &st) == 0)
		fprintf(stderr, "synth: wrote %s: %.1f MiB%s in %.2f s\n", o.out, (double)st.st_size / (1 << 20),
			o.sparse ? " (sparse: no weights)" : "",
			(double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
	return 0;
}
