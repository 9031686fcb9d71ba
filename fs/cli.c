/* PLACEHOLDER — replaced by the engine/CLI work (fs_cli_info, fs_cli_run, fs_cli_bench). */
#include <stdio.h>
#include "fs.h"
int fs_cli_info(int argc, char **argv) { fprintf(stderr, "info: not built yet\n"); return 1; }
int fs_cli_run(int argc, char **argv) { fprintf(stderr, "run: not built yet\n"); return 1; }
int fs_cli_bench(int argc, char **argv) { fprintf(stderr, "bench: not built yet\n"); return 1; }
