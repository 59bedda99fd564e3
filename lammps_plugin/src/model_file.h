/* mlff LAMMPS plugin: reading an exported model file without torch.
 *
 * The file is a TorchScript zip archive with the metadata as the extra file
 * mlff_metadata.json. torch's reader does not verify CRCs, so a damaged file would
 * load and give wrong numbers; this reader checks every stored entry first and
 * validates the metadata the way python/mlff/contract.py does.
 */
#ifndef MLFF_LAMMPS_MODEL_FILE_H
#define MLFF_LAMMPS_MODEL_FILE_H

#include <string>
#include <vector>

namespace mlff_lmp {

constexpr int CONTRACT_VERSION = 3;    // the newest version this plugin reads (and 1, 2)

struct ListInfo {
  std::string name;
  double cutoff = 0.0;
  // edges are needed only for centres within reach of a counted atom; -1: unknown
  // (then the interaction range)
  double reach = -1.0;
};

struct OutputInfo {
  std::string name;
  bool per_atom = true;
  std::string unit;
  int width = 1;               // numbers per atom (per-atom) or in all (global): prod(shape)
  int members = 0;             // shape[0] (a member axis) when the shape is not empty
  bool partial = false;        // ghosts' values go to their owners, ranks' values add
  std::string derived_from;    // computed here by member_deviation from this partial output
  bool derived() const { return !derived_from.empty(); }
};

struct ModelInfo {
  std::string path;
  int contract_version = 0;
  std::string kind;
  std::vector<int> elements;        // atomic numbers, sorted
  std::vector<ListInfo> lists;      // neighbour lists the model asks for, in call order
  double cutoff = 0.0;              // the largest list cutoff
  int num_interactions = 1;
  double interaction_range = 0.0;
  std::string dtype;
  std::vector<OutputInfo> outputs;    // named outputs besides the energies
  std::vector<std::string> fidelities;
  bool uses_charge = false;
  bool global = false;              // locality "global": whole-system terms
  int global_sums = 0;              // K sums the engine all-reduces (0: refuse several ranks)
  double min_distance = -1.0;       // shortest distance in the training data, -1 if unknown
  // contract v3 layer exchange (message_passing): the model exports embed, layer and
  // readout_energies over node states of mp_width numbers; 0 layers: not declared
  int mp_layers = 0;
  int mp_width = 0;
  // geometry the model needs besides the edges ("positions", "cell": an Ewald sum)
  std::vector<std::string> geometry_inputs;
  bool needs_geometry() const { return !geometry_inputs.empty(); }
  std::string mlff_version;
  std::string torch_version;
  // an AOTInductor .pt2 package (python/mlff/compiled.py); empty devices: TorchScript
  std::vector<std::string> compiled_devices;
  std::string compiled_isa, compiled_torch, compiled_fallback;
  bool compiled() const { return !compiled_devices.empty(); }

  // elements/lists/range/dtype in the canonical form python/mlff/contract.py writes
  std::string contract_key() const;
  const OutputInfo *output(const std::string &name) const;
};

// The whole file (rank 0 reads it; the pair style broadcasts the bytes).
std::string read_file(const std::string &path);

// Validates the archive (CRCs) and the metadata; throws std::runtime_error naming the
// file and what is wrong with it.
ModelInfo parse_model_info(const std::string &path, const std::string &buf);

// periodic table helpers: 0 / "" when unknown
int atomic_number(const std::string &symbol);
std::string element_symbol(int z);

}    // namespace mlff_lmp

#endif
