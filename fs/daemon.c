/* PLACEHOLDER — replaced by the filesystem work (fs_mount_main). */
#include <stdio.h>
#include "fs.h"
int fs_mount_main(int argc, char **argv) { fprintf(stderr, "mount: not built yet\n"); return 1; }
