/*
 * daemon.c — `promptfs [options] MODEL.gguf MOUNTPOINT`: parse options, load
 * the model, mount, serve, and unmount cleanly.
 *
 * Without -f the process forks first (threads and CUDA contexts do not
 * survive fork) and the parent waits on a pipe: it returns 0 once the child
 * has loaded the model and the mount answers a stat(), or the child's
 * failure status (the error has already been printed on the terminal).
 * SIGINT/SIGTERM/SIGHUP/SIGQUIT are taken by a sigwait thread (blocked in
 * every thread): parked readers get EOF, new reads at the end of a reply
 * get EOF, the mount is detached lazily so open files still close cleanly,
 * and libfuse's loop ends when the kernel drops the connection (after the
 * last close; forced after 5 s).  Then the notifier, engine and journal
 * threads stop.  `fusermount3 -u` ends the loop the same way.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <spawn.h>
#include <unistd.h>

#include "engine/tokenizer.h"
#include "fs.h"
#include "fs_internal.h"

#define FUSE_SUPER_MAGIC 0x65735546

extern char **environ;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: promptfs [options] MODEL.gguf MOUNTPOINT\n"
		"Mounts MODEL as a directory: every file you create there is a conversation.\n"
		"Returns once the model is loaded and the mount answers; unmount with\n"
		"`fusermount3 -u MOUNTPOINT` or SIGINT/SIGTERM to the daemon.\n"
		"\n"
		"  -f, --foreground         stay in the foreground\n"
		"  -d, --debug              FUSE debug output (implies -f)\n"
		"      --backend B          auto (default), cuda or cpu\n"
		"  -c, --ctx N              context length per session (default min(trained, 4096))\n"
		"      --kv-mem SIZE        KV cache budget, e.g. 2G, 512M (default: 8 full contexts)\n"
		"      --max-sessions N     most sessions at once (default 256); more → ENOSPC\n"
		"      --batch-tokens N     most tokens in one forward pass: decode rows first, the\n"
		"                           rest prefill chunks (default 512)\n"
		"      --batch-seqs N       most sequences in one forward pass, 1..512 (default 128)\n"
		"      --no-prefix-share    sessions with the same token prefix do not share its KV\n"
		"                           pages (default: shared, prefilled once)\n"
		"      --window-pages N     models with sliding-window layers (Gemma): pages of the KV\n"
		"                           pool that hold those layers' window (default: the pool split\n"
		"                           for the most full-length sessions, see README)\n"
		"  -t, --threads N          CPU threads (default: all cores but one)\n"
		"      --state-dir DIR      journal sessions there; they come back after a restart\n"
		"      --umask MASK         mode of new sessions: 0666 & ~MASK (default 077: 0600)\n"
		"      --mmap               map the model file instead of reading it into memory\n"
		"                           (then the file must not be truncated or rewritten while mounted)\n"
		"  -s, --set KEY=VALUE      a default setting (as in the defaults file); repeatable\n"
		"  -v, --verbose            more log output (-vv: debug)\n"
		"      --log-level L        error, warn (default), info or debug\n"
		"      --log-file FILE      log there (a detached daemon logs nowhere otherwise)\n"
		"  -o OPT[,OPT...]          FUSE mount options (allow_other, ...; allow_other adds\n"
		"                           default_permissions: sessions are private to their creator)\n"
		"  -h, --help               this text\n");
}

// ---- options

/* "--name=value" or "--name value" / "-x value": the value, or NULL. */
static const char *opt_value(int argc, char **argv, int *i, const char *s, const char *l)
{
	const char *a = argv[*i];
	size_t ll = l ? strlen(l) : 0;

	if (l && !strncmp(a, l, ll) && a[ll] == '=')
		return a + ll + 1;
	if ((s && !strcmp(a, s)) || (l && !strcmp(a, l))) {
		if (*i + 1 >= argc) {
			fprintf(stderr, "promptfs: %s needs a value\n", a);
			return NULL;
		}
		return argv[++*i];
	}
	return NULL;
}

static bool opt_is(const char *a, const char *s, const char *l)
{
	size_t ll = l ? strlen(l) : 0;

	return (s && !strcmp(a, s)) || (l && (!strcmp(a, l) || (!strncmp(a, l, ll) && a[ll] == '=')));
}

static int parse_int(const char *what, const char *v, int lo, int *out)
{
	char *end;
	long x = strtol(v, &end, 10);

	if (!*v || *end || x < lo || x > INT_MAX) {
		fprintf(stderr, "promptfs: bad %s '%s'\n", what, v);
		return -EINVAL;
	}
	*out = (int)x;
	return 0;
}

/* --umask: octal, at most 0777. */
static int parse_umask(const char *v, unsigned *out)
{
	char *end;
	unsigned long x = strtoul(v, &end, 8);

	if (!*v || *end || *v == '-' || *v == '+' || x > 0777) {
		fprintf(stderr, "promptfs: bad umask '%s' (octal, e.g. 077 or 022)\n", v);
		return -EINVAL;
	}
	*out = (unsigned)x;
	return 0;
}

/* Does the comma-separated -o list v name option opt? */
static bool has_mount_opt(const char *v, const char *opt)
{
	size_t n = strlen(opt);

	for (const char *p = v; p && *p; p = strchr(p, ','), p = p ? p + 1 : NULL)
		if (!strncmp(p, opt, n) && (p[n] == ',' || p[n] == 0))
			return true;
	return false;
}

static int parse_size(const char *v, size_t *out)
{
	char *end;
	double x = strtod(v, &end);
	double mul = 1;

	switch (*end) {
	case 'k': case 'K': mul = 1024.0; end++; break;
	case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
	case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
	case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
	}
	if (*end == 'i' || *end == 'B' || *end == 'b')
		end += (*end == 'i' && (end[1] == 'B' || end[1] == 'b')) ? 2 : 1;
	if (end == v || *end || x <= 0) {
		fprintf(stderr, "promptfs: bad size '%s' (examples: 2G, 512M)\n", v);
		return -EINVAL;
	}
	*out = (size_t)(x * mul);
	return 0;
}

static int parse_log_level(const char *v, int *out)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	for (int i = 0; i < 4; i++)
		if (!strcmp(v, names[i]) || (v[0] == '0' + i && !v[1])) {
			*out = i;
			return 0;
		}
	fprintf(stderr, "promptfs: bad log level '%s' (error, warn, info, debug)\n", v);
	return -EINVAL;
}

/* 0, 1 (--help shown), or -EINVAL (message printed). */
static int parse_args(int argc, char **argv, struct fs_opts *o, struct fuse_args *fa)
{
	const char *pos[2] = {NULL, NULL}, *v;
	int n_pos = 0, rc = 0;

	o->log_level = PF_LOG_LEVEL_WARN;
	o->umask = 077;
	for (int i = 1; i < argc && rc == 0; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 1;
		} else if (!strcmp(a, "-f") || !strcmp(a, "--foreground")) {
			o->foreground = true;
		} else if (!strcmp(a, "-d") || !strcmp(a, "--debug")) {
			o->debug = o->foreground = true;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose") || !strcmp(a, "-vv")) {
			o->log_level += a[2] == 'v' ? 2 : 1;
		} else if (opt_is(a, NULL, "--backend")) {
			if (!(v = opt_value(argc, argv, &i, NULL, "--backend")))
				return -EINVAL;
			if (strcmp(v, "auto") && strcmp(v, "cpu") && strcmp(v, "cuda")) {
				fprintf(stderr, "promptfs: bad backend '%s' (auto, cuda, cpu)\n", v);
				return -EINVAL;
			}
			o->backend = strcmp(v, "auto") ? v : NULL;
		} else if (opt_is(a, "-c", "--ctx")) {
			v = opt_value(argc, argv, &i, "-c", "--ctx");
			rc = v ? parse_int("context length", v, 16, &o->n_ctx) : -EINVAL;
		} else if (opt_is(a, NULL, "--kv-mem")) {
			v = opt_value(argc, argv, &i, NULL, "--kv-mem");
			rc = v ? parse_size(v, &o->kv_bytes) : -EINVAL;
		} else if (opt_is(a, NULL, "--max-sessions")) {
			v = opt_value(argc, argv, &i, NULL, "--max-sessions");
			rc = v ? parse_int("session count", v, 1, &o->max_sessions) : -EINVAL;
		} else if (opt_is(a, NULL, "--batch-tokens")) {
			v = opt_value(argc, argv, &i, NULL, "--batch-tokens");
			rc = v ? parse_int("batch token count", v, 1, &o->max_batch_tokens) : -EINVAL;
		} else if (opt_is(a, NULL, "--batch-seqs")) {
			v = opt_value(argc, argv, &i, NULL, "--batch-seqs");
			rc = v ? parse_int("batch sequence count", v, 1, &o->max_batch_seqs) : -EINVAL;
			if (rc == 0 && o->max_batch_seqs > ENG_MAX_BATCH_SEQS) {
				fprintf(stderr, "promptfs: --batch-seqs is at most %d\n", ENG_MAX_BATCH_SEQS);
				rc = -EINVAL;
			}
		} else if (!strcmp(a, "--no-prefix-share")) {
			o->no_prefix_share = true;
		} else if (opt_is(a, NULL, "--window-pages")) {
			v = opt_value(argc, argv, &i, NULL, "--window-pages");
			rc = v ? parse_int("window page count", v, 1, &o->window_pages) : -EINVAL;
		} else if (opt_is(a, "-t", "--threads")) {
			v = opt_value(argc, argv, &i, "-t", "--threads");
			rc = v ? parse_int("thread count", v, 0, &o->n_threads) : -EINVAL;
		} else if (opt_is(a, NULL, "--umask")) {
			v = opt_value(argc, argv, &i, NULL, "--umask");
			rc = v ? parse_umask(v, &o->umask) : -EINVAL;
		} else if (!strcmp(a, "--mmap")) {
			o->map_model = true;
		} else if (opt_is(a, NULL, "--state-dir")) {
			if (!(o->state_dir = opt_value(argc, argv, &i, NULL, "--state-dir")))
				return -EINVAL;
		} else if (opt_is(a, NULL, "--log-file")) {
			if (!(o->log_file = opt_value(argc, argv, &i, NULL, "--log-file")))
				return -EINVAL;
		} else if (opt_is(a, NULL, "--log-level")) {
			v = opt_value(argc, argv, &i, NULL, "--log-level");
			rc = v ? parse_log_level(v, &o->log_level) : -EINVAL;
		} else if (opt_is(a, "-s", "--set")) {
			if (!(v = opt_value(argc, argv, &i, "-s", "--set")))
				return -EINVAL;
			if (!strchr(v, '=') || o->n_sets == (int)(sizeof(o->sets) / sizeof(o->sets[0]))) {
				fprintf(stderr, "promptfs: --set wants KEY=VALUE (at most 32), got '%s'\n", v);
				return -EINVAL;
			}
			o->sets[o->n_sets++] = v;
		} else if (!strcmp(a, "-o") || !strncmp(a, "-o", 2)) {
			v = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
			if (!v) {
				fprintf(stderr, "promptfs: -o needs a value\n");
				return -EINVAL;
			}
			if (fuse_opt_add_arg(fa, "-o") || fuse_opt_add_arg(fa, v))
				return -ENOMEM;
			if (has_mount_opt(v, "allow_other") && !o->allow_other) {
				/* other users: the kernel checks each session's owner and mode */
				o->allow_other = true;
				if (fuse_opt_add_arg(fa, "-o") || fuse_opt_add_arg(fa, "default_permissions"))
					return -ENOMEM;
			}
		} else if (a[0] == '-' && a[1]) {
			fprintf(stderr, "promptfs: unknown option '%s' (see --help)\n", a);
			return -EINVAL;
		} else if (n_pos < 2) {
			pos[n_pos++] = a;
		} else {
			fprintf(stderr, "promptfs: unexpected argument '%s'\n", a);
			return -EINVAL;
		}
	}
	if (rc < 0)
		return rc;
	if (n_pos != 2) {
		usage(stderr);
		return -EINVAL;
	}
	o->model_path = pos[0];
	o->mountpoint = pos[1];
	if (o->log_level > PF_LOG_LEVEL_DEBUG)
		o->log_level = PF_LOG_LEVEL_DEBUG;
	return 0;
}

/* Absolute paths (the daemon chdirs to /); the state dir is made here. */
static int resolve_paths(struct fs_opts *o, char *model, char *mnt, char *state)
{
	struct stat st;

	if (!realpath(o->model_path, model)) {
		fprintf(stderr, "promptfs: model %s: %s\n", o->model_path, strerror(errno));
		return -errno;
	}
	if (!realpath(o->mountpoint, mnt) || stat(mnt, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "promptfs: mountpoint %s: %s\n", o->mountpoint,
			errno ? strerror(errno) : "not a directory");
		return -ENOTDIR;
	}
	if (o->state_dir) {
		if (mkdir(o->state_dir, 0700) < 0 && errno != EEXIST) {
			fprintf(stderr, "promptfs: state dir %s: %s\n", o->state_dir, strerror(errno));
			return -errno;
		}
		if (!realpath(o->state_dir, state)) {
			fprintf(stderr, "promptfs: state dir %s: %s\n", o->state_dir, strerror(errno));
			return -errno;
		}
		o->state_dir = state;
	}
	o->model_path = model;
	o->mountpoint = mnt;
	return 0;
}

// ---- detaching

/* Forks: the parent waits for the child's ready byte and returns what
 * fs_mount_main should return (>= 0); the child gets -1 and *ready_fd. */
static int detach(int *ready_fd)
{
	int pfd[2], status = 0;
	char c;
	pid_t pid;

	if (pipe(pfd) < 0) {
		fprintf(stderr, "promptfs: pipe: %s\n", strerror(errno));
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "promptfs: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid > 0) {
		close(pfd[1]);
		ssize_t n;
		do
			n = read(pfd[0], &c, 1);
		while (n < 0 && errno == EINTR);
		close(pfd[0]);
		if (n == 1 && c == 0)
			return 0;
		waitpid(pid, &status, 0);
		return WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : 1;
	}
	close(pfd[0]);
	setsid();
	*ready_fd = pfd[1];
	return -1;
}

struct ready_arg {
	const char *mnt;
	int fd;         /* the parent's pipe, or -1 */
	bool quiet;     /* detach stdio */
};

/* Waits until the mount answers, then releases the parent. */
static void *ready_main(void *p)
{
	struct ready_arg *r = p;
	struct statfs sf;
	struct stat st;
	char ok = 0;

	for (int i = 0; i < 600; i++) {
		if (statfs(r->mnt, &sf) == 0 && sf.f_type == FUSE_SUPER_MAGIC && stat(r->mnt, &st) == 0 &&
		    st.st_ino == FS_INO_ROOT)
			break;
		usleep(10000);
	}
	LOG_INFO("mount %s answers", r->mnt);
	if (r->quiet) {
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			dup2(nul, 2);
			close(nul);
		}
	}
	if (r->fd >= 0) {
		ssize_t w = write(r->fd, &ok, 1);
		(void)w;
		close(r->fd);
	}
	return NULL;
}

// ---- the model side

/* All cores but one: the reader, libfuse's workers and the notifier need a
 * core per token, and a CPU pool that fills every core waits for whichever
 * of its threads they preempt (measured: 16 threads on 16 cores decode 24%
 * slower behind a mount than 15). */
static int default_threads(void)
{
	cpu_set_t set;
	int n = 0;

	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	if (n <= 0)
		n = (int)sysconf(_SC_NPROCESSORS_ONLN);
	return n >= 4 ? n - 1 : 0; /* 0: the engine's own default (all) */
}

static int fs_init_model(struct fs *fs, const struct fs_opts *o)
{
	struct eng_model_params p;
	const struct eng_tokenizer *tok;
	char piece[256];
	int rc;

	eng_model_params_default(&p);
	p.backend = o->backend;
	p.n_threads = o->n_threads ? o->n_threads : default_threads();
	p.n_ctx = o->n_ctx;
	p.kv_bytes = o->kv_bytes;
	p.max_sessions = o->max_sessions;
	p.max_batch_tokens = o->max_batch_tokens;
	p.max_batch_seqs = o->max_batch_seqs;
	p.no_prefix_share = o->no_prefix_share;
	p.window_pages = o->window_pages;
	p.copy_weights = !o->map_model; /* the file may change under a long-running mount */
	rc = eng_model_load(o->model_path, &p, &fs->model);
	if (rc < 0) {
		fprintf(stderr, "promptfs: cannot load %s: %s\n", o->model_path, strerror(-rc));
		return rc;
	}
	fs->n_ctx = eng_model_n_ctx(fs->model);
	if (eng_model_describe(fs->model, &fs->model_text) < 0)
		fs->model_text = NULL;
	tok = eng_model_tokenizer(fs->model);
	for (int id = 0; tok && id < eng_tokenizer_n_vocab(tok); id++) {
		int n = eng_token_piece(tok, id, false, piece, sizeof(piece));
		if (n > 0 && (size_t)n > fs->max_piece)
			fs->max_piece = (size_t)n;
	}
	eng_settings_default(fs->model, &fs->defaults);
	for (int i = 0; i < o->n_sets; i++) {
		const char *eq = strchr(o->sets[i], '=');
		char key[32];
		size_t kl = (size_t)(eq - o->sets[i]);

		if (kl >= sizeof(key) || (memcpy(key, o->sets[i], kl), key[kl] = 0,
		    eng_settings_set(&fs->defaults, key, eq + 1, strlen(eq + 1)) < 0)) {
			fprintf(stderr, "promptfs: --set %s: unknown key or bad value\n", o->sets[i]);
			return -EINVAL;
		}
	}
	return 0;
}

static int fs_start_threads(struct fs *fs, const struct fs_opts *o)
{
	int rc = fs_events_init(fs);

	if (rc == 0 && o->state_dir) {
		rc = fs_kvstate_open(fs, o->state_dir);
		if (rc < 0)
			fprintf(stderr, "promptfs: KV page files in %s: %s\n", o->state_dir, strerror(-rc));
	}
	if (rc == 0 && o->state_dir) {
		rc = fs_gramstore_open(fs, o->state_dir);
		if (rc < 0)
			fprintf(stderr, "promptfs: grammars and schemas in %s: %s\n", o->state_dir, strerror(-rc));
	}
	if (rc == 0 && o->state_dir) {
		rc = fs_journal_open(fs, o->state_dir);
		if (rc == 0 && fs_journal_restore(fs) < 0)
			LOG_WARN("could not read the state directory %s", o->state_dir);
	}
	if (rc == 0) {
		eng_model_set_notify(fs->model, fs_engine_notify, fs);
		eng_model_set_events(fs->model, fs_engine_event, fs);
		rc = eng_model_start(fs->model);
		if (rc < 0)
			fprintf(stderr, "promptfs: cannot start the engine: %s\n", strerror(-rc));
	}
	if (rc == 0)
		rc = fs_notifier_start(fs);
	return rc;
}

// ---- signals: drain, lazy unmount, and only then stop

struct sigctx {
	struct fs *fs;
	const char *mnt;
	pthread_t main;
	atomic_bool loop_done;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void on_wake(int sig)
{
	(void)sig; /* interrupts libfuse's sem_wait in the main thread */
}

/* Detaches the mount; the kernel keeps the connection while files are
 * open, so readers answered EOF can still close them cleanly. */
static void lazy_unmount(const char *mnt)
{
	pid_t pid;
	int status;

	if (geteuid() == 0) {
		if (umount2(mnt, MNT_DETACH) < 0)
			LOG_WARN("umount %s: %s", mnt, strerror(errno));
		return;
	}
	char *argv[] = {"fusermount3", "-u", "-z", "--", (char *)mnt, NULL};
	if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) == 0)
		waitpid(pid, &status, 0);
	else
		LOG_WARN("cannot run fusermount3 -u -z %s", mnt);
}

static void *signal_main(void *p)
{
	struct sigctx *sc = p;
	struct timespec until;
	sigset_t set;
	int sig = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigwait(&set, &sig);
	if (atomic_load(&sc->loop_done))
		return NULL; /* woken by the main thread: the mount is gone */
	LOG_INFO("signal %d: unmounting %s", sig, sc->mnt);
	atomic_store(&sc->fs->draining, true);
	fs_parked_answer_all(sc->fs, NULL);
	lazy_unmount(sc->mnt);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&sc->lock);
	while (!atomic_load(&sc->loop_done))
		if (pthread_cond_timedwait(&sc->cond, &sc->lock, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&sc->lock);
	if (!atomic_load(&sc->loop_done)) {
		LOG_WARN("files still open in %s after 5 s: closing the connection", sc->mnt);
		fuse_session_exit(sc->fs->se);
		pthread_kill(sc->main, SIGUSR1);
	}
	return NULL;
}

// ---- serving

static int serve(struct fs *fs, struct fs_opts *o, struct fuse_args *fa, int ready_fd)
{
	struct fuse_loop_config *cfg;
	struct ready_arg ra = {o->mountpoint, ready_fd, !o->foreground};
	struct sigctx sc = {.fs = fs, .mnt = o->mountpoint, .main = pthread_self()};
	struct sigaction sa;
	pthread_t ready, sigthread;
	bool have_ready, have_sig;
	int rc = 1;

	pthread_mutex_init(&sc.lock, NULL);
	pthread_cond_init(&sc.cond, NULL);
	fs->se = fuse_session_new(fa, fs_ops_table(), sizeof(struct fuse_lowlevel_ops), fs);
	if (!fs->se)
		goto out_cond;
	if (fuse_session_mount(fs->se, o->mountpoint) != 0) {
		fprintf(stderr, "promptfs: cannot mount on %s\n", o->mountpoint);
		goto out_session;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_wake; /* no SA_RESTART */
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	have_sig = pthread_create(&sigthread, NULL, signal_main, &sc) == 0;
	have_ready = pthread_create(&ready, NULL, ready_main, &ra) == 0;
	cfg = fuse_loop_cfg_create();
	if (cfg) {
		fuse_loop_cfg_set_max_threads(cfg, 64);
		int lrc = fuse_session_loop_mt(fs->se, cfg);
		fuse_loop_cfg_destroy(cfg);
		/* after a stop signal the connection may end with an error of the
		 * kernel's choosing (ENODEV, ECONNABORTED): that is the clean way */
		rc = lrc != 0 && !atomic_load(&fs->draining) ? 1 : 0;
		if (lrc != 0)
			pf_log(rc ? PF_LOG_LEVEL_ERROR : PF_LOG_LEVEL_INFO, __func__,
			       "the FUSE loop ended with %d", lrc);
	}
	LOG_INFO("unmounting %s", o->mountpoint);
	pthread_mutex_lock(&sc.lock);
	atomic_store(&sc.loop_done, true);
	pthread_cond_broadcast(&sc.cond);
	pthread_mutex_unlock(&sc.lock);
	if (have_sig) {
		pthread_kill(sigthread, SIGTERM); /* ends its sigwait, if still there */
		pthread_join(sigthread, NULL);
	}
	fs_shutdown(fs); /* parked readers get EOF before the connection goes */
	if (have_ready)
		pthread_join(ready, NULL);
	fuse_session_unmount(fs->se);
out_session:
	fuse_session_destroy(fs->se);
	fs->se = NULL;
out_cond:
	pthread_mutex_destroy(&sc.lock);
	pthread_cond_destroy(&sc.cond);
	return rc;
}

static void fs_free(struct fs *fs)
{
	fs_shutdown(fs);
	fs_gramstore_close(fs); /* writes the grammar and schema files still queued */
	fs_handles_free_all(fs);
	fs_events_free(fs);
	fs_dirs_free_all(fs);
	fs_nodes_free_all(fs);
	fs_gram_free_all(fs);
	eng_settings_free(&fs->defaults);
	eng_model_free(fs->model);
	free(fs->model_text);
	free(fs->q);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->q_lock);
	pthread_cond_destroy(&fs->q_cond);
	free(fs);
}

int fs_mount_main(int argc, char **argv)
{
	static char model[PATH_MAX], mnt[PATH_MAX], state[PATH_MAX];
	struct fuse_args fa = FUSE_ARGS_INIT(0, NULL);
	struct fs_opts o = {0};
	struct fs *fs = NULL;
	sigset_t block;
	int ready_fd = -1, rc;

	if (fuse_opt_add_arg(&fa, argv[0]) || fuse_opt_add_arg(&fa, "-o") ||
	    fuse_opt_add_arg(&fa, "fsname=promptfs,subtype=promptfs"))
		return 1;
	rc = parse_args(argc, argv, &o, &fa);
	if (rc != 0 || resolve_paths(&o, model, mnt, state) < 0) {
		fuse_opt_free_args(&fa);
		return rc == 1 ? 0 : 2;
	}
	if (o.debug && fuse_opt_add_arg(&fa, "-d"))
		return 1;
	pf_log_set_level(o.log_level);
	if (o.log_file) {
		int fd = open(o.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0) {
			fprintf(stderr, "promptfs: log file %s: %s\n", o.log_file, strerror(errno));
			return 2;
		}
		pf_log_set_fd(fd);
	}
	if (!o.foreground && (rc = detach(&ready_fd)) >= 0) {
		fuse_opt_free_args(&fa);
		return rc; /* the parent */
	}
	if (chdir("/") < 0)
		LOG_WARN("chdir /: %s", strerror(errno));

	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return 1;
	fs->opts = &o;
	fs->uid = getuid();
	fs->gid = getgid();
	fs->next_ino = FS_INO_FIRST_SESSION;
	fs_timespec_now(&fs->t_start);
	if (getenv("PROMPTFS_TEST_STEP_DELAY_MS")) /* tests only: keeps replies live for a while */
		fs->test_delay_us = (unsigned)atoi(getenv("PROMPTFS_TEST_STEP_DELAY_MS")) * 1000u;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->q_lock, NULL);
	pthread_cond_init(&fs->q_cond, NULL);

	/* every thread (engine, CPU pool, libfuse's workers, ours) blocks the
	 * stop signals; signal_main takes them with sigwait */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &block, NULL); /* for good: signal_main takes them */
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &block, NULL);
	rc = fs_init_model(fs, &o);
	if (rc == 0)
		rc = fs_start_threads(fs, &o);
	rc = rc < 0 ? 1 : serve(fs, &o, &fa, ready_fd);
	fs_free(fs);
	fuse_opt_free_args(&fa);
	return rc;
}
