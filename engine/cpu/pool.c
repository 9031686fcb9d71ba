/*
 * pool.c — the CPU backend's thread pool: n-1 worker threads plus the
 * caller run one task function together and meet at a barrier.
 *
 * A forward pass issues a few hundred short tasks per token (a matmul of
 * a 896x896 Q5_0 matrix takes ~20 us), so waking threads must cost less
 * than that: workers spin on a generation counter for a short while and
 * only then sleep on a futex; the caller does the same while waiting for
 * the workers to finish.  Spinning is bounded (SPIN_NS) so that an idle
 * daemon uses no CPU.
 *
 * Not reentrant: one cpu_pool_run at a time (the engine thread owns it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../../gguf/log.h"
#include "cpu.h"

#define SPIN_NS 200000 /* spin this long before sleeping (0.2 ms) */
#define POOL_MAX_THREADS 512

struct cpu_pool;

struct pool_worker {
	struct cpu_pool *pool;
	int ith;
	pthread_t tid;
};

struct cpu_pool {
	int n_threads;
	struct pool_worker *workers; /* [n_threads - 1] */
	int n_started;               /* workers successfully created */

	cpu_task_fn fn; /* written before gen is bumped */
	void *arg;

	_Atomic int gen;          /* bumped once per run (and at shutdown) */
	_Atomic int n_done;       /* workers finished with the current run */
	_Atomic int n_sleeping;   /* workers blocked in futex_wait on gen */
	_Atomic int main_waiting; /* caller blocked in futex_wait on n_done */
	_Atomic bool stop;
};

static long futex_wait(_Atomic int *addr, int val)
{
	return syscall(SYS_futex, (int *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static long futex_wake(_Atomic int *addr, int n)
{
	return syscall(SYS_futex, (int *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static inline int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Waits until *addr != val: spins up to SPIN_NS, then sleeps on the futex.
 * sleepers (may be NULL) counts the threads asleep so wakers can skip the
 * syscall. */
static int wait_change(_Atomic int *addr, int val, _Atomic int *sleepers)
{
	int v;
	int64_t t0 = 0;
	for (unsigned i = 0;; i++) {
		v = atomic_load(addr);
		if (v != val)
			return v;
		cpu_relax();
		if ((i & 255) != 255)
			continue;
		if (t0 == 0) {
			t0 = now_ns();
		} else if (now_ns() - t0 > SPIN_NS) {
			atomic_fetch_add(sleepers, 1);
			while ((v = atomic_load(addr)) == val)
				futex_wait(addr, val);
			atomic_fetch_sub(sleepers, 1);
			return v;
		}
	}
}

static void *worker_main(void *p)
{
	struct pool_worker *w = p;
	struct cpu_pool *pool = w->pool;
	int seen = 0;

	for (;;) {
		seen = wait_change(&pool->gen, seen, &pool->n_sleeping);
		if (atomic_load(&pool->stop))
			break;
		pool->fn(pool->arg, w->ith, pool->n_threads);
		atomic_fetch_add(&pool->n_done, 1);
		if (atomic_load(&pool->main_waiting))
			futex_wake(&pool->n_done, 1);
	}
	return NULL;
}

int cpu_pool_init(int n_threads, struct cpu_pool **out)
{
	struct cpu_pool *p = NULL;
	int rc = 0;

	*out = NULL;
	if (n_threads <= 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		n_threads = n > 0 ? (int)n : 1;
	}
	if (n_threads > POOL_MAX_THREADS) {
		LOG_ERR("n_threads = %d exceeds %d", n_threads, POOL_MAX_THREADS);
		return -EINVAL;
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->n_threads = n_threads;
	if (n_threads > 1) {
		p->workers = calloc((size_t)n_threads - 1, sizeof(*p->workers));
		if (!p->workers) {
			rc = -ENOMEM;
			goto free_pool;
		}
	}
	for (int i = 0; i < n_threads - 1; i++) {
		p->workers[i].pool = p;
		p->workers[i].ith = i + 1;
		int err = pthread_create(&p->workers[i].tid, NULL, worker_main, &p->workers[i]);
		if (err) {
			LOG_ERR("pthread_create: %s", strerror(err));
			rc = -err;
			goto free_pool;
		}
		p->n_started++;
	}
	*out = p;
	return 0;

free_pool:
	cpu_pool_free(p);
	return rc;
}

void cpu_pool_free(struct cpu_pool *p)
{
	if (!p)
		return;
	atomic_store(&p->stop, true);
	atomic_fetch_add(&p->gen, 1);
	futex_wake(&p->gen, 1 << 30);
	for (int i = 0; i < p->n_started; i++)
		pthread_join(p->workers[i].tid, NULL);
	free(p->workers);
	free(p);
}

int cpu_pool_n_threads(const struct cpu_pool *p)
{
	return p ? p->n_threads : 1;
}

void cpu_pool_run(struct cpu_pool *p, cpu_task_fn fn, void *arg)
{
	if (!p || p->n_threads == 1) {
		fn(arg, 0, 1);
		return;
	}
	const int n_workers = p->n_threads - 1;
	p->fn = fn;
	p->arg = arg;
	atomic_store(&p->n_done, 0);
	atomic_fetch_add(&p->gen, 1); /* publishes fn, arg (seq_cst) */
	if (atomic_load(&p->n_sleeping) > 0)
		futex_wake(&p->gen, n_workers);

	fn(arg, 0, p->n_threads);

	int done;
	while ((done = atomic_load(&p->n_done)) != n_workers)
		wait_change(&p->n_done, done, &p->main_waiting);
}
