// thread_pool.cpp — std::thread workers that spin for a short while after each parallel region,
// then sleep on a condition variable; regions use fewer threads for a while when other processes
// keep taking the workers' cores (see kLateWait). Decode issues a few hundred parallel regions per token,
// microseconds apart: spinning catches the next one without a futex wake-up, sleeping keeps an
// idle runtime (or an oversubscribed phone) from burning a core.
//
// Tasks are split into one range per thread; a thread that finishes its own steals from the
// others' one task at a time, so a fast thread takes more of them.
#include "runtime/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <memory>
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
// A region is "late" when, its own share done, the caller still waited this long, and more than
// kLateTasks of its own task times, for the other threads: on a quiet machine it waits at most
// about one task; a thread that lost its core to another process makes it wait a scheduler slice
// (milliseconds) at every barrier. A region whose worker took no task at all counts the same:
// the worker had no core, and its spinning only takes time from the caller.
constexpr auto kLateWait = std::chrono::microseconds(50);
constexpr int kLateTasks = 4;
// When kLateRegions of the last 32 regions were late, half the threads sit out the next
// kReducedRegions (a few decode steps; 2 threads: the calling thread alone, the worker falls
// asleep), then all take part again: on an oversubscribed machine the pool degrades towards one
// thread's speed instead of far below it, and recovers when the load goes.
// A load that outlasts the reduced stretch makes the next try with all threads late again at
// once, and each try costs kLateRegions late barriers (a scheduler slice each): a relapse within
// kRelapseRegions of trying doubles the stretch, up to kMaxReducedRegions (a few seconds of
// decode on a small model); a try that holds that long resets it.
constexpr int kLateRegions = 8;
constexpr int kReducedRegions = 512;
constexpr int kRelapseRegions = 256;
constexpr int kMaxReducedRegions = 32768;

inline void cpu_relax() {
#if defined(__x86_64__)
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

}  // namespace

// Each region splits its tasks into one contiguous range per thread, and each range has its own
// claim word on its own cache line, (generation << 32) | next task index. A thread claims from
// its own range first (an uncontended CAS: on a 2-core decode step the old single shared word
// bounced between the cores on every task, twice, which cost more than the second core gave),
// then steals from the others' ranges, so a thread that is asleep or descheduled never holds
// the region up: the caller does its share. A successful claim carries the region's generation,
// which proves the region is still current, so its slot (function, ranges) cannot have been
// reused yet. Completion is counted once per thread per region (the tasks it ran), not per task;
// the caller returns when the count reaches n_tasks, without waiting for a worker that never
// noticed the region.
struct ThreadPool::Impl {
    using Fn = std::function<void(int64_t, int)>;
    static constexpr int kMaxThreads = 256;
    struct alignas(64) Cursor {
        std::atomic<uint64_t> word{0};  // generation << 32 | next task index
    };
    struct Slot {
        const Fn* fn = nullptr;
        std::atomic<int64_t> done{0};
        std::atomic<int> active{0};  // threads taking part: ranges [0, active), ids below it
        // End of each thread's range. Atomic only because a thread that lost the race for the
        // last task may read it after a later region reused the slot (its claim then fails).
        std::atomic<int64_t> end[kMaxThreads] = {};
    };

    int n_threads = 1;
    std::vector<std::thread> workers;
    std::mutex mu;
    std::condition_variable cv;
    alignas(64) std::atomic<uint32_t> generation{0};
    std::atomic<bool> stop{false};
    // Workers that are going to sleep or sleep on cv. The caller takes the mutex to notify only
    // when there are some: a worker preempted while it held the mutex (in cv.wait's predicate)
    // used to block the caller at every region until it got a core back.
    alignas(64) std::atomic<int> sleepers{0};
    // Caller-only state of the late-region fallback (parallel_for is not reentrant).
    uint32_t late_history = 0;  // bit i: region i back was late
    int active = 0;             // threads that take part in regions now (<= n_threads)
    int reduced_left = 0;       // regions left before trying all threads again
    int reduced_for = kReducedRegions;  // the next reduced stretch (doubles on a relapse)
    int64_t since_try = 0;              // regions since all threads took part again
    std::unique_ptr<Cursor[]> cursors;
    Slot slots[2];

    static uint32_t gen_of(uint64_t w) { return static_cast<uint32_t>(w >> 32); }

    // Claims the next task of range r for generation gen; false when the range is exhausted or
    // belongs to another region by now.
    bool claim(int r, uint32_t gen, const Slot& slot, int64_t& task) {
        std::atomic<uint64_t>& word = cursors[r].word;
        uint64_t w = word.load(std::memory_order_acquire);
        for (;;) {
            if (gen_of(w) != gen) return false;
            const int64_t idx = static_cast<int64_t>(w & 0xffffffffu);
            if (idx >= slot.end[r].load(std::memory_order_relaxed)) return false;
            if (word.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel)) {
                task = idx;
                return true;
            }
        }
    }

    // Runs tasks of region gen, own range first, then the others'; adds what it ran to done and
    // returns it.
    int64_t run_region(int thread_id, uint32_t gen) {
        const Slot& slot = slots[gen & 1];
        int64_t ran = 0, task = 0;
        // A stale read of active (the slot reused meanwhile) only leads to claims that fail.
        const int active_now = slot.active.load(std::memory_order_relaxed);
        if (thread_id >= active_now) return 0;
        for (int k = 0; k < active_now; ++k) {
            const int r = (thread_id + k) % active_now;
            while (claim(r, gen, slot, task)) {
                (*slot.fn)(task, thread_id);
                ++ran;
            }
        }
        // Every task counted here belongs to region gen (the claims said so), which cannot have
        // completed before this add: its slot is still gen's.
        if (ran > 0) slots[gen & 1].done.fetch_add(ran, std::memory_order_acq_rel);
        return ran;
    }

    void worker_loop(int thread_id) {
        uint32_t seen = 0;
        for (;;) {
            uint32_t g = generation.load(std::memory_order_acquire);
            if (g == seen && !stop.load(std::memory_order_relaxed)) {
                const auto until = std::chrono::steady_clock::now() + kSpinFor;
                for (int i = 0; g == seen; ++i) {
                    cpu_relax();
                    g = generation.load(std::memory_order_acquire);
                    if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) break;
                }
                if (g == seen) {
                    // seq_cst against parallel_for's store of the generation and load of
                    // sleepers: either it sees this worker counted, or this worker sees the
                    // new generation (no lost wake-up).
                    sleepers.fetch_add(1, std::memory_order_seq_cst);
                    {
                        std::unique_lock<std::mutex> lock(mu);
                        cv.wait(lock, [&] {
                            return generation.load(std::memory_order_seq_cst) != seen ||
                                   stop.load(std::memory_order_relaxed);
                        });
                    }
                    sleepers.fetch_sub(1, std::memory_order_relaxed);
                    g = generation.load(std::memory_order_acquire);
                }
            }
            if (stop.load(std::memory_order_relaxed)) return;
            seen = g;
            run_region(thread_id, g);
        }
    }
};

ThreadPool::ThreadPool(int n_threads) : impl_(new Impl) {
    impl_->n_threads = std::min(std::max(1, n_threads), Impl::kMaxThreads);
    impl_->cursors.reset(new Impl::Cursor[size_t(impl_->n_threads)]);
    impl_->active = impl_->n_threads;
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
    if (p.reduced_left > 0 && --p.reduced_left == 0) {
        p.active = p.n_threads;  // try all again
        p.since_try = 0;
    }
    ++p.since_try;
    if (p.active <= 1 || n_tasks <= 1) {
        for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
        return;
    }
    const uint32_t gen = p.generation.load(std::memory_order_relaxed) + 1;
    Impl::Slot& slot = p.slots[gen & 1];
    slot.fn = &fn;
    slot.active.store(p.active, std::memory_order_relaxed);
    slot.done.store(0, std::memory_order_relaxed);
    // Thread t's range is [t * n / T, (t + 1) * n / T): contiguous tasks, so a thread walks
    // neighbouring weight rows. Every claim word carries the new generation before the region is
    // published.
    const int T = p.active;
    for (int t = 0; t < T; ++t) {
        const int64_t begin = n_tasks * t / T;
        slot.end[t].store(n_tasks * (t + 1) / T, std::memory_order_relaxed);
        p.cursors[t].word.store(static_cast<uint64_t>(gen) << 32 | static_cast<uint64_t>(begin),
                                std::memory_order_relaxed);
    }
    p.generation.store(gen, std::memory_order_seq_cst);
    if (p.sleepers.load(std::memory_order_seq_cst) > 0) {
        // Under the mutex so a worker between its predicate check and its wait cannot miss it.
        { std::lock_guard<std::mutex> lock(p.mu); }
        p.cv.notify_all();
    }
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    const int64_t ran = p.run_region(0, gen);
    bool late = false;
    if (slot.done.load(std::memory_order_acquire) != n_tasks) {
        const auto t1 = Clock::now();
        // Only tasks another thread is still running remain; yield now and then so that thread
        // gets the core on an oversubscribed machine.
        for (int i = 0; slot.done.load(std::memory_order_acquire) != n_tasks; ++i) {
            if ((i & 63) == 63) std::this_thread::yield(); else cpu_relax();
        }
        const auto waited = Clock::now() - t1;
        const auto per_task = (t1 - t0) / std::max<int64_t>(ran, 1);
        late = waited > kLateWait && waited > kLateTasks * per_task;
    }
    // A worker that took no task had no core when the region came (or came too late for any):
    // it only spins at others' expense. Regions too small to share count neither way.
    const bool absent = ran == n_tasks && n_tasks >= 2 * T;
    p.late_history = p.late_history << 1 | (late || absent ? 1u : 0u);
    int n_late = 0;
    for (uint32_t h = p.late_history; h != 0; h &= h - 1) ++n_late;
    if (n_late >= kLateRegions) {
        p.reduced_for = p.since_try <= kRelapseRegions ? std::min(2 * p.reduced_for, kMaxReducedRegions)
                                                       : kReducedRegions;
        p.active = std::max(1, p.active / 2);
        p.reduced_left = p.reduced_for;
        p.late_history = 0;
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
