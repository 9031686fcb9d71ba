/*
 * inode.c — the daemon's node table: session nodes by inode number and by
 * name, name rules, reference counts (link, open handles, parked reads,
 * kernel lookups).  Every function here runs with fs->lock held unless it
 * says otherwise.  Attributes are built in ops.c (from ctl.c's sizes).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fs_internal.h"

static const char *const reserved_names[] = {"README", "model", "stats", "defaults", "history", "events", "grammars",
                                             "schemas"};

void fs_timespec_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

static unsigned hash_ino(uint64_t ino)
{
	return (unsigned)((ino >> FS_INO_SHIFT) % FS_HASH);
}

// ---- lookup

struct fs_node *fs_node_find(struct fs *fs, uint64_t ino)
{
	struct fs_node *n;

	if (ino < FS_INO_FIRST_SESSION || (FS_INO_SUB(ino) > 4 && FS_INO_SUB(ino) < FS_INO_MSG0))
		return NULL;
	ino = FS_INO_SESSION(ino);
	for (n = fs->hash[hash_ino(ino)]; n; n = n->hnext)
		if (n->ino == ino)
			return n;
	return NULL;
}

struct fs_node *fs_node_by_name(struct fs *fs, const char *name)
{
	for (struct fs_node *n = fs->nodes; n; n = n->next)
		if (n->linked && !strcmp(n->name, name))
			return n;
	return NULL;
}

enum fs_kind fs_ino_kind(struct fs *fs, uint64_t ino)
{
	switch (ino) {
	case FS_INO_ROOT: return FS_KIND_ROOT;
	case FS_INO_README: return FS_KIND_README;
	case FS_INO_MODEL: return FS_KIND_MODEL;
	case FS_INO_STATS: return FS_KIND_STATS;
	case FS_INO_DEFAULTS: return FS_KIND_DEFAULTS;
	case FS_INO_HISTORY: return FS_KIND_HISTDIR;
	case FS_INO_EVENTS: return FS_KIND_EVENTS;
	case FS_INO_GRAMMARS:
	case FS_INO_SCHEMAS: return FS_KIND_GRAMDIR;
	}
	if (ino >= FS_INO_FIRST_GRAMMAR)
		return fs_gram_exists(fs, ino) ? FS_KIND_GRAMMAR : FS_KIND_NONE;
	if (!fs_node_find(fs, ino))
		return FS_KIND_NONE;
	switch (FS_INO_SUB(ino)) {
	case 0: return FS_KIND_SESSION;
	case 1: return FS_KIND_HIST_TEXT;
	case 2: return FS_KIND_HIST_JSON;
	case 3: return FS_KIND_HIST_DIR;
	case 4: return FS_KIND_TOKENS;
	}
	return FS_KIND_HIST_MSG;
}

// ---- names

bool fs_name_reserved(const char *name)
{
	for (size_t i = 0; i < sizeof(reserved_names) / sizeof(reserved_names[0]); i++)
		if (!strcmp(name, reserved_names[i]))
			return true;
	return false;
}

/* A session name: 1-255 bytes, no '/', not starting with '.', not one of
 * the root's own files. */
int fs_name_check(const char *name)
{
	size_t len = strlen(name);

	if (len > FS_NAME_MAX) {
		LOG_ERR("name of %zu bytes: at most %d", len, FS_NAME_MAX);
		return -ENAMETOOLONG;
	}
	if (len == 0 || name[0] == '.' || strchr(name, '/') || fs_name_reserved(name)) {
		LOG_ERR("'%s' is not a valid session name (empty, starts with '.', or reserved)", name);
		return -EINVAL;
	}
	return 0;
}

// ---- life cycle

int fs_node_new(struct fs *fs, const char *name, struct eng_session *sess, struct fs_node **out)
{
	struct fs_node *n = calloc(1, sizeof(*n));

	if (!n)
		return -ENOMEM;
	n->name = strdup(name);
	if (!n->name) {
		free(n);
		return -ENOMEM;
	}
	n->ino = fs->next_ino;
	fs->next_ino += FS_INO_FIRST_SESSION;
	n->sess = sess;
	n->linked = true;
	n->refs = 1;
	n->was_final = true;
	n->uid = fs->uid;
	n->gid = fs->gid;
	n->mode = 0666 & ~(mode_t)fs->opts->umask;
	fs_timespec_now(&n->ctime);
	n->mtime = n->ctime;
	eng_session_set_user(sess, (void *)(uintptr_t)n->ino);

	unsigned h = hash_ino(n->ino);
	n->hnext = fs->hash[h];
	fs->hash[h] = n;
	n->next = fs->nodes;
	if (fs->nodes)
		fs->nodes->prev = n;
	fs->nodes = n;
	fs->n_linked++;
	*out = n;
	return 0;
}

static void node_free(struct fs *fs, struct fs_node *n)
{
	struct fs_node **pp = &fs->hash[hash_ino(n->ino)];

	while (*pp && *pp != n)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = n->hnext;
	if (n->prev)
		n->prev->next = n->next;
	else
		fs->nodes = n->next;
	if (n->next)
		n->next->prev = n->prev;
	eng_settings_free(&n->over);
	for (int i = 0; i < n->n_phs; i++)
		fuse_pollhandle_destroy(n->phs[i]);
	free(n->phs);
	free(n->fork_from);
	eng_turn_texts_free(n->rest, n->n_rest);
	free(n->name);
	free(n);
}

static void node_maybe_free(struct fs *fs, struct fs_node *n)
{
	if (n->refs == 0 && n->nlookup == 0 && !n->linked) {
		PF_ASSERT(n->sess == NULL);
		node_free(fs, n);
	}
}

struct eng_session *fs_node_unlink(struct fs *fs, struct fs_node *n)
{
	struct eng_session *s = n->sess;

	if (!n->linked)
		return NULL;
	n->linked = false;
	n->sess = NULL;
	fs->n_linked--;
	n->refs--;
	fs_timespec_now(&n->ctime);
	/* the caller answers parked readers and frees s after unlocking;
	 * refs from open handles and parked reads keep n alive until then */
	node_maybe_free(fs, n);
	return s;
}

void fs_node_unref(struct fs *fs, struct fs_node *n)
{
	PF_ASSERT(n->refs > 0);
	n->refs--;
	node_maybe_free(fs, n);
}

void fs_node_forget(struct fs *fs, uint64_t ino, uint64_t nlookup)
{
	struct fs_node *n = fs_node_find(fs, ino);

	if (!n)
		return;
	n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
	node_maybe_free(fs, n);
}

/* At exit, after every thread has stopped: frees nodes and sessions. */
void fs_nodes_free_all(struct fs *fs)
{
	while (fs->nodes) {
		struct fs_node *n = fs->nodes;

		if (n->sess)
			eng_session_free(n->sess);
		n->sess = NULL;
		node_free(fs, n);
	}
	fs->n_linked = 0;
}

// ---- poll handles

int fs_node_add_poll(struct fs_node *n, struct fuse_pollhandle *ph)
{
	struct fuse_pollhandle **a = realloc(n->phs, (size_t)(n->n_phs + 1) * sizeof(*a));

	if (!a)
		return -ENOMEM;
	n->phs = a;
	n->phs[n->n_phs++] = ph;
	return 0;
}

int fs_node_take_polls(struct fs *fs, struct fs_node *n, struct fuse_pollhandle ***out)
{
	int k = n->n_phs;

	(void)fs;
	*out = n->phs;
	n->phs = NULL;
	n->n_phs = 0;
	return k;
}
