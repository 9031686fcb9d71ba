/*
 * log.h — the project's one logging facility (lowest module, so every layer
 * can use it).  Lines go to stderr (or a file set by the daemon) as
 *   "promptfs: E gguf_open: tensor 'blk.0.attn_q.weight': offset 123 not aligned to 32"
 * Thread-safe: one write() per line.
 */
#ifndef PROMPTFS_LOG_H
#define PROMPTFS_LOG_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

enum pf_log_level {
	PF_LOG_LEVEL_ERROR = 0,
	PF_LOG_LEVEL_WARN = 1,
	PF_LOG_LEVEL_INFO = 2,
	PF_LOG_LEVEL_DEBUG = 3,
};

void pf_log_set_level(int level);
int pf_log_get_level(void);
/* Sends lines to fd (default 2).  The daemon points this at its log file. */
void pf_log_set_fd(int fd);
void pf_log(int level, const char *func, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void pf_vlog(int level, const char *func, const char *fmt, va_list ap);

#define LOG_ERR(...) pf_log(PF_LOG_LEVEL_ERROR, __func__, __VA_ARGS__)
#define LOG_WARN(...) pf_log(PF_LOG_LEVEL_WARN, __func__, __VA_ARGS__)
#define LOG_INFO(...) pf_log(PF_LOG_LEVEL_INFO, __func__, __VA_ARGS__)
#define LOG_DEBUG(...) pf_log(PF_LOG_LEVEL_DEBUG, __func__, __VA_ARGS__)

/* Broken invariant: log and abort (error tier c).  Never for bad input. */
#define PF_ASSERT(cond)                                                                \
	do {                                                                           \
		if (!(cond)) {                                                         \
			pf_log(PF_LOG_LEVEL_ERROR, __func__, "assertion failed: %s (%s:%d)", \
			       #cond, __FILE__, __LINE__);                             \
			__builtin_trap();                                              \
		}                                                                      \
	} while (0)

#ifdef __cplusplus
}
#endif

#endif /* PROMPTFS_LOG_H */
