/*
 * guard.c — mapped model files that shrink under the reader.
 *
 * A read from a MAP_SHARED or MAP_PRIVATE file mapping past the file's end
 * (someone truncated it) raises SIGBUS, which would kill the daemon.  Each
 * mapping made by gguf_open() is registered here; the process-wide SIGBUS
 * handler (installed once, at the first registration) looks the faulting
 * address up: inside a registered mapping it replaces the rest of that
 * mapping with zero pages (one mmap over the range; the read is retried and
 * sees zeros) and counts the fault, so the owner can notice and stop trusting
 * the weights (gguf_file_changed).  Any other SIGBUS gets the default action
 * back and is re-raised by the retried instruction.
 *
 * The handler only reads the slot table (atomics) and calls mmap(2), which on
 * Linux is a plain system call (not on POSIX's async-signal-safe list, but it
 * takes no user-space lock).
 */
#include "gguf_internal.h"
#include "log.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUARD_SLOTS 16

static struct {
	_Atomic(uintptr_t) start; /* 0: free */
	_Atomic(size_t) len;
	atomic_uint faults;
} slots[GUARD_SLOTS];

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int install_err;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	long pg = sysconf(_SC_PAGESIZE);

	(void)uc;
	for (int i = 0; i < GUARD_SLOTS; i++) {
		uintptr_t s = atomic_load(&slots[i].start);
		size_t n = atomic_load(&slots[i].len);

		if (s && a >= s && a < s + n) {
			uintptr_t from = a & ~(uintptr_t)(pg - 1);

			if (mmap((void *)from, s + n - from, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
				 -1, 0) != MAP_FAILED) {
				atomic_fetch_add(&slots[i].faults, 1);
				return; /* the read is retried and finds zeros */
			}
			break;
		}
	}
	signal(sig, SIG_DFL); /* not ours: the retried access takes the default action */
}

static void install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) < 0)
		install_err = -1;
}

int gguf_guard_add(const void *map, size_t len)
{
	pthread_once(&once, install);
	if (install_err) {
		LOG_WARN("cannot install the SIGBUS guard: a truncated model file would end the process");
		return -1;
	}
	for (int i = 0; i < GUARD_SLOTS; i++) {
		uintptr_t zero = 0;

		/* the slot is ours once start is set; the handler matches nothing
		 * until len is (nobody reads the new mapping before we return) */
		if (atomic_compare_exchange_strong(&slots[i].start, &zero, (uintptr_t)map)) {
			atomic_store(&slots[i].faults, 0);
			atomic_store(&slots[i].len, len);
			return i;
		}
	}
	LOG_WARN("more than %d mapped model files: this one is not guarded against truncation", GUARD_SLOTS);
	return -1;
}

void gguf_guard_remove(int slot)
{
	if (slot >= 0 && slot < GUARD_SLOTS) {
		atomic_store(&slots[slot].len, 0);
		atomic_store(&slots[slot].start, 0);
	}
}

unsigned gguf_guard_faults(int slot)
{
	return slot >= 0 && slot < GUARD_SLOTS ? atomic_load(&slots[slot].faults) : 0;
}
