/* PLACEHOLDER — replaced by the CUDA work (fs_cli_synth). */
#include <stdio.h>
#include "fs.h"
int fs_cli_synth(int argc, char **argv) { fprintf(stderr, "synth: not built yet\n"); return 1; }
