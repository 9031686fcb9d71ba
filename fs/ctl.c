/*
 * ctl.c — the root's control files (README, model, stats, defaults), the
 * history entries, and the settings a session's turn runs with (defaults +
 * the session's xattr overrides).  Every function runs with fs->lock held;
 * contents are built whole and handed to open() as a snapshot, so a reader
 * sees one consistent version however it slices its reads.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_internal.h"

static const char readme_text[] =
	"promptfs — a language model mounted as a directory\n"
	"\n"
	"Every regular file you create here is a conversation (a session):\n"
	"\n"
	"  echo \"Write a haiku about the sea\" > poem   # new conversation (old context dropped)\n"
	"  cat poem                                   # streams the reply; EOF when it is done\n"
	"  echo \"Now make it rhyme\" >> poem           # next turn; the KV cache is reused\n"
	"  cat history/poem                           # the whole conversation (history/poem.json too)\n"
	"  : > poem                                   # reset (truncate -s 0 does the same)\n"
	"  mv poem sea; rm sea                        # rename; remove (frees the session)\n"
	"  cp poem draft                              # fork: same conversation and KV cache\n"
	"  setfattr -n user.fork_from -v poem@2 alt   # fork from the end of turn 2\n"
	"\n"
	"The prompt is everything written between open and close; it is sent when\n"
	"the file is closed (one trailing newline is dropped).  Reads never consume\n"
	"the reply: many readers, re-reads, less and tail -f all work.  A read at\n"
	"the end of a reply still being written waits (Ctrl-C interrupts it).\n"
	"\n"
	"Files here:\n"
	"  README     this text\n"
	"  model      the model: architecture, size, context, tensor types, backend\n"
	"  stats      sessions, tokens in/out, tokens/s, KV cache memory\n"
	"  defaults   settings for sessions (key = value lines; write to change)\n"
	"  history/   NAME and NAME.json: each session's conversation;\n"
	"             NAME.d/001-user, 002-assistant ...: one file per message\n"
	"  events     one line per change (time session what), from the open on\n"
	"  grammars/  GBNF grammars (llama.cpp's language): cp json.gbnf grammars/\n"
	"             then setfattr -n user.grammar -v json.gbnf poem\n"
	"  schemas/   JSON Schemas: cp person.json schemas/, then\n"
	"             setfattr -n user.schema -v person.json poem\n"
	"  NAME.tokens  (not listed) one line per sampled token of NAME's reply:\n"
	"             index id piece logprob [id piece logprob]... (logprobs = K)\n"
	"\n"
	"Settings (defaults keys, and per session as extended attributes):\n"
	"  temperature top_k top_p min_p repeat_penalty repeat_last_n seed\n"
	"  max_tokens mode (chat|raw|json) system stop (strings separated by |)\n"
	"  presence_penalty frequency_penalty typical_p dry_multiplier dry_base\n"
	"  dry_allowed_length dry_penalty_last_n xtc_probability xtc_threshold\n"
	"  logit_bias (id:bias,...) logprobs grammar (a name in grammars/)\n"
	"  json_schema (a JSON Schema) schema (a name in schemas/)\n"
	"  setfattr -n user.temperature -v 0 poem;  getfattr -d poem\n"
	"  setfattr -x user.temperature poem        # back to the default\n"
	"Read-only attributes: user.status user.state user.error user.tokens\n"
	"  user.prompt_tokens user.prefill_tokens user.generated_tokens\n"
	"  user.cached_tokens (from shared prefixes) user.kv_tokens user.turns\n"
	"  user.prefill_tps user.decode_tps\n"
	"\n"
	"Errors: EFBIG prompt too long for the context; ENOSPC too many sessions;\n"
	"EINVAL/ENAMETOOLONG bad name or setting; EIO the turn failed (see\n"
	"user.status); EACCES writing README, model, stats.\n";

const char *fs_state_name(enum eng_state st)
{
	switch (st) {
	case ENG_STATE_EMPTY: return "empty";
	case ENG_STATE_QUEUED: return "queued";
	case ENG_STATE_PREFILL: return "prefill";
	case ENG_STATE_GENERATING: return "generating";
	case ENG_STATE_DONE: return "done";
	case ENG_STATE_ERROR: return "error";
	}
	return "unknown";
}

const char *fs_errno_name(int err)
{
	switch (err < 0 ? -err : err) {
	case 0: return "";
	case EIO: return "EIO";
	case ENOSPC: return "ENOSPC";
	case ENOMEM: return "ENOMEM";
	case EFBIG: return "EFBIG";
	case EINVAL: return "EINVAL";
	case ENODEV: return "ENODEV";
	case ECANCELED: return "ECANCELED";
	}
	return "EIO";
}

// ---- a growable text buffer

struct sbuf {
	char *p;
	size_t len, cap;
	int err;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->err)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

__attribute__((format(printf, 2, 3)))
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		sb_add(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static int sb_finish(struct sbuf *b, char **out, size_t *len)
{
	if (b->err || !b->p) {
		if (!b->err) {
			*out = calloc(1, 1);
			*len = 0;
			return *out ? 0 : -ENOMEM;
		}
		free(b->p);
		return b->err;
	}
	*out = b->p;
	*len = b->len;
	return 0;
}

// ---- stats

static double per_s(uint64_t n, double s)
{
	return s > 0 ? (double)n / s : 0.0;
}

static int stats_text(struct fs *fs, char **out, size_t *len)
{
	struct eng_stats st;
	struct sbuf b = {0};
	uint64_t saved, loaded, ignored;
	int n_parked = 0;

	eng_model_stats(fs->model, &st);
	for (struct fs_parked *p = fs->parked; p; p = p->next)
		n_parked++;
	sb_printf(&b, "sessions: %d\n", st.n_sessions);
	sb_printf(&b, "busy: %d\n", st.n_busy);
	sb_printf(&b, "tokens_in: %llu\n", (unsigned long long)st.tokens_in);
	sb_printf(&b, "tokens_out: %llu\n", (unsigned long long)st.tokens_out);
	sb_printf(&b, "prefill_tokens: %llu\n", (unsigned long long)st.prefill_tokens);
	sb_printf(&b, "decode_tokens: %llu\n", (unsigned long long)st.decode_tokens);
	sb_printf(&b, "prefill_tokens_per_s: %.1f\n", per_s(st.prefill_tokens, st.prefill_seconds));
	sb_printf(&b, "decode_tokens_per_s: %.1f\n", per_s(st.decode_tokens, st.decode_seconds));
	sb_printf(&b, "forward_passes: %llu\n", (unsigned long long)st.forward_passes);
	sb_printf(&b, "kv_bytes_used: %zu\n", st.kv_bytes_used);
	sb_printf(&b, "kv_bytes_free: %zu\n",
		  st.kv_bytes_total > st.kv_bytes_used ? st.kv_bytes_total - st.kv_bytes_used : 0);
	sb_printf(&b, "kv_bytes_total: %zu\n", st.kv_bytes_total);
	sb_printf(&b, "kv_pages_used: %d\n", st.kv_pages_used);
	sb_printf(&b, "kv_pages_total: %d\n", st.kv_pages_total);
	sb_printf(&b, "kv_pages_shared: %d\n", st.kv_pages_shared);
	sb_printf(&b, "kv_pages_copied: %llu\n", (unsigned long long)st.pages_copied);
	if (st.kv_wpages_total) {
		sb_printf(&b, "kv_window_pages_used: %d\n", st.kv_wpages_used);
		sb_printf(&b, "kv_window_pages_total: %d\n", st.kv_wpages_total);
		sb_printf(&b, "kv_window_rebuilds: %llu\n", (unsigned long long)st.window_rebuilds);
	}
	sb_printf(&b, "prefix_sharing: %s\n", st.prefix_share ? "on" : "off");
	sb_printf(&b, "prefix_pages: %d\n", st.prefix_pages);
	sb_printf(&b, "prefill_tokens_saved: %llu\n", (unsigned long long)st.prefill_saved);
	sb_printf(&b, "max_batch_seqs: %d\n", st.max_batch_seqs);
	sb_printf(&b, "evictions: %llu\n", (unsigned long long)st.evictions);
	sb_printf(&b, "preemptions: %llu\n", (unsigned long long)st.preemptions);
	fs_kvstate_stats(fs, &saved, &loaded, &ignored);
	sb_printf(&b, "kv_files_saved: %llu\n", (unsigned long long)saved);
	sb_printf(&b, "kv_files_loaded: %llu\n", (unsigned long long)loaded);
	sb_printf(&b, "kv_files_ignored: %llu\n", (unsigned long long)ignored);
	sb_printf(&b, "reads: %llu\n", (unsigned long long)fs->n_reads);
	sb_printf(&b, "reads_parked: %d\n", n_parked);
	sb_printf(&b, "reads_parked_total: %llu\n", (unsigned long long)fs->n_parks);
	sb_printf(&b, "reads_interrupted: %llu\n", (unsigned long long)fs->n_interrupts);
	sb_printf(&b, "bytes_read: %llu\n", (unsigned long long)fs->bytes_read);
	return sb_finish(&b, out, len);
}

// ---- defaults

/* Appends value with backslash, newline, CR and tab escaped (one line). */
static void add_escaped(struct sbuf *b, const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i] == ' ' && (i == 0 || i == n - 1)) {
			sb_add(b, "\\ ", 2); /* a space the line's trimming must keep */
			continue;
		}
		switch (v[i]) {
		case '\\': sb_add(b, "\\\\", 2); break;
		case '\n': sb_add(b, "\\n", 2); break;
		case '\r': sb_add(b, "\\r", 2); break;
		case '\t': sb_add(b, "\\t", 2); break;
		case '#': sb_add(b, "\\#", 2); break; /* not a comment when read back */
		default: sb_add(b, v + i, 1);
		}
	}
}

static int defaults_text(struct fs *fs, char **out, size_t *len)
{
	struct sbuf b = {0};
	size_t cap = ENG_MAX_SYSTEM + 256;
	char *val = malloc(cap);

	if (!val)
		return -ENOMEM;
	sb_printf(&b, "# settings for sessions without their own (user.KEY xattrs); key = value\n");
	for (int i = 0; i < ENG_KEY_COUNT; i++) {
		int n = eng_settings_get(&fs->defaults, eng_settings_keys[i], val, cap);

		sb_printf(&b, "%s = ", eng_settings_keys[i]);
		if (n > 0)
			add_escaped(&b, val, (size_t)n < cap ? (size_t)n : cap - 1);
		sb_add(&b, "\n", 1);
	}
	free(val);
	return sb_finish(&b, out, len);
}

static size_t unescape(char *s, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n) {
			char c = s[++i];
			s[o++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
		} else {
			s[o++] = s[i];
		}
	}
	return o;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Is k[i] escaped (an odd number of backslashes before it)? */
static bool escaped(const char *k, size_t i)
{
	size_t n = 0;

	while (i > n && k[i - n - 1] == '\\')
		n++;
	return n & 1;
}

/* n without trailing blanks, except one escaped by a backslash ("\ "). */
static size_t trim_end(const char *k, size_t n)
{
	while (n && is_space(k[n - 1]) && !escaped(k, n - 1))
		n--;
	return n;
}

/* One `key = value` line into st.  0 / -EINVAL (logged). */
static int defaults_line(struct fs *fs, struct eng_settings *st, char *line, size_t n, int lineno)
{
	char *eq, *k = line, *v;
	size_t kn, vn;

	while (n && is_space(*k))
		k++, n--;
	n = trim_end(k, n);
	if (n == 0 || k[0] == '#')
		return 0;
	for (size_t i = 1; i < n; i++) { /* " # comment" ends the line; "\#" is a '#' */
		if (k[i] == '#' && is_space(k[i - 1]) && !escaped(k, i - 1)) {
			n = trim_end(k, i);
			break;
		}
	}
	eq = memchr(k, '=', n);
	if (!eq) {
		LOG_ERR("defaults line %d: no '=' in '%.*s'", lineno, (int)(n > 80 ? 80 : n), k);
		return -EINVAL;
	}
	kn = (size_t)(eq - k);
	while (kn && is_space(k[kn - 1]))
		kn--;
	v = eq + 1;
	vn = n - (size_t)(v - k);
	while (vn && is_space(*v))
		v++, vn--;
	k[kn] = 0;
	vn = unescape(v, vn);
	int rc = fs_gram_known(fs, eng_settings_key_index(k), v, vn);
	if (rc == 0)
		rc = eng_settings_set(st, k, v, vn);
	if (rc < 0)
		LOG_ERR("defaults line %d: %s '%s' = '%.*s'", lineno,
			rc == -ENOENT ? "unknown key" : "bad value", k, (int)(vn > 80 ? 80 : vn), v);
	return rc < 0 ? -EINVAL : 0;
}

int fs_ctl_defaults_apply(struct fs *fs, const char *text, size_t len, bool replace)
{
	struct eng_settings st;
	char *copy = malloc(len + 1);
	int rc = 0, lineno = 0;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, text, len);
	copy[len] = 0;
	memset(&st, 0, sizeof(st));
	if (replace)
		eng_settings_default(fs->model, &st);
	else if ((rc = eng_settings_copy(&st, &fs->defaults)) < 0)
		goto out_copy;
	for (size_t i = 0; i < len && rc == 0;) {
		char *nl = memchr(copy + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - copy) : len;

		rc = defaults_line(fs, &st, copy + i, end - i, ++lineno);
		i = end + 1;
	}
	if (rc == 0) {
		eng_settings_free(&fs->defaults);
		fs->defaults = st; /* takes the strings */
		LOG_INFO("defaults changed (%d lines)", lineno);
	} else {
		eng_settings_free(&st);
	}
out_copy:
	free(copy);
	return rc;
}

// ---- settings of one session

int fs_settings_effective(struct fs *fs, const struct fs_node *n, struct eng_settings *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	rc = eng_settings_copy(out, &fs->defaults);
	if (rc < 0)
		return rc;
	for (int i = 0; i < ENG_KEY_COUNT; i++) {
		if (!(n->over_mask & (1ull << i)))
			continue;
		if ((rc = eng_settings_take(out, &n->over, (enum eng_key)i)) < 0) {
			eng_settings_free(out);
			return rc;
		}
	}
	return 0;
}

int fs_settings_push(struct fs *fs, struct fs_node *n)
{
	struct eng_settings st;
	int rc;

	if (!n->sess)
		return -ENOENT;
	rc = fs_settings_effective(fs, n, &st);
	if (rc < 0)
		return rc;
	rc = eng_session_set_settings(n->sess, &st);
	eng_settings_free(&st);
	return rc;
}

// ---- dispatch

int fs_ctl_content(struct fs *fs, uint64_t ino, char **out, size_t *len)
{
	enum fs_kind kind = fs_ino_kind(fs, ino);
	struct fs_node *n;

	*out = NULL;
	*len = 0;
	switch (kind) {
	case FS_KIND_README:
		*out = strdup(readme_text);
		*len = sizeof(readme_text) - 1;
		return *out ? 0 : -ENOMEM;
	case FS_KIND_MODEL:
		*out = strdup(fs->model_text ? fs->model_text : "");
		*len = *out ? strlen(*out) : 0;
		return *out ? 0 : -ENOMEM;
	case FS_KIND_STATS:
		return stats_text(fs, out, len);
	case FS_KIND_DEFAULTS:
		return defaults_text(fs, out, len);
	case FS_KIND_HIST_TEXT:
	case FS_KIND_HIST_JSON:
		n = fs_node_find(fs, ino);
		if (!n || !n->sess)
			return -ENOENT;
		return eng_session_history_more(n->sess, kind == FS_KIND_HIST_JSON, n->rest, n->n_rest,
						out, len);
	case FS_KIND_HIST_MSG: {
		const char *role;

		n = fs_node_find(fs, ino);
		if (!n || !n->sess)
			return -ENOENT;
		return eng_session_message(n->sess, (int)(FS_INO_SUB(ino) - FS_INO_MSG0), &role, out, len);
	}
	case FS_KIND_EVENTS:
		return 0; /* a stream (events.c), no snapshot */
	default:
		return -EISDIR;
	}
}

int fs_ctl_size(struct fs *fs, uint64_t ino, size_t *len)
{
	enum fs_kind kind = fs_ino_kind(fs, ino);
	struct fs_node *n = fs_node_find(fs, ino);
	const char *role;
	char *text = NULL;
	int rc;

	*len = 0;
	switch (kind) {
	case FS_KIND_HIST_TEXT:
	case FS_KIND_HIST_JSON:
		if (!n || !n->sess)
			return -ENOENT;
		return eng_session_history_size(n->sess, kind == FS_KIND_HIST_JSON, n->rest, n->n_rest, len);
	case FS_KIND_HIST_MSG:
		if (!n || !n->sess)
			return -ENOENT;
		return eng_session_message(n->sess, (int)(FS_INO_SUB(ino) - FS_INO_MSG0), &role, NULL, len);
	default:
		rc = fs_ctl_content(fs, ino, &text, len);
		free(text);
		return rc;
	}
}

// ---- history/NAME.d/ names: "%03d-role" (000-system, 001-user, 002-assistant …)

bool fs_ctl_msg_name(struct fs_node *n, int j, char *buf, size_t cap)
{
	const char *role;
	size_t len;

	if (!n->sess || eng_session_message(n->sess, j, &role, NULL, &len) < 0)
		return false;
	snprintf(buf, cap, "%03d-%s", j, role);
	return true;
}

int fs_ctl_msg_index(struct fs_node *n, const char *name)
{
	char want[32], *end;
	long j;

	if (name[0] < '0' || name[0] > '9')
		return -1;
	j = strtol(name, &end, 10);
	if (*end != '-' || j < 0 || j > (1L << 22) || !fs_ctl_msg_name(n, (int)j, want, sizeof(want)))
		return -1;
	return strcmp(want, name) ? -1 : (int)j;
}
