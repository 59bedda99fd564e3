/* mlff.ace._ace bindings for B-basis potentials and the extrapolation grade (see
 * ace_bbasis.h, ace_grade.h). ace_py.cpp calls bind_grade(m) after registering Model.
 *
 *   clebsch_gordan(l1, m1, l2, m2, L, M), ms_couplings(ls, LS, half_basis=True) -> (ms, coeff)
 *   BBasis.load(path) / BBasis.from_text(text, name): a pacemaker .yaml potential;
 *       .elements, .energy_model, .projection_model (Model), .functions(symbol) (dicts)
 *   ActiveSet.load(path): an .asi; .elements, .matrix(symbol), .source
 *   Projector(bbasis, nonlinear=False).compute(species, n_local, edge_index, edge_vectors)
 *       -> [x_i] per local atom (B-projections, or dF/drho_p * B-projections)
 *   GradeEvaluator(bbasis, active_set, kind="auto"|"linear"|"nonlinear")
 *       .compute(species, n_local, edge_index, edge_vectors) -> gamma [n_local]; .nonlinear
 * Species are indices into bbasis.elements; edges and vectors follow the contract
 * (edge_index [2, E] = (centre, neighbour), edge_vectors [E, 3] = r_j - r_i).
 */
#include "ace_bbasis.h"
#include "ace_couplings.h"
#include "ace_grade.h"
#include "ace_py_inputs.h"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <fstream>
#include <memory>
#include <mutex>

namespace py = pybind11;
using namespace mlff_ace;
using pyinputs::EdgeInputs;
using pyinputs::edge_inputs;

namespace {

py::array_t<double> to_array(const std::vector<double> &v)
{
  py::array_t<double> a(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

GradeKind parse_kind(const std::string &kind)
{
  if (kind == "auto") return GradeKind::Auto;
  if (kind == "linear") return GradeKind::Linear;
  if (kind == "nonlinear" || kind == "non-linear") return GradeKind::NonLinear;
  throw py::value_error("kind must be 'auto', 'linear' or 'nonlinear', got '" + kind + "'");
}

// Evaluators keep work space: one call at a time (the GIL is released inside).
struct PyProjector {
  std::shared_ptr<const BBasis> basis;
  std::unique_ptr<Projector> p;
  std::mutex lock;
};
struct PyGrade {
  std::shared_ptr<const BBasis> basis;
  std::unique_ptr<GradeEvaluator> g;
  std::mutex lock;
};

}    // namespace

void bind_grade(py::module_ &m)
{
  m.def("clebsch_gordan", &clebsch_gordan, py::arg("l1"), py::arg("m1"), py::arg("l2"), py::arg("m2"), py::arg("L"),
        py::arg("M"), "<l1 m1 l2 m2 | L M>, computed as ML-PACE does (same doubles).");
  m.def(
      "ms_couplings",
      [](const std::vector<int> &ls, const std::vector<int> &LS, bool half_basis) {
        std::vector<MsCoupling> c;
        try {
          c = invariant_ms_couplings(ls, LS, half_basis);
        } catch (const std::invalid_argument &e) {
          throw py::value_error(e.what());
        }
        const py::ssize_t rank = static_cast<py::ssize_t>(ls.size()), n = static_cast<py::ssize_t>(c.size());
        py::array_t<int> ms({n, rank});
        py::array_t<double> coeff(n);
        for (py::ssize_t i = 0; i < n; ++i) {
          std::copy(c[i].ms.begin(), c[i].ms.end(), ms.mutable_data() + i * rank);
          coeff.mutable_data()[i] = c[i].coeff;
        }
        return py::make_tuple(ms, coeff);
      },
      py::arg("ls"), py::arg("LS"), py::arg("half_basis") = true,
      "m-combinations [n, rank] and generalised Clebsch-Gordan coefficients [n] of the invariant coupling.");
  py::class_<BBasis, std::shared_ptr<BBasis>>(m, "BBasis")
      .def_static(
          "load",
          [](const py::object &path) {
            const std::string p = pyinputs::readable_path(path);
            py::gil_scoped_release nogil;
            return std::make_shared<BBasis>(read_bbasis_file(p));
          },
          py::arg("path"), "Read a B-basis potential (pacemaker's output_potential.yaml).")
      .def_static(
          "from_text",
          [](const std::string &text, const std::string &name) {
            py::gil_scoped_release nogil;
            return std::make_shared<BBasis>(read_bbasis(text, name));
          },
          py::arg("text"), py::arg("name") = "<text>")
      .def_static("is_bbasis_text", &is_bbasis_text, py::arg("text"),
                  "True for B-basis YAML (a top-level `species:` list), False for .yace/.ace.")
      .def_property_readonly("elements", [](const BBasis &b) { return b.energy.elements; })
      .def_property_readonly("source", [](const BBasis &b) { return b.source; })
      .def_property_readonly(
          "energy_model", [](const BBasis &b) { return std::make_shared<Model>(b.energy); },
          "The C-tilde model (B functions merged): evaluates the potential in every engine.")
      .def_property_readonly(
          "projection_model", [](const BBasis &b) { return std::make_shared<Model>(b.projection); },
          "One function per B function (ndensity 1, ctildes = generalised CGs).")
      .def(
          "num_functions",
          [](const BBasis &b, const std::string &el) {
            for (int mu = 0; mu < b.energy.nelements(); ++mu)
              if (b.energy.elements[mu] == el) return b.num_functions(mu);
            throw py::key_error(el);
          },
          py::arg("element"))
      .def(
          "functions",
          [](const BBasis &b, const std::string &el) {
            for (int mu = 0; mu < b.energy.nelements(); ++mu) {
              if (b.energy.elements[mu] != el) continue;
              py::list out;
              for (const BFunction &f : b.functions[mu]) {
                py::dict d;
                d["rank"] = f.rank;
                d["mus"] = f.mus;
                d["ns"] = f.ns;
                d["ls"] = f.ls;
                d["LS"] = f.LS;
                d["coeffs"] = f.coeffs;
                py::array_t<int> ms({static_cast<py::ssize_t>(f.gen_cgs.size()), static_cast<py::ssize_t>(f.rank)});
                std::copy(f.ms_combs.begin(), f.ms_combs.end(), ms.mutable_data());
                d["ms_combs"] = ms;
                d["gen_cgs"] = to_array(f.gen_cgs);
                d["line"] = f.line;
                out.append(d);
              }
              return out;
            }
            throw py::key_error(el);
          },
          py::arg("element"), "The B functions of one central element in projection (ML-PACE) order.");

  py::class_<ActiveSet, std::shared_ptr<ActiveSet>>(m, "ActiveSet")
      .def_static(
          "load",
          [](const py::object &path) {
            const std::string p = pyinputs::readable_path(path);
            py::gil_scoped_release nogil;
            return std::make_shared<ActiveSet>(read_active_set_file(p));
          },
          py::arg("path"), "Read an .asi file (numpy .npz of inverted active sets per element).")
      .def_static(
          "from_bytes",
          [](const py::bytes &data, const std::string &name) {
            return std::make_shared<ActiveSet>(read_active_set(std::string(data), name));
          },
          py::arg("data"), py::arg("name") = "<bytes>")
      .def_property_readonly("source", [](const ActiveSet &a) { return a.source; })
      .def_property_readonly("elements",
                             [](const ActiveSet &a) {
                               std::vector<std::string> out;
                               for (const auto &kv : a.inverse) out.push_back(kv.first);
                               return out;
                             })
      .def(
          "matrix",
          [](const ActiveSet &a, const std::string &el) {
            auto it = a.inverse.find(el);
            if (it == a.inverse.end()) throw py::key_error(el);
            py::array_t<double> out({static_cast<py::ssize_t>(it->second.rows), static_cast<py::ssize_t>(it->second.cols)});
            std::copy(it->second.data.begin(), it->second.data.end(), out.mutable_data());
            return out;
          },
          py::arg("element"));

  py::class_<PyProjector>(m, "Projector")
      .def(py::init([](std::shared_ptr<const BBasis> b, bool nonlinear) {
             auto p = std::make_unique<PyProjector>();
             p->basis = b;
             p->p = std::make_unique<Projector>(*b, nonlinear);
             return p;
           }),
           py::arg("bbasis"), py::arg("nonlinear") = false)
      .def_property_readonly("nonlinear", [](const PyProjector &p) { return p.p->nonlinear(); })
      .def(
          "size",
          [](const PyProjector &p, int mu) {
            if (mu < 0 || mu >= p.basis->energy.nelements()) throw py::index_error("species index out of range");
            return p.p->size(mu);
          },
          py::arg("species"), "Length of the vector of one species.")
      .def(
          "compute",
          [](PyProjector &p, const py::array &species, int64_t n_local, const py::array &edge_index,
             const py::array &edge_vectors) {
            EdgeInputs in = edge_inputs(species, n_local, edge_index, edge_vectors, p.basis->energy.nelements());
            std::vector<std::vector<double>> x;
            {
              py::gil_scoped_release nogil;
              std::lock_guard<std::mutex> guard(p.lock);
              p.p->compute(in.n_nodes, in.n_local, in.species.data(), in.n_edges, in.edges.data(),
                           in.edges.data() + in.n_edges, in.vectors.data(), &x);
            }
            py::list out;
            for (const auto &xi : x) out.append(to_array(xi));
            return out;
          },
          py::arg("species"), py::arg("n_local"), py::arg("edge_index"), py::arg("edge_vectors"),
          "Per local atom, the vector the active set is built from.");

  py::class_<PyGrade>(m, "GradeEvaluator")
      .def(py::init([](std::shared_ptr<const BBasis> b, const ActiveSet &a, const std::string &kind) {
             auto g = std::make_unique<PyGrade>();
             g->basis = b;
             g->g = std::make_unique<GradeEvaluator>(*b, a, parse_kind(kind));
             return g;
           }),
           py::arg("bbasis"), py::arg("active_set"), py::arg("kind") = "auto")
      .def_property_readonly("nonlinear", [](const PyGrade &g) { return g.g->nonlinear(); })
      .def(
          "compute",
          [](PyGrade &g, const py::array &species, int64_t n_local, const py::array &edge_index,
             const py::array &edge_vectors) {
            EdgeInputs in = edge_inputs(species, n_local, edge_index, edge_vectors, g.basis->energy.nelements());
            py::array_t<double> gamma(in.n_local);
            double *pg = gamma.mutable_data();
            {
              py::gil_scoped_release nogil;
              std::lock_guard<std::mutex> guard(g.lock);
              g.g->compute(in.n_nodes, in.n_local, in.species.data(), in.n_edges, in.edges.data(),
                           in.edges.data() + in.n_edges, in.vectors.data(), pg);
            }
            return gamma;
          },
          py::arg("species"), py::arg("n_local"), py::arg("edge_index"), py::arg("edge_vectors"),
          "Extrapolation grade gamma of each local atom.");
}
