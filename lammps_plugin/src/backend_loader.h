/* mlff LAMMPS plugin: finding and opening the torch backend library. */
#ifndef MLFF_LAMMPS_BACKEND_LOADER_H
#define MLFF_LAMMPS_BACKEND_LOADER_H

#include "mlff_backend.h"

#include <memory>
#include <string>

namespace mlff_lmp {

// Opens libmlff_lammps_torch.so next to the plugin (once per process) after checking
// that the installed torch is the one the plugin was built against; throws
// std::runtime_error with instructions otherwise.
// ``data`` is the model file's content (read on rank 0 and broadcast), ``name`` its path
std::unique_ptr<Backend> create_backend(const std::string &data, const std::string &name,
                                        const BackendOptions &options);

std::string plugin_directory();

}    // namespace mlff_lmp

#endif
