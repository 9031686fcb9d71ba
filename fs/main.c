/*
 * main.c — `promptfs`: the one binary.  Dispatches subcommands; anything
 * else is the mount (promptfs [options] MODEL.gguf MOUNTPOINT).  Only main()
 * exits.
 */
#include <stdio.h>
#include <string.h>

#include "fs.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: promptfs [options] MODEL.gguf MOUNTPOINT   mount MODEL as a directory (see --help)\n"
		"       promptfs info MODEL.gguf [--all]           describe a model\n"
		"       promptfs info MODEL.gguf --tokens-containing STR\n"
		"                                                  ids of the tokens whose text contains STR\n"
		"       promptfs run MODEL.gguf PROMPT [options]   generate text to stdout\n"
		"       promptfs bench MODEL.gguf [options]        prefill and decode tokens/s\n"
		"       promptfs synth (--like M.gguf | --preset NAME) -o OUT.gguf\n"
		"                                                  write a random-weight model of a real model's shapes\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "info"))
		return fs_cli_info(argc - 1, argv + 1);
	if (!strcmp(argv[1], "run"))
		return fs_cli_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "bench"))
		return fs_cli_bench(argc - 1, argv + 1);
	if (!strcmp(argv[1], "synth"))
		return fs_cli_synth(argc - 1, argv + 1);
	if (!strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	return fs_mount_main(argc, argv);
}
