/* mlff LAMMPS plugin: the boundary between the LAMMPS-facing code and libtorch.
 *
 * Only torch_backend.cpp includes torch headers; it is built into its own shared
 * library that the plugin dlopen()s on first use. That keeps the ~25 s torch parse
 * out of the LAMMPS translation units and lets the plugin report a missing or
 * mismatched torch as a LAMMPS error instead of LAMMPS silently skipping a plugin
 * whose dependencies do not resolve.
 */
#ifndef MLFF_LAMMPS_BACKEND_H
#define MLFF_LAMMPS_BACKEND_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace mlff_lmp {

// One neighbour list of the contract (python/mlff/contract.py): E edges.
struct EdgeList {
  std::vector<int64_t> edge_index;    // [2 * E]: E centres, then E neighbours
  std::vector<double> edge_vectors;   // [3 * E] r_j - r_i in Angstrom
  int64_t n_edges() const { return static_cast<int64_t>(edge_vectors.size() / 3); }
  void clear()
  {
    edge_index.clear();
    edge_vectors.clear();
  }
};

// Contract inputs. Nodes [0, n_local) are owned atoms.
struct Graph {
  int64_t n_nodes = 0;
  int64_t n_local = 0;
  std::vector<int64_t> species;    // [n_nodes] atomic numbers
  std::vector<EdgeList> lists;     // one per neighbour list the model declares
  double charge = 0.0;             // system inputs, fixed for a run
  int64_t fidelity = 0;
  bool want_outputs = true;        // named outputs this step (gamma_every N: every N steps)
  // geometry inputs, only for models that declare them (Ewald; empty otherwise): the
  // nodes' Cartesian positions [3 * n_nodes] and the periodic cell, lattice vectors as
  // rows [9], both in Angstrom
  std::vector<double> positions;
  std::vector<double> cell;
};

struct Result {
  std::vector<double> energies;                 // [n_local] eV
  std::vector<std::vector<double>> edge_grad;   // per list [3 * E] dE/dr_ij in eV/Angstrom
  // named outputs the caller asked for (only when graph.want_outputs): per-atom ones
  // [n_local * width], partial per-atom ones [n_nodes * width] (ghosts' values belong to
  // their owners), global ones [width]
  std::map<std::string, std::vector<double>> outputs;
  // with geometry inputs: dE/d(positions) [3 * n_nodes] and dE/d(cell) [9] in eV/Angstrom;
  // the caller adds F_i -= dE/dpos_i and W -= sum pos (x) dE/dpos + sum h_k (x) dE/dh_k
  std::vector<double> position_grad;
  std::vector<double> cell_grad;
};

// Sums a vector over all MPI ranks in place (the pair style's world communicator).
class Reducer {
 public:
  virtual ~Reducer() = default;
  virtual void sum(double *data, int n) = 0;
};

// Exchanges the node states of ghost atoms with their owners on other ranks (layer
// exchange, contract v3). rows: [n_nodes * width] doubles of the graph the backend runs.
// Every rank calls both the same number of times in the same order (collective).
class Exchanger {
 public:
  virtual ~Exchanger() = default;
  // overwrite the ghost nodes' rows with their owners' rows (forward communication)
  virtual void forward(double *rows) = 0;
  // add the ghost nodes' rows into their owners' rows (on whichever rank), then zero
  // them (reverse communication): the adjoint of forward
  virtual void reverse(double *rows) = 0;
};

// A named output the model returns (python/mlff/contract.py OutputSpec).
struct OutputRequest {
  std::string name;
  bool per_atom = true;
  int width = 1;           // numbers per atom (per-atom) or in all (global)
  bool partial = false;    // per-atom: values on every node, ghosts included
};

// What the backend needs to know about the model beyond the file itself.
struct BackendOptions {
  std::string dtype;                       // float32 | float64
  std::string device;                      // cpu | cuda
  int device_index = -1;                   // -1 picks local_rank % visible devices
  int local_rank = 0;
  int contract_version = 2;                // 1: forward(z, edge_index, edge_vectors, n_local)
  std::string contract_key;                // must equal the module's mlff_contract_key (v2)
  std::vector<OutputRequest> outputs;      // named outputs to return (besides energies)
  int global_sums = 0;                     // K whole-system sums (model.global_sums)
  // an AOTInductor .pt2 package (python/mlff/compiled.py): its calling convention,
  // compiled for these devices and this CPU vector ISA
  bool compiled = false;
  std::vector<std::string> compiled_devices;
  std::string compiled_isa;
  std::string compiled_torch;              // the torch version that compiled the package
  std::vector<double> list_cutoffs;        // padding edges are placed beyond them
  int64_t first_element = 1;               // species of padding (ghost) nodes
  int exchange_layers = 0;                 // contract v3 message_passing: L layers of
  int exchange_width = 0;                  // node states of W numbers (0: not used)
};

class Backend {
 public:
  virtual ~Backend() = default;
  // throws std::runtime_error with a message fit for the user. With a reducer (several
  // ranks and a model with whole-system sums) every rank must call this, even with an
  // empty graph, because it takes part in two all-reduces.
  virtual void compute(const Graph &graph, Result &result, Reducer *reducer) = 0;
  // Layer exchange (contract v3, options.exchange_layers > 0): the graph holds edges
  // centred on owned nodes only; after each layer but the last the exchanger refreshes
  // the ghost nodes' states, and the backward pass sends their gradients home. Calls
  // exchanger->forward and ->reverse exchange_layers - 1 times each (collective).
  virtual void compute_layered(const Graph &, Result &, Exchanger *)
  {
    throw std::runtime_error("this backend does not support layer exchange");
  }
  virtual std::string device() const = 0;
};

}    // namespace mlff_lmp

// Symbols exported by the torch backend library.
extern "C" {
typedef const char *(*mlff_backend_string_fn)();
// the model file's bytes (read on rank 0 and broadcast), its name for messages
typedef mlff_lmp::Backend *(*mlff_backend_create_fn)(const char *data, size_t size,
                                                      const char *name,
                                                      const mlff_lmp::BackendOptions *options,
                                                      char *err, size_t errlen);
}

#endif
