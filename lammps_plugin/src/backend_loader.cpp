/* mlff LAMMPS plugin: loads the torch backend and refuses a torch it was not built for. */
#include "backend_loader.h"

#include "build_info.h"

#include <dlfcn.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>

namespace mlff_lmp {
namespace {

const char *const REBUILD_HINT =
    "reinstall mlff so the plugin is rebuilt against the installed torch "
    "(`pip install --no-build-isolation -e .` in the mlff checkout, or `make test`); "
    "`mlff lammps-plugin` shows what the plugin was built against";

std::string dirname_of(const std::string &path)
{
  auto pos = path.find_last_of('/');
  return pos == std::string::npos ? std::string(".") : path.substr(0, pos);
}

// torch/version.py sits one level above torch/lib; "" if there is none
std::string torch_version_in(const std::string &lib_dir)
{
  std::ifstream in(lib_dir + "/../version.py");
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  std::smatch m;
  std::string text = ss.str();
  if (std::regex_search(text, m, std::regex("__version__\\s*=\\s*['\"]([^'\"]+)['\"]")))
    return m[1];
  return "";
}

struct Library {
  void *handle = nullptr;
  mlff_backend_create_fn create = nullptr;
};

Library open_library()
{
  std::string built_for = MLFF_TORCH_VERSION;
  std::string installed = torch_version_in(MLFF_TORCH_LIB_DIR);
  if (installed.empty())
    throw std::runtime_error("the mlff LAMMPS plugin was built against torch " + built_for +
                             " in " MLFF_TORCH_LIB_DIR ", which is no longer installed; " +
                             REBUILD_HINT);
  if (installed != built_for)
    throw std::runtime_error("the mlff LAMMPS plugin was built against torch " + built_for +
                             ", but torch " + installed + " is installed in " MLFF_TORCH_LIB_DIR
                             "; " + REBUILD_HINT);

  std::string lib = plugin_directory() + "/" MLFF_BACKEND_LIBRARY;
  dlerror();
  Library L;
  L.handle = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!L.handle) {
    const char *why = dlerror();
    throw std::runtime_error("cannot load the mlff torch backend " + lib + ": " +
                             (why ? why : "unknown error") + "; " + REBUILD_HINT);
  }
  auto abi = reinterpret_cast<mlff_backend_string_fn>(dlsym(L.handle, "mlff_lammps_backend_abi"));
  auto loaded_dir =
      reinterpret_cast<mlff_backend_string_fn>(dlsym(L.handle, "mlff_lammps_backend_loaded_torch_dir"));
  L.create = reinterpret_cast<mlff_backend_create_fn>(dlsym(L.handle, "mlff_lammps_create_backend"));
  if (!abi || !loaded_dir || !L.create || std::string(abi()) != MLFF_BACKEND_ABI)
    throw std::runtime_error(lib + " does not belong to this build of the mlff LAMMPS plugin (" +
                             (abi ? abi() : "no ABI tag") + " vs " MLFF_BACKEND_ABI "); " +
                             REBUILD_HINT);

  // the torch that actually got mapped: LD_LIBRARY_PATH or a torch imported earlier in
  // this process (Python) can substitute a different libtorch with the same file names
  std::string dir = loaded_dir();
  std::string running = torch_version_in(dir);
  if (running != built_for)
    throw std::runtime_error("the mlff LAMMPS plugin was built against torch " + built_for +
                             " (" MLFF_TORCH_LIB_DIR "), but this process loaded libtorch from " +
                             dir + " (torch " + (running.empty() ? "of unknown version" : running) +
                             "; check LD_LIBRARY_PATH and which torch Python imported); " +
                             REBUILD_HINT);
  return L;
}

}    // namespace

std::string plugin_directory()
{
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&plugin_directory), &info) && info.dli_fname)
    return dirname_of(info.dli_fname);
  return ".";
}

std::unique_ptr<Backend> create_backend(const std::string &data, const std::string &name,
                                        const BackendOptions &options)
{
  // a failed attempt is repeated (and reported) each time; a good library is kept for
  // the life of the process: unloading libtorch is not supported
  static Library lib;
  if (!lib.handle) lib = open_library();
  char err[4096] = {0};
  Backend *b = lib.create(data.data(), data.size(), name.c_str(), &options, err, sizeof(err));
  if (!b) throw std::runtime_error(err[0] ? err : "unknown error while loading the model");
  return std::unique_ptr<Backend>(b);
}

}    // namespace mlff_lmp
