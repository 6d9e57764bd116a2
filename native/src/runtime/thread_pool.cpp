// thread_pool.cpp — std::thread workers that spin for a short while after each parallel region,
// then sleep on a condition variable. Decode issues a few hundred parallel regions per token,
// microseconds apart: spinning catches the next one without a futex wake-up, sleeping keeps an
// idle runtime (or an oversubscribed phone) from burning a core.
//
// Tasks are handed out one at a time from an atomic word, so a fast thread takes more of them.
#include "runtime/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace edgert {

namespace {

// How long an idle worker keeps spinning before it sleeps: longer than the gap between two
// matmuls of a decode step, short against a human-visible pause.
constexpr auto kSpinFor = std::chrono::microseconds(300);

inline void cpu_relax() {
#if defined(__x86_64__)
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

}  // namespace

// Work is claimed from one atomic word, (generation << 32) | next task index, and completion is
// counted in tasks, not workers: the caller returns as soon as every task has finished, without
// waiting for a worker that was asleep or descheduled to notice the region at all (on a loaded
// 2-core machine that wait used to cost more than the matmul). Region parameters live in two
// slots by generation parity; a successful claim proves the region is still current, so its slot
// cannot have been reused yet.
struct ThreadPool::Impl {
    using Fn = std::function<void(int64_t, int)>;
    struct Slot {
        const Fn* fn = nullptr;
        std::atomic<int64_t> n_tasks{0};
        std::atomic<int64_t> done{0};
    };

    int n_threads = 1;
    std::vector<std::thread> workers;
    std::mutex mu;
    std::condition_variable cv;
    std::atomic<uint64_t> state{0};  // generation << 32 | next task index
    std::atomic<bool> stop{false};
    Slot slots[2];

    static uint32_t gen_of(uint64_t s) { return static_cast<uint32_t>(s >> 32); }

    // Claims and runs tasks of the current region until none is left.
    void run_region(int thread_id) {
        for (;;) {
            uint64_t s = state.load(std::memory_order_acquire);
            Slot& slot = slots[gen_of(s) & 1];
            const int64_t idx = static_cast<int64_t>(s & 0xffffffffu);
            if (idx >= slot.n_tasks.load(std::memory_order_acquire)) return;
            if (!state.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) continue;
            (*slot.fn)(idx, thread_id);
            slot.done.fetch_add(1, std::memory_order_acq_rel);
        }
    }

    void worker_loop(int thread_id) {
        uint32_t seen = 0;
        for (;;) {
            uint32_t g = gen_of(state.load(std::memory_order_acquire));
            if (g == seen && !stop.load(std::memory_order_relaxed)) {
                const auto until = std::chrono::steady_clock::now() + kSpinFor;
                for (int i = 0; g == seen; ++i) {
                    cpu_relax();
                    g = gen_of(state.load(std::memory_order_acquire));
                    if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) break;
                }
                if (g == seen) {
                    std::unique_lock<std::mutex> lock(mu);
                    cv.wait(lock, [&] {
                        return gen_of(state.load(std::memory_order_acquire)) != seen ||
                               stop.load(std::memory_order_relaxed);
                    });
                    g = gen_of(state.load(std::memory_order_acquire));
                }
            }
            if (stop.load(std::memory_order_relaxed)) return;
            seen = g;
            run_region(thread_id);
        }
    }
};

ThreadPool::ThreadPool(int n_threads) : impl_(new Impl) {
    impl_->n_threads = std::max(1, n_threads);
    for (int i = 1; i < impl_->n_threads; ++i) {
        impl_->workers.emplace_back([this, i] { impl_->worker_loop(i); });
    }
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(impl_->mu);
        impl_->stop.store(true, std::memory_order_relaxed);
    }
    impl_->cv.notify_all();
    for (std::thread& t : impl_->workers) t.join();
    delete impl_;
}

int ThreadPool::size() const { return impl_->n_threads; }

void ThreadPool::parallel_for(int64_t n_tasks,
                              const std::function<void(int64_t task, int thread_id)>& fn) {
    Impl& p = *impl_;
    if (p.n_threads == 1 || n_tasks <= 1) {
        for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
        return;
    }
    const uint32_t gen = Impl::gen_of(p.state.load(std::memory_order_relaxed)) + 1;
    Impl::Slot& slot = p.slots[gen & 1];
    slot.fn = &fn;
    slot.done.store(0, std::memory_order_relaxed);
    slot.n_tasks.store(n_tasks, std::memory_order_relaxed);
    {
        // Under the mutex so a worker between its predicate check and its wait cannot miss it.
        std::lock_guard<std::mutex> lock(p.mu);
        p.state.store(static_cast<uint64_t>(gen) << 32, std::memory_order_release);
    }
    p.cv.notify_all();
    p.run_region(0);
    // Only tasks another thread is still running remain; yield now and then so that thread
    // gets the core on an oversubscribed machine.
    for (int i = 0; slot.done.load(std::memory_order_acquire) != n_tasks; ++i) {
        if ((i & 63) == 63) std::this_thread::yield(); else cpu_relax();
    }
}

int physical_core_count() {
    const unsigned logical = std::max(1u, std::thread::hardware_concurrency());
    int usable = static_cast<int>(logical);
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return usable;
    usable = std::max(1, CPU_COUNT(&set));
    // Count distinct (package, core) pairs among the CPUs we may run on: SMT siblings share one.
    std::set<std::pair<int, int>> cores;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &set)) continue;
        const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
        std::ifstream core_f(base + "core_id"), pkg_f(base + "physical_package_id");
        int core = -1, pkg = -1;
        if (!(core_f >> core) || !(pkg_f >> pkg)) return usable;
        cores.insert({pkg, core});
    }
    if (!cores.empty()) return std::min(usable, static_cast<int>(cores.size()));
#endif
    return usable;
}

}  // namespace edgert
