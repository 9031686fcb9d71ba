/*
 * xattr.c — settings and status as extended attributes.
 *
 * On a session: user.<key> for every settings key (engine.h's
 * eng_settings_keys, the one list).  A value is parsed once, here, into the
 * node's parsed overrides (fs_node.over, over_mask).
 * Reading gives the value the next turn uses (the session's own, else the
 * default); setting validates (EINVAL on a bad value, nothing changed) and
 * applies at once (sampling keys also to the running turn); removing
 * (setfattr -x) falls back to `defaults`.  Overrides survive `>` and go
 * with `rm`.  Read-only (EPERM to change): user.status, user.state,
 * user.error, user.tokens (n_past), user.prompt_tokens, user.prefill_tokens,
 * user.generated_tokens, user.cached_tokens (tokens of the latest turn's
 * history taken from shared prefix pages, not prefilled), user.turns,
 * user.context, user.prefill_tps, user.decode_tps, user.kv_tokens (tokens
 * of the history in the KV cache now).
 * user.fork_from (fork.c): setting it to NAME or NAME@TURN makes this
 * session a fork of that one (the whole conversation, or up to the end of
 * turn TURN); reading gives what it was last forked from (ENODATA if never);
 * it cannot be removed (EPERM).
 * On the root directory: user.<key> reads and writes `defaults`.
 * Other names: ENODATA to read, ENOTSUP to set.  Never ENOSYS (the kernel
 * would turn xattrs off for the whole mount).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_internal.h"

static const char *const ro_names[] = {
	"status", "state", "error", "tokens", "prompt_tokens", "prefill_tokens",
	"generated_tokens", "cached_tokens", "turns", "context", "prefill_tps", "decode_tps",
	"kv_tokens",
};
#define N_RO ((int)(sizeof(ro_names) / sizeof(ro_names[0])))
#define VAL_CAP (ENG_MAX_SYSTEM + 1024)

static int ro_index(const char *key)
{
	for (int i = 0; i < N_RO; i++)
		if (!strcmp(key, ro_names[i]))
			return i;
	return -1;
}

/* user.status: the engine's, then what the state directory adds. */
static int status_value(const struct fs_node *n, const struct eng_session_info *info, char *buf,
			size_t cap)
{
	int len = snprintf(buf, cap, "%s", info->status);

	if (n->j_err && len >= 0 && (size_t)len < cap)
		len += snprintf(buf + len, cap - (size_t)len, "; not saved: %s", strerror(-n->j_err));
	if (n->n_rest && len >= 0 && (size_t)len < cap)
		len += snprintf(buf + len, cap - (size_t)len,
				"; %d journaled turns do not fit the context (kept on disk)", n->n_rest);
	return len;
}

static int ro_value(const struct fs_node *n, int i, char *buf, size_t cap)
{
	struct eng_session_info info;

	eng_session_info(n->sess, &info);
	switch (i) {
	case 0: return status_value(n, &info, buf, cap);
	case 1: return snprintf(buf, cap, "%s", fs_state_name(info.state));
	case 2: return snprintf(buf, cap, "%s", fs_errno_name(info.error));
	case 3: return snprintf(buf, cap, "%d", info.n_past);
	case 4: return snprintf(buf, cap, "%d", info.last_prompt_tokens);
	case 5: return snprintf(buf, cap, "%d", info.last_prefill_tokens);
	case 6: return snprintf(buf, cap, "%d", info.last_gen_tokens);
	case 7: return snprintf(buf, cap, "%d", info.last_cached_tokens);
	case 8: return snprintf(buf, cap, "%d", info.n_turns);
	case 9: return snprintf(buf, cap, "%d", info.n_ctx);
	case 10: return snprintf(buf, cap, "%.1f", info.last_prefill_tps);
	case 11: return snprintf(buf, cap, "%.1f", info.last_decode_tps);
	case 12: return snprintf(buf, cap, "%d", info.n_cached);
	}
	return -ENODATA;
}

/* The value of attribute name on ino into buf (lock held): length or -errno. */
static int get_value(struct fs *fs, uint64_t ino, const char *name, char *buf, size_t cap)
{
	enum fs_kind kind = fs_ino_kind(fs, ino);
	const char *key = name + 5;
	struct eng_settings st;
	struct fs_node *n;
	int i, len;

	if (strncmp(name, "user.", 5) != 0)
		return -ENODATA;
	if (kind == FS_KIND_ROOT) {
		if (eng_settings_key_index(key) < 0)
			return -ENODATA;
		len = eng_settings_get(&fs->defaults, key, buf, cap);
		return len < 0 ? -ENODATA : len;
	}
	if (kind != FS_KIND_SESSION)
		return -ENODATA;
	n = fs_node_find(fs, ino);
	if (!n->sess)
		return -ENOENT;
	if ((i = ro_index(key)) >= 0)
		return ro_value(n, i, buf, cap);
	if (!strcmp(key, "fork_from"))
		return n->fork_from ? snprintf(buf, cap, "%s", n->fork_from) : -ENODATA;
	if (eng_settings_key_index(key) < 0)
		return -ENODATA;
	if (fs_settings_effective(fs, n, &st) < 0)
		return -ENOMEM;
	len = eng_settings_get(&st, key, buf, cap);
	eng_settings_free(&st);
	return len < 0 ? -ENODATA : len;
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs *fs = fs_of(req);
	char *buf = malloc(VAL_CAP);
	int len;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	len = get_value(fs, ino, name, buf, VAL_CAP);
	pthread_mutex_unlock(&fs->lock);
	if (len >= VAL_CAP)
		len = VAL_CAP - 1;
	if (len < 0)
		fuse_reply_err(req, -len);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)len);
	else if ((size_t)len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, buf, (size_t)len);
	free(buf);
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs *fs = fs_of(req);
	char list[2048];
	size_t len = 0;
	enum fs_kind kind;

	bool forked;

	pthread_mutex_lock(&fs->lock);
	kind = fs_ino_kind(fs, ino);
	forked = kind == FS_KIND_SESSION && fs_node_find(fs, ino)->fork_from;
	pthread_mutex_unlock(&fs->lock);
	if (kind == FS_KIND_SESSION || kind == FS_KIND_ROOT) {
		for (int i = 0; i < ENG_KEY_COUNT; i++)
			len += (size_t)snprintf(list + len, sizeof(list) - len, "user.%s", eng_settings_keys[i]) + 1;
		for (int i = 0; kind == FS_KIND_SESSION && i < N_RO; i++)
			len += (size_t)snprintf(list + len, sizeof(list) - len, "user.%s", ro_names[i]) + 1;
		if (forked)
			len += (size_t)snprintf(list + len, sizeof(list) - len, "user.fork_from") + 1;
	}
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (len > size)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, list, len);
}

/* Sets (value != NULL) or removes one setting of a session (lock held). */
static int session_set(struct fs *fs, struct fs_node *n, int idx, const char *value, size_t size)
{
	int rc;

	if (!value) {
		if (!(n->over_mask & (1ull << idx)))
			return -ENODATA;
		n->over_mask &= ~(1ull << idx);
		goto out_push;
	}
	rc = fs_gram_known(fs, idx, value, size);
	if (rc == 0)
		rc = eng_settings_set(&n->over, eng_settings_keys[idx], value, size);
	if (rc < 0) {
		LOG_ERR("session '%s': bad value '%.*s' for %s", n->name, (int)(size > 80 ? 80 : size),
			value, eng_settings_keys[idx]);
		return rc == -ENOMEM ? rc : -EINVAL;
	}
	n->over_mask |= 1ull << idx;
out_push:
	fs_journal_post(fs, FS_JOURNAL_SETTINGS, n->ino, 0);
	return fs_settings_push(fs, n);
}

/* Sets or resets (value NULL: back to the built-in default) one default. */
static int default_set(struct fs *fs, int idx, const char *value, size_t size)
{
	const char *key = eng_settings_keys[idx];
	struct eng_settings builtin;
	int rc;

	if (value) {
		rc = fs_gram_known(fs, idx, value, size);
		if (rc == 0)
			rc = eng_settings_set(&fs->defaults, key, value, size);
		if (rc < 0)
			LOG_ERR("defaults: bad value '%.*s' for %s", (int)(size > 80 ? 80 : size), value, key);
		return rc == -ENOMEM ? rc : rc < 0 ? -EINVAL : 0;
	}
	eng_settings_default(fs->model, &builtin);
	rc = eng_settings_take(&fs->defaults, &builtin, (enum eng_key)idx);
	eng_settings_free(&builtin);
	return rc;
}

static int set_or_remove(struct fs *fs, uid_t uid, uint64_t ino, const char *name, const char *value,
			 size_t size)
{
	enum fs_kind kind = fs_ino_kind(fs, ino);
	const char *key = name + 5;
	int idx;

	if (strncmp(name, "user.", 5) != 0)
		return value ? -ENOTSUP : -ENODATA;
	idx = eng_settings_key_index(key);
	if (kind == FS_KIND_SESSION) {
		struct fs_node *n = fs_node_find(fs, ino);

		if (!n->sess)
			return -ENOENT;
		if (ro_index(key) >= 0) {
			LOG_ERR("user.%s is read-only", key);
			return -EPERM;
		}
		if (!strcmp(key, "fork_from")) {
			if (!value) {
				LOG_ERR("user.fork_from cannot be removed (fork again, or ': >' to reset)");
				return -EPERM;
			}
			return fs_session_fork_spec(fs, n, value, size);
		}
		if (idx < 0)
			return value ? -ENOTSUP : -ENODATA;
		return session_set(fs, n, idx, value, size);
	}
	if (kind == FS_KIND_ROOT && idx >= 0 && !fs_may_write_defaults(fs, uid)) {
		LOG_ERR("defaults: uid %u is not the mount's owner", (unsigned)uid);
		return -EPERM;
	}
	if (kind == FS_KIND_ROOT && idx >= 0)
		return default_set(fs, idx, value, size);
	return value ? -ENOTSUP : -ENODATA;
}

void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                    size_t size, int flags)
{
	struct fs *fs = fs_of(req);
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = set_or_remove(fs, fuse_req_ctx(req)->uid, ino, name, value ? value : "", size);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_err(req, -rc);
}

void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct fs *fs = fs_of(req);
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = set_or_remove(fs, fuse_req_ctx(req)->uid, ino, name, NULL, 0);
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_err(req, -rc);
}
