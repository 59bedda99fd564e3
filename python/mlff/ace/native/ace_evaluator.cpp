/* The ACE evaluator: per atom, one pass over the neighbours builds the atomic base A,
 * a product graph gives the densities rho_p and the energy, a reverse sweep over the same
 * graph gives dE/dA, and a second pass over the neighbours turns that into dE/dr_ij.
 *
 * Formulas (ML-PACE conventions, DESIGN.md "ACE facts"):
 *   A_{mu n l m} = sum_j R_nl(r_ij) Y_lm(r^_ij),  A1_{mu k} = sum_j g_k(r_ij)
 *   rho_p = sum_f sum_ms ctilde_{ms,p} Re(prod_t A_{mu_t n_t l_t m_t}),  E = sum_p w_p F(rho_p)
 * with core repulsion / ZBL and E0 on top. Only A with m >= 0 is accumulated:
 * A_{l,-m} = (-1)^m conj(A_{l,m}) fills the negative m that the functions use.
 *
 * Radial functions: g_k(r) and the core repulsion come from ML-PACE's cubic Hermite tables
 * (RadialMode::Spline, the default: the numbers of pyace and pair_style pace) or from the
 * formulas (RadialMode::Analytic); R_nl = sum_k crad_nlk g_k either way (the Hermite
 * interpolant is linear in the data, so this equals ML-PACE's own R_nl tables), which
 * keeps the tables at ~nradbase functions per bond instead of nradmax x (lmax + 1).
 *
 * Speed: the products of all ms-combinations of a species are merged into one graph
 * (identical products once, each product = an existing smaller product x one A), so the
 * forward and reverse sweeps cost one and two complex multiplications per graph node
 * instead of O(rank) per combination; the densities and the seeds of the reverse sweep are
 * dense dot products over the graph's values. Per neighbour: R_nl as a k-by-(n, l) product
 * in registers, A accumulated for m >= 0 only, and forces from Legendre polynomials and
 * powers of (x + iy) without forming dY. Every buffer lives in Impl and only grows: no
 * allocation per atom once warmed up. Not thread-safe: one Evaluator per thread.
 */
#include "ace_evaluator.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>

namespace mlff_ace {

namespace {

constexpr double kPi = 3.14159265358979323846;
// e^2 / (4 pi eps0) in eV Angstrom, and the universal ZBL screening function
// (the coefficients of LAMMPS pair_style zbl, which ML-PACE uses too)
constexpr double kZblK = 14.399645351950543;
constexpr double kZblC[4] = {0.18175, 0.50986, 0.28022, 0.02817};
constexpr double kZblD[4] = {-3.19980, -0.94229, -0.40290, -0.20162};

// ML-PACE's smooth step for inner cutoffs: 1 for x <= x_in - delta, 0 for x >= x_in, a
// quintic in between (value and d/dx).
inline void poly_cutoff(double x, double x_in, double delta, double &fc, double &dfc)
{
  if (x <= x_in - delta) {
    fc = 1.0;
    dfc = 0.0;
  } else if (x >= x_in) {
    fc = 0.0;
    dfc = 0.0;
  } else {
    const double t = 1.0 - 2.0 * (1.0 + (x - x_in) / delta), t2 = t * t;
    fc = 0.5 + 3.75 * (t / 4.0 - t * t2 / 6.0 + t * t2 * t2 / 20.0);
    dfc = -7.5 / delta * (0.25 - t2 / 2.0 + t2 * t2 / 4.0);
  }
}

// Embedding F(rho) and dF/drho. FinnisSinclair is ML-PACE's sign(x)|x|^m made smooth at 0
// with a cubic-exponential blend of width 1e-6; ShiftedScaled is DESIGN.md's formula.
inline void embedding(bool shifted_scaled, double rho, double mexp, double &F, double &dF)
{
  if (shifted_scaled) {
    if (std::abs(mexp - 1.0) < 1e-10) {
      F = rho;
      dF = 1.0;
      return;
    }
    const double a = std::abs(rho), e = std::exp(-a), nx = 1.0 / mexp;
    const double xoff = std::pow(nx, nx / (1.0 - nx)) * e;
    const double yoff = std::pow(nx, 1.0 / (1.0 - nx)) * e;
    const double sign = std::signbit(rho) ? -1.0 : 1.0;
    F = sign * (std::pow(xoff + a, mexp) - yoff);
    dF = yoff + mexp * (1.0 - xoff) * std::pow(xoff + a, mexp - 1.0);
    return;
  }
  const double w = 1e6, lambda = std::pow(1.0 / w, mexp - 1.0);
  if (std::abs(rho) > 1e-10) {
    const double a = std::abs(rho), am = std::pow(a, mexp), w3a3 = std::pow(w * a, 3);
    const double g = w3a3 > 30.0 ? 0.0 : std::exp(-w3a3);
    const double dg = -3.0 * w * w * w * a * a * g;
    const double sign = std::signbit(rho) ? -1.0 : 1.0;
    F = sign * ((1.0 - g) * am + lambda * g * a);
    dF = mexp * std::pow(a, mexp - 1.0) * (1.0 - g) - am * dg + lambda * dg * a + lambda * g;
  } else {
    F = lambda * rho;
    dF = lambda;
  }
}

enum class RadialKind { ChebExpCos, ChebPow, ChebLinear, SBessel };
enum class InnerKind { Density, Distance, Zbl };

inline int lm_index(int l, int m) { return l * (l + 1) / 2 + m; }

// Complex spherical harmonics with the Condon-Shortley phase, normalised so that Y00 = 1:
// Y_lm(r^) = P_lm(z) (x + i y)^m for m >= 0, P_lm the 4pi-normalised associated Legendre
// polynomial without its (1 - z^2)^(m/2) factor (which (x + iy)^m carries). Y is then a
// polynomial g(x, y, z) on the unit sphere, and r grad_r Y = grad g - r^ (r^ . grad g).
class SphericalHarmonics {
 public:
  void init(int lmax)
  {
    const int n = lm_index(lmax, lmax) + 1;
    a_.assign(n, 0.0);
    b_.assign(n, 0.0);
    p_.assign(n, 0.0);
    dp_.assign(n, 0.0);
    diag_.assign(lmax + 1, 0.0);
    sub_.assign(lmax + 1, 0.0);
    cre_.assign(lmax + 1, 0.0);
    cim_.assign(lmax + 1, 0.0);
    for (int m = 1; m <= lmax; ++m) diag_[m] = -std::sqrt((2.0 * m + 1.0) / (2.0 * m));
    for (int m = 0; m <= lmax; ++m) sub_[m] = std::sqrt(2.0 * m + 3.0);
    for (int l = 2; l <= lmax; ++l)
      for (int m = 0; m <= l - 2; ++m) {
        const double l2 = double(l) * l, m2 = double(m) * m, lm1 = double(l - 1) * (l - 1);
        a_[lm_index(l, m)] = std::sqrt((4.0 * l2 - 1.0) / (l2 - m2));
        b_[lm_index(l, m)] = std::sqrt((lm1 - m2) / (4.0 * lm1 - 1.0));
      }
  }

  // P_lm(z) (and dP_lm/dz) and (x + iy)^m for l, m <= lmax: see p(), dp(), c_re(), c_im().
  void prepare(double x, double y, double z, int lmax, bool derivatives)
  {
    legendre(z, lmax, derivatives);
    cre_[0] = 1.0;
    cim_[0] = 0.0;
    for (int m = 1; m <= lmax; ++m) {
      cre_[m] = cre_[m - 1] * x - cim_[m - 1] * y;
      cim_[m] = cre_[m - 1] * y + cim_[m - 1] * x;
    }
  }
  // Y_lm into yc interleaved (yc[2 lm] = Re, yc[2 lm + 1] = Im), lm = l (l + 1) / 2 + m.
  void values(double x, double y, double z, int lmax, double *__restrict yc)
  {
    prepare(x, y, z, lmax, false);
    for (int m = 0; m <= lmax; ++m)
      for (int l = m, i = lm_index(m, m); l <= lmax; i += l + 1, ++l) {
        yc[2 * i] = p_[i] * cre_[m];
        yc[2 * i + 1] = p_[i] * cim_[m];
      }
  }
  const double *p() const { return p_.data(); }
  const double *dp() const { return dp_.data(); }
  const double *c_re() const { return cre_.data(); }
  const double *c_im() const { return cim_.data(); }

 private:
  std::vector<double> a_, b_, diag_, sub_, p_, dp_, cre_, cim_;

  void legendre(double z, int lmax, bool derivatives)
  {
    p_[0] = 1.0;
    dp_[0] = 0.0;
    for (int m = 0; m <= lmax; ++m) {
      const int mm = lm_index(m, m);
      if (m > 0) {
        p_[mm] = diag_[m] * p_[lm_index(m - 1, m - 1)];
        dp_[mm] = 0.0;
      }
      if (m + 1 > lmax) continue;
      const int m1 = mm + m + 1;    // (m + 1, m)
      p_[m1] = sub_[m] * z * p_[mm];
      dp_[m1] = sub_[m] * p_[mm];
      for (int l = m + 2, i2 = mm, i1 = m1, i = m1 + m + 2; l <= lmax; ++l) {
        p_[i] = a_[i] * (z * p_[i1] - b_[i] * p_[i2]);
        if (derivatives) dp_[i] = a_[i] * (p_[i1] + z * dp_[i1] - b_[i] * dp_[i2]);
        i2 = i1;
        i1 = i;
        i += l + 1;
      }
    }
  }
};

// Two doubles as one value (SSE2, the x86-64 baseline; GCC and Clang): the radial sums
// below keep their accumulators in registers this way, which generic code does not get.
typedef double v2d __attribute__((vector_size(16)));

inline v2d load2(const double *p)
{
  v2d x;
  std::memcpy(&x, p, sizeof x);
  return x;
}
inline void store2(double *p, v2d x) { std::memcpy(p, &x, sizeof x); }
// complex product of (re, im) pairs
inline v2d cmul(v2d x, v2d y)
{
  const v2d xr = {x[0], x[0]}, xi = {x[1], x[1]}, ys = {-y[1], y[0]};
  return xr * y + xi * ys;
}

// R_nl = sum_k crad_t[k][j] g_k (and dR with dg) for the bond's used (n, l) = j; nnl_pad is
// a multiple of 4 so that each block of four sums stays in registers across k.
void radial_matvec(const double *__restrict ct, int kc, int nnl_pad, const double *__restrict g,
                   const double *__restrict dg, double *__restrict R, double *__restrict dR)
{
  for (int jb = 0; jb < nnl_pad; jb += 4) {
    v2d r0 = {0.0, 0.0}, r1 = r0, d0 = r0, d1 = r0;
    const double *c = ct + jb;
    for (int k = 0; k < kc; ++k, c += nnl_pad) {
      v2d ca, cb;
      std::memcpy(&ca, c, sizeof ca);
      std::memcpy(&cb, c + 2, sizeof cb);
      const v2d gv = {g[k], g[k]}, dv = {dg[k], dg[k]};
      r0 += ca * gv;
      r1 += cb * gv;
      d0 += ca * dv;
      d1 += cb * dv;
    }
    std::memcpy(R + jb, &r0, sizeof r0);
    std::memcpy(R + jb + 2, &r1, sizeof r1);
    std::memcpy(dR + jb, &d0, sizeof d0);
    std::memcpy(dR + jb + 2, &d1, sizeof d1);
  }
}

// a += f y (and a2 += f2 y) over the l + 1 complex entries of one (n, l) block, as pairs
// (the compiler does not vectorise the scalar form once these are inlined); with l a
// compile-time constant the loops unroll completely.
template <int L>
inline void axpy_block(double *a, const double *y, double f)
{
  const v2d fv = {f, f};
  for (int m = 0; m <= L; ++m) store2(a + 2 * m, load2(a + 2 * m) + fv * load2(y + 2 * m));
}
template <int L>
inline void axpy2_block(double *a, double *a2, const double *y, double f, double f2)
{
  const v2d fv = {f, f}, fv2 = {f2, f2};
  for (int m = 0; m <= L; ++m) {
    const v2d ym = load2(y + 2 * m);
    store2(a + 2 * m, load2(a + 2 * m) + fv * ym);
    store2(a2 + 2 * m, load2(a2 + 2 * m) + fv2 * ym);
  }
}
inline void axpy_l(int l, double *a, const double *y, double f)
{
  switch (l) {
    case 0: return axpy_block<0>(a, y, f);
    case 1: return axpy_block<1>(a, y, f);
    case 2: return axpy_block<2>(a, y, f);
    case 3: return axpy_block<3>(a, y, f);
    case 4: return axpy_block<4>(a, y, f);
    case 5: return axpy_block<5>(a, y, f);
    case 6: return axpy_block<6>(a, y, f);
    case 7: return axpy_block<7>(a, y, f);
    case 8: return axpy_block<8>(a, y, f);
    default: {
      const v2d fv = {f, f};
      for (int m = 0; m <= l; ++m) store2(a + 2 * m, load2(a + 2 * m) + fv * load2(y + 2 * m));
    }
  }
}
inline void axpy2_l(int l, double *a, double *a2, const double *y, double f, double f2)
{
  switch (l) {
    case 0: return axpy2_block<0>(a, a2, y, f, f2);
    case 1: return axpy2_block<1>(a, a2, y, f, f2);
    case 2: return axpy2_block<2>(a, a2, y, f, f2);
    case 3: return axpy2_block<3>(a, a2, y, f, f2);
    case 4: return axpy2_block<4>(a, a2, y, f, f2);
    case 5: return axpy2_block<5>(a, a2, y, f, f2);
    case 6: return axpy2_block<6>(a, a2, y, f, f2);
    case 7: return axpy2_block<7>(a, a2, y, f, f2);
    case 8: return axpy2_block<8>(a, a2, y, f, f2);
    default: {
      const v2d fv = {f, f}, fv2 = {f2, f2};
      for (int m = 0; m <= l; ++m) {
        const v2d ym = load2(y + 2 * m);
        store2(a + 2 * m, load2(a + 2 * m) + fv * ym);
        store2(a2 + 2 * m, load2(a2 + 2 * m) + fv2 * ym);
      }
    }
  }
}

// Everything about one (centre species, neighbour species) bond the evaluator needs.
struct BondPlan {
  RadialKind kind = RadialKind::ChebPow;
  double lambda = 1.0, rcut = 0.0, rcut2 = 0.0, dcut = 0.0;
  double r_zero = -1.0;                  // the radial basis is zero for r <= r_zero
  bool taper = false;                    // "distance": g *= 1 - fc(r; rcut_in, dcut_in)
  double taper_in = 0.0, taper_delta = 0.0;
  int ng = 0;                            // g_k evaluated for k < ng
  int kc = 0;                            // rows of crad_t: the bond's nradbasemax
  int nnl = 0;                           // radial functions R_nl the species' functions use
  int nnl_pad = 0;                       // nnl rounded up to a multiple of 4
  int lmax_used = -1;
  // per used (n, l): l, and in doubles the offsets of the leaf A_{n l 0} and of Y_l0
  std::vector<int> nl_l, nl_leaf2, nl_yoff;
  std::vector<double> crad_t;            // [k][nnl_pad]: R = crad_t^T g, zero-padded
  int nk1 = 0;                           // rank-1 radial indices used
  std::vector<int> k1_k, k1_leaf;
  std::vector<double> sb_pf, sb_alpha, sb_beta;    // SBessel recursion constants
  // RadialMode::Spline: rows n = 1..nlut of [c0][c1][c2][c3] x [g_0 .. g_{ng-1}, core],
  // the cubic on [n h, (n + 1) h) in w = r / h - n (ML-PACE's SplineInterpolator layout
  // of knots and coefficients, so the same numbers)
  int spl_nf = 0, spl_nlut = 0;
  double spl_scale = 0.0;                // 1 / h
  std::vector<double> spline;
  // core repulsion: density/distance (pre e^{-lam r^2}/r), or the ZBL pair term
  bool core = false;
  double pre = 0.0, lam = 0.0;
  double zbl_a = 0.0, zbl_pref = 0.0, zbl_in = 0.0, zbl_A = 0.0, zbl_B = 0.0, zbl_C = 0.0;
  double rcut_in = 0.0, dcut_in = 0.0;   // ZBL: distance of the nearest neighbour to the region
};

struct SpeciesPlan {
  int ndensity = 1;
  std::vector<double> fs_w, fs_m;
  bool shifted_scaled = false;
  double rho_cut = 0.0, drho_cut = 0.0, E0 = 0.0;
  std::vector<BondPlan> bonds;           // by neighbour species
  int max_nnl = 0, max_nk1 = 0;
  // values v: [base leaves: A (mu, n, l, m >= 0)] [mirrored leaves: m < 0] [rank-1 leaves]
  //           [graph nodes: v[a] * v[b]]
  int n_base = 0, n_mirror = 0, n_rank1 = 0, n_leaves = 0;
  std::vector<int> mirror_src;
  std::vector<double> mirror_sign;
  std::vector<int> node_a, node_b;
  // rho_p = sum_v coef[p][v - coef_begin] Re V[v] over the values from coef_begin (rank-1
  // leaves and nodes): dense, since nearly every node is a product some function uses
  int coef_begin = 0;
  std::vector<double> coef;              // [ndensity][n_values - coef_begin]
  std::vector<int> proj_begin, proj_idx; // per function in file order: its products
  std::vector<double> proj_c;
  int ms_total = 0, terminals = 0;
};

double zbl_phi(double x, double &d1, double &d2)
{
  double p = 0.0;
  d1 = d2 = 0.0;
  for (int k = 0; k < 4; ++k) {
    const double t = kZblC[k] * std::exp(kZblD[k] * x);
    p += t;
    d1 += t * kZblD[k];
    d2 += t * kZblD[k] * kZblD[k];
  }
  return p;
}

// phi(r/a)/r and its first two r-derivatives
void zbl_pair(double r, double a, double &E, double &dE, double &d2E)
{
  double d1, d2;
  const double p = zbl_phi(r / a, d1, d2);
  E = p / r;
  dE = -p / (r * r) + d1 / (a * r);
  d2E = 2.0 * p / (r * r * r) - 2.0 * d1 / (a * r * r) + d2 / (a * a * r);
}

}    // namespace

struct Evaluator::Impl {
  Model model;
  RadialMode mode = RadialMode::Spline;
  InnerKind inner = InnerKind::Density;
  double cutoff = 0.0;
  std::vector<SpeciesPlan> plans;
  SphericalHarmonics sh;
  int nlm = 1, max_nnl = 0, max_nk1 = 0, max_ng = 1, max_values = 0;

  // per-atom work space, grown on demand; complex arrays interleaved (re, im)
  std::vector<double> values, adjoints, wr, wv;
  std::vector<double> gk, dgk, cheb, dcheb, u2, sinc_v, dsinc_v;
  std::vector<double> yc;
  std::vector<int> nb_jj;
  std::vector<const BondPlan *> nb_bond;
  std::vector<double> nb_geo, nb_R, nb_dR, nb_dg1, nb_dcr;
  std::vector<double> rho, dF;
  // compute(): edges grouped by centre
  std::vector<int64_t> edge_start, edge_order;
  std::vector<int> mu_buf;
  std::vector<double> rij_buf, drij_buf;

  Impl(const Model &m, RadialMode mode);
  void build_plan(int mu_i);
  void build_spline(BondPlan &b);
  void spline_lookup(const BondPlan &b, double r, double &cr, double &dcr);
  void radial_basis(const BondPlan &b, double r);
  void core_term(const BondPlan &b, double r, double &cr, double &dcr) const;
  double atom(int mu_i, int jnum, const int *mu_j, const double *rij, double *drij, AtomResult *extra);
};

Evaluator::Impl::Impl(const Model &m, RadialMode mode_) : model(m), mode(mode_)
{
  model.validate();
  const std::string type = model.inner_cutoff_type();
  inner = type == "zbl" ? InnerKind::Zbl : type == "distance" ? InnerKind::Distance : InnerKind::Density;
  cutoff = model.max_cutoff();
  int lmax = 0;
  for (const auto &b : model.bonds) lmax = std::max(lmax, b.second.lmax);
  sh.init(lmax);
  nlm = lm_index(lmax, lmax) + 1;
  plans.resize(model.nelements());
  for (int mu = 0; mu < model.nelements(); ++mu) build_plan(mu);
  for (const auto &p : plans)
    for (const auto &b : p.bonds) max_ng = std::max(max_ng, b.ng);
  gk.resize(max_ng + 2);    // the tables are built with the analytic functions
  dgk.resize(max_ng + 2);
  cheb.resize(max_ng + 2);
  dcheb.resize(max_ng + 2);
  u2.resize(max_ng + 2);
  sinc_v.resize(max_ng + 3);
  dsinc_v.resize(max_ng + 3);
  if (mode == RadialMode::Spline)
    for (auto &p : plans)
      for (auto &b : p.bonds) build_spline(b);
  for (const auto &p : plans) {
    max_nnl = std::max(max_nnl, p.max_nnl);    // padded sizes
    max_nk1 = std::max(max_nk1, p.max_nk1);
    max_values = std::max(max_values, p.n_leaves + static_cast<int>(p.node_a.size()));
  }
  values.resize(2 * static_cast<size_t>(max_values));
  adjoints.resize(2 * static_cast<size_t>(max_values));
  wr.resize(2 * nlm);
  wv.resize(2 * nlm);
  yc.resize(2 * nlm);
}

void Evaluator::Impl::build_plan(int mu_i)
{
  SpeciesPlan &P = plans[mu_i];
  const Embedding &emb = model.embeddings[mu_i];
  const int nel = model.nelements();
  P.ndensity = emb.ndensity;
  for (int p = 0; p < emb.ndensity; ++p) {
    P.fs_w.push_back(emb.FS_parameters[2 * p]);
    P.fs_m.push_back(emb.FS_parameters[2 * p + 1]);
  }
  P.shifted_scaled = emb.npoti == "FinnisSinclairShiftedScaled";
  P.rho_cut = emb.rho_core_cutoff;
  P.drho_cut = emb.drho_core_cutoff;
  P.E0 = model.E0[mu_i];
  const auto &fns = model.functions[mu_i];

  // which A the functions use: (n, l) per neighbour species, k for rank 1
  std::vector<std::set<std::pair<int, int>>> used_nl(nel);
  std::vector<std::set<int>> used_k(nel);
  for (const Function &f : fns) {
    if (f.rank == 1)
      used_k[f.mus[0]].insert(f.ns[0] - 1);
    else
      for (int t = 0; t < f.rank; ++t) used_nl[f.mus[t]].insert({f.ns[t] - 1, f.ls[t]});
  }
  std::map<std::tuple<int, int, int>, int> base_of;    // (mu, n, l) -> leaf of m = 0
  int next = 0;
  for (int mu = 0; mu < nel; ++mu)
    for (const auto &nl : used_nl[mu]) {
      base_of[{mu, nl.first, nl.second}] = next;
      next += nl.second + 1;
    }
  P.n_base = next;
  std::map<std::tuple<int, int, int, int>, int> mirror_of;
  for (const Function &f : fns) {
    if (f.rank == 1) continue;
    const int nms = f.num_ms_combs();
    for (int c = 0; c < nms; ++c)
      for (int t = 0; t < f.rank; ++t) {
        const int m = f.ms_combs[static_cast<size_t>(c) * f.rank + t];
        if (m < 0) mirror_of.emplace(std::make_tuple(f.mus[t], f.ns[t] - 1, f.ls[t], m), 0);
      }
  }
  for (auto &e : mirror_of) {
    const int m = std::get<3>(e.first);
    e.second = next++;
    P.mirror_src.push_back(base_of.at({std::get<0>(e.first), std::get<1>(e.first), std::get<2>(e.first)}) - m);
    P.mirror_sign.push_back((m % 2 == 0) ? 1.0 : -1.0);
  }
  P.n_mirror = static_cast<int>(mirror_of.size());
  std::map<std::pair<int, int>, int> rank1_of;
  for (int mu = 0; mu < nel; ++mu)
    for (int k : used_k[mu]) rank1_of[{mu, k}] = next++;
  P.n_rank1 = static_cast<int>(rank1_of.size());
  P.n_leaves = next;

  // bond plans
  P.bonds.resize(nel);
  for (int mu_j = 0; mu_j < nel; ++mu_j) {
    const Bond &bond = model.bonds.at({mu_i, mu_j});
    BondPlan &B = P.bonds[mu_j];
    const std::string &rb = bond.radbasename;
    B.kind = rb == "ChebExpCos" ? RadialKind::ChebExpCos
             : rb == "ChebPow"  ? RadialKind::ChebPow
             : rb == "ChebLinear" ? RadialKind::ChebLinear
                                  : RadialKind::SBessel;
    B.lambda = bond.radparameters.empty() ? 0.0 : bond.radparameters[0];
    B.rcut = bond.rcut;
    B.rcut2 = bond.rcut * bond.rcut;
    B.dcut = bond.dcut;
    B.rcut_in = bond.rcut_in;
    B.dcut_in = bond.dcut_in;
    if (inner == InnerKind::Zbl) {
      // ML-PACE means to switch the radial inner cutoff off for ZBL (the energy switch does
      // the blending) but resets it to (dcut_in == 0): with dcut_in = 0 the basis is zero up
      // to 1 Angstrom. pyace behaves so; so does this evaluator.
      B.r_zero = bond.dcut_in == 0.0 ? 1.0 : -1.0;
    } else {
      B.r_zero = bond.rcut_in - bond.dcut_in;
      B.taper = inner == InnerKind::Distance;
      B.taper_in = bond.rcut_in;
      B.taper_delta = bond.dcut_in;
    }
    for (const auto &nl : used_nl[mu_j]) {
      const int l = nl.second;
      B.nl_l.push_back(l);
      B.nl_leaf2.push_back(2 * base_of.at({mu_j, nl.first, l}));
      B.nl_yoff.push_back(2 * lm_index(l, 0));
      B.lmax_used = std::max(B.lmax_used, l);
    }
    B.nnl = static_cast<int>(B.nl_l.size());
    B.nnl_pad = (B.nnl + 3) / 4 * 4;
    B.kc = B.nnl ? bond.nradbasemax : 0;
    B.crad_t.assign(static_cast<size_t>(B.kc) * B.nnl_pad, 0.0);
    int j = 0;
    for (const auto &nl : used_nl[mu_j]) {
      // n or l beyond this bond's own sizes (but within the potential's) have R = 0
      if (nl.first < bond.nradmax && nl.second <= bond.lmax)
        for (int k = 0; k < B.kc; ++k)
          B.crad_t[static_cast<size_t>(k) * B.nnl_pad + j] = bond.crad(nl.first, nl.second, k);
      ++j;
    }
    for (int k : used_k[mu_j]) {
      B.k1_k.push_back(k);
      B.k1_leaf.push_back(rank1_of.at({mu_j, k}));
    }
    B.nk1 = static_cast<int>(B.k1_k.size());
    B.ng = std::max(B.kc, B.nk1 ? B.k1_k.back() + 1 : 0);
    if (B.kind == RadialKind::SBessel) {
      double d_prev = 1.0;
      for (int n = 0; n < B.ng; ++n) {
        const double a = n + 1.0, b = n + 2.0;
        B.sb_pf.push_back(((n % 2) ? -1.0 : 1.0) * std::sqrt(2.0) * kPi / std::pow(B.rcut, 1.5) * a * b /
                          std::sqrt(a * a + b * b));
        if (n == 0) {
          B.sb_alpha.push_back(0.0);
          B.sb_beta.push_back(1.0);
        } else {
          const double e = double(n) * n * (n + 2.0) * (n + 2.0) / (4.0 * std::pow(n + 1.0, 4) + 1.0);
          const double d = 1.0 - e / d_prev;
          B.sb_alpha.push_back(std::sqrt(e / d_prev));
          B.sb_beta.push_back(1.0 / std::sqrt(d));
          d_prev = d;
        }
      }
    }
    if (inner == InnerKind::Zbl) {
      const int zi = atomic_number(model.elements[mu_i]), zj = atomic_number(model.elements[mu_j]);
      B.core = true;
      B.zbl_a = 0.46850 / (std::pow(zi, 0.23) + std::pow(zj, 0.23));
      // half of the pair energy per atom of the pair, smoothly shifted to zero at rcut
      B.zbl_pref = bond.prehc * kZblK / 2.0 * zi * zj;
      B.zbl_in = bond.rcut - bond.dcut;
      double Ec, dEc, d2Ec;
      zbl_pair(bond.rcut, B.zbl_a, Ec, dEc, d2Ec);
      const double d = bond.dcut;
      B.zbl_A = (-3.0 * dEc + d * d2Ec) / (d * d);
      B.zbl_B = (2.0 * dEc - d * d2Ec) / (d * d * d);
      B.zbl_C = -Ec + 0.5 * d * dEc - d * d * d2Ec / 12.0;
    } else {
      B.pre = std::abs(bond.prehc);    // ML-PACE keeps the repulsion positive and decaying
      B.lam = std::abs(bond.lambdahc);
      B.core = B.pre != 0.0;
    }
    P.max_nnl = std::max(P.max_nnl, B.nnl_pad);
    P.max_nk1 = std::max(P.max_nk1, B.nk1);
  }

  auto leaf = [&](int mu, int n, int l, int m) {
    return m >= 0 ? base_of.at({mu, n, l}) + m : mirror_of.at({mu, n, l, m});
  };
  // distinct products (sorted leaf tuples) and the ctilde they carry
  std::map<std::vector<int>, int> tuple_id;
  std::vector<std::vector<int>> tuples;
  std::vector<std::vector<double>> tuple_c;
  std::vector<std::vector<int>> fn_tuples(fns.size());
  const int nd = P.ndensity;
  for (size_t fi = 0; fi < fns.size(); ++fi) {
    const Function &f = fns[fi];
    const int nms = f.num_ms_combs();
    P.ms_total += nms;
    for (int c = 0; c < nms; ++c) {
      std::vector<int> t(f.rank);
      if (f.rank == 1) {
        t[0] = rank1_of.at({f.mus[0], f.ns[0] - 1});
      } else {
        for (int r = 0; r < f.rank; ++r)
          t[r] = leaf(f.mus[r], f.ns[r] - 1, f.ls[r], f.ms_combs[static_cast<size_t>(c) * f.rank + r]);
        std::sort(t.begin(), t.end());
      }
      auto ins = tuple_id.emplace(t, static_cast<int>(tuples.size()));
      if (ins.second) {
        tuples.push_back(t);
        tuple_c.emplace_back(nd, 0.0);
      }
      const int id = ins.first->second;
      for (int p = 0; p < nd; ++p) tuple_c[id][p] += f.ctildes[static_cast<size_t>(c) * nd + p];
      fn_tuples[fi].push_back(id);
    }
  }

  // the product graph: each product of k > 1 leaves is (a product of k - 1 of them that
  // already exists, if any) x (the remaining leaf); built shortest first so that shorter
  // products are there to be reused
  std::map<std::vector<int>, int> value_of;
  std::function<int(const std::vector<int> &)> insert = [&](const std::vector<int> &t) -> int {
    if (t.size() == 1) return t[0];
    auto it = value_of.find(t);
    if (it != value_of.end()) return it->second;
    int a = -1, b = -1;
    std::vector<int> rest(t.size() - 1);
    for (size_t i = 0; i < t.size() && a < 0; ++i) {
      std::copy(t.begin(), t.begin() + i, rest.begin());
      std::copy(t.begin() + i + 1, t.end(), rest.begin() + i);
      if (rest.size() == 1) {
        a = rest[0];
      } else {
        auto r = value_of.find(rest);
        if (r != value_of.end()) a = r->second;
      }
      if (a >= 0) b = t[i];
    }
    if (a < 0) {
      a = insert(std::vector<int>(t.begin(), t.end() - 1));
      b = t.back();
    }
    const int id = P.n_leaves + static_cast<int>(P.node_a.size());
    P.node_a.push_back(a);
    P.node_b.push_back(b);
    value_of.emplace(t, id);
    return id;
  };
  std::vector<int> order(tuples.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::sort(order.begin(), order.end(), [&](int x, int y) {
    return tuples[x].size() != tuples[y].size() ? tuples[x].size() < tuples[y].size() : tuples[x] < tuples[y];
  });
  std::vector<int> value_of_tuple(tuples.size());
  for (int id : order) value_of_tuple[id] = insert(tuples[id]);

  const int nvalues = P.n_leaves + static_cast<int>(P.node_a.size());
  P.coef_begin = P.n_base + P.n_mirror;
  const int ncoef = nvalues - P.coef_begin;
  P.coef.assign(static_cast<size_t>(nd) * ncoef, 0.0);
  for (size_t id = 0; id < tuples.size(); ++id)
    for (int p = 0; p < nd; ++p) P.coef[static_cast<size_t>(p) * ncoef + value_of_tuple[id] - P.coef_begin] = tuple_c[id][p];
  P.terminals = static_cast<int>(tuples.size());
  for (size_t fi = 0; fi < fns.size(); ++fi) {
    P.proj_begin.push_back(static_cast<int>(P.proj_idx.size()));
    for (size_t c = 0; c < fn_tuples[fi].size(); ++c) {
      P.proj_idx.push_back(value_of_tuple[fn_tuples[fi][c]]);
      P.proj_c.push_back(fns[fi].ctildes[c * nd]);
    }
  }
  P.proj_begin.push_back(static_cast<int>(P.proj_idx.size()));
}

void Evaluator::Impl::build_spline(BondPlan &b)
{
  const int ng = b.ng, nf = ng + (b.core ? 1 : 0);
  b.spl_nf = nf;
  if (nf == 0) return;
  // knots as ML-PACE places them: nlut = floor(rcut / deltaSplineBins) intervals on [0, rcut]
  const int nlut = static_cast<int>(b.rcut / model.deltaSplineBins);
  if (nlut < 2)
    throw FormatError(model.where("deltaSplineBins") + ": " + std::to_string(model.deltaSplineBins) +
                      " leaves fewer than two spline intervals below rcut = " + std::to_string(b.rcut));
  const double scale = static_cast<double>(nlut) / b.rcut, h = 1.0 / scale;
  b.spl_nlut = nlut;
  b.spl_scale = scale;
  b.spline.assign(static_cast<size_t>(nlut + 1) * 4 * nf, 0.0);
  std::vector<double> f1(nf, 0.0), d1(nf, 0.0), f0(nf), d0(nf);
  // from the outermost knot inwards: beyond the last knot the functions are zero
  for (int n = nlut; n >= 1; --n) {
    const double r = h * n;
    if (r < b.rcut) {
      if (ng > 0) radial_basis(b, r);
      for (int k = 0; k < ng; ++k) {
        f0[k] = gk[k];
        d0[k] = dgk[k] * h;
      }
      if (b.core) {
        double cr, dcr;
        core_term(b, r, cr, dcr);
        f0[ng] = cr;
        d0[ng] = dcr * h;
      }
    } else {
      std::fill(f0.begin(), f0.end(), 0.0);
      std::fill(d0.begin(), d0.end(), 0.0);
    }
    double *row = b.spline.data() + static_cast<size_t>(n) * 4 * nf;
    for (int f = 0; f < nf; ++f) {
      row[f] = f0[f];
      row[nf + f] = d0[f];
      row[2 * nf + f] = 3.0 * (f1[f] - f0[f]) - d1[f] - 2.0 * d0[f];
      row[3 * nf + f] = -2.0 * (f1[f] - f0[f]) + d1[f] + d0[f];
      f1[f] = f0[f];
      d1[f] = d0[f];
    }
  }
}

// g_k, dg_k into gk, dgk and the core term from the spline tables.
void Evaluator::Impl::spline_lookup(const BondPlan &b, double r, double &cr, double &dcr)
{
  const int nf = b.spl_nf, ng = b.ng;
  cr = dcr = 0.0;
  if (nf == 0) return;
  const double x = r * b.spl_scale;
  const int n = static_cast<int>(std::floor(x));
  if (n <= 0)
    throw std::domain_error("ACE: two atoms at a distance of " + std::to_string(r) +
                            " Angstrom, below the first radial spline knot");
  if (n >= b.spl_nlut) {
    std::fill(gk.begin(), gk.begin() + ng, 0.0);
    std::fill(dgk.begin(), dgk.begin() + ng, 0.0);
    return;
  }
  const double w = x - n, w2 = w * w, w3 = w2 * w, s = b.spl_scale;
  const double *__restrict c0 = b.spline.data() + static_cast<size_t>(n) * 4 * nf;
  const double *__restrict c1 = c0 + nf, *__restrict c2 = c1 + nf, *__restrict c3 = c2 + nf;
  double *__restrict g = gk.data(), *__restrict dg = dgk.data();
  for (int f = 0; f < ng; ++f) {
    g[f] = c0[f] + c1[f] * w + c2[f] * w2 + c3[f] * w3;
    dg[f] = (c1[f] + 2.0 * c2[f] * w + 3.0 * c3[f] * w2) * s;
  }
  if (b.core) {
    cr = c0[ng] + c1[ng] * w + c2[ng] * w2 + c3[ng] * w3;
    dcr = (c1[ng] + 2.0 * c2[ng] * w + 3.0 * c3[ng] * w2) * s;
  }
}

// g_k(r) and dg_k/dr for k < b.ng into gk, dgk.
void Evaluator::Impl::radial_basis(const BondPlan &b, double r)
{
  const int ng = b.ng;
  double *g = gk.data(), *dg = dgk.data();
  if (r <= b.r_zero) {
    std::fill(g, g + ng, 0.0);
    std::fill(dg, dg + ng, 0.0);
    return;
  }
  // Chebyshev T_k(x) and T_k'(x) = k U_{k-1}(x) for k <= order
  auto chebyshev = [&](double x, int order) {
    cheb[0] = 1.0;
    dcheb[0] = 0.0;
    if (order >= 1) {
      cheb[1] = x;
      u2[0] = 1.0;
      dcheb[1] = 1.0;
    }
    if (order >= 2) u2[1] = 2.0 * x;
    for (int k = 1; k < order; ++k) {
      cheb[k + 1] = 2.0 * x * cheb[k] - cheb[k - 1];
      if (k >= 2) u2[k] = 2.0 * x * u2[k - 1] - u2[k - 2];
      dcheb[k + 1] = (k + 1) * u2[k];
    }
  };
  switch (b.kind) {
    case RadialKind::ChebExpCos: {
      const double y1 = std::exp(-b.lambda * r / b.rcut), y2 = std::exp(-b.lambda);
      const double x = 1.0 - 2.0 * (y1 - y2) / (1.0 - y2), dx = 2.0 * (b.lambda / b.rcut) * y1 / (1.0 - y2);
      chebyshev(x, ng - 1);
      g[0] = 1.0;
      dg[0] = 0.0;
      for (int k = 1; k < ng; ++k) {
        g[k] = 0.5 - 0.5 * cheb[k];
        dg[k] = -0.5 * dcheb[k] * dx;
      }
      const double s = std::sin(kPi * r / b.rcut), env = 0.5 * (1.0 + std::cos(kPi * r / b.rcut));
      const double denv = -0.5 * s * kPi / b.rcut;
      for (int k = 0; k < ng; ++k) {
        dg[k] = g[k] * denv + dg[k] * env;
        g[k] *= env;
      }
      const double r0 = b.rcut - b.dcut;
      if (r > r0) {
        const double u = kPi * (r - r0) / b.dcut;
        const double fc = 0.5 * (1.0 + std::cos(u)), dfc = -0.5 * std::sin(u) * kPi / b.dcut;
        for (int k = 0; k < ng; ++k) {
          dg[k] = g[k] * dfc + dg[k] * fc;
          g[k] *= fc;
        }
      }
      break;
    }
    case RadialKind::ChebPow:
    case RadialKind::ChebLinear: {
      double x, dx;
      if (b.kind == RadialKind::ChebPow) {
        const double y = 1.0 - r / b.rcut, ylm1 = std::pow(y, b.lambda - 1.0);
        x = 1.0 - 2.0 * ylm1 * y;
        dx = 2.0 * b.lambda / b.rcut * ylm1;
      } else {
        x = 1.0 - r / b.rcut;
        dx = -1.0 / b.rcut;
      }
      chebyshev(x, ng);
      for (int k = 1; k <= ng; ++k) {
        g[k - 1] = 0.5 - 0.5 * cheb[k];
        dg[k - 1] = -0.5 * dcheb[k] * dx;
      }
      break;
    }
    case RadialKind::SBessel: {
      // sinc(k pi r / rc) for k = 1..ng+1, shared by f_{k-1} and f_{k-2}
      const double c = kPi / b.rcut;
      for (int k = 1; k <= ng + 1; ++k) {
        const double t = k * c * r;
        if (t != 0.0) {
          const double s = std::sin(t), co = std::cos(t);
          sinc_v[k] = s / t;
          dsinc_v[k] = (co * t - s) / (t * t) * k * c;
        } else {
          sinc_v[k] = 1.0;
          dsinc_v[k] = 0.0;
        }
      }
      for (int n = 0; n < ng; ++n) {
        const double f = b.sb_pf[n] * (sinc_v[n + 1] + sinc_v[n + 2]);
        const double df = b.sb_pf[n] * (dsinc_v[n + 1] + dsinc_v[n + 2]);
        if (n == 0) {
          g[0] = f;
          dg[0] = df;
        } else {
          g[n] = b.sb_beta[n] * (f + b.sb_alpha[n] * g[n - 1]);
          dg[n] = b.sb_beta[n] * (df + b.sb_alpha[n] * dg[n - 1]);
        }
      }
      break;
    }
  }
  if (b.taper) {
    double fc, dfc;
    poly_cutoff(r, b.taper_in, b.taper_delta, fc, dfc);
    const double f = 1.0 - fc, df = -dfc;
    for (int k = 0; k < ng; ++k) {
      dg[k] = dg[k] * f + g[k] * df;
      g[k] *= f;
    }
  }
}

void Evaluator::Impl::core_term(const BondPlan &b, double r, double &cr, double &dcr) const
{
  cr = dcr = 0.0;
  if (!b.core) return;
  if (inner == InnerKind::Zbl) {
    double E, dE, d2E;
    zbl_pair(r, b.zbl_a, E, dE, d2E);
    double S = b.zbl_C, dS = 0.0;
    if (r > b.zbl_in) {
      const double d = r - b.zbl_in, d2 = d * d;
      S = b.zbl_A / 3.0 * d2 * d + b.zbl_B / 4.0 * d2 * d2 + b.zbl_C;
      dS = b.zbl_A * d2 + b.zbl_B * d2 * d;
    }
    cr = b.zbl_pref * (E + S);
    dcr = b.zbl_pref * (dE + dS);
    double fc, dfc;
    poly_cutoff(r, b.rcut, b.rcut - b.zbl_in, fc, dfc);
    dcr = dcr * fc + cr * dfc;
    cr *= fc;
    return;
  }
  const double lr2 = b.lam * r * r;
  if (lr2 >= 50.0) return;    // e^-50: ML-PACE's cut, kept for identical numbers
  const double y = std::exp(-lr2);
  double c = b.pre * y / r, dc = -b.pre * y * (2.0 * lr2 + 1.0) / (r * r);
  const double env = 0.5 * (1.0 + std::cos(kPi * r / b.rcut)), denv = -0.5 * std::sin(kPi * r / b.rcut) * kPi / b.rcut;
  dc = c * denv + dc * env;
  c *= env;
  if (inner == InnerKind::Distance) {
    double fc, dfc;
    poly_cutoff(r, b.rcut_in, b.dcut_in, fc, dfc);
    dc = dc * fc + c * dfc;
    c *= fc;
  }
  cr = c;
  dcr = dc;
}

double Evaluator::Impl::atom(int mu_i, int jnum, const int *mu_j, const double *rij, double *drij, AtomResult *extra)
{
  const int nel = model.nelements();
  if (mu_i < 0 || mu_i >= nel)
    throw std::invalid_argument("ACE: centre species " + std::to_string(mu_i) + " is not in 0.." +
                                std::to_string(nel - 1));
  const SpeciesPlan &P = plans[mu_i];
  if (static_cast<int>(nb_jj.size()) < jnum) {
    nb_jj.resize(jnum);
    nb_bond.resize(jnum);
    nb_geo.resize(5 * static_cast<size_t>(jnum));
    nb_R.resize(static_cast<size_t>(jnum) * max_nnl);
    nb_dR.resize(static_cast<size_t>(jnum) * max_nnl);
    nb_dg1.resize(static_cast<size_t>(jnum) * max_nk1);
    nb_dcr.resize(jnum);
  }
  const int nvalues = P.n_leaves + static_cast<int>(P.node_a.size());
  // values and adjoints of the leaves and graph nodes (nodes read earlier nodes: no restrict)
  double *V = values.data();
  double *G = adjoints.data();
  std::fill(V, V + 2 * static_cast<size_t>(P.n_leaves), 0.0);

  // pass 1: geometry, radial functions, A, core repulsion
  double rho_core = 0.0, dmin = cutoff;
  int near = -1;
  int nb = 0;
  for (int jj = 0; jj < jnum; ++jj) {
    drij[3 * jj] = drij[3 * jj + 1] = drij[3 * jj + 2] = 0.0;
    const int mj = mu_j[jj];
    if (mj < 0) continue;
    if (mj >= nel)
      throw std::invalid_argument("ACE: neighbour species " + std::to_string(mj) + " is not in 0.." +
                                  std::to_string(nel - 1));
    const BondPlan &B = P.bonds[mj];
    const double dx = rij[3 * jj], dy = rij[3 * jj + 1], dz = rij[3 * jj + 2];
    const double r2 = dx * dx + dy * dy + dz * dz;
    if (!(r2 < B.rcut2)) continue;
    const double r = std::sqrt(r2);
    if (r < 1e-8)
      throw std::domain_error("ACE: two atoms at a distance of " + std::to_string(r) + " Angstrom (same position?)");
    const double inv_r = 1.0 / r;
    double *geo = nb_geo.data() + 5 * static_cast<size_t>(nb);
    geo[0] = r;
    geo[1] = inv_r;
    geo[2] = dx * inv_r;
    geo[3] = dy * inv_r;
    geo[4] = dz * inv_r;
    nb_jj[nb] = jj;
    nb_bond[nb] = &B;
    if (inner == InnerKind::Zbl) {
      const double d = r - (B.rcut_in - B.dcut_in);
      if (d < dmin) {
        dmin = d;
        near = nb;
      }
    }
    double cr, dcr;
    if (mode == RadialMode::Spline) {
      spline_lookup(B, r, cr, dcr);
    } else {
      if (B.ng > 0) radial_basis(B, r);
      core_term(B, r, cr, dcr);
    }
    if (B.ng > 0) {
      double *R = nb_R.data() + static_cast<size_t>(nb) * max_nnl, *dR = nb_dR.data() + static_cast<size_t>(nb) * max_nnl;
      radial_matvec(B.crad_t.data(), B.kc, B.nnl_pad, gk.data(), dgk.data(), R, dR);
      double *dg1 = nb_dg1.data() + static_cast<size_t>(nb) * max_nk1;
      for (int i = 0; i < B.nk1; ++i) {
        V[2 * B.k1_leaf[i]] += gk[B.k1_k[i]];
        dg1[i] = dgk[B.k1_k[i]];
      }
      if (B.nnl > 0) {
        sh.values(geo[2], geo[3], geo[4], B.lmax_used, yc.data());
        const double *__restrict Y = yc.data();
        for (int j = 0; j < B.nnl; ++j) axpy_l(B.nl_l[j], V + B.nl_leaf2[j], Y + B.nl_yoff[j], R[j]);
      }
    }
    rho_core += cr;
    nb_dcr[nb] = dcr;
    ++nb;
  }

  // products and densities
  for (int i = 0; i < P.n_mirror; ++i) {
    const double *src = V + 2 * P.mirror_src[i];
    const double sg = P.mirror_sign[i];
    V[2 * (P.n_base + i)] = sg * src[0];
    V[2 * (P.n_base + i) + 1] = -sg * src[1];
  }
  {
    const int *a = P.node_a.data(), *b = P.node_b.data();
    double *out = V + 2 * static_cast<size_t>(P.n_leaves);
    for (int k = 0, nn = static_cast<int>(P.node_a.size()); k < nn; ++k)
      store2(out + 2 * k, cmul(load2(V + 2 * a[k]), load2(V + 2 * b[k])));
  }
  const int nd = P.ndensity, ncoef = nvalues - P.coef_begin;
  rho.assign(nd, 0.0);
  dF.assign(nd, 0.0);
  for (int p = 0; p < nd; ++p) {
    // four partial sums: the dot product is latency-bound otherwise
    const double *__restrict c = P.coef.data() + static_cast<size_t>(p) * ncoef;
    const double *__restrict x = V + 2 * static_cast<size_t>(P.coef_begin);
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int q = 0;
    for (; q + 4 <= ncoef; q += 4) {
      s0 += c[q] * x[2 * q];
      s1 += c[q + 1] * x[2 * q + 2];
      s2 += c[q + 2] * x[2 * q + 4];
      s3 += c[q + 3] * x[2 * q + 6];
    }
    for (; q < ncoef; ++q) s0 += c[q] * x[2 * q];
    rho[p] = (s0 + s1) + (s2 + s3);
  }

  // energy
  double F = 0.0;
  for (int p = 0; p < nd; ++p) {
    double f, df;
    embedding(P.shifted_scaled, rho[p], P.fs_m[p], f, df);
    F += P.fs_w[p] * f;
    dF[p] = P.fs_w[p] * df;
  }
  if (extra) {
    extra->dE_drho = dF;
    const int nf = static_cast<int>(P.proj_begin.size()) - 1;
    extra->projections.assign(nf, 0.0);
    for (int f = 0; f < nf; ++f) {
      double sum = 0.0;
      for (int q = P.proj_begin[f]; q < P.proj_begin[f + 1]; ++q) sum += P.proj_c[q] * V[2 * P.proj_idx[q]];
      extra->projections[f] = sum;
    }
  }
  double fcut, dfcut, E, dE_drho_core, dE_drmin = 0.0;
  if (inner == InnerKind::Zbl) {
    // ACE switched off towards pure ZBL as the nearest neighbour enters [r_in - d_in, r_in]
    if (near >= 0) {
      const double din = nb_bond[near]->dcut_in;
      poly_cutoff(din - dmin, din, din, fcut, dfcut);
      dfcut = -dfcut;    // d fcut / d r_min
    } else {
      fcut = 1.0;
      dfcut = 0.0;
    }
    E = F * fcut + rho_core * (1.0 - fcut);
    dE_drho_core = 1.0 - fcut;
    dE_drmin = (F - rho_core) * dfcut;
  } else {
    // ACE switched off where the core repulsion density exceeds rho_core_cutoff
    if (rho_core >= P.rho_cut) {
      fcut = 0.0;
      dfcut = 0.0;
    } else if (rho_core <= P.rho_cut - P.drho_cut) {
      fcut = 1.0;
      dfcut = 0.0;
    } else {
      poly_cutoff(rho_core, P.rho_cut, P.drho_cut, fcut, dfcut);
    }
    E = F * fcut + rho_core;
    dE_drho_core = F * dfcut + 1.0;
  }
  E += P.E0;
  if (extra) extra->energy = E;

  // reverse sweep: G = dE/dV in the sense dE = Re sum G dV, seeded with dE/drho_p * coef
  std::fill(G, G + 2 * static_cast<size_t>(P.coef_begin), 0.0);
  {
    double *__restrict gc = G + 2 * static_cast<size_t>(P.coef_begin);
    const double f0 = dF[0] * fcut;
    const double *__restrict c0 = P.coef.data();
    for (int q = 0; q < ncoef; ++q) {
      gc[2 * q] = f0 * c0[q];
      gc[2 * q + 1] = 0.0;
    }
    for (int p = 1; p < nd; ++p) {
      const double fp = dF[p] * fcut;
      const double *__restrict c = P.coef.data() + static_cast<size_t>(p) * ncoef;
      for (int q = 0; q < ncoef; ++q) gc[2 * q] += fp * c[q];
    }
  }
  {
    const int *__restrict a = P.node_a.data(), *__restrict b = P.node_b.data();
    const double *gout = G + 2 * static_cast<size_t>(P.n_leaves);
    for (int k = static_cast<int>(P.node_a.size()) - 1; k >= 0; --k) {
      const v2d gn = load2(gout + 2 * k);
      const int ia = 2 * a[k], ib = 2 * b[k];
      const v2d ga = cmul(gn, load2(V + ib)), gb = cmul(gn, load2(V + ia));
      store2(G + ia, load2(G + ia) + ga);
      store2(G + ib, load2(G + ib) + gb);
    }
  }
  // A_{l,-m} = (-1)^m conj(A_{l,m}): Re(G dA_{-m}) = Re((-1)^m conj(G) dA_m)
  for (int i = 0; i < P.n_mirror; ++i) {
    const double *gm = G + 2 * (P.n_base + i);
    const double sg = P.mirror_sign[i];
    G[2 * P.mirror_src[i]] += sg * gm[0];
    G[2 * P.mirror_src[i] + 1] -= sg * gm[1];
  }

  // pass 2: dE/dr_ij = s r^ + t / r with s from the radial derivatives and t the tangential
  // part of u = sum_lm Re(W_lm grad g_lm), g_lm = P_lm(z) (x + iy)^m, W_lm = sum_n R_nl G_nlm:
  // u = sum_m (m Re(T_m c_{m-1}), -m Im(T_m c_{m-1}), Re(U_m c_m)), T_m = sum_l W_lm P_lm,
  // U_m = sum_l W_lm P'_lm, c_m = (x + iy)^m. (For m = 0 only Re W counts: A_l0 is real.)
  for (int n = 0; n < nb; ++n) {
    const BondPlan &B = *nb_bond[n];
    const double *geo = nb_geo.data() + 5 * static_cast<size_t>(n);
    const double x = geo[2], y = geo[3], z = geo[4];
    double s = dE_drho_core * nb_dcr[n];
    double ux = 0.0, uy = 0.0, uz = 0.0;
    if (B.ng > 0) {
      const double *dg1 = nb_dg1.data() + static_cast<size_t>(n) * max_nk1;
      for (int i = 0; i < B.nk1; ++i) s += G[2 * B.k1_leaf[i]] * dg1[i];
      if (B.nnl > 0) {
        const int L = B.lmax_used, nlmb = lm_index(L, L) + 1;
        sh.prepare(x, y, z, L, true);
        double *__restrict Wr = wr.data(), *__restrict Wv = wv.data();
        std::fill(Wr, Wr + 2 * nlmb, 0.0);
        std::fill(Wv, Wv + 2 * nlmb, 0.0);
        const double *R = nb_R.data() + static_cast<size_t>(n) * max_nnl, *dR = nb_dR.data() + static_cast<size_t>(n) * max_nnl;
        for (int j = 0; j < B.nnl; ++j)
          axpy2_l(B.nl_l[j], Wr + B.nl_yoff[j], Wv + B.nl_yoff[j], G + B.nl_leaf2[j], dR[j], R[j]);
        const double *Pl = sh.p(), *dPl = sh.dp(), *cr = sh.c_re(), *ci = sh.c_im();
        for (int m = 0; m <= L; ++m) {
          double sr = 0.0, si = 0.0, tr = 0.0, ti = 0.0, vr = 0.0, vi = 0.0;
          for (int l = m, i = lm_index(m, m); l <= L; i += l + 1, ++l) {
            sr += Wr[2 * i] * Pl[i];
            si += Wr[2 * i + 1] * Pl[i];
            tr += Wv[2 * i] * Pl[i];
            ti += Wv[2 * i + 1] * Pl[i];
            vr += Wv[2 * i] * dPl[i];
            vi += Wv[2 * i + 1] * dPl[i];
          }
          if (m == 0) {
            s += sr;
            uz += vr;
          } else {
            s += sr * cr[m] - si * ci[m];
            uz += vr * cr[m] - vi * ci[m];
            ux += m * (tr * cr[m - 1] - ti * ci[m - 1]);
            uy -= m * (tr * ci[m - 1] + ti * cr[m - 1]);
          }
        }
      }
    }
    if (n == near) s += dE_drmin;
    const double ru = x * ux + y * uy + z * uz, inv_r = geo[1];
    double *out = drij + 3 * static_cast<size_t>(nb_jj[n]);
    out[0] = s * x + (ux - ru * x) * inv_r;
    out[1] = s * y + (uy - ru * y) * inv_r;
    out[2] = s * z + (uz - ru * z) * inv_r;
  }
  return E;
}

Evaluator::Evaluator(const Model &model) : impl_(new Impl(model, RadialMode::Spline)) {}
Evaluator::Evaluator(const Model &model, RadialMode mode) : impl_(new Impl(model, mode)) {}
Evaluator::~Evaluator() = default;

const Model &Evaluator::model() const { return impl_->model; }
double Evaluator::cutoff() const { return impl_->cutoff; }

double Evaluator::compute_atom(int mu_i, int jnum, const int *mu_j, const double *rij, double *drij, AtomResult *extra)
{
  return impl_->atom(mu_i, jnum, mu_j, rij, drij, extra);
}

void Evaluator::compute(int64_t n_nodes, int64_t n_local, const int *species, int64_t n_edges, const int64_t *centres,
                        const int64_t *neighbours, const double *vectors, double *energies, double *edge_grad)
{
  compute(n_nodes, n_local, species, n_edges, centres, neighbours, vectors, energies, edge_grad, nullptr);
}

void Evaluator::compute(int64_t n_nodes, int64_t n_local, const int *species, int64_t n_edges, const int64_t *centres,
                        const int64_t *neighbours, const double *vectors, double *energies, double *edge_grad,
                        std::vector<AtomResult> *extras)
{
  Impl &I = *impl_;
  if (n_local < 0 || n_local > n_nodes)
    throw std::invalid_argument("ACE: n_local = " + std::to_string(n_local) + " must be in 0..n_nodes = " +
                                std::to_string(n_nodes));
  const int nel = I.model.nelements();
  for (int64_t i = 0; i < n_local; ++i)
    if (species[i] < 0 || species[i] >= nel)
      throw std::invalid_argument("ACE: atom " + std::to_string(i) + " has species " + std::to_string(species[i]) +
                                  ", not one of the potential's " + std::to_string(nel) + " elements");
  // group the edges by centre (a counting sort keeps each centre's edges in input order)
  I.edge_start.assign(static_cast<size_t>(n_local) + 1, 0);
  for (int64_t e = 0; e < n_edges; ++e) {
    const int64_t c = centres[e], j = neighbours[e];
    if (c < 0 || c >= n_nodes || j < 0 || j >= n_nodes)
      throw std::invalid_argument("ACE: edge " + std::to_string(e) + " (" + std::to_string(c) + ", " +
                                  std::to_string(j) + ") refers to a node outside 0.." + std::to_string(n_nodes - 1));
    if (c < n_local) ++I.edge_start[c + 1];
  }
  for (int64_t i = 0; i < n_local; ++i) I.edge_start[i + 1] += I.edge_start[i];
  I.edge_order.resize(static_cast<size_t>(I.edge_start[n_local]));
  {
    std::vector<int64_t> fill(I.edge_start.begin(), I.edge_start.end() - 1);
    for (int64_t e = 0; e < n_edges; ++e)
      if (centres[e] < n_local) I.edge_order[fill[centres[e]]++] = e;
  }
  for (int64_t e = 0; e < 3 * n_edges; ++e) edge_grad[e] = 0.0;
  if (extras) extras->assign(static_cast<size_t>(n_local), AtomResult());
  for (int64_t i = 0; i < n_local; ++i) {
    const int64_t b = I.edge_start[i], n = I.edge_start[i + 1] - b;
    I.mu_buf.resize(n);
    I.rij_buf.resize(3 * n);
    I.drij_buf.resize(3 * n);
    for (int64_t q = 0; q < n; ++q) {
      const int64_t e = I.edge_order[b + q];
      I.mu_buf[q] = species[neighbours[e]];
      for (int c = 0; c < 3; ++c) I.rij_buf[3 * q + c] = vectors[3 * e + c];
    }
    energies[i] = I.atom(species[i], static_cast<int>(n), I.mu_buf.data(), I.rij_buf.data(), I.drij_buf.data(),
                         extras ? &(*extras)[i] : nullptr);
    for (int64_t q = 0; q < n; ++q) {
      const int64_t e = I.edge_order[b + q];
      for (int c = 0; c < 3; ++c) edge_grad[3 * e + c] = I.drij_buf[3 * q + c];
    }
  }
}

Evaluator::PlanStats Evaluator::plan_stats(int mu_i) const
{
  if (mu_i < 0 || mu_i >= impl_->model.nelements())
    throw std::invalid_argument("ACE: species " + std::to_string(mu_i) + " out of range");
  const SpeciesPlan &P = impl_->plans[mu_i];
  PlanStats s;
  s.leaves = P.n_base;
  s.mirrored = P.n_mirror;
  s.rank1 = P.n_rank1;
  s.nodes = static_cast<int>(P.node_a.size());
  s.terminals = P.terminals;
  s.ms_combinations = P.ms_total;
  return s;
}

}    // namespace mlff_ace
