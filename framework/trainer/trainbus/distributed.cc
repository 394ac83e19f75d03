// The only translation unit of the framework that includes the c10d headers.
#include "trainbus/distributed.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <string>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace trainbus {
namespace {

absl::StatusOr<int64_t> IntFromEnv(const char* name, int64_t fallback, bool* present) {
  const char* v = std::getenv(name);
  *present = v != nullptr && *v != '\0';
  if (!*present) return fallback;
  int64_t out = 0;
  if (!absl::SimpleAtoi(v, &out)) {
    return absl::InvalidArgumentError(absl::StrCat("environment variable ", name, "=\"", v,
                                                   "\" is not an integer"));
  }
  return out;
}

}  // namespace

struct Distributed::Impl {
  int rank = 0;
  int world = 1;
  std::string addr;
  int port = 0;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  bool failed = false;

  std::string Who() const { return absl::StrCat("rank ", rank, " of ", world); }

  absl::Status Failure(const char* what, const std::exception& ex) {
    failed = true;
    std::string detail = ex.what();
    // c10::Error messages carry a C++ backtrace after the first line.
    if (size_t nl = detail.find('\n'); nl != std::string::npos) detail.resize(nl);
    return absl::UnavailableError(absl::StrCat(
        Who(), ": ", what, " failed: ", detail,
        " — another rank has probably died or is stuck (see its output); the collective waits at "
        "most ", timeout.count() / 1000.0, " s (trainer.distributed_timeout_seconds)"));
  }

  absl::Status Run(const char* what, std::vector<at::Tensor>& buffers,
                   const std::function<c10::intrusive_ptr<c10d::Work>()>& call) {
    if (failed) return absl::FailedPreconditionError(absl::StrCat(Who(), ": an earlier collective failed"));
    try {
      call()->wait();
    } catch (const std::exception& ex) {
      return Failure(what, ex);
    }
    (void)buffers;
    return absl::OkStatus();
  }
};

Distributed::Distributed(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Distributed::~Distributed() {
  if (impl_ && impl_->failed) {
    // The process group's destructor would wait for dead peers up to the
    // timeout: leave both objects to the operating system instead.
    (void)impl_->pg.release();
    (void)impl_->store.release();
  }
}

int Distributed::rank() const { return impl_->rank; }
int Distributed::world_size() const { return impl_->world; }

absl::StatusOr<std::unique_ptr<Distributed>> Distributed::FromEnv(std::chrono::milliseconds timeout) {
  bool has_world = false, has_rank = false, has_port = false;
  auto world = IntFromEnv("WORLD_SIZE", 1, &has_world);
  if (!world.ok()) return world.status();
  if (*world <= 1) return std::unique_ptr<Distributed>();
  auto rank = IntFromEnv("RANK", 0, &has_rank);
  if (!rank.ok()) return rank.status();
  if (!has_rank) {
    return absl::InvalidArgumentError(
        absl::StrCat("WORLD_SIZE=", *world, " is set but RANK is not: set RANK to 0..", *world - 1));
  }
  auto port = IntFromEnv("MASTER_PORT", 29500, &has_port);
  if (!port.ok()) return port.status();
  const char* addr = std::getenv("MASTER_ADDR");
  return Connect(static_cast<int>(*rank), static_cast<int>(*world),
                 addr != nullptr && *addr != '\0' ? addr : "127.0.0.1", static_cast<int>(*port),
                 timeout);
}

absl::StatusOr<std::unique_ptr<Distributed>> Distributed::Connect(int rank, int world_size,
                                                                  const std::string& addr, int port,
                                                                  std::chrono::milliseconds timeout) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("RANK=", rank, " is outside 0..WORLD_SIZE-1 (WORLD_SIZE=", world_size, ")"));
  }
  if (port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("MASTER_PORT=", port, " is not a TCP port"));
  }
  auto impl = std::make_unique<Impl>();
  impl->rank = rank;
  impl->world = world_size;
  impl->addr = addr;
  impl->port = port;
  impl->timeout = timeout;
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(port);
    o.isServer = rank == 0;
    o.numWorkers = static_cast<size_t>(world_size);
    o.waitWorkers = true;
    o.timeout = timeout;
    impl->store = c10::make_intrusive<c10d::TCPStore>(addr, o);
    auto pg_options = c10d::ProcessGroupGloo::Options::create(timeout);
    pg_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(addr));
    impl->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, rank, world_size, pg_options);
  } catch (const std::exception& ex) {
    std::string detail = ex.what();
    if (size_t nl = detail.find('\n'); nl != std::string::npos) detail.resize(nl);
    impl->failed = true;
    (void)impl->pg.release();
    (void)impl->store.release();
    return absl::UnavailableError(absl::StrCat(
        "rank ", rank, " of ", world_size, ": rendezvous at ", addr, ":", port, " failed: ", detail,
        " — check that every rank was started with the same MASTER_ADDR/MASTER_PORT/WORLD_SIZE "
        "and distinct RANKs, and that rank 0 is reachable (waited at most ",
        timeout.count() / 1000.0, " s)"));
  }
  return std::unique_ptr<Distributed>(new Distributed(std::move(impl)));
}

namespace {

at::Tensor Flatten(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> flat;
  flat.reserve(tensors.size());
  for (const at::Tensor& t : tensors) flat.push_back(t.detach().reshape({-1}));
  return at::cat(flat);
}

void Unflatten(const at::Tensor& flat, const std::vector<at::Tensor>& tensors) {
  int64_t offset = 0;
  for (const at::Tensor& t : tensors) {
    const int64_t n = t.numel();
    at::Tensor dst = t.detach();
    dst.copy_(flat.slice(0, offset, offset + n).view(t.sizes()));
    offset += n;
  }
}

}  // namespace

absl::Status Distributed::Broadcast(const std::vector<at::Tensor>& tensors) {
  if (tensors.empty()) return absl::OkStatus();
  std::vector<at::Tensor> buffers{Flatten(tensors)};
  c10d::BroadcastOptions o;
  o.rootRank = 0;
  absl::Status s = impl_->Run("broadcast", buffers, [&] { return impl_->pg->broadcast(buffers, o); });
  if (!s.ok()) return s;
  Unflatten(buffers[0], tensors);
  return absl::OkStatus();
}

absl::Status Distributed::AllReduceSum(const std::vector<at::Tensor>& tensors) {
  if (tensors.empty()) return absl::OkStatus();
  std::vector<at::Tensor> buffers{Flatten(tensors)};
  absl::Status s = impl_->Run("all-reduce", buffers, [&] { return impl_->pg->allreduce(buffers); });
  if (!s.ok()) return s;
  Unflatten(buffers[0], tensors);
  return absl::OkStatus();
}

absl::Status Distributed::AllReduceMean(const std::vector<at::Tensor>& tensors) {
  if (absl::Status s = AllReduceSum(tensors); !s.ok()) return s;
  // detach(): gradients are leaves that require grad, like in Unflatten.
  for (const at::Tensor& t : tensors) t.detach().div_(static_cast<double>(impl_->world));
  return absl::OkStatus();
}

absl::Status Distributed::AllReduceSum(std::vector<double>& values) {
  if (values.empty()) return absl::OkStatus();
  std::vector<at::Tensor> buffers{
      at::tensor(at::ArrayRef<double>(values), at::TensorOptions().dtype(at::kDouble))};
  absl::Status s = impl_->Run("all-reduce", buffers, [&] { return impl_->pg->allreduce(buffers); });
  if (!s.ok()) return s;
  const double* p = buffers[0].data_ptr<double>();
  for (size_t i = 0; i < values.size(); ++i) values[i] = p[i];
  return absl::OkStatus();
}

absl::StatusOr<bool> Distributed::AnyTrue(bool value) {
  std::vector<double> v{value ? 1.0 : 0.0};
  if (absl::Status s = AllReduceSum(v); !s.ok()) return s;
  return v[0] > 0.5;
}

int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace trainbus
