/*
 * fs.h — the fs/ module: the FUSE daemon and the command line.
 * main.c dispatches `promptfs SUBCOMMAND …` to these entry points; each
 * returns a process exit status (0 ok, 1 runtime failure, 2 usage error).
 */
#ifndef PROMPTFS_FS_H
#define PROMPTFS_FS_H

/* promptfs [options] MODEL.gguf MOUNTPOINT — the daemon (fs/daemon.c). */
int fs_mount_main(int argc, char **argv);
/* promptfs info MODEL.gguf [--all] */
int fs_cli_info(int argc, char **argv);
/* promptfs run MODEL.gguf "prompt" [-n N] [--temp T] [--seed S] … */
int fs_cli_run(int argc, char **argv);
/* promptfs bench MODEL.gguf [--backend B] [-t threads] … */
int fs_cli_bench(int argc, char **argv);
/* promptfs bench MODEL.gguf --sessions N[,N…] … (fs/cli_sessions.c; fs_cli_bench passes it on) */
int fs_cli_bench_sessions(int argc, char **argv);
/* promptfs synth (--like MODEL.gguf | --preset NAME) -o OUT.gguf */
int fs_cli_synth(int argc, char **argv);

#endif /* PROMPTFS_FS_H */
