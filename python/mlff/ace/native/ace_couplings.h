/* mlff ACE core: Clebsch–Gordan coefficients and the generalised coupling coefficients
 * that turn a B-basis function (ls, intermediate couplings LS) into its m-combinations.
 *
 * Conventions are ML-PACE's, because B-basis files (pacemaker's output_potential.yaml)
 * store coefficients relative to them (see ../../../../../shared/DESIGN.md, "ACE facts"):
 *  - Clebsch–Gordan coefficients in the Condon–Shortley convention;
 *  - the coupling tree of rank r couples neighbouring leaves first, (0,1), (2,3), ...,
 *    then the resulting intermediate nodes in creation order, and for odd rank the last
 *    intermediate node with the left-over leaf; intermediate node k carries LS[k] and the
 *    root has L = M = 0;
 *  - m-combinations are enumerated with m_0 varying fastest; a "half basis" keeps only the
 *    combinations whose first non-zero m is positive (doubling their coefficient) and the
 *    all-zero one, which is exact for rotation invariants because Re(prod A) is the same
 *    for ms and -ms.
 * The 3j symbols come from the Schulten–Gordon recurrence with ML-PACE's exact order of
 * floating-point operations (see wigner_3j in the .cpp for why: m-combinations whose
 * coefficient is rounding noise are kept by ML-PACE and decide the order of B functions).
 */
#ifndef MLFF_ACE_COUPLINGS_H
#define MLFF_ACE_COUPLINGS_H

#include <vector>

namespace mlff_ace {

// <l1 m1 l2 m2 | L M>, the same double ML-PACE computes; 0.0 outside the selection rules
// (an accidental zero may come out as rounding noise, as in ML-PACE).
double clebsch_gordan(int l1, int m1, int l2, int m2, int L, int M);

struct MsCoupling {
  std::vector<int> ms;    // [rank]
  double coeff = 0.0;     // generalised Clebsch–Gordan coefficient (x2 in a half basis)
};

// Checks the (ls, LS) of one B function of rank ls.size(): rank 1 needs ls = [0]; rank 2
// ls[0] == ls[1]; rank >= 3 needs rank - 2 intermediate LS with the tree's closure rule
// (LS.back() == ls.back() for odd rank, LS.back() == LS[rank - 4] for even rank);
// sum(ls) even. Throws std::invalid_argument naming the problem.
void validate_ls_LS(const std::vector<int> &ls, const std::vector<int> &LS);

// All m-combinations with a non-zero generalised Clebsch–Gordan coefficient for the
// invariant (L = 0) coupling of ls through LS, in enumeration order (m_0 fastest).
// Throws std::invalid_argument if (ls, LS) is invalid.
std::vector<MsCoupling> invariant_ms_couplings(const std::vector<int> &ls,
                                               const std::vector<int> &LS, bool half_basis);

}    // namespace mlff_ace

#endif
