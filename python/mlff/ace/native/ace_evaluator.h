/* mlff ACE core: energies, forces, virial and per-atom quantities of an ACE model.
 *
 * The one implementation of the ACE formulas in mlff. The LAMMPS plugin calls
 * compute_atom() per owned atom with LAMMPS's own neighbour list; Python (ASE, OpenMM,
 * tests) calls compute() with the contract's edge list through the pybind11 module.
 * Gradients follow the contract's rule: dE_i/dr_ij per neighbour, r_ij = r_j - r_i, so
 * F_i += dE/dr_ij, F_j -= dE/dr_ij and W = -sum r_ij (x) dE/dr_ij.
 */
#ifndef MLFF_ACE_EVALUATOR_H
#define MLFF_ACE_EVALUATOR_H

#include "ace_model.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace mlff_ace {

struct AtomResult {
  double energy = 0.0;                 // E_i in eV, including E0 and core repulsion
  // [ndensity] dF/drho_p = w_p F'(rho_p), before the core-repulsion factor fcut (the
  // quantity pacemaker's non-linear extrapolation grade multiplies the projections by)
  std::vector<double> dE_drho;
  // [number of functions of mu_i] for each function in file order (rank 1 included):
  // sum over its ms-combinations of ctilde[ms][density 0] * Re(prod_t A_t)
  std::vector<double> projections;
};

// How the radial basis g_k(r) and the core repulsion are evaluated. Spline: ML-PACE's
// cubic Hermite tables (knots every ~deltaSplineBins, values and derivatives of the exact
// functions at the knots), so that the numbers are those of ML-PACE, pyace and LAMMPS's
// pair_style pace; the default. Analytic: the formulas themselves (the splines differ
// from them by up to ~1e-4 eV/A in forces where a radial basis changes fast, e.g. within
// a 0.01 A ChebExpCos dcut).
enum class RadialMode { Spline, Analytic };

class Evaluator {
 public:
  explicit Evaluator(const Model &model);    // keeps a copy; precomputes tables (splines)
  Evaluator(const Model &model, RadialMode mode);
  ~Evaluator();
  Evaluator(const Evaluator &) = delete;
  Evaluator &operator=(const Evaluator &) = delete;

  const Model &model() const;
  double cutoff() const;               // max rcut

  // One atom of species mu_i with jnum neighbours of species mu_j[j] (-1: ignore the
  // neighbour) at r_ij = rij[3j..3j+2] (Angstrom). Neighbours beyond their bond's rcut
  // contribute nothing. Writes dE_i/dr_ij into drij[3 * jnum] (overwritten) and returns E_i.
  // With `extra`, also fills its dE_drho and projections (a few per cent more work);
  // without, nothing of them is computed. Throws std::invalid_argument for a species
  // out of range and std::domain_error for two atoms closer than 1e-8 Angstrom.
  double compute_atom(int mu_i, int jnum, const int *mu_j, const double *rij, double *drij,
                      AtomResult *extra = nullptr);

  // The contract's form: nodes with species index (-1 for an element the model lacks is
  // an error for owned atoms), edges (centre, neighbour) with vectors r_ij, in any order.
  // energies[n_local], edge_grad[3 * E]. Only centres < n_local are evaluated.
  void compute(int64_t n_nodes, int64_t n_local, const int *species, int64_t n_edges,
               const int64_t *centres, const int64_t *neighbours, const double *vectors,
               double *energies, double *edge_grad);
  // The same, with extras[n_local] filled as compute_atom does (extras is resized).
  void compute(int64_t n_nodes, int64_t n_local, const int *species, int64_t n_edges,
               const int64_t *centres, const int64_t *neighbours, const double *vectors,
               double *energies, double *edge_grad, std::vector<AtomResult> *extras);

  // Sizes of the per-species evaluation plan, for tests and profiles: A-basis leaves
  // (m >= 0 stored, m < 0 mirrored, rank-1), product nodes, distinct products (terminals).
  struct PlanStats {
    int leaves = 0, mirrored = 0, rank1 = 0, nodes = 0, terminals = 0, ms_combinations = 0;
  };
  PlanStats plan_stats(int mu_i) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}    // namespace mlff_ace

#endif
