/* mlff LAMMPS plugin: the only translation unit that includes libtorch.
 *
 * Runs an exported TorchScript model on the graph the pair style built and returns
 * per-atom energies and dE/d(edge vector). Every torch exception is turned into a
 * std::runtime_error carrying torch's message without its C++ backtrace.
 */
#include "mlff_backend.h"

#include "build_info.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

#define MLFF_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

std::string dirname_of(const std::string &path)
{
  auto pos = path.find_last_of('/');
  return pos == std::string::npos ? std::string(".") : path.substr(0, pos);
}

// Directory of the libc10 this process actually runs (LD_LIBRARY_PATH or a torch
// imported earlier by Python can differ from the one the plugin was built against).
std::string loaded_torch_lib_dir()
{
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&c10::GetAllocator), &info) && info.dli_fname)
    return dirname_of(info.dli_fname);
  return "";
}

// glibc unmaps every large freed block, so each step page-faults the model's edge
// tensors anew (measured 2.8-4.4x on a 4000-atom PaiNN); keep them in the heap. Same
// settings and opt-out as python/mlff/runtime.py.
void tune_allocator()
{
  static bool done = false;
  if (done || std::getenv("MLFF_NO_MALLOC_TUNING")) return;
  mallopt(M_MMAP_THRESHOLD, 2147483647);    // the largest mallopt takes
  mallopt(M_TRIM_THRESHOLD, -1);            // trimming off: see runtime.py for the numbers
  mallopt(M_TOP_PAD, 256 << 20);
  done = true;
}

// The device a backend runs on: cpu, or the CUDA device of this rank (round-robin over
// the node's devices unless an index is given); a message fit for the user otherwise.
torch::Device choose_device(const mlff_lmp::BackendOptions &opt)
{
  if (opt.device == "cpu") return torch::Device(torch::kCPU);
  if (opt.device != "cuda") throw std::runtime_error("unknown device '" + opt.device + "'");
  if (!torch::cuda::is_available()) {
    const char *vis = std::getenv("CUDA_VISIBLE_DEVICES");
    std::ostringstream msg;
    msg << "device cuda requested, but torch " << MLFF_TORCH_VERSION
        << " finds no usable CUDA device"
        << (std::strlen(MLFF_TORCH_CUDA) ? " (torch is built with CUDA " MLFF_TORCH_CUDA ")"
                                         : " (this torch is a CPU-only build)")
        << (vis ? std::string("; CUDA_VISIBLE_DEVICES=") + vis : std::string())
        << ". Use 'device cpu' or run on a machine with an NVIDIA GPU and driver";
    throw std::runtime_error(msg.str());
  }
  int n = static_cast<int>(torch::cuda::device_count());
  int index = opt.device_index >= 0 ? opt.device_index : opt.local_rank % n;
  if (index >= n)
    throw std::runtime_error("device cuda:" + std::to_string(index) + " requested, but only " +
                             std::to_string(n) + " CUDA device(s) are visible");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

torch::Dtype model_dtype(const std::string &dtype)
{
  if (dtype == "float64") return torch::kFloat64;
  if (dtype == "float32") return torch::kFloat32;
  throw std::runtime_error("unsupported model dtype '" + dtype + "'");
}

// The contract inputs as tensors on the device: species and one (index, vectors) pair
// per list, the vectors as leaves that require grad when asked.
void graph_tensors(const mlff_lmp::Graph &g, torch::Device device, torch::Dtype dtype, bool grad,
                   torch::Tensor &z, std::vector<torch::Tensor> &eis, std::vector<torch::Tensor> &evs)
{
  auto i64 = torch::TensorOptions().dtype(torch::kInt64);
  auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  z = torch::from_blob(const_cast<int64_t *>(g.species.data()), {g.n_nodes}, i64).to(device, false, true);
  eis.clear();
  evs.clear();
  for (const auto &list : g.lists) {
    const int64_t ne = list.n_edges();
    torch::Tensor ei, ev;
    if (ne > 0) {
      ei = torch::from_blob(const_cast<int64_t *>(list.edge_index.data()), {2, ne}, i64).to(device, false, true);
      ev = torch::from_blob(const_cast<double *>(list.edge_vectors.data()), {ne, 3}, f64)
               .to(device, dtype, false, true);
    } else {
      ei = torch::empty({2, 0}, i64.device(device));
      ev = torch::empty({0, 3}, torch::TensorOptions().dtype(dtype).device(device));
    }
    if (grad) ev.requires_grad_(true);
    eis.push_back(ei);
    evs.push_back(ev);
  }
}

// A named output as doubles of the owned atoms (partial per-atom ones: of every node),
// after checking its shape against the metadata
void store_output(const mlff_lmp::OutputRequest &o, torch::Tensor v, int64_t n, int64_t n_local,
                  mlff_lmp::Result &r)
{
  v = v.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  bool ok;
  if (o.per_atom) {
    ok = v.dim() >= 1 && v.size(0) == n && v.numel() == n * o.width;
    // partial outputs keep the ghosts' contributions, which the caller sends to their owners
    if (ok && !o.partial) v = v.narrow(0, 0, n_local).contiguous();
  } else {
    ok = v.numel() == o.width;
  }
  if (!ok)
    throw std::runtime_error("the model returned '" + o.name + "' of shape " + c10::str(v.sizes()) + " for " +
                             std::to_string(n) + " atoms; its metadata declares " +
                             (o.per_atom ? "[atoms, " : "[") + std::to_string(o.width) + " numbers]");
  r.outputs[o.name].assign(v.data_ptr<double>(), v.data_ptr<double>() + v.numel());
}

void store_edge_gradients(const mlff_lmp::Graph &g, const std::vector<torch::Tensor> &grads, mlff_lmp::Result &r)
{
  r.edge_grad.resize(g.lists.size());
  for (size_t k = 0; k < g.lists.size(); k++) {
    const int64_t ne = g.lists[k].n_edges();
    r.edge_grad[k].assign(3 * ne, 0.0);
    if (k < grads.size() && grads[k].defined() && ne > 0) {
      torch::Tensor g_cpu = grads[k].narrow(0, 0, ne).to(torch::kCPU, torch::kFloat64).contiguous();
      std::memcpy(r.edge_grad[k].data(), g_cpu.data_ptr<double>(), sizeof(double) * 3 * ne);
    }
  }
}

class TorchBackend : public mlff_lmp::Backend {
 public:
  TorchBackend(const std::string &data, const std::string &name, const mlff_lmp::BackendOptions &opt) :
      device_(torch::kCPU), version_(opt.contract_version), outputs_(opt.outputs),
      global_sums_(opt.global_sums), layers_(opt.exchange_layers), width_(opt.exchange_width)
  {
    tune_allocator();
    dtype_ = model_dtype(opt.dtype);
    device_ = choose_device(opt);

    torch::jit::ExtraFilesMap extra{{"mlff_metadata.json", ""}};
    try {
      // the bytes were read once on rank 0 and broadcast: no rank touches the file here
      std::istringstream stream(data);
      module_ = torch::jit::load(stream, device_, extra);
    } catch (const c10::Error &e) {
      throw std::runtime_error(name + " could not be loaded by torch " MLFF_TORCH_VERSION " (" +
                               e.what_without_backtrace() +
                               "); the file is corrupt or was written by an incompatible torch");
    }
    module_.eval();
    for (const auto &p : module_.parameters()) {
      if (p.is_floating_point() && p.scalar_type() != dtype_) {
        throw std::runtime_error(name + ": metadata says " + opt.dtype + " but the parameters are " +
                                 std::string(c10::toString(p.scalar_type())));
      }
      break;
    }
    if (global_sums_ > 0 && !module_.find_method("global_sums"))
      throw std::runtime_error(name + ": the metadata declares " + std::to_string(global_sums_) +
                               " whole-system sums but the model has no global_sums method; "
                               "re-export the model with `mlff export`");
    if (layers_ > 0)
      for (const char *method : {"embed", "edge_features", "layer", "readout_energies"})
        if (!module_.find_method(method))
          throw std::runtime_error(name + ": the metadata declares message_passing (layer exchange) but the "
                                   "model has no " + method + " method; re-export the model with `mlff export`");
    if (version_ >= 2) {
      // the module repeats the geometry-relevant metadata; an edited metadata entry (a
      // cutoff changed by hand) would otherwise give different numbers silently
      std::string key = module_.hasattr("mlff_contract_key")
          ? module_.attr("mlff_contract_key").toStringRef()
          : std::string("(none)");
      if (key != opt.contract_key)
        throw std::runtime_error(name + ": the metadata does not match the model inside the file "
                                 "(metadata: " + opt.contract_key + "; model: " + key +
                                 "); the metadata was edited or the file was assembled by hand. "
                                 "Re-export the model with `mlff export`");
    }
  }

  std::string device() const override { return device_.str(); }

  void compute(const mlff_lmp::Graph &g, mlff_lmp::Result &r, mlff_lmp::Reducer *reducer) override
  {
    try {
      run(g, r, reducer);
    } catch (const c10::Error &e) {
      throw std::runtime_error(e.what_without_backtrace());
    }
  }

  void compute_layered(const mlff_lmp::Graph &g, mlff_lmp::Result &r, mlff_lmp::Exchanger *ex) override
  {
    try {
      run_layered(g, r, ex);
    } catch (const c10::Error &e) {
      throw std::runtime_error(e.what_without_backtrace());
    }
  }

 private:
  // Forward communication: the owned rows [n_local, W] (a layer's output) completed with
  // the ghost rows from their owners, [n, W], in the model's dtype on the device (a fresh
  // tensor, not part of any autograd graph). The Exchanger works on doubles on the host.
  torch::Tensor exchange_forward(const torch::Tensor &owned, int64_t n, mlff_lmp::Exchanger *ex)
  {
    torch::Tensor host = torch::empty({n, width_}, torch::TensorOptions().dtype(torch::kFloat64));
    host.narrow(0, 0, owned.size(0)).copy_(owned.detach());
    ex->forward(host.data_ptr<double>());
    return host.to(device_, dtype_);
  }

  // Reverse communication, the adjoint of exchange_forward: the gradient of all rows
  // [n, W] -> that of the owned rows [n_local, W] (ghost rows added to their owners')
  torch::Tensor exchange_reverse(const torch::Tensor &rows, int64_t n_local, mlff_lmp::Exchanger *ex)
  {
    torch::Tensor host = rows.detach().to(torch::kCPU, torch::kFloat64, false, true).contiguous();
    ex->reverse(host.data_ptr<double>());
    return host.narrow(0, 0, n_local).to(device_, dtype_);
  }

  // Contract v3 layer exchange: e = edge_features(edges), x0 = embed(z),
  // x_{k+1}[owned] = layer(k, x_k, edges, e, n_local), completed with the ghost rows from
  // their owners after every layer but the last; energies = readout_energies(x_L, z_owned).
  // Each layer is its own autograd graph with its inputs as leaves, so the backward pass
  // can send the ghost rows' gradients home (the adjoint of the refresh) between the
  // layers' vector-Jacobian products; e's gradients from all layers go through
  // edge_features once at the end.
  void run_layered(const mlff_lmp::Graph &g, mlff_lmp::Result &r, mlff_lmp::Exchanger *ex)
  {
    torch::jit::GraphOptimizerEnabledGuard no_opt(false);
    const int64_t n = g.n_nodes, n_local = g.n_local;
    if (g.lists.size() != 1) throw std::runtime_error("layer exchange needs exactly one neighbour list");
    torch::Tensor z;
    std::vector<torch::Tensor> eis, evs;
    graph_tensors(g, device_, dtype_, true, z, eis, evs);
    const torch::Tensor &ei = eis[0], &ev = evs[0];
    auto check = [&](const torch::Tensor &x, int64_t rows, const char *what) {
      if (x.dim() != 2 || x.size(0) != rows || x.size(1) != width_)
        throw std::runtime_error(std::string("the model's ") + what + " returned shape " + c10::str(x.sizes()) +
                                 " where " + std::to_string(rows) + " rows of width " + std::to_string(width_) +
                                 " (the metadata's) were expected");
    };
    torch::Tensor e = module_.get_method("edge_features")({ev}).toTensor();
    if (e.dim() != 2 || e.size(0) != ev.size(0))
      throw std::runtime_error("the model's edge_features returned shape " + c10::str(e.sizes()) + " for " +
                               std::to_string(ev.size(0)) + " edges");
    torch::Tensor e_leaf = e.detach().requires_grad_(true);
    torch::Tensor x = module_.get_method("embed")({z}).toTensor().detach();
    check(x, n, "embed");
    auto layer = module_.get_method("layer");
    std::vector<torch::Tensor> xin(layers_), yout(layers_);
    for (int k = 0; k < layers_; k++) {
      xin[k] = x.detach().requires_grad_(k > 0);    // dE/dx_0 is not needed (embeddings)
      yout[k] = layer({static_cast<int64_t>(k), xin[k], ei, e_leaf, n_local}).toTensor();
      check(yout[k], n_local, "layer");
      x = k + 1 < layers_ ? exchange_forward(yout[k], n, ex) : yout[k];
    }
    torch::Tensor top = x.detach().requires_grad_(true);
    torch::Tensor energies = module_.get_method("readout_energies")({top, z.narrow(0, 0, n_local)}).toTensor();
    if (energies.dim() != 1 || energies.size(0) != n_local)
      throw std::runtime_error("the model's readout_energies returned shape " + c10::str(energies.sizes()) +
                               " for " + std::to_string(n_local) + " atoms");
    torch::Tensor grad;    // dE/dx_{k+1} of all rows; for the last layer, of the owned rows
    if (energies.requires_grad())
      grad = torch::autograd::grad({energies.sum()}, {top}, {}, false, false, true)[0];
    if (!grad.defined()) grad = torch::zeros_like(top);
    torch::Tensor e_grad = torch::zeros_like(e_leaf);
    for (int k = layers_ - 1; k >= 0; k--) {
      // x_{k+1}'s ghost rows were copies of their owners' rows: their gradients go home
      if (k + 1 < layers_) grad = exchange_reverse(grad, n_local, ex);
      std::vector<torch::Tensor> wrt{e_leaf};
      if (k > 0) wrt.push_back(xin[k]);
      std::vector<torch::Tensor> got(wrt.size());
      if (yout[k].requires_grad())
        got = torch::autograd::grad({yout[k]}, wrt, {grad}, false, false, true);
      if (got[0].defined()) e_grad = e_grad + got[0];
      if (k > 0) grad = got[1].defined() ? got[1] : torch::zeros_like(xin[k]);
      yout[k] = torch::Tensor();    // frees the layer's graph
    }
    torch::Tensor edge_grad;
    if (e.requires_grad()) edge_grad = torch::autograd::grad({e}, {ev}, {e_grad}, false, false, true)[0];
    if (!edge_grad.defined()) edge_grad = torch::zeros_like(ev);
    torch::Tensor e_cpu = energies.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    r.energies.assign(e_cpu.data_ptr<double>(), e_cpu.data_ptr<double>() + n_local);
    store_edge_gradients(g, {edge_grad}, r);
    r.position_grad.clear();
    r.cell_grad.clear();
    r.outputs.clear();
  }

  void run(const mlff_lmp::Graph &g, mlff_lmp::Result &r, mlff_lmp::Reducer *reducer)
  {
    // the profiling executor would specialise and re-optimise the graph on the first
    // calls; the reference engines run unoptimised, so do the same for identical numbers
    torch::jit::GraphOptimizerEnabledGuard no_opt(false);
    const int64_t n = g.n_nodes;
    auto i64 = torch::TensorOptions().dtype(torch::kInt64);
    auto f64 = torch::TensorOptions().dtype(torch::kFloat64);

    torch::Tensor z;
    std::vector<torch::Tensor> eis, evs;
    graph_tensors(g, device_, dtype_, true, z, eis, evs);

    std::vector<torch::jit::IValue> inputs;
    c10::Dict<std::string, torch::Tensor> system;
    torch::Tensor partial, sums;    // whole-system sums: this rank's share, all ranks'
    // every tensor the energy is differentiated by: the edge vectors of each list, then
    // (models with geometry inputs) the positions and the cell
    std::vector<torch::Tensor> leaves(evs);
    const bool geometry = !g.positions.empty() && g.cell.size() == 9 && version_ >= 2;
    if (version_ == 1) {
      inputs = {z, eis.at(0), evs.at(0), g.n_local};
    } else {
      system.insert("charge", torch::full({}, g.charge, f64.device(device_)));
      system.insert("fidelity", torch::full({}, g.fidelity, i64.device(device_)));
      // energies only on steps without output (a committee then skips its member forces)
      if (!g.want_outputs) system.insert("outputs", torch::zeros({}, i64.device(device_)));
      if (geometry) {
        torch::Tensor pos = torch::from_blob(const_cast<double *>(g.positions.data()), {n, 3}, f64)
                                .to(device_, dtype_, false, true)
                                .requires_grad_(true);
        torch::Tensor cell = torch::from_blob(const_cast<double *>(g.cell.data()), {3, 3}, f64)
                                 .to(device_, dtype_, false, true)
                                 .requires_grad_(true);
        system.insert("positions", pos);
        system.insert("cell", cell);
        leaves.push_back(pos);
        leaves.push_back(cell);
      }
      inputs = {z, c10::List<torch::Tensor>(eis), c10::List<torch::Tensor>(evs), g.n_local, system};
      if (reducer && global_sums_ > 0) {
        // 1. this rank's partial sums (over its owned atoms), summed over all ranks
        partial = module_.get_method("global_sums")(inputs).toTensor();
        if (partial.dim() != 1 || partial.size(0) != global_sums_)
          throw std::runtime_error("the model's global_sums returned shape " + c10::str(partial.sizes()) +
                                   " instead of [" + std::to_string(global_sums_) + "]");
        torch::Tensor host = partial.detach().to(torch::kCPU, torch::kFloat64).contiguous();
        reducer->sum(host.data_ptr<double>(), global_sums_);
        sums = host.to(device_, partial.scalar_type()).requires_grad_(true);
        system.insert("global_sums", sums);
      }
    }
    auto out = module_.forward(inputs);
    if (!out.isGenericDict()) throw std::runtime_error("the model did not return a Dict[str, Tensor]");
    auto dict = out.toGenericDict();
    if (!dict.contains("energies")) throw std::runtime_error("the model output has no 'energies'");
    torch::Tensor energies = dict.at("energies").toTensor();
    if (energies.dim() != 1 || energies.size(0) != n)
      throw std::runtime_error("the model returned energies of shape " +
                               c10::str(energies.sizes()) + " for " + std::to_string(n) + " atoms");

    torch::Tensor local = energies.narrow(0, 0, g.n_local);
    std::vector<torch::Tensor> grads(leaves.size());
    if (sums.defined()) {
      // 2. dE/d(edges) at fixed sums, and dE/d(sums) of this rank's energy, which all
      // ranks' energies depend on: all-reduce it and back-propagate it through this
      // rank's partial sums, so every edge gets its whole-system share
      std::vector<torch::Tensor> wrt(leaves);
      wrt.push_back(sums);
      auto got = torch::autograd::grad({local.sum()}, wrt, {}, false, false, true);
      torch::Tensor lam = got.back().defined() ? got.back().detach() : torch::zeros_like(sums);
      torch::Tensor host = lam.to(torch::kCPU, torch::kFloat64).contiguous();
      reducer->sum(host.data_ptr<double>(), global_sums_);
      torch::Tensor lam_all = host.to(device_, partial.scalar_type());
      std::vector<torch::Tensor> extra(leaves.size());
      if (partial.requires_grad()) {
        auto back = torch::autograd::grad({(partial * lam_all).sum()}, leaves, {}, false, false, true);
        for (size_t k = 0; k < leaves.size(); k++) extra[k] = back[k];
      }
      for (size_t k = 0; k < leaves.size(); k++) {
        if (got[k].defined() && extra[k].defined())
          grads[k] = got[k] + extra[k];
        else
          grads[k] = got[k].defined() ? got[k] : extra[k];
      }
    } else if (local.requires_grad()) {
      auto got = torch::autograd::grad({local.sum()}, leaves, {}, false, false, true);
      for (size_t k = 0; k < leaves.size(); k++) grads[k] = got[k];
    }

    torch::Tensor e_cpu = local.detach().to(torch::kCPU, torch::kFloat64).contiguous();
    r.energies.assign(e_cpu.data_ptr<double>(), e_cpu.data_ptr<double>() + g.n_local);
    store_edge_gradients(g, std::vector<torch::Tensor>(grads.begin(), grads.begin() + evs.size()), r);
    r.position_grad.clear();
    r.cell_grad.clear();
    if (geometry) {
      const size_t slot = evs.size();    // positions, then the cell (see leaves)
      r.position_grad.assign(3 * n, 0.0);
      r.cell_grad.assign(9, 0.0);
      if (grads[slot].defined() && n > 0) {
        torch::Tensor p_cpu = grads[slot].to(torch::kCPU, torch::kFloat64).contiguous();
        std::memcpy(r.position_grad.data(), p_cpu.data_ptr<double>(), sizeof(double) * 3 * n);
      }
      if (grads[slot + 1].defined()) {
        torch::Tensor c_cpu = grads[slot + 1].to(torch::kCPU, torch::kFloat64).contiguous();
        std::memcpy(r.cell_grad.data(), c_cpu.data_ptr<double>(), sizeof(double) * 9);
      }
    }
    r.outputs.clear();
    if (!g.want_outputs) return;
    for (const auto &o : outputs_) {
      if (!dict.contains(o.name))
        throw std::runtime_error("the model output has no '" + o.name + "' although its metadata declares it");
      store_output(o, dict.at(o.name).toTensor(), n, g.n_local, r);
    }
  }

  torch::jit::Module module_;
  torch::Device device_;
  torch::Dtype dtype_ = torch::kFloat64;
  int version_ = 2;
  std::vector<mlff_lmp::OutputRequest> outputs_;
  int global_sums_ = 0;
  int layers_ = 0;    // layer exchange (contract v3): layers and node-state width
  int width_ = 0;
};

// Whether this CPU can run kernels inductor compiled for `isa` (inductor's names, space
// separated: "avx512 amx_tile", "avx2", "neon", "none"). A package compiled for
// instructions the CPU lacks would die of SIGILL inside LAMMPS.
bool cpu_runs(const std::string &isa)
{
  std::istringstream words(isa);
  std::string w;
  bool all = true;
#if defined(__x86_64__)
  __builtin_cpu_init();
#endif
  while (words >> w) {
    bool ok = w == "none";
#if defined(__x86_64__)
    if (w == "avx512")
      ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
    else if (w == "avx2")
      ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
    else if (w == "amx_tile")
      ok = __builtin_cpu_supports("amx-tile");
#endif
#elif defined(__aarch64__)
    if (w == "neon" || w == "asimd") ok = true;
#endif
    all = all && ok;
  }
  return all;
}

// An AOTInductor .pt2 package (python/mlff/compiled.py documents its calling convention):
// the energies and the edge gradients come out of the compiled code; the pair style
// applies the contract's rule as for TorchScript models.
class CompiledBackend : public mlff_lmp::Backend {
 public:
  CompiledBackend(const std::string &data, const std::string &name, const mlff_lmp::BackendOptions &opt) :
      device_(torch::kCPU), outputs_(opt.outputs), cutoffs_(opt.list_cutoffs), first_element_(opt.first_element)
  {
    tune_allocator();
    dtype_ = model_dtype(opt.dtype);
    device_ = choose_device(opt);
    const std::string type = device_.is_cuda() ? "cuda" : "cpu";
    std::string devices;
    bool have = false;
    for (const auto &d : opt.compiled_devices) {
      devices += (devices.empty() ? "" : ", ") + d;
      have = have || d == type;
    }
    const std::string hint = "; run the TorchScript .pt written beside it, or re-export the model on this "
                             "machine with 'mlff export ... -o model.pt2'";
    if (!have) throw std::runtime_error(name + " was compiled for " + devices + ", not " + type + hint);
    std::string here = MLFF_TORCH_VERSION;
    here = here.substr(0, here.find('+'));
    if (opt.compiled_torch != here)
      throw std::runtime_error(name + " was compiled with torch " + opt.compiled_torch + ", and this plugin runs torch " +
                               here + ": AOTInductor packages run only with the torch that compiled them" + hint);
    if (type == "cpu" && !cpu_runs(opt.compiled_isa))
      throw std::runtime_error(name + " was compiled for CPUs with " + opt.compiled_isa +
                               " instructions, which this CPU does not have" + hint);
    // the loader takes a path: the broadcast bytes go to a private temporary file
    const char *tmpdir = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/mlff-XXXXXX.pt2";
    std::vector<char> path(tmpl.begin(), tmpl.end());
    path.push_back('\0');
    int fd = mkstemps(path.data(), 4);
    if (fd < 0) throw std::runtime_error("cannot create a temporary file for " + name + " in " + tmpl);
    bool written = write_all(fd, data);
    close(fd);
    if (!written) {
      unlink(path.data());
      throw std::runtime_error("cannot write a temporary copy of " + name + " (" + path.data() + ")");
    }
    try {
      loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
          path.data(), type, false, 1, device_.is_cuda() ? device_.index() : static_cast<c10::DeviceIndex>(-1));
    } catch (const c10::Error &e) {
      unlink(path.data());
      throw std::runtime_error(name + " could not be loaded by AOTInductor (torch " MLFF_TORCH_VERSION "): " +
                               e.what_without_backtrace() + hint);
    }
    unlink(path.data());    // the loader has unpacked what it needs
  }

  std::string device() const override { return device_.str() + " (AOTInductor)"; }

  void compute(const mlff_lmp::Graph &g, mlff_lmp::Result &r, mlff_lmp::Reducer *) override
  {
    try {
      run(g, r);
    } catch (const c10::Error &e) {
      throw std::runtime_error(e.what_without_backtrace());
    }
  }

 private:
  static bool write_all(int fd, const std::string &data)
  {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t w = write(fd, data.data() + off, data.size() - off);
      if (w <= 0) return false;
      off += static_cast<size_t>(w);
    }
    return true;
  }

  void run(const mlff_lmp::Graph &g, mlff_lmp::Result &r)
  {
    const int64_t n = g.n_nodes;
    torch::Tensor z;
    std::vector<torch::Tensor> eis, evs;
    graph_tensors(g, device_, dtype_, false, z, eis, evs);
    // compiled shapes start at two atoms and two edges per list: pad with ghost nodes and
    // edges beyond the cutoff, which every contract model weights zero
    constexpr int64_t MIN_SIZE = 2;
    auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(device_);
    if (n < MIN_SIZE) z = torch::cat({z, torch::full({MIN_SIZE - n}, first_element_, i64)});
    for (size_t k = 0; k < evs.size(); k++) {
      const int64_t missing = MIN_SIZE - evs[k].size(0);
      if (missing <= 0) continue;
      torch::Tensor far = torch::zeros({missing, 3}, evs[k].options());
      far.select(1, 0).fill_(3.0 * cutoffs_.at(k));
      eis[k] = torch::cat({eis[k], torch::zeros({2, missing}, i64)}, 1);
      evs[k] = torch::cat({evs[k], far});
    }
    std::vector<torch::Tensor> inputs{z};
    for (auto &ei : eis) inputs.push_back(ei);
    for (auto &ev : evs) inputs.push_back(ev);
    inputs.push_back(torch::empty({g.n_local, 0}, torch::TensorOptions().dtype(torch::kFloat32).device(device_)));
    inputs.push_back(torch::full({}, g.charge, torch::TensorOptions().dtype(torch::kFloat64).device(device_)));
    inputs.push_back(torch::full({}, g.fidelity, i64));
    std::vector<torch::Tensor> out = loader_->run(inputs);
    const size_t nl = evs.size();
    if (out.size() != 1 + nl + outputs_.size())
      throw std::runtime_error("the compiled model returned " + std::to_string(out.size()) + " tensors instead of " +
                               std::to_string(1 + nl + outputs_.size()) + "; re-export it");
    torch::Tensor e_cpu = out[0].narrow(0, 0, g.n_local).to(torch::kCPU, torch::kFloat64).contiguous();
    r.energies.assign(e_cpu.data_ptr<double>(), e_cpu.data_ptr<double>() + g.n_local);
    store_edge_gradients(g, std::vector<torch::Tensor>(out.begin() + 1, out.begin() + 1 + nl), r);
    r.position_grad.clear();
    r.cell_grad.clear();
    r.outputs.clear();
    if (!g.want_outputs) return;
    for (size_t k = 0; k < outputs_.size(); k++) {
      torch::Tensor v = out[1 + nl + k];
      if (outputs_[k].per_atom) v = v.narrow(0, 0, n);
      store_output(outputs_[k], v, n, g.n_local, r);
    }
  }

  torch::Device device_;
  torch::Dtype dtype_ = torch::kFloat64;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  std::vector<mlff_lmp::OutputRequest> outputs_;
  std::vector<double> cutoffs_;
  int64_t first_element_ = 1;
};

void copy_message(const std::string &msg, char *err, size_t errlen)
{
  if (!err || errlen == 0) return;
  std::strncpy(err, msg.c_str(), errlen - 1);
  err[errlen - 1] = '\0';
}

}    // namespace

MLFF_EXPORT const char *mlff_lammps_backend_abi()
{
  return MLFF_BACKEND_ABI;
}

MLFF_EXPORT const char *mlff_lammps_backend_loaded_torch_dir()
{
  static std::string dir = loaded_torch_lib_dir();
  return dir.c_str();
}

MLFF_EXPORT mlff_lmp::Backend *mlff_lammps_create_backend(const char *data, size_t size,
                                                          const char *name,
                                                          const mlff_lmp::BackendOptions *options,
                                                          char *err, size_t errlen)
{
  try {
    if (options->compiled) return new CompiledBackend(std::string(data, size), name, *options);
    return new TorchBackend(std::string(data, size), name, *options);
  } catch (const c10::Error &e) {
    copy_message(e.what_without_backtrace(), err, errlen);
  } catch (const std::exception &e) {
    copy_message(e.what(), err, errlen);
  } catch (...) {
    copy_message("unknown C++ exception while loading the model", err, errlen);
  }
  return nullptr;
}
