/*
 * fork.c — forking a conversation: `cp a b` and `setfattr -n user.fork_from
 * -v a[@TURN] b`.
 *
 * How coreutils cp (9.1, measured with strace on this kernel's FUSE) copies
 * a file here: ioctl(FICLONE) first, which the kernel answers EOPNOTSUPP
 * itself (FUSE has no remap_file_range; it never reaches the daemon), then
 * copy_file_range(2), which FUSE forwards to this daemon as
 * FUSE_COPY_FILE_RANGE, and only when that fails read/write.  So
 * copy_file_range is the fork: b becomes a copy of a's conversation (its
 * finished turns), its setting overrides and its KV cache (pages shared,
 * copy-on-write in the engine), and the call reports a's reply length as
 * copied, so cp ends at its next call (which returns 0).  cp onto an
 * existing session opens it with O_TRUNC (the reset every `>` does), then
 * forks over it.  A read/write copy (`cat a > b`, or a source with an
 * empty reply: the kernel clamps copy_file_range to the source's size and
 * never asks) is a prompt like any other write.
 *
 * Every function runs with fs->lock held.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_internal.h"

/* dst's setting overrides become src's (the parsed values and the mask of
 * keys overridden). */
static int copy_overrides(struct fs_node *dst, const struct fs_node *src)
{
	struct eng_settings v;
	int rc = eng_settings_copy(&v, &src->over);

	if (rc < 0)
		return rc;
	eng_settings_free(&dst->over);
	dst->over = v;
	dst->over_mask = src->over_mask;
	return 0;
}

int fs_session_fork(struct fs *fs, struct fs_node *dst, struct fs_node *src, int n_turns)
{
	char what[FS_NAME_MAX + 32];
	int rc;

	if (!dst->sess || !src->sess)
		return -ENOENT;
	if (dst == src) {
		LOG_ERR("fork: '%s' onto itself", src->name);
		return -EINVAL;
	}
	rc = eng_session_fork(dst->sess, src->sess, n_turns);
	if (rc < 0)
		return rc;
	rc = copy_overrides(dst, src);
	if (rc < 0)
		LOG_ERR("fork '%s' -> '%s': setting overrides not copied (out of memory)", src->name,
			dst->name);
	fs_settings_push(fs, dst);
	dst->epoch++; /* a new conversation: the journal rewrites its turns */
	dst->was_final = true;
	fs_timespec_now(&dst->mtime);
	fs_journal_post(fs, FS_JOURNAL_SETTINGS, dst->ino, 0);
	fs_journal_post(fs, FS_JOURNAL_TURNS, dst->ino, 0);
	fs_kvstate_post(fs, dst->ino);
	fs_notify_ino(fs, dst->ino); /* parked readers of dst see its new reply */
	if (n_turns < 0)
		snprintf(what, sizeof(what), "forked %s", src->name);
	else
		snprintf(what, sizeof(what), "forked %s@%d", src->name, n_turns);
	fs_event_post(fs, dst->name, what);
	LOG_INFO("session '%s' %s", dst->name, what);
	return rc;
}

/* "NAME" or "NAME@TURN": a whole name that exists wins over a split. */
int fs_session_fork_spec(struct fs *fs, struct fs_node *dst, const char *spec, size_t len)
{
	char name[FS_NAME_MAX + 16], *at, *end;
	struct fs_node *src;
	long turn = -1;
	int rc;

	if (len == 0 || len >= sizeof(name) || memchr(spec, 0, len)) {
		LOG_ERR("user.fork_from: '%.*s' is not NAME or NAME@TURN", (int)(len > 80 ? 80 : len), spec);
		return -EINVAL;
	}
	memcpy(name, spec, len);
	name[len] = 0;
	src = fs_node_by_name(fs, name);
	if (!src && (at = strrchr(name, '@')) && at[1]) {
		turn = strtol(at + 1, &end, 10);
		if (*end || turn < 0 || at[1] == '-' || at[1] == '+') {
			LOG_ERR("user.fork_from: turn '%s' is not a number", at + 1);
			return -EINVAL;
		}
		*at = 0;
		src = fs_node_by_name(fs, name);
	}
	if (!src) {
		LOG_ERR("user.fork_from: no session '%s'", name);
		return -ENOENT;
	}
	rc = fs_session_fork(fs, dst, src, (int)turn);
	if (rc == 0) {
		free(dst->fork_from);
		dst->fork_from = strndup(spec, len);
	}
	return rc;
}

// ---- copy_file_range: cp

static void reply_copied(fuse_req_t req, struct fs *fs, struct fs_node *src, off_t off, size_t len)
{
	struct eng_session_info info;
	size_t n = 0;

	if (src->sess) {
		eng_session_info(src->sess, &info);
		if ((uint64_t)off < info.reply_bytes)
			n = info.reply_bytes - (size_t)off < len ? info.reply_bytes - (size_t)off : len;
	}
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_write(req, n);
}

void fs_op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
                           struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
                           struct fuse_file_info *fi_out, size_t len, int flags)
{
	struct fs *fs = fs_of(req);
	struct fs_handle *h;
	struct fs_node *src, *dst;
	int rc = 0;

	(void)fi_in;
	pthread_mutex_lock(&fs->lock);
	h = fs_handle_find(fs, fi_out->fh); /* by id: it may be released already */
	if (!h) {
		pthread_mutex_unlock(&fs->lock);
		fuse_reply_err(req, EBADF);
		return;
	}
	if (fs_ino_kind(fs, ino_in) != FS_KIND_SESSION || fs_ino_kind(fs, ino_out) != FS_KIND_SESSION ||
	    h->kind != FS_KIND_SESSION || !h->wr || flags) {
		LOG_ERR("copy_file_range %llu -> %llu: only session to session forks",
			(unsigned long long)ino_in, (unsigned long long)ino_out);
		rc = -EINVAL;
		goto out_unlock;
	}
	src = fs_node_find(fs, ino_in);
	dst = h->node;
	if (h->forked_from == ino_in && off_in == off_out) { /* cp's next call: done */
		reply_copied(req, fs, src, off_in, len);
		return;
	}
	if (off_in != 0 || off_out != 0 || h->len || h->submitted) {
		LOG_ERR("copy_file_range '%s' -> '%s' at %lld/%lld: a fork copies the whole session",
			src->name, dst->name, (long long)off_in, (long long)off_out);
		rc = -EINVAL;
		goto out_unlock;
	}
	rc = fs_session_fork(fs, dst, src, -1);
	if (rc == 0) {
		h->forked_from = ino_in;
		free(dst->fork_from);
		dst->fork_from = strdup(src->name);
		reply_copied(req, fs, src, 0, len);
		return;
	}
out_unlock:
	pthread_mutex_unlock(&fs->lock);
	fuse_reply_err(req, rc == -ENOSYS ? EIO : -rc); /* never ENOSYS: it would turn cp forks off */
}
