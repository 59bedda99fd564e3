/* mlff ACE core: Clebsch–Gordan and generalised coupling coefficients (see the header). */
#include "ace_couplings.h"

// Plain IEEE double arithmetic in the order written (see wigner_3j below for why).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#if defined(__FAST_MATH__)
#error "ace_couplings.cpp needs IEEE arithmetic in source order: compile it without -ffast-math / -Ofast (see wigner_3j)"
#endif

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <string>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace mlff_ace {

namespace {

// ---------------------------------------------------------------------------------------
// 3j symbols over j3 by the three-term recurrence of Schulten and Gordon (J. Math. Phys.
// 16, 1961 (1975)) in the two-sided form of Luscombe and Luban (Phys. Rev. E 57, 7274
// (1998)): ratios from both ends where the sequence decays, the linear recurrence in
// between, normalisation sum_j (2j + 1) f(j)^2 = 1 and sgn f(jmax) = (-1)^(j1-j2+m1+m2).
//
// Why this algorithm, and why the odd-looking order of the products below: ML-PACE (and
// therefore pyace and pacemaker) computes its Clebsch–Gordan coefficients this way, with
// wigner-cpp ((c) 2016-2017 Hidekazu Ikeno, MIT licence) compiled with -Ofast, keeps every
// m-combination whose product of coefficients is not exactly 0.0 -- including
// mathematically-zero ones that come out as ~1e-17 -- and orders the B functions by their
// number of m-combinations. An active-set (.asi) file is indexed in that order, so reading
// one right needs the same counts, hence the same roundings: an exact evaluation gives
// other counts for about 1 % of the (ls, LS) with l <= 6 (e.g. ls = [1, 1, 3, 3],
// LS = [2, 2]: 25 exact, 28 in ML-PACE). The association of each three-factor product
// below is the one the -Ofast build of python-ace 0.4 uses (its middle recurrence is
// unrolled twice, so even and odd steps and the last one or two steps differ; the
// normalisation sum is split into two interleaved partial sums). With it every coefficient
// with l1, l2 <= 14 equals pyace.coupling's bit for bit (152763 values), and the
// m-combination lists equal those pyace's ACEBBasisSet builds for 25104 (ls, LS) of ranks
// 1-6 (their values to 1 ulp: that module is a separately optimised copy of the code).
// Plain IEEE arithmetic in the written order is required: see the pragma at the top.
// ---------------------------------------------------------------------------------------

// f(j) = (j1 j2 j; m1 m2 -m1-m2) obeys X(j) f(j+1) + Y(j) f(j) + Z(j) f(j-1) = 0 with
// X(j) = cx(j) sx(j), Y(j) = cy(j) sy(j), Z(j) = cz(j) sz(j): an integer factor times a
// square root (or an integer), kept apart because the products are associated differently.
struct Rec3j {
  bool jmin0;    // jmin == 0 (j1 == j2, m1 == -m2): j(j+1) is factored out of X, Y, Z
  double a1, a2, a3, b1, b2;

  Rec3j(int j1, int j2, int m1, int m2, bool jmin_is_zero) : jmin0(jmin_is_zero)
  {
    a1 = static_cast<double>(j1 - j2);
    a2 = static_cast<double>(j1 + j2 + 1);
    a3 = static_cast<double>(-m1 - m2);
    b1 = static_cast<double>(m2 - m1);
    b2 = a3 * (static_cast<double>(j1) * static_cast<double>(j1 + 1) -
               static_cast<double>(j2) * static_cast<double>(j2 + 1));
  }
  // Products of small integers below are exact, so their grouping does not matter.
  double root(double j) const
  {
    if (jmin0) return std::sqrt((a2 + j) * (a2 - j));
    return std::sqrt((a1 + j) * (a1 - j) * (a2 + j) * (a2 - j) * (a3 - j) * (a3 + j));
  }
  double cz(double j) const { return jmin0 ? j : j + 1; }
  double sz(double j) const { return root(j); }
  double cx(double j) const { return jmin0 ? j + 1 : j; }
  double sx(double j) const { return root(j + 1); }
  double cy(double j) const { return 2 * j + 1; }
  double sy(double j) const { return jmin0 ? b1 : j * (j + 1) * b1 - b2; }
  double X(double j) const { return cx(j) * sx(j); }
  double Y(double j) const { return cy(j) * sy(j); }
  double Z(double j) const { return cz(j) * sz(j); }
};

// The three groupings of c * s * g that occur.
enum class Assoc { cs_g, sg_c, s_cg };
inline double mul3(double c, double s, double g, Assoc a)
{
  switch (a) {
    case Assoc::cs_g: {
      const double cs = c * s;
      return cs * g;
    }
    case Assoc::sg_c: {
      const double sg = s * g;
      return sg * c;
    }
    default: {
      const double cg = c * g;
      return s * cg;
    }
  }
}

// Unnormalised f(j), j = nmin..nmax, into f[0..nmax-nmin].
void recurse_two_sided(int nmin_i, int nmax_i, std::vector<double> &f, const Rec3j &fn)
{
  const double tiny = std::sqrt(std::sqrt(std::numeric_limits<double>::min()));
  const int size = nmax_i - nmin_i + 1;
  const double nmin = nmin_i, nmax = nmax_i;
  const Assoc xa = fn.jmin0 ? Assoc::sg_c : Assoc::cs_g;

  // From the top: r(n) = f(n)/f(n-1) while |r| <= 1.
  int i2 = size - 1;
  double n2 = nmax;
  const double ymax = fn.Y(nmax);
  if (std::fabs(ymax) < tiny) {
    f[i2] = 1.0;
  } else {
    double rn = -fn.Z(nmax) / ymax;
    f[i2] = rn;
    while (--i2 > 0) {
      n2 -= 1;
      const double den = fn.Y(n2) + mul3(fn.cx(n2), fn.sx(n2), rn, xa);
      rn = -fn.Z(n2) / den;
      if (std::fabs(rn) > 1.0) break;
      f[i2] = rn;
    }
    int k = i2;
    f[k] = 1.0;
    while (++k < size - 1) f[k + 1] *= f[k];
  }
  if (i2 == 0) return;

  // From the bottom: s(n) = f(n)/f(n+1) while |s| <= 1.
  int i1 = 0;
  double n1 = nmin;
  const double ymin = fn.Y(nmin);
  if (std::fabs(ymin) < tiny) {
    f[i1] = 1.0;
  } else {
    double sn = -fn.X(nmin) / ymin;
    f[i1] = sn;
    while (++i1 < i2) {
      n1 += 1;
      const double den = fn.Y(n1) + mul3(fn.cz(n1), fn.sz(n1), sn, Assoc::cs_g);
      sn = -fn.X(n1) / den;
      if (std::fabs(sn) > 1.0) break;
      f[i1] = sn;
    }
    int k = i1;
    f[k] = 1.0;
    while (--k > 0) f[k - 1] *= f[k];
  }
  if (i1 >= i2) return;

  // The linear recurrence upwards from i1 to i2, then rescale to meet the top part.
  double n = n1;
  if (i1 == 0) {
    f[1] = (-fn.Y(n) * f[0]) / fn.X(n);
    n += 1;
    ++i1;
  }
  auto step = [&](int k, double nn, Assoc za, Assoc ya) {
    const double zf = mul3(fn.cz(nn), fn.sz(nn), f[k - 1], za);
    const double yf = mul3(fn.cy(nn), fn.sy(nn), f[k], ya);
    const double numer = -yf - zf;
    f[k + 1] = numer / fn.X(nn);
  };
  // Groupings of (Z f[k-1], Y f[k]) in the even and odd steps of the unrolled loop and in
  // the last one or two steps.
  const Assoc ze = Assoc::sg_c, ye = fn.jmin0 ? Assoc::sg_c : Assoc::s_cg;
  const Assoc zo = fn.jmin0 ? Assoc::cs_g : Assoc::sg_c, yo = Assoc::cs_g;
  const Assoc z1 = Assoc::cs_g, y1 = fn.jmin0 ? Assoc::cs_g : Assoc::sg_c;
  const Assoc z2 = Assoc::cs_g, y2 = Assoc::cs_g;
  int k = i1, remaining = i2 - i1;
  while (remaining > 2) {
    step(k++, n, ze, ye);
    n += 1;
    step(k++, n, zo, yo);
    n += 1;
    remaining -= 2;
  }
  step(k++, n, z1, y1);
  n += 1;
  if (remaining == 2) step(k, n, z2, y2);

  const double scale = 1.0 / f[i2];
  for (int kk = 0; kk <= i2; ++kk) f[kk] *= scale;
}

// (j1 j2 j3; m1 m2 m3).
double wigner_3j(int j1, int m1, int j2, int m2, int j3, int m3)
{
  if (m1 + m2 + m3 != 0) return 0.0;
  if (std::abs(m1) > j1 || std::abs(m2) > j2) return 0.0;
  const int jmin = std::max(std::abs(j1 - j2), std::abs(m1 + m2));
  const int jmax = j1 + j2;
  if (j3 < jmin || j3 > jmax) return 0.0;
  int parity = j1 - j2 + m1 + m2;
  const double sign[2] = {1.0, -1.0};
  const double jj1 = static_cast<double>(2 * jmin + 1);
  if (jmin == jmax) return sign[parity & 1] / std::sqrt(jj1);

  std::vector<double> f(jmax - jmin + 1);
  recurse_two_sided(jmin, jmax, f, Rec3j(j1, j2, m1, m2, jmin == 0));
  // sum (2j + 1) f^2 as two interleaved partial sums (even and odd j - jmin), then the
  // last term when their number is odd: the -Ofast build's vectorised reduction.
  const int size = static_cast<int>(f.size());
  double even = 0.0, odd = 0.0;
  for (int i = 0; i + 1 < size; i += 2) {
    const double f0 = f[i] * f[i], f1 = f[i + 1] * f[i + 1];
    even += f0 * (jj1 + 2.0 * i);
    odd += f1 * (jj1 + 2.0 * (i + 1));
  }
  double sum = odd + even;
  if (size % 2) {
    const double fl = f[size - 1] * f[size - 1];
    sum = fl * (jj1 + 2.0 * (size - 1)) + sum;
  }
  parity += static_cast<int>(f.back() < 0.0);
  const double scale = sign[parity & 1] / std::sqrt(sum);
  return f[j3 - jmin] * scale;
}

// Triples (child a, child b, parent) of the coupling tree; node ids 0..r-1 are the leaves,
// r..2r-3 the intermediate nodes (LS[id - r]) and 2r-2 the root (L = 0).
std::vector<int> coupling_tree(int rank)
{
  std::vector<int> tree;
  if (rank < 2) return tree;
  const int root = 2 * rank - 2;
  int next = rank;
  std::deque<int> leaves, inner;
  for (int i = 0; i < rank; ++i) leaves.push_back(i);
  auto new_node = [&](bool last) { return last ? root : next++; };
  // Pair the leaves; a pair is the root only for rank 2.
  for (int i = 0; i < rank / 2; ++i) {
    const int a = leaves.front();
    leaves.pop_front();
    const int b = leaves.front();
    leaves.pop_front();
    const int c = new_node(rank == 2);
    tree.insert(tree.end(), {a, b, c});
    inner.push_back(c);
  }
  // Pair the intermediate nodes in creation order; the final pairing is the root unless a
  // leaf is left over (odd rank), which couples to the last intermediate node instead.
  while (inner.size() > 1) {
    const int a = inner.front();
    inner.pop_front();
    const int b = inner.front();
    inner.pop_front();
    const bool last = inner.empty() && leaves.empty();
    const int c = new_node(last);
    tree.insert(tree.end(), {a, b, c});
    inner.push_back(c);
  }
  if (!leaves.empty()) tree.insert(tree.end(), {inner.front(), leaves.front(), root});
  return tree;
}

std::string join(const std::vector<int> &v)
{
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  s << "]";
  return s.str();
}

}    // namespace

double clebsch_gordan(int l1, int m1, int l2, int m2, int L, int M)
{
  if (m1 + m2 != M) return 0.0;
  if (std::abs(m1) > l1 || std::abs(m2) > l2 || std::abs(M) > L) return 0.0;
  if (L < std::abs(l1 - l2) || L > l1 + l2) return 0.0;
  // <l1 m1 l2 m2 | L M> = (-1)^(l1 - l2 + M) sqrt(2L + 1) (l1 l2 L; m1 m2 -M)
  const double phase = ((l1 - l2 + M) % 2) ? -1.0 : 1.0;
  const double prefactor = phase * std::sqrt(2.0 * L + 1.0);
  return prefactor * wigner_3j(l1, m1, l2, m2, L, -M);
}

void validate_ls_LS(const std::vector<int> &ls, const std::vector<int> &LS)
{
  const int rank = static_cast<int>(ls.size());
  auto fail = [&](const std::string &why) {
    throw std::invalid_argument("invalid B function ls=" + join(ls) + " LS=" + join(LS) + ": " + why);
  };
  if (rank < 1) fail("rank must be at least 1");
  for (int l : ls)
    if (l < 0) fail("negative l");
  for (int l : LS)
    if (l < 0) fail("negative LS");
  const int expected = rank > 2 ? rank - 2 : 0;
  if (static_cast<int>(LS.size()) != expected)
    fail("expected " + std::to_string(expected) + " intermediate LS values");
  if (rank == 1 && ls[0] != 0) fail("a rank-1 function must have l = 0");
  if (rank == 2 && ls[0] != ls[1]) fail("a rank-2 function must have equal ls");
  if (rank >= 3) {
    if (rank % 2 == 1 && LS.back() != ls.back())
      fail("for odd rank the last LS must equal the last l");
    if (rank % 2 == 0 && rank >= 4 && LS[rank - 3] != LS[rank - 4])
      fail("for even rank the last two LS must be equal");
  }
  int sum = 0;
  for (int l : ls) sum += l;
  if (sum % 2) fail("the sum of ls must be even");
}

std::vector<MsCoupling> invariant_ms_couplings(const std::vector<int> &ls,
                                               const std::vector<int> &LS, bool half_basis)
{
  validate_ls_LS(ls, LS);
  const int rank = static_cast<int>(ls.size());
  std::vector<MsCoupling> out;
  if (rank == 1) {
    out.push_back({{0}, 1.0});
    return out;
  }
  const std::vector<int> tree = coupling_tree(rank);
  std::vector<int> lnode(2 * rank - 1, 0);
  for (int i = 0; i < rank; ++i) lnode[i] = ls[i];
  for (int i = 0; i < rank - 2; ++i) lnode[rank + i] = LS[i];
  // lnode[2 * rank - 2] = 0: the invariant

  std::vector<int> ms(rank), mnode(2 * rank - 1);
  for (int i = 0; i < rank; ++i) ms[i] = -ls[i];
  while (true) {
    int msum = 0;
    for (int m : ms) msum += m;
    int sign = 0;
    for (int m : ms)
      if (m != 0) {
        sign = m > 0 ? 1 : -1;
        break;
      }
    if (msum == 0 && !(half_basis && sign < 0)) {
      for (int i = 0; i < rank; ++i) mnode[i] = ms[i];
      double c = 1.0;
      for (size_t t = 0; t < tree.size() && c != 0.0; t += 3) {
        const int a = tree[t], b = tree[t + 1], p = tree[t + 2];
        mnode[p] = mnode[a] + mnode[b];
        if (std::abs(mnode[p]) > lnode[p]) {
          c = 0.0;
          break;
        }
        c *= clebsch_gordan(lnode[a], mnode[a], lnode[b], mnode[b], lnode[p], mnode[p]);
      }
      if (c != 0.0) {
        if (half_basis && sign > 0) c *= 2.0;
        out.push_back({ms, c});
      }
    }
    // Odometer with m_0 fastest.
    int t = 0;
    while (t < rank && ms[t] == ls[t]) {
      ms[t] = -ls[t];
      ++t;
    }
    if (t == rank) break;
    ++ms[t];
  }
  return out;
}

}    // namespace mlff_ace
