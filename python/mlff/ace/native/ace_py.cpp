/* mlff.ace._ace: the ACE core for Python (ASE, OpenMM, tests, the TorchScript exporter).
 *
 *   Model.load(path) / Model.from_text(text, name) / Model.from_dict(d), m.to_dict(),
 *   m.elements, m.cutoff, m.format, m.source, m.summary()
 *   Evaluator(model, radial="spline"|"analytic").compute(species, n_local, edge_index, edge_vectors)
 *       -> (energies[n_local], dE_i/dr_ij [E, 3])
 *   Evaluator(model).compute_projections(...) -> (projections, dE_drho), one array per local atom
 *   FormatError (a ValueError): a malformed file or dict, the message names the line and key.
 *
 * The dict schema (numpy for arrays) is what mlff.ace's TorchScript module is built from:
 *   {"elements": [str], "E0": [float], "deltaSplineBins": float,
 *    "embeddings": [{ndensity, FS_parameters, npoti, rho_core_cutoff, drho_core_cutoff}],
 *    "bonds": {(mu_i, mu_j): {nradmax, lmax, nradbasemax, radbasename, radparameters,
 *              radcoefficients[nradmax, lmax + 1, nradbasemax], prehc, lambdahc, rcut, dcut,
 *              rcut_in, dcut_in, inner_cutoff_type}},
 *    "functions": [[{mu0, rank, ndensity, mus, ns, ls, ms_combs[num_ms, rank],
 *                    ctildes[num_ms, ndensity]}] per species]}
 */
#include "ace_evaluator.h"
#include "ace_model.h"
#include "ace_py_inputs.h"
#include "ace_readers.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>

namespace py = pybind11;
using namespace mlff_ace;

namespace {

const char *const kDictSource = "<dict>";

[[noreturn]] void dict_fail(const std::string &key, const std::string &what)
{
  throw FormatError(std::string(kDictSource) + ": " + key + ": " + what);
}

py::object required(const py::dict &d, const char *key, const std::string &path)
{
  if (!d.contains(key)) dict_fail(path, std::string("missing required key '") + key + "'");
  return d[key];
}

py::dict as_dict(const py::handle &o, const std::string &path)
{
  if (!py::isinstance<py::dict>(o)) dict_fail(path, "expected a dict, got " + std::string(py::str(py::type::handle_of(o))));
  return py::reinterpret_borrow<py::dict>(o);
}

double as_double(const py::handle &o, const std::string &path)
{
  if (py::isinstance<py::bool_>(o) || !(py::isinstance<py::float_>(o) || py::isinstance<py::int_>(o) ||
                                         py::hasattr(o, "__float__")))
    dict_fail(path, "expected a number, got " + std::string(py::repr(o)));
  try {
    return o.cast<double>();
  } catch (const py::cast_error &) {
    dict_fail(path, "expected a number, got " + std::string(py::repr(o)));
  }
}

int as_int(const py::handle &o, const std::string &path)
{
  if (py::isinstance<py::bool_>(o) || !py::hasattr(o, "__index__"))
    dict_fail(path, "expected an integer, got " + std::string(py::repr(o)));
  try {
    return py::reinterpret_steal<py::int_>(PyNumber_Index(o.ptr())).cast<int>();
  } catch (const py::cast_error &) {
    dict_fail(path, "integer out of range: " + std::string(py::repr(o)));
  }
}

std::string as_string(const py::handle &o, const std::string &path)
{
  if (!py::isinstance<py::str>(o)) dict_fail(path, "expected a string, got " + std::string(py::repr(o)));
  return o.cast<std::string>();
}

py::array as_numpy(const py::handle &o)
{
  return py::reinterpret_steal<py::array>(py::module_::import("numpy").attr("asarray")(o).release());
}

// A float array of the given shape (an empty expected shape: any 1-D length), flattened.
std::vector<double> doubles(const py::handle &o, const std::string &path, const std::vector<py::ssize_t> &shape = {})
{
  py::array a;
  try {
    a = as_numpy(o);
  } catch (const py::error_already_set &) {
    dict_fail(path, "expected an array of numbers");
  }
  const char kind = a.dtype().kind();
  if (a.size() > 0 && kind != 'f' && kind != 'i' && kind != 'u') dict_fail(path, "expected an array of numbers");
  if (!shape.empty()) {
    bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
    if (!ok) {
      std::string want = "(", got = "(";
      for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
      for (py::ssize_t i = 0; i < a.ndim(); ++i) got += (i ? ", " : "") + std::to_string(a.shape(i));
      dict_fail(path, "has shape " + got + "), expected " + want + ")");
    }
  } else if (a.ndim() != 1 && a.size() > 0) {
    dict_fail(path, "expected a 1-D array, got " + std::to_string(a.ndim()) + " dimensions");
  }
  auto c = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);
  return std::vector<double>(c.data(), c.data() + c.size());
}

// An integer array; `cols` > 0 accepts [rows, cols] or the flat form. Floats are refused
// rather than truncated.
std::vector<int> ints(const py::handle &o, const std::string &path, py::ssize_t cols = 0)
{
  py::array a;
  try {
    a = as_numpy(o);
  } catch (const py::error_already_set &) {
    dict_fail(path, "expected an array of integers");
  }
  const char kind = a.dtype().kind();
  if (a.size() > 0 && kind != 'i' && kind != 'u') dict_fail(path, "expected an array of integers");
  if (cols > 0 && a.ndim() == 2 && a.shape(1) != cols)
    dict_fail(path, "has " + std::to_string(a.shape(1)) + " columns, expected " + std::to_string(cols));
  if (a.ndim() > (cols > 0 ? 2 : 1)) dict_fail(path, "has too many dimensions");
  auto c = py::array_t<long long, py::array::c_style | py::array::forcecast>::ensure(a);
  std::vector<int> out;
  out.reserve(c.size());
  for (py::ssize_t i = 0; i < c.size(); ++i) out.push_back(static_cast<int>(c.data()[i]));
  return out;
}

Model model_from_dict(const py::dict &d)
{
  Model m;
  m.source = kDictSource;
  m.format = "dict";
  py::object els = required(d, "elements", "elements");
  if (py::isinstance<py::str>(els)) dict_fail("elements", "expected a list of element symbols, got a string");
  for (const py::handle &e : els) m.elements.push_back(as_string(e, "elements"));
  const int nel = m.nelements();
  m.E0 = d.contains("E0") ? doubles(d["E0"], "E0") : std::vector<double>(nel, 0.0);
  if (d.contains("deltaSplineBins")) m.deltaSplineBins = as_double(d["deltaSplineBins"], "deltaSplineBins");

  py::object embs = required(d, "embeddings", "embeddings");
  int mu = 0;
  for (const py::handle &h : embs) {
    const std::string k = embedding_key(mu++);
    py::dict e = as_dict(h, k);
    Embedding out;
    out.ndensity = as_int(required(e, "ndensity", k), k + ".ndensity");
    out.FS_parameters = doubles(required(e, "FS_parameters", k), k + ".FS_parameters");
    out.npoti = as_string(required(e, "npoti", k), k + ".npoti");
    out.rho_core_cutoff = as_double(required(e, "rho_core_cutoff", k), k + ".rho_core_cutoff");
    out.drho_core_cutoff = as_double(required(e, "drho_core_cutoff", k), k + ".drho_core_cutoff");
    m.embeddings.push_back(out);
  }

  py::dict bonds = as_dict(required(d, "bonds", "bonds"), "bonds");
  for (const auto &item : bonds) {
    const py::handle key = item.first;
    if (py::isinstance<py::str>(key) || !py::hasattr(key, "__len__") || py::len(key) != 2)
      dict_fail("bonds", "a bond key must be a pair (mu_i, mu_j), got " + std::string(py::repr(key)));
    py::sequence pair = py::reinterpret_borrow<py::sequence>(key);
    const int i = as_int(pair[0], "bonds"), j = as_int(pair[1], "bonds");
    const std::string k = bond_key(i, j);
    py::dict b = as_dict(item.second, k);
    Bond out;
    out.nradmax = as_int(required(b, "nradmax", k), k + ".nradmax");
    out.lmax = as_int(required(b, "lmax", k), k + ".lmax");
    out.nradbasemax = as_int(required(b, "nradbasemax", k), k + ".nradbasemax");
    if (out.nradmax < 0 || out.lmax < 0 || out.nradbasemax < 0) dict_fail(k, "nradmax, lmax and nradbasemax must be >= 0");
    out.radbasename = as_string(required(b, "radbasename", k), k + ".radbasename");
    out.radparameters = doubles(required(b, "radparameters", k), k + ".radparameters");
    out.radcoefficients = doubles(required(b, "radcoefficients", k), k + ".radcoefficients",
                                  {out.nradmax, out.lmax + 1, out.nradbasemax});
    out.prehc = as_double(required(b, "prehc", k), k + ".prehc");
    out.lambdahc = as_double(required(b, "lambdahc", k), k + ".lambdahc");
    out.rcut = as_double(required(b, "rcut", k), k + ".rcut");
    out.dcut = as_double(required(b, "dcut", k), k + ".dcut");
    if (b.contains("rcut_in")) out.rcut_in = as_double(b["rcut_in"], k + ".rcut_in");
    if (b.contains("dcut_in")) out.dcut_in = as_double(b["dcut_in"], k + ".dcut_in");
    out.inner_cutoff_type = b.contains("inner_cutoff_type") ? as_string(b["inner_cutoff_type"], k + ".inner_cutoff_type")
                                                            : std::string("density");
    if (!m.bonds.emplace(std::make_pair(i, j), out).second) dict_fail(k, "the bond is listed twice");
  }

  py::object fns = required(d, "functions", "functions");
  mu = 0;
  for (const py::handle &per_species : fns) {
    std::vector<Function> list;
    size_t f = 0;
    for (const py::handle &h : per_species) {
      const std::string k = function_key(mu, f++);
      py::dict fd = as_dict(h, k);
      Function fn;
      fn.mu0 = as_int(required(fd, "mu0", k), k + ".mu0");
      fn.rank = as_int(required(fd, "rank", k), k + ".rank");
      fn.ndensity = as_int(required(fd, "ndensity", k), k + ".ndensity");
      if (fn.rank < 1) dict_fail(k + ".rank", "must be >= 1, got " + std::to_string(fn.rank));
      if (fn.ndensity < 1) dict_fail(k + ".ndensity", "must be >= 1, got " + std::to_string(fn.ndensity));
      fn.mus = ints(required(fd, "mus", k), k + ".mus");
      fn.ns = ints(required(fd, "ns", k), k + ".ns");
      fn.ls = ints(required(fd, "ls", k), k + ".ls");
      fn.ms_combs = ints(required(fd, "ms_combs", k), k + ".ms_combs", fn.rank);
      const size_t nms = fn.ms_combs.size() / static_cast<size_t>(fn.rank);
      const py::object c = required(fd, "ctildes", k);
      py::array ca = as_numpy(c);
      fn.ctildes = ca.ndim() == 2 ? doubles(c, k + ".ctildes", {static_cast<py::ssize_t>(nms), fn.ndensity})
                                  : doubles(c, k + ".ctildes");
      if (fd.contains("num_ms_combs") && as_int(fd["num_ms_combs"], k + ".num_ms_combs") != static_cast<int>(nms))
        dict_fail(k + ".num_ms_combs", "disagrees with ms_combs (" + std::to_string(nms) + " combinations)");
      list.push_back(std::move(fn));
    }
    m.functions.push_back(std::move(list));
    ++mu;
  }
  m.validate();
  return m;
}

template <class T>
py::array_t<T> array(const std::vector<T> &v, std::vector<py::ssize_t> shape)
{
  py::array_t<T> a(shape);
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}
py::array_t<int32_t> int_array(const std::vector<int> &v, std::vector<py::ssize_t> shape)
{
  py::array_t<int32_t> a(shape);
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

py::dict model_to_dict(const Model &m)
{
  py::dict d;
  d["elements"] = m.elements;
  d["E0"] = m.E0;
  d["deltaSplineBins"] = m.deltaSplineBins;
  py::list embs;
  for (const Embedding &e : m.embeddings) {
    py::dict x;
    x["ndensity"] = e.ndensity;
    x["FS_parameters"] = array(e.FS_parameters, {static_cast<py::ssize_t>(e.FS_parameters.size())});
    x["npoti"] = e.npoti;
    x["rho_core_cutoff"] = e.rho_core_cutoff;
    x["drho_core_cutoff"] = e.drho_core_cutoff;
    embs.append(x);
  }
  d["embeddings"] = embs;
  py::dict bonds;
  for (const auto &kv : m.bonds) {
    const Bond &b = kv.second;
    py::dict x;
    x["nradmax"] = b.nradmax;
    x["lmax"] = b.lmax;
    x["nradbasemax"] = b.nradbasemax;
    x["radbasename"] = b.radbasename;
    x["radparameters"] = array(b.radparameters, {static_cast<py::ssize_t>(b.radparameters.size())});
    x["radcoefficients"] = array(b.radcoefficients, {b.nradmax, b.lmax + 1, b.nradbasemax});
    x["prehc"] = b.prehc;
    x["lambdahc"] = b.lambdahc;
    x["rcut"] = b.rcut;
    x["dcut"] = b.dcut;
    x["rcut_in"] = b.rcut_in;
    x["dcut_in"] = b.dcut_in;
    x["inner_cutoff_type"] = b.inner_cutoff_type.empty() ? std::string("density") : b.inner_cutoff_type;
    bonds[py::make_tuple(kv.first.first, kv.first.second)] = x;
  }
  d["bonds"] = bonds;
  py::list fns;
  for (const auto &list : m.functions) {
    py::list out;
    for (const Function &f : list) {
      py::dict x;
      const py::ssize_t nms = f.num_ms_combs();
      x["mu0"] = f.mu0;
      x["rank"] = f.rank;
      x["ndensity"] = f.ndensity;
      x["mus"] = int_array(f.mus, {f.rank});
      x["ns"] = int_array(f.ns, {f.rank});
      x["ls"] = int_array(f.ls, {f.rank});
      x["ms_combs"] = int_array(f.ms_combs, {nms, f.rank});
      x["ctildes"] = array(f.ctildes, {nms, f.ndensity});
      out.append(x);
    }
    fns.append(out);
  }
  d["functions"] = fns;
  return d;
}

py::dict model_summary(const Model &m)
{
  py::dict s;
  s["elements"] = m.elements;
  s["format"] = m.format;
  py::dict cutoffs, radial;
  std::set<std::string> radial_types;
  int nradmax = 0, lmax = 0, nradbase = 0;
  for (const auto &kv : m.bonds) {
    const std::string name = m.elements[kv.first.first] + "-" + m.elements[kv.first.second];
    cutoffs[py::str(name)] = kv.second.rcut;
    radial[py::str(name)] = kv.second.radbasename;
    radial_types.insert(kv.second.radbasename);
    nradmax = std::max(nradmax, kv.second.nradmax);
    lmax = std::max(lmax, kv.second.lmax);
    nradbase = std::max(nradbase, kv.second.nradbasemax);
  }
  s["cutoff"] = m.max_cutoff();
  s["cutoffs"] = cutoffs;
  s["radial_basis"] = radial;
  s["radial_types"] = std::vector<std::string>(radial_types.begin(), radial_types.end());
  s["nradmax"] = nradmax;
  s["lmax"] = lmax;
  s["nradbase"] = nradbase;
  py::dict functions, ndensity, embedding, E0;
  for (int mu = 0; mu < m.nelements(); ++mu) {
    std::map<int, int> per_rank;
    for (const Function &f : m.functions[mu]) ++per_rank[f.rank];
    py::dict x;
    x["total"] = static_cast<int>(m.functions[mu].size());
    x["per_rank"] = per_rank;
    functions[py::str(m.elements[mu])] = x;
    ndensity[py::str(m.elements[mu])] = m.embeddings[mu].ndensity;
    embedding[py::str(m.elements[mu])] = m.embeddings[mu].npoti;
    E0[py::str(m.elements[mu])] = m.E0[mu];
  }
  s["functions"] = functions;
  s["ndensity"] = ndensity;
  s["embedding"] = embedding;
  s["inner_cutoff_type"] = m.inner_cutoff_type();
  s["E0"] = E0;
  return s;
}

// The evaluator keeps per-atom work space: one call at a time (the GIL is released inside).
struct PyEvaluator {
  std::unique_ptr<Evaluator> ev;
  std::mutex lock;
};

Model load_file(const py::object &path_like)
{
  const std::string path = pyinputs::readable_path(path_like);
  py::gil_scoped_release nogil;
  return read_model_file(path);
}

}    // namespace

// the extrapolation grade's bindings (ace_grade_py.cpp)
void bind_grade(pybind11::module_ &m);

PYBIND11_MODULE(_ace, m)
{
  m.doc() = "mlff's native ACE core: .yace/.ace readers and the evaluator (see ace_py.cpp)";
  py::register_exception<FormatError>(m, "FormatError", PyExc_ValueError);

  py::class_<Model, std::shared_ptr<Model>>(m, "Model")
      .def_static("load", &load_file, py::arg("path"), "Read a .yace or .ace file (chosen by content).")
      .def_static(
          "from_text",
          [](const std::string &text, const std::string &name) {
            py::gil_scoped_release nogil;
            return read_model(text, name);
          },
          py::arg("text"), py::arg("name") = "<text>", "Parse .yace or .ace text; `name` appears in errors.")
      .def_static("from_dict", &model_from_dict, py::arg("d"), "Build a model from to_dict()'s schema (validated).")
      .def("to_dict", &model_to_dict)
      .def("summary", &model_summary)
      .def_property_readonly("elements", [](const Model &x) { return x.elements; })
      .def_property_readonly("cutoff", &Model::max_cutoff)
      .def_property_readonly("format", [](const Model &x) { return x.format; })
      .def_property_readonly("source", [](const Model &x) { return x.source; })
      .def("__repr__", [](const Model &x) {
        std::string els;
        for (const auto &e : x.elements) els += (els.empty() ? "" : " ") + e;
        return "<mlff.ace._ace.Model " + x.format + " '" + x.source + "': " + els + ">";
      });

  py::class_<PyEvaluator>(m, "Evaluator")
      .def(py::init([](const Model &model, const std::string &radial) {
             if (radial != "spline" && radial != "analytic")
               throw py::value_error("radial must be 'spline' (ML-PACE's tables, the default) or 'analytic', got '" +
                                     radial + "'");
             auto p = std::make_unique<PyEvaluator>();
             p->ev = std::make_unique<Evaluator>(model, radial == "spline" ? RadialMode::Spline : RadialMode::Analytic);
             return p;
           }),
           py::arg("model"), py::arg("radial") = "spline",
           "radial='spline': ML-PACE's radial spline tables (pyace's and pair_style pace's numbers); "
           "'analytic': the radial formulas themselves.")
      .def_property_readonly("cutoff", [](const PyEvaluator &e) { return e.ev->cutoff(); })
      .def(
          "compute",
          [](PyEvaluator &e, const py::array &species, int64_t n_local, const py::array &edge_index,
             const py::array &edge_vectors) {
            pyinputs::EdgeInputs in = pyinputs::edge_inputs(species, n_local, edge_index, edge_vectors, e.ev->model().nelements());
            py::array_t<double> energies(in.n_local);
            py::array_t<double> grad({in.n_edges, static_cast<int64_t>(3)});
            double *pe = energies.mutable_data(), *pg = grad.mutable_data();
            {
              py::gil_scoped_release nogil;
              std::lock_guard<std::mutex> guard(e.lock);
              e.ev->compute(in.n_nodes, in.n_local, in.species.data(), in.n_edges, in.edges.data(),
                            in.edges.data() + in.n_edges, in.vectors.data(), pe, pg);
            }
            return py::make_tuple(energies, grad);
          },
          py::arg("species"), py::arg("n_local"), py::arg("edge_index"), py::arg("edge_vectors"),
          "Per-atom energies [n_local] and dE_i/dr_ij [E, 3] (r_ij = r_j - r_i).")
      .def(
          "compute_projections",
          [](PyEvaluator &e, const py::array &species, int64_t n_local, const py::array &edge_index,
             const py::array &edge_vectors) {
            pyinputs::EdgeInputs in = pyinputs::edge_inputs(species, n_local, edge_index, edge_vectors, e.ev->model().nelements());
            std::vector<double> energies(in.n_local), grad(3 * in.n_edges);
            std::vector<AtomResult> extras;
            {
              py::gil_scoped_release nogil;
              std::lock_guard<std::mutex> guard(e.lock);
              e.ev->compute(in.n_nodes, in.n_local, in.species.data(), in.n_edges, in.edges.data(),
                            in.edges.data() + in.n_edges, in.vectors.data(), energies.data(), grad.data(), &extras);
            }
            py::list projections, dE_drho;
            for (const AtomResult &r : extras) {
              projections.append(array(r.projections, {static_cast<py::ssize_t>(r.projections.size())}));
              dE_drho.append(array(r.dE_drho, {static_cast<py::ssize_t>(r.dE_drho.size())}));
            }
            return py::make_tuple(projections, dE_drho);
          },
          py::arg("species"), py::arg("n_local"), py::arg("edge_index"), py::arg("edge_vectors"),
          "Per local atom: the C-tilde projections (functions of its species in file order) and dF/drho_p.")
      .def(
          "plan_stats",
          [](const PyEvaluator &e, int mu) {
            const Evaluator::PlanStats s = e.ev->plan_stats(mu);
            py::dict d;
            d["leaves"] = s.leaves;
            d["mirrored"] = s.mirrored;
            d["rank1"] = s.rank1;
            d["nodes"] = s.nodes;
            d["terminals"] = s.terminals;
            d["ms_combinations"] = s.ms_combinations;
            return d;
          },
          py::arg("species"), "Sizes of the evaluation plan of one species (for profiles).");
  bind_grade(m);
}
