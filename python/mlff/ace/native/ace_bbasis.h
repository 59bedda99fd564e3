/* mlff ACE core: B-basis potentials (pacemaker's output_potential.yaml, pyace's
 * BBasisConfiguration.save) and their two expansions into the core's Model.
 *
 * A B-basis file stores, per central element, functions B = (mus, ns, ls, LS) with one
 * coefficient per density. Each expands through generalised Clebsch–Gordan coefficients
 * (ace_couplings.h) into m-combinations. From one file we build:
 *  - the energy model: B functions sharing (mus, ns, ls) merged into C-tilde functions
 *    (ctilde = sum_B coeff_p * gen_cg), exactly as ML-PACE's
 *    ACEBBasisSet::to_ACECTildeBasisSet does, so any engine can evaluate the potential;
 *  - the projection model: the same bonds and one function per B function, ndensity 1,
 *    ctildes = its generalised CGs, so that Evaluator::compute_atom(..., extra) returns the
 *    B-projections the extrapolation grade needs. The merge above loses them: a .yace
 *    cannot give B-projections, which is why gamma needs this file.
 * B functions are ordered as ML-PACE orders them (rank 1 first, then a sort on
 * (rank, mu0, mus, ns, ls, number and values of m-combinations)), because an active-set
 * (.asi) file is indexed in that order.
 */
#ifndef MLFF_ACE_BBASIS_H
#define MLFF_ACE_BBASIS_H

#include "ace_model.h"

#include <string>
#include <vector>

namespace mlff_ace {

struct BFunction {
  int mu0 = 0;
  int rank = 0;
  std::vector<int> mus, ns, ls;       // after ML-PACE's compression (may be reordered)
  std::vector<int> LS;                // intermediate couplings, as in the file
  std::vector<double> coeffs;         // [ndensity]
  std::vector<int> ms_combs;          // [num_ms * rank]
  std::vector<double> gen_cgs;        // [num_ms]
  int line = 0;                       // where the function is in the file
};

struct BBasis {
  std::string source;
  Model energy;                              // C-tilde functions: evaluates the potential
  Model projection;                          // one function per B function: B-projections
  std::vector<std::vector<BFunction>> functions;    // [nelements], projection order
  int num_functions(int mu) const { return static_cast<int>(functions[mu].size()); }
};

// True when the YAML text is a B-basis file (top-level `species` list), so a reader can
// dispatch between .yace and B-basis YAML by content.
bool is_bbasis_text(const std::string &text);

// Reads and expands a B-basis file; throws FormatError naming the line and the key.
BBasis read_bbasis(const std::string &text, const std::string &source);
BBasis read_bbasis_file(const std::string &path);

}    // namespace mlff_ace

#endif
