/* mlff LAMMPS plugin: ACE potentials through the shared native ACE core. */
#include "ace_backend.h"

#include "ace_bbasis.h"
#include "ace_evaluator.h"
#include "ace_grade.h"
#include "ace_model.h"

#include <algorithm>
#include <stdexcept>

namespace mlff_lmp {

bool is_ace_file(const std::string &path, const std::string &data)
{
  // every TorchScript export is a zip archive; ACE files (C-tilde .yace/.ace, B-basis
  // .yaml) are text
  if (data.size() >= 4 && data.compare(0, 4, "PK\x03\x04") == 0) return false;
  auto ends_with = [&](const std::string &suffix) {
    return path.size() >= suffix.size() &&
        path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with(".yace") || ends_with(".ace") || ends_with(".yaml") || ends_with(".yml");
}

namespace {

class AceBackend : public Backend {
 public:
  AceBackend(const mlff_ace::Model &model, const std::vector<int> &species_of_z,
             std::unique_ptr<mlff_ace::GradeEvaluator> grade)
      : evaluator_(model), species_of_z_(species_of_z), grade_(std::move(grade))
  {
  }

  void compute(const Graph &graph, Result &result, Reducer *) override
  {
    // ACE is local: one list, no system inputs, no whole-system sums
    const EdgeList &edges = graph.lists.at(0);
    const int64_t n_edges = edges.n_edges();
    species_.resize(graph.n_nodes);
    for (int64_t i = 0; i < graph.n_nodes; i++) {
      int64_t z = graph.species[i];
      species_[i] = (z > 0 && z < static_cast<int64_t>(species_of_z_.size())) ? species_of_z_[z] : -1;
      if (species_[i] < 0 && i < graph.n_local)
        throw std::runtime_error("atomic number " + std::to_string(z) + " is not in the ACE file");
    }
    result.energies.assign(graph.n_local, 0.0);
    result.edge_grad.resize(1);
    result.edge_grad[0].assign(3 * n_edges, 0.0);
    const int64_t *centres = edges.edge_index.data();
    const int64_t *neighbours = centres + n_edges;
    evaluator_.compute(graph.n_nodes, graph.n_local, species_.data(), n_edges, centres, neighbours,
                       edges.edge_vectors.data(), result.energies.data(), result.edge_grad[0].data());
    // the grade costs 2-4 energy evaluations: only on the steps gamma_every asks for
    if (grade_ && graph.want_outputs) {
      auto &gamma = result.outputs["extrapolation_grade"];
      gamma.assign(graph.n_local, 0.0);
      grade_->compute(graph.n_nodes, graph.n_local, species_.data(), n_edges, centres, neighbours,
                      edges.edge_vectors.data(), gamma.data());
    }
  }

  std::string device() const override
  {
    std::string what = "cpu (native ACE core, float64)";
    if (grade_)
      what += grade_->nonlinear() ? ", non-linear extrapolation grade" : ", linear extrapolation grade";
    return what;
  }

 private:
  mlff_ace::Evaluator evaluator_;
  std::vector<int> species_of_z_;    // atomic number -> species index of the file, -1
  std::unique_ptr<mlff_ace::GradeEvaluator> grade_;
  std::vector<int> species_;
};

}    // namespace

std::unique_ptr<Backend> create_ace_backend(const std::string &data, const std::string &path,
                                            const AceOptions &options, ModelInfo &info)
{
  // a B-basis potential (pacemaker's .yaml) expands into the C-tilde model; it is also
  // the only form that can give the extrapolation grade (a .yace merges B functions)
  std::unique_ptr<mlff_ace::BBasis> basis;
  mlff_ace::Model model;
  std::unique_ptr<mlff_ace::GradeEvaluator> grade;
  try {
    if (mlff_ace::is_bbasis_text(data)) {
      basis.reset(new mlff_ace::BBasis(mlff_ace::read_bbasis(data, path)));
      model = basis->energy;
    } else {
      model = mlff_ace::read_model(data, path);
    }
    if (!options.activeset.empty()) {
      if (!basis)
        throw std::runtime_error(
            "the extrapolation grade (activeset " + options.activeset +
            ") needs the B-basis potential the active set was made for (pacemaker's "
            "output_potential.yaml), not " + path +
            ": a .yace/.ace file merges the B functions whose projections the grade uses");
      auto active = mlff_ace::read_active_set(options.activeset_data, options.activeset);
      grade.reset(new mlff_ace::GradeEvaluator(*basis, active));
    }
  } catch (mlff_ace::FormatError &e) {
    throw std::runtime_error(e.what());
  }

  info = ModelInfo();
  info.path = path;
  info.contract_version = CONTRACT_VERSION;
  info.kind = "ace";
  std::vector<int> species_of_z(119, -1);
  for (int mu = 0; mu < model.nelements(); mu++) {
    int z = atomic_number(model.elements[mu]);
    if (z <= 0)
      throw std::runtime_error(path + ": element '" + model.elements[mu] +
                               "' is not a chemical element symbol");
    species_of_z[z] = mu;
    info.elements.push_back(z);
  }
  std::sort(info.elements.begin(), info.elements.end());
  info.cutoff = model.max_cutoff();
  // ACE is local: an atom's energy depends on neighbours within rcut only
  info.lists.push_back({"ace", info.cutoff, info.cutoff});
  info.num_interactions = 1;
  info.interaction_range = info.cutoff;
  info.dtype = "float64";
  if (grade) info.outputs.push_back({"extrapolation_grade", true, ""});
  info.mlff_version = "";
  info.torch_version = "";
  return std::unique_ptr<Backend>(new AceBackend(model, species_of_z, std::move(grade)));
}

}    // namespace mlff_lmp
