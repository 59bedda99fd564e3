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

constexpr int CONTRACT_VERSION = 1;

struct ModelInfo {
  std::string path;
  int contract_version = 0;
  std::string kind;
  std::vector<int> elements;    // atomic numbers, sorted
  double cutoff = 0.0;
  int num_interactions = 1;
  double interaction_range = 0.0;
  std::string dtype;
  std::string mlff_version;
  std::string torch_version;
};

// throws std::runtime_error naming the file and what is wrong with it
ModelInfo read_model_info(const std::string &path);

// periodic table helpers: 0 / "" when unknown
int atomic_number(const std::string &symbol);
std::string element_symbol(int z);

}    // namespace mlff_lmp

#endif
