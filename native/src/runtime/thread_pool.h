// thread_pool.h — a fixed pool of worker threads for row- and tile-parallel kernels.
//
// No OpenMP in the ABI: plain std::thread workers that spin briefly then sleep, so decode (many
// tiny parallel regions per token) does not pay a futex wake-up per matmul.
#pragma once
#include <cstdint>
#include <functional>

namespace edgert {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);  // n_threads >= 1, counting the calling thread
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const;
    // Runs fn(task, thread_id) for every task in [0, n_tasks) across the pool, the calling thread
    // included (thread_id 0), and returns when all are done. Not reentrant. When the other
    // threads keep arriving late (their cores taken by other processes), the next few hundred
    // regions use half the threads (2 threads: the calling thread alone), then all again.
    void parallel_for(int64_t n_tasks, const std::function<void(int64_t task, int thread_id)>& fn);

private:
    struct Impl;
    Impl* impl_;
};

// Physical cores of this machine (the default thread count).
int physical_core_count();

}  // namespace edgert
