/* mlff ACE core: the extrapolation grade gamma of a B-basis potential (pacemaker's
 * active learning, see DESIGN.md "ACE facts" and "Uncertainty and active learning").
 *
 * Per element, an active set of atomic environments selected by MaxVol gives a square
 * matrix A of their vectors x; the .asi file (numpy .npz, one array per element symbol)
 * stores A^-1. An atom's grade is gamma = max_k |(x A^-1)_k|: 1 inside the set's convex
 * span, > 1 outside (pacemaker: > ~2 extrapolation, > ~10 unreliable). x is
 *  - linear: the B-projections of the atom (rank-1 functions first, ML-PACE's order);
 *  - non-linear: dE/dc = [F'_p(rho_p) w_p B_k for p in densities for k in functions],
 *    F' taken before the core-repulsion cutoff factor, as pyace does.
 * Both come from the one ACE evaluator: x from the B-basis projection model (ace_bbasis.h),
 * dF/drho from the energy model.
 */
#ifndef MLFF_ACE_GRADE_H
#define MLFF_ACE_GRADE_H

#include "ace_bbasis.h"
#include "ace_evaluator.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mlff_ace {

struct Matrix {
  int rows = 0, cols = 0;
  std::vector<double> data;    // row-major
  double operator()(int i, int j) const { return data[static_cast<size_t>(i) * cols + j]; }
};

// The inverted active sets of an .asi file, by element symbol.
struct ActiveSet {
  std::string source;
  std::map<std::string, Matrix> inverse;
};

// Reads an .asi (numpy .npz: a zip of <symbol>.npy, stored or deflated); float64, float32
// and either byte order. Throws FormatError naming the file and the entry.
ActiveSet read_active_set_file(const std::string &path);
ActiveSet read_active_set(const std::string &bytes, const std::string &source);

enum class GradeKind { Auto, Linear, NonLinear };

// The per-atom vectors x. Not thread-safe (the evaluators keep work space). The energy
// model's evaluator is built only when a non-linear vector needs dF/drho that the caller
// did not pass (the LAMMPS plugin passes its own).
class Projector {
 public:
  Projector(const BBasis &basis, bool nonlinear);
  bool nonlinear() const { return nonlinear_; }
  const Model &energy_model() const;
  const Model &projection_model() const;
  int size(int mu) const;    // length of x for species mu
  int num_functions(int mu) const;

  // x of one atom (see Evaluator::compute_atom for the neighbour arguments). For the
  // non-linear kind, pass the dE/drho of an energy evaluation already done for this atom
  // (AtomResult::dE_drho) to save evaluating the energy model again.
  void atom_vector(int mu_i, int jnum, const int *mu_j, const double *rij, std::vector<double> *x,
                   const double *dE_drho = nullptr);
  // The contract's edge form (see Evaluator::compute): x of each local atom.
  void compute(int64_t n_nodes, int64_t n_local, const int *species, int64_t n_edges, const int64_t *centres,
               const int64_t *neighbours, const double *vectors, std::vector<std::vector<double>> *x);

 private:
  Evaluator &energy();
  bool nonlinear_;
  std::vector<int> ndensity_;
  Model energy_model_;
  std::unique_ptr<Evaluator> energy_, projection_;
  AtomResult scratch_;
  std::vector<double> drij_;
};

// gamma per atom. Checks at construction that the active set covers every element of the
// potential with a square matrix of the right size, and decides linear / non-linear.
class GradeEvaluator {
 public:
  // Auto: linear when the matrix size is the number of B functions, non-linear when it is
  // that times ndensity (pyace's rule; with ndensity 1 it reads as linear), the same for
  // every element.
  GradeEvaluator(const BBasis &basis, const ActiveSet &active_set, GradeKind kind = GradeKind::Auto);
  bool nonlinear() const { return projector_.nonlinear(); }
  Projector &projector() { return projector_; }

  double grade_atom(int mu_i, int jnum, const int *mu_j, const double *rij, const double *dE_drho = nullptr);
  double grade(int mu_i, const std::vector<double> &x) const;    // max_k |(x A^-1)_k|
  void compute(int64_t n_nodes, int64_t n_local, const int *species, int64_t n_edges, const int64_t *centres,
               const int64_t *neighbours, const double *vectors, double *gamma);

 private:
  Projector projector_;
  std::vector<Matrix> inverse_;    // per species
  std::vector<double> x_;
  mutable std::vector<double> y_;
};

}    // namespace mlff_ace

#endif
