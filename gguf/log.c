/*
 * log.c — see log.h.  One formatted line, one write(2), so lines from
 * different threads never interleave.
 */
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static atomic_int g_level = PF_LOG_LEVEL_WARN;
static atomic_int g_fd = 2;

void pf_log_set_level(int level) { atomic_store(&g_level, level); }
int pf_log_get_level(void) { return atomic_load(&g_level); }
void pf_log_set_fd(int fd) { atomic_store(&g_fd, fd); }

void pf_vlog(int level, const char *func, const char *fmt, va_list ap)
{
	static const char tag[] = "EWID";
	char line[1024];
	int n;

	if (level > atomic_load(&g_level))
		return;
	n = snprintf(line, sizeof(line), "promptfs: %c %s: ", tag[level & 3], func);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(atomic_load(&g_fd), line, (size_t)n);
	(void)w;
}

void pf_log(int level, const char *func, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pf_vlog(level, func, fmt, ap);
	va_end(ap);
}
