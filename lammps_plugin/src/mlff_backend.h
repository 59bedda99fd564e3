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
#include <string>
#include <vector>

namespace mlff_lmp {

// Contract inputs (see python/mlff/contract.py). Nodes [0, n_local) are owned atoms.
struct Graph {
  int64_t n_nodes = 0;
  int64_t n_local = 0;
  std::vector<int64_t> species;       // [n_nodes] atomic numbers
  std::vector<int64_t> edge_index;    // [2 * E]: E centres, then E neighbours
  std::vector<double> edge_vectors;   // [3 * E] r_j - r_i in Angstrom
  int64_t n_edges() const { return static_cast<int64_t>(edge_vectors.size() / 3); }
};

struct Result {
  std::vector<double> energies;     // [n_local] eV
  std::vector<double> edge_grad;    // [3 * E] dE/dr_ij in eV/Angstrom
};

class Backend {
 public:
  virtual ~Backend() = default;
  // throws std::runtime_error with a message fit for the user
  virtual void compute(const Graph &graph, Result &result) = 0;
  virtual std::string device() const = 0;
};

}    // namespace mlff_lmp

// Symbols exported by the torch backend library.
extern "C" {
typedef const char *(*mlff_backend_string_fn)();
// device: "cpu" or "cuda"; device_index -1 picks local_rank % visible devices
typedef mlff_lmp::Backend *(*mlff_backend_create_fn)(const char *model_path, const char *dtype,
                                                      const char *device, int device_index,
                                                      int local_rank, char *err, size_t errlen);
}

#endif
