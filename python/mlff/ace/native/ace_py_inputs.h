/* mlff.ace._ace: argument checks shared by the Model/Evaluator bindings (ace_py.cpp) and
 * the grade bindings (ace_grade_py.cpp), so a bad array or path gets the same Python
 * error from every entry point instead of reaching the core.
 */
#ifndef MLFF_ACE_PY_INPUTS_H
#define MLFF_ACE_PY_INPUTS_H

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cerrno>
#include <cstdint>
#include <fstream>
#include <string>

namespace mlff_ace {
namespace pyinputs {

namespace py = pybind11;

// The contract's edge form as contiguous arrays the core reads.
struct EdgeInputs {
  py::array_t<int32_t, py::array::c_style | py::array::forcecast> species;
  py::array_t<int64_t, py::array::c_style | py::array::forcecast> edges;
  py::array_t<double, py::array::c_style | py::array::forcecast> vectors;
  int64_t n_nodes = 0, n_local = 0, n_edges = 0;
};

// Shapes, dtypes, node indices and the species of the owned atoms (0..nelements-1).
inline EdgeInputs edge_inputs(const py::array &species, int64_t n_local, const py::array &edge_index,
                              const py::array &edge_vectors, int nelements)
{
  EdgeInputs in;
  const char sk = species.dtype().kind();
  if (species.ndim() != 1 || (species.size() > 0 && sk != 'i' && sk != 'u'))
    throw py::value_error("species must be a 1-D integer array");
  const char ek = edge_index.dtype().kind();
  if (edge_index.ndim() != 2 || edge_index.shape(0) != 2 || (edge_index.size() > 0 && ek != 'i' && ek != 'u'))
    throw py::value_error("edge_index must be an integer array of shape (2, E)");
  in.n_edges = edge_index.shape(1);
  const bool flat = edge_vectors.ndim() == 1 && edge_vectors.shape(0) == 3 * in.n_edges;
  const bool rows = edge_vectors.ndim() == 2 && edge_vectors.shape(0) == in.n_edges && edge_vectors.shape(1) == 3;
  if (!flat && !rows)
    throw py::value_error("edge_vectors must have shape (E, 3) or (3E,) with E = edge_index.shape[1]");
  in.species = py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(species);
  in.edges = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(edge_index);
  in.vectors = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(edge_vectors);
  in.n_nodes = species.shape(0);
  in.n_local = n_local;
  if (n_local < 0 || n_local > in.n_nodes) throw py::value_error("n_local must be in 0..len(species)");
  const int32_t *s = in.species.data();
  for (int64_t i = 0; i < in.n_local; ++i)
    if (s[i] < 0 || s[i] >= nelements)
      throw py::value_error("species[" + std::to_string(i) + "] = " + std::to_string(s[i]) +
                            " is not an element index of the potential (0.." + std::to_string(nelements - 1) + ")");
  const int64_t *e = in.edges.data();
  for (int64_t k = 0; k < 2 * in.n_edges; ++k)
    if (e[k] < 0 || e[k] >= in.n_nodes)
      throw py::value_error("edge_index refers to node " + std::to_string(e[k]) + ", outside 0.." +
                            std::to_string(in.n_nodes - 1));
  return in;
}

// os.fspath(path_like), raising the OSError open() would (FileNotFoundError...) when the
// file cannot be read.
inline std::string readable_path(const py::object &path_like)
{
  const std::string path = py::str(py::module_::import("os").attr("fspath")(path_like));
  std::ifstream probe(path, std::ios::binary);
  if (!probe) {
    if (errno == 0) errno = ENOENT;
    PyErr_SetFromErrnoWithFilename(PyExc_OSError, path.c_str());
    throw py::error_already_set();
  }
  return path;
}

}    // namespace pyinputs
}    // namespace mlff_ace

#endif
