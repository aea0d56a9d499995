#include "core/dist/distributed_job.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

// c10d guards its backends' headers with these; LibTorch defines them when it builds itself.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef MOELAB_WITH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace moelab::core {

namespace {

// Gloo in LibTorch 1.13 aborts the process on bfloat16 in its data-movement collectives; a
// bfloat16 tensor moved as the 16-bit values of a kHalf view of the same bytes arrives bit for
// bit. Sums are never taken in bfloat16 here (gradients and statistics are float32 or int64).
at::Tensor as_movable(const at::Tensor& tensor) {
    return tensor.scalar_type() == at::kBFloat16 ? tensor.view(at::kHalf) : tensor;
}

// One implementation for both backends: LibTorch 1.13 derives them from c10d::ProcessGroup, 2.x
// from c10d::Backend, but the collectives used here have the same signatures in both, so the
// concrete type is held and no base class is named.
template <class Backend>
class C10dGroup final : public ProcessGroup {
  public:
    C10dGroup(c10::intrusive_ptr<Backend> backend, int rank, int size)
        : backend_(std::move(backend)), rank_(rank), size_(size) {}

    int rank() const override { return rank_; }
    int size() const override { return size_; }

    void all_reduce_sum(at::Tensor& tensor) override {
        std::vector<at::Tensor> tensors{tensor};
        backend_->allreduce(tensors)->wait();
    }

    at::Tensor all_gather(const at::Tensor& local) override {
        const at::Tensor input = as_movable(local.contiguous());
        std::vector<at::Tensor> slots;
        for (int r = 0; r < size_; ++r) slots.push_back(at::empty_like(input));
        std::vector<std::vector<at::Tensor>> outputs{slots};
        std::vector<at::Tensor> inputs{input};
        backend_->allgather(outputs, inputs)->wait();
        return at::stack(outputs[0]).view(local.scalar_type());
    }

    at::Tensor all_to_all(const at::Tensor& input, const std::vector<std::int64_t>& send_rows,
                          const std::vector<std::int64_t>& receive_rows) override {
        std::vector<std::int64_t> shape = input.sizes().vec();
        shape[0] = std::accumulate(receive_rows.begin(), receive_rows.end(), std::int64_t{0});
        at::Tensor send = as_movable(input.contiguous());
        at::Tensor receive = at::empty(shape, send.options());
        std::vector<std::int64_t> send_counts = send_rows, receive_counts = receive_rows;
        backend_->alltoall_base(receive, send, receive_counts, send_counts)->wait();
        return receive.view(input.scalar_type());
    }

    void broadcast(at::Tensor& tensor, int root) override {
        std::vector<at::Tensor> tensors{as_movable(tensor)};
        c10d::BroadcastOptions options;
        options.rootRank = root;
        backend_->broadcast(tensors, options)->wait();
    }

    void barrier() override { backend_->barrier()->wait(); }

  private:
    c10::intrusive_ptr<Backend> backend_;
    int rank_;
    int size_;
};

bool is_loopback(const std::string& address) {
    return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

class C10dJob final : public DistributedJob {
  public:
    C10dJob(const LaunchEnvironment& env, Transport transport) : env_(env), transport_(transport) {
        using namespace std::chrono_literals;
        c10::intrusive_ptr<c10d::Store> store;
        if (!env.file_store.empty()) {
            store = c10::make_intrusive<c10d::FileStore>(env.file_store, env.world_size);
        } else {
            c10d::TCPStoreOptions options;
            options.port = static_cast<std::uint16_t>(env.master_port);
            options.isServer = env.rank == 0 && !env.agent_store;
            options.numWorkers = env.world_size;
            options.waitWorkers = false;
            options.timeout = std::chrono::milliseconds(300s);
            store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
        }
        // Each attempt of a restarted job meets under its own keys.
        store_ = c10::make_intrusive<c10d::PrefixStore>(
            fmt::format("moelab/attempt-{}", env.restart_count), store);
        std::vector<int> everyone(static_cast<std::size_t>(env.world_size));
        std::iota(everyone.begin(), everyone.end(), 0);
        world_ = subgroup("world", everyone);
        // Every rank has finished connecting before any goes on: a rank with nothing to exchange
        // could otherwise finish and exit while another is still opening its connection to it
        // ("Connection closed by peer" in that one, seen in the test suite).
        world_->barrier();
    }

    int rank() const override { return env_.rank; }
    int world_size() const override { return env_.world_size; }
    int local_rank() const override { return env_.local_rank; }
    std::shared_ptr<ProcessGroup> world() override { return world_; }

    std::shared_ptr<ProcessGroup> subgroup(const std::string& name,
                                           const std::vector<int>& members) override {
        const auto me = std::find(members.begin(), members.end(), env_.rank);
        if (me == members.end() || !std::is_sorted(members.begin(), members.end())) {
            throw std::logic_error(
                fmt::format("process group '{}': rank {} is not among the "
                            "ascending members {}",
                            name, env_.rank, fmt::join(members, ", ")));
        }
        const int rank = static_cast<int>(me - members.begin());
        const int size = static_cast<int>(members.size());
        auto store = c10::make_intrusive<c10d::PrefixStore>("group/" + name, store_);
#ifdef MOELAB_WITH_NCCL
        if (transport_ == Transport::kNccl) {
            auto backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size);
            return std::make_shared<C10dGroup<c10d::ProcessGroupNCCL>>(backend, rank, size);
        }
#else
        if (transport_ == Transport::kNccl) {
            throw std::runtime_error(
                "this moelab was built without NCCL (LibTorch without CUDA): CUDA tensors cannot "
                "be exchanged between processes");
        }
#endif
        auto options = c10d::ProcessGroupGloo::Options::create();
        // GLOO_SOCKET_IFNAME names the interface, as for PyTorch's own Gloo groups; a job on
        // one machine uses the loopback interface; otherwise the address of the host's name.
        const char* interface = std::getenv("GLOO_SOCKET_IFNAME");
        const bool local = !env_.file_store.empty() || is_loopback(env_.master_addr);
        options->devices.push_back(
            interface != nullptr && *interface != '\0'
                ? c10d::ProcessGroupGloo::createDeviceForInterface(interface)
            : local ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                    : c10d::ProcessGroupGloo::createDefaultDevice());
        auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, options);
        return std::make_shared<C10dGroup<c10d::ProcessGroupGloo>>(backend, rank, size);
    }

  private:
    LaunchEnvironment env_;
    Transport transport_;
    c10::intrusive_ptr<c10d::Store> store_;
    std::shared_ptr<ProcessGroup> world_;
};

}  // namespace

std::unique_ptr<DistributedJob> DistributedJob::connect(const LaunchEnvironment& env,
                                                        Transport transport) {
    try {
        return std::make_unique<C10dJob>(env, transport);
    } catch (const std::exception& error) {
        const std::string where =
            env.file_store.empty()
                ? fmt::format("the TCP store at {}:{}", env.master_addr, env.master_port)
                : fmt::format("the file store {}", env.file_store);
        throw std::runtime_error(
            fmt::format("rank {} of {} could not meet the others through {}: {}", env.rank,
                        env.world_size, where, error.what()));
    }
}

}  // namespace moelab::core
