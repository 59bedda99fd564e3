/* B-basis YAML reader and its expansion into the energy and projection models (see
 * ace_bbasis.h). The file layout and defaults are ML-PACE's (see DESIGN.md, "ACE facts"):
 *
 *   global: {DeltaSplineBins: 0.001}
 *   species:
 *     - speciesblock: Cu          # one element: embedding and the Cu-Cu bond
 *       ndensityi, npoti, parameters [w0, m0, ...], rho_core_cut (100000), drho_core_cut (250)
 *       nradmaxi, lmaxi, nradbaseij, radbase, radparameters, radcoefficients[n][l][k],
 *       rcutij, dcutij, core-repulsion [pre, lambda], inner_cutoff_type (density), r_in, delta_in
 *       nbody: [{type: Cu Cu Cu, nr: [1, 1], nl: [1, 1], lint: [...], c: [c_0, ...], skip: bool}]
 *     - speciesblock: Cu Ni       # a bond (its radial basis may live in the Ni Cu block)
 *     - speciesblock: Cu Ni Ni    # functions only
 * Elements are sorted by name (ML-PACE's species indices).
 */
#include "ace_bbasis.h"

#include "ace_couplings.h"
#include "yaml_lite.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

namespace mlff_ace {

namespace {

using yaml_lite::Node;

struct FuncSpec {
  std::vector<std::string> elements;    // type: central element first
  std::vector<int> ns, ls, LS;
  std::vector<double> coeffs;
  bool skip = false;
  int line = 0;
};

struct Block {
  std::string name;
  int line = 0;
  std::vector<std::string> elements;    // "Cu" -> [Cu, Cu]
  int nspecies = 0;
  // embedding (one species)
  bool has_embedding = false;
  int ndensity = 0;
  std::string npoti;
  std::vector<double> fs_parameters;
  double rho_cut = 100000.0, drho_cut = 250.0;
  // bond (one or two species)
  bool has_radial = false;
  int lmax = 0, nradmax = 0, nradbase = 0;
  std::string radbase;
  std::vector<double> radparameters;
  std::vector<double> radcoefficients;    // flat [n][l][k]
  double rcut = 0.0, dcut = 0.0;
  bool has_core = false;
  double prehc = 0.0, lambdahc = 0.0;
  std::string inner_cutoff_type = "density";
  double r_in = 0.0, delta_in = 0.0;
  std::vector<FuncSpec> funcs;
};

std::vector<std::string> split_words(const std::string &s)
{
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

class Reader {
 public:
  explicit Reader(const std::string &source) : source_(source) {}

  [[noreturn]] void fail(int line, const std::string &key, const std::string &what) const
  {
    throw FormatError(source_ + ":" + std::to_string(line) + ": " + key + ": " + what);
  }

  double number(const Node &n, const std::string &key) const
  {
    double x = 0.0;
    if (!yaml_lite::to_double(n, &x)) fail(n.line, key, "expected a number, got '" + shorten(n) + "'");
    if (!std::isfinite(x)) fail(n.line, key, "is not a finite number");
    return x;
  }
  int integer(const Node &n, const std::string &key) const
  {
    long long x = 0;
    if (!yaml_lite::to_int(n, &x)) fail(n.line, key, "expected an integer, got '" + shorten(n) + "'");
    if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max())
      fail(n.line, key, "integer out of range: " + n.text());
    return static_cast<int>(x);
  }
  std::string text(const Node &n, const std::string &key) const
  {
    if (!n.is_scalar()) fail(n.line, key, "expected a name, got '" + shorten(n) + "'");
    return n.value;
  }
  std::vector<double> numbers(const Node &n, const std::string &key) const
  {
    if (!n.is_sequence()) fail(n.line, key, "expected a list of numbers, got '" + shorten(n) + "'");
    std::vector<double> out;
    for (const Node &x : n.items) out.push_back(number(x, key));
    return out;
  }
  std::vector<int> integers(const Node &n, const std::string &key) const
  {
    if (!n.is_sequence()) fail(n.line, key, "expected a list of integers, got '" + shorten(n) + "'");
    std::vector<int> out;
    for (const Node &x : n.items) out.push_back(integer(x, key));
    return out;
  }
  const Node &required(const Node &map, const char *key, const std::string &where) const
  {
    const Node *n = map.find(key);
    if (!n) fail(map.line, where, std::string("missing required key '") + key + "'");
    if (n->is_null()) fail(n->line, where + "." + key, "has no value");
    return *n;
  }
  static std::string shorten(const Node &n)
  {
    std::string t = n.text();
    return t.size() > 60 ? t.substr(0, 57) + "..." : t;
  }

  Block read_block(const Node &b, size_t index) const
  {
    Block out;
    const std::string where = "species[" + std::to_string(index) + "]";
    if (!b.is_mapping()) fail(b.line, where, "expected a mapping with speciesblock, ..., nbody");
    out.line = b.line;
    out.name = text(required(b, "speciesblock", where), where + ".speciesblock");
    out.elements = split_words(out.name);
    if (out.elements.empty()) fail(b.line, where + ".speciesblock", "names no element");
    const std::set<std::string> uniq(out.elements.begin(), out.elements.end());
    out.nspecies = static_cast<int>(uniq.size());
    if (out.nspecies == 1 && out.elements.size() == 1) out.elements.push_back(out.elements[0]);
    const std::string bw = "species[" + out.name + "]";

    if (out.nspecies == 1) {
      out.has_embedding = true;
      out.ndensity = integer(required(b, "ndensityi", bw), bw + ".ndensityi");
      if (out.ndensity < 1) fail(b.find("ndensityi")->line, bw + ".ndensityi", "must be at least 1");
      out.npoti = text(required(b, "npoti", bw), bw + ".npoti");
      const Node &params = required(b, "parameters", bw);
      out.fs_parameters = numbers(params, bw + ".parameters");
      if (out.fs_parameters.size() != 2 * static_cast<size_t>(out.ndensity))
        fail(params.line, bw + ".parameters",
             "has " + std::to_string(out.fs_parameters.size()) + " values, expected 2 x ndensityi = " +
                 std::to_string(2 * out.ndensity));
      if (const Node *n = b.find("rho_core_cut")) out.rho_cut = number(*n, bw + ".rho_core_cut");
      if (const Node *n = b.find("drho_core_cut")) out.drho_cut = number(*n, bw + ".drho_core_cut");
    }

    if (b.find("lmaxi")) {
      if (out.nspecies > 2) fail(b.line, bw, "a radial basis belongs to a one- or two-element block");
      out.has_radial = true;
      out.lmax = integer(required(b, "lmaxi", bw), bw + ".lmaxi");
      out.nradmax = integer(required(b, "nradmaxi", bw), bw + ".nradmaxi");
      out.nradbase = integer(required(b, "nradbaseij", bw), bw + ".nradbaseij");
      if (out.lmax < 0 || out.nradmax < 0 || out.nradbase < 1)
        fail(b.line, bw, "needs lmaxi >= 0, nradmaxi >= 0 and nradbaseij >= 1");
      out.radbase = text(required(b, "radbase", bw), bw + ".radbase");
      out.radparameters = numbers(required(b, "radparameters", bw), bw + ".radparameters");
      read_radcoefficients(required(b, "radcoefficients", bw), bw + ".radcoefficients", out);
      out.rcut = number(required(b, "rcutij", bw), bw + ".rcutij");
      out.dcut = number(required(b, "dcutij", bw), bw + ".dcutij");
    } else {
      for (const char *k : {"nradmaxi", "nradbaseij", "radbase", "radparameters", "radcoefficients"})
        if (b.find(k)) fail(b.find(k)->line, bw + "." + k, "the radial basis is partially defined (lmaxi is missing)");
    }
    if (const Node *n = b.find("core-repulsion")) {
      std::vector<double> c = numbers(*n, bw + ".core-repulsion");
      if (c.size() != 2) fail(n->line, bw + ".core-repulsion", "expected [prefactor, lambda]");
      out.has_core = true;
      out.prehc = c[0];
      out.lambdahc = c[1];
    }
    if (const Node *n = b.find("inner_cutoff_type")) out.inner_cutoff_type = text(*n, bw + ".inner_cutoff_type");
    if (const Node *n = b.find("r_in")) out.r_in = number(*n, bw + ".r_in");
    if (const Node *n = b.find("delta_in")) out.delta_in = number(*n, bw + ".delta_in");

    if (const Node *nb = b.find("nbody")) {
      if (!nb->is_sequence() && !nb->is_null()) fail(nb->line, bw + ".nbody", "expected a list of functions");
      for (size_t i = 0; i < nb->items.size(); ++i)
        out.funcs.push_back(read_function(nb->items[i], bw + ".nbody[" + std::to_string(i) + "]", out));
    }
    return out;
  }

 private:
  std::string source_;

  void read_radcoefficients(const Node &n, const std::string &key, Block &b) const
  {
    // [nradmax][lmax + 1][nradbase]; ML-PACE also reads an old flat layout ordered k, n, l
    const size_t want = static_cast<size_t>(b.nradmax) * (b.lmax + 1) * b.nradbase;
    if (!n.is_sequence()) fail(n.line, key, "expected a nested list [nradmaxi][lmaxi + 1][nradbaseij]");
    bool flat = true;
    for (const Node &x : n.items) flat = flat && x.is_scalar();
    if (flat && !n.items.empty()) {
      std::vector<double> v = numbers(n, key);
      if (v.size() != want)
        fail(n.line, key, "has " + std::to_string(v.size()) + " values, expected " + std::to_string(want));
      b.radcoefficients.assign(want, 0.0);
      size_t j = 0;
      for (int k = 0; k < b.nradbase; ++k)
        for (int nn = 0; nn < b.nradmax; ++nn)
          for (int l = 0; l <= b.lmax; ++l, ++j)
            b.radcoefficients[(static_cast<size_t>(nn) * (b.lmax + 1) + l) * b.nradbase + k] = v[j];
      return;
    }
    auto shape_fail = [&](int line) {
      fail(line, key, "has the wrong shape, expected [nradmaxi = " + std::to_string(b.nradmax) + "][lmaxi + 1 = " +
                          std::to_string(b.lmax + 1) + "][nradbaseij = " + std::to_string(b.nradbase) + "]");
    };
    if (static_cast<int>(n.items.size()) != b.nradmax) shape_fail(n.line);
    for (const Node &row : n.items) {
      if (!row.is_sequence() || static_cast<int>(row.items.size()) != b.lmax + 1) shape_fail(row.line);
      for (const Node &col : row.items) {
        std::vector<double> v = numbers(col, key);
        if (static_cast<int>(v.size()) != b.nradbase) shape_fail(col.line);
        b.radcoefficients.insert(b.radcoefficients.end(), v.begin(), v.end());
      }
    }
  }

  FuncSpec read_function(const Node &f, const std::string &key, const Block &b) const
  {
    FuncSpec out;
    out.line = f.line;
    if (!f.is_mapping()) fail(f.line, key, "expected {type: ..., nr: [...], nl: [...], c: [...]}");
    out.elements = split_words(text(required(f, "type", key), key + ".type"));
    if (out.elements.size() < 2) fail(f.line, key + ".type", "needs the central element and at least one neighbour");
    if (out.elements[0] != b.elements[0])
      fail(f.line, key + ".type", "central element '" + out.elements[0] + "' differs from the block's '" +
                                      b.elements[0] + "'");
    for (size_t i = 1; i < out.elements.size(); ++i)
      if (std::find(b.elements.begin(), b.elements.end(), out.elements[i]) == b.elements.end())
        fail(f.line, key + ".type", "element '" + out.elements[i] + "' is not in the block '" + b.name + "'");
    const size_t rank = out.elements.size() - 1;
    out.ns = integers(required(f, "nr", key), key + ".nr");
    out.ls = integers(required(f, "nl", key), key + ".nl");
    if (out.ns.size() != rank || out.ls.size() != rank)
      fail(f.line, key, "a rank-" + std::to_string(rank) + " function needs " + std::to_string(rank) +
                            " values in nr and nl");
    if (const Node *lint = f.find("lint")) out.LS = integers(*lint, key + ".lint");
    const Node &c = required(f, "c", key);
    out.coeffs = c.is_sequence() ? numbers(c, key + ".c") : std::vector<double>{number(c, key + ".c")};
    if (const Node *s = f.find("skip")) {
      const std::string v = text(*s, key + ".skip");
      if (v == "true" || v == "True" || v == "TRUE") out.skip = true;
      else if (v == "false" || v == "False" || v == "FALSE") out.skip = false;
      else fail(s->line, key + ".skip", "expected true or false, got '" + v + "'");
    }
    try {
      validate_ls_LS(out.ls, out.LS);
    } catch (const std::invalid_argument &e) {
      fail(f.line, key, e.what());
    }
    return out;
  }
};

// An uncompressed B function as ML-PACE first builds it (half basis, enumeration order).
struct Work {
  BFunction f;
  int num_ms() const { return static_cast<int>(f.gen_cgs.size()); }
};

// ML-PACE's function order: rank, mu0, mus, ns, ls, then the number and the values of the
// m-combinations (LS and coefficients are not compared).
bool pace_less(const Work &a, const Work &b)
{
  const BFunction &x = a.f, &y = b.f;
  if (x.rank != y.rank) return x.rank < y.rank;
  if (x.mu0 != y.mu0) return x.mu0 < y.mu0;
  for (int r = 0; r < x.rank; ++r)
    if (x.mus[r] != y.mus[r]) return x.mus[r] < y.mus[r];
  for (int r = 0; r < x.rank; ++r)
    if (x.ns[r] != y.ns[r]) return x.ns[r] < y.ns[r];
  for (int r = 0; r < x.rank; ++r)
    if (x.ls[r] != y.ls[r]) return x.ls[r] < y.ls[r];
  if (a.num_ms() != b.num_ms()) return a.num_ms() < b.num_ms();
  for (size_t i = 0; i < x.ms_combs.size(); ++i)
    if (x.ms_combs[i] != y.ms_combs[i]) return x.ms_combs[i] < y.ms_combs[i];
  return false;
}

// Products of A's commute: sort the (mu, n, l, m) of each m-combination and add up the
// coefficients of combinations that become equal; drop sums below 1e-15. ML-PACE applies
// the result (and its reordered mus, ns, ls) only when it has fewer combinations.
void compress(BFunction &f)
{
  const int rank = f.rank;
  const int nms = static_cast<int>(f.gen_cgs.size());
  std::vector<int> mus(rank), ns(rank), ls(rank);
  std::map<std::vector<int>, double> merged;
  for (int c = 0; c < nms; ++c) {
    std::vector<std::tuple<int, int, int, int, int>> v;
    for (int r = 0; r < rank; ++r) v.emplace_back(f.mus[r], f.ns[r], f.ls[r], f.ms_combs[c * rank + r], r);
    std::sort(v.begin(), v.end());
    if (c == 0)
      for (int r = 0; r < rank; ++r) {
        mus[r] = std::get<0>(v[r]);
        ns[r] = std::get<1>(v[r]);
        ls[r] = std::get<2>(v[r]);
      }
    std::vector<int> ms(rank);
    for (int r = 0; r < rank; ++r) ms[r] = std::get<3>(v[r]);
    merged[ms] += f.gen_cgs[c];
  }
  for (auto it = merged.begin(); it != merged.end();) {
    if (std::fabs(it->second) < 1e-15) it = merged.erase(it);
    else ++it;
  }
  if (static_cast<int>(merged.size()) >= nms) return;
  f.mus = mus;
  f.ns = ns;
  f.ls = ls;
  f.ms_combs.clear();
  f.gen_cgs.clear();
  for (const auto &kv : merged) {
    f.ms_combs.insert(f.ms_combs.end(), kv.first.begin(), kv.first.end());
    f.gen_cgs.push_back(kv.second);
  }
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

bool is_bbasis_text(const std::string &text)
{
  // A top-level `species:` key at column 0 (a .yace has `elements:` and no `species:`).
  size_t pos = 0;
  while (pos < text.size()) {
    if (text.compare(pos, 8, "species:") == 0) return true;
    size_t e = text.find('\n', pos);
    if (e == std::string::npos) break;
    pos = e + 1;
  }
  return false;
}

BBasis read_bbasis(const std::string &text, const std::string &source)
{
  Reader rd(source);
  const Node root = yaml_lite::parse(text, source);
  if (!root.is_mapping()) rd.fail(root.line, "(top level)", "expected a B-basis mapping with global and species");
  if (!root.find("species") && root.find("functions") && root.find("elements"))
    rd.fail(root.line, "(top level)",
            "this is a C-tilde potential (.yace), not a B-basis one: its functions merge B functions, so the "
            "B-projections that extrapolation grades need are lost; use the B-basis file it was made from "
            "(pacemaker's output_potential.yaml)");
  const Node &global = rd.required(root, "global", "(top level)");
  if (!global.is_mapping()) rd.fail(global.line, "global", "expected a mapping with DeltaSplineBins");
  const double dsb = rd.number(rd.required(global, "DeltaSplineBins", "global"), "global.DeltaSplineBins");
  if (!(dsb > 0)) rd.fail(global.find("DeltaSplineBins")->line, "global.DeltaSplineBins", "must be positive");
  const Node &species = rd.required(root, "species", "(top level)");
  if (!species.is_sequence() || species.items.empty())
    rd.fail(species.line, "species", "expected a non-empty list of species blocks");

  std::vector<Block> blocks;
  for (size_t i = 0; i < species.items.size(); ++i) blocks.push_back(rd.read_block(species.items[i], i));

  // Elements in ML-PACE's order (sorted by name) and the embeddings.
  std::set<std::string> names;
  for (const Block &b : blocks) names.insert(b.elements.begin(), b.elements.end());
  std::vector<std::string> elements(names.begin(), names.end());
  std::map<std::string, int> index;
  for (size_t i = 0; i < elements.size(); ++i) index[elements[i]] = static_cast<int>(i);
  const int nel = static_cast<int>(elements.size());

  std::vector<const Block *> embedding_block(nel, nullptr);
  for (const Block &b : blocks) {
    if (!b.has_embedding) continue;
    const int mu = index[b.elements[0]];
    if (embedding_block[mu])
      rd.fail(b.line, "species[" + b.name + "]", "the embedding of " + b.elements[0] + " is defined twice");
    embedding_block[mu] = &b;
  }
  for (int mu = 0; mu < nel; ++mu)
    if (!embedding_block[mu])
      rd.fail(species.line, "species", "no single-element block (embedding, ndensityi) for " + elements[mu]);

  // Two-element blocks may take their radial basis and core repulsion from the reverse block.
  for (Block &b : blocks) {
    if (b.nspecies != 2) continue;
    for (const Block &d : blocks) {
      if (&d == &b || d.nspecies != 2 || d.elements.size() != 2 || b.elements.size() != 2) continue;
      if (d.elements[0] != b.elements[1] || d.elements[1] != b.elements[0]) continue;
      const std::string bw = "species[" + b.name + "]";
      if (!b.has_radial && d.has_radial) {
        b.has_radial = true;
        b.lmax = d.lmax;
        b.nradmax = d.nradmax;
        b.nradbase = d.nradbase;
        b.radbase = d.radbase;
        b.radparameters = d.radparameters;
        b.radcoefficients = d.radcoefficients;
        b.rcut = d.rcut;
        b.dcut = d.dcut;
      } else if (b.has_radial && d.has_radial) {
        if (b.lmax != d.lmax || b.nradmax != d.nradmax || b.nradbase != d.nradbase || b.radbase != d.radbase ||
            b.radparameters != d.radparameters || b.radcoefficients != d.radcoefficients || b.rcut != d.rcut ||
            b.dcut != d.dcut)
          rd.fail(b.line, bw, "radial basis differs from the block '" + d.name + "'");
      }
      if (!b.has_core && d.has_core) {
        b.has_core = true;
        b.prehc = d.prehc;
        b.lambdahc = d.lambdahc;
        b.inner_cutoff_type = d.inner_cutoff_type;
        b.r_in = d.r_in;
        b.delta_in = d.delta_in;
      } else if (b.has_core && d.has_core) {
        if (b.prehc != d.prehc || b.lambdahc != d.lambdahc || b.r_in != d.r_in || b.delta_in != d.delta_in)
          rd.fail(b.line, bw, "core repulsion or inner cutoff differs from the block '" + d.name + "'");
      }
    }
  }

  BBasis out;
  out.source = source;
  Model &m = out.energy;
  m.source = source;
  m.format = "bbasis";
  m.elements = elements;
  m.E0.assign(nel, 0.0);    // B-basis files carry no reference energies
  m.deltaSplineBins = dsb;
  m.embeddings.resize(nel);
  for (int mu = 0; mu < nel; ++mu) {
    const Block &b = *embedding_block[mu];
    Embedding &e = m.embeddings[mu];
    e.ndensity = b.ndensity;
    e.FS_parameters = b.fs_parameters;
    e.npoti = b.npoti;
    e.rho_core_cutoff = b.rho_cut;
    e.drho_core_cutoff = b.drho_cut;
    m.key_lines["embeddings[" + std::to_string(mu) + "]"] = b.line;
  }
  for (const Block &b : blocks) {
    if (b.nspecies > 2) continue;
    const std::string bw = "species[" + b.name + "]";
    if (!b.has_radial) rd.fail(b.line, bw, "no radial basis (lmaxi, nradmaxi, ...) here or in the reverse block");
    const int i = index[b.elements[0]], j = index[b.elements[1]];
    Bond bond;
    bond.nradmax = b.nradmax;
    bond.lmax = b.lmax;
    bond.nradbasemax = b.nradbase;
    bond.radbasename = b.radbase;
    bond.radparameters = b.radparameters;
    bond.radcoefficients = b.radcoefficients;
    bond.prehc = b.prehc;
    bond.lambdahc = b.lambdahc;
    bond.rcut = b.rcut;
    bond.dcut = b.dcut;
    bond.rcut_in = b.r_in;
    bond.dcut_in = b.delta_in;
    bond.inner_cutoff_type = b.inner_cutoff_type;
    if (!m.bonds.emplace(std::make_pair(i, j), bond).second)
      rd.fail(b.line, bw, "the bond " + b.elements[0] + "-" + b.elements[1] + " is defined twice");
    m.key_lines["bonds[" + std::to_string(i) + ", " + std::to_string(j) + "]"] = b.line;
  }
  for (int i = 0; i < nel; ++i)
    for (int j = 0; j < nel; ++j)
      if (!m.bonds.count({i, j}))
        rd.fail(species.line, "species", "no block defines the bond " + elements[i] + "-" + elements[j]);

  // B functions per central element, built and ordered as ML-PACE does: appended block by
  // block, the element's list sorted after every block and once more before compression.
  std::vector<std::vector<Work>> work(nel);
  for (const Block &b : blocks) {
    if (b.funcs.empty()) continue;
    const int mu0 = index[b.elements[0]];
    const int ndens = m.embeddings[mu0].ndensity;
    for (size_t fi = 0; fi < b.funcs.size(); ++fi) {
      const FuncSpec &s = b.funcs[fi];
      if (s.skip) continue;
      const std::string key = "species[" + b.name + "].nbody[" + std::to_string(fi) + "]";
      if (static_cast<int>(s.coeffs.size()) != ndens)
        rd.fail(s.line, key + ".c", "has " + std::to_string(s.coeffs.size()) + " coefficients, but the embedding of " +
                                        b.elements[0] + " has ndensityi = " + std::to_string(ndens));
      Work w;
      BFunction &f = w.f;
      f.mu0 = mu0;
      f.rank = static_cast<int>(s.ns.size());
      for (size_t r = 1; r < s.elements.size(); ++r) f.mus.push_back(index[s.elements[r]]);
      f.ns = s.ns;
      f.ls = s.ls;
      f.LS = s.LS;
      f.coeffs = s.coeffs;
      f.line = s.line;
      for (int r = 0; r < f.rank; ++r) {
        const Bond &bond = m.bonds.at({mu0, f.mus[r]});
        const int nmax = f.rank == 1 ? bond.nradbasemax : bond.nradmax;
        if (f.ns[r] < 1 || f.ns[r] > nmax)
          rd.fail(s.line, key + ".nr", "n = " + std::to_string(f.ns[r]) + " is outside 1.." + std::to_string(nmax) +
                                           (f.rank == 1 ? " (nradbaseij" : " (nradmaxi") + " of the bond " +
                                           elements[mu0] + "-" + elements[f.mus[r]] + ")");
        if (f.ls[r] > bond.lmax)
          rd.fail(s.line, key + ".nl", "l = " + std::to_string(f.ls[r]) + " exceeds lmaxi = " +
                                           std::to_string(bond.lmax) + " of the bond " + elements[mu0] + "-" +
                                           elements[f.mus[r]]);
      }
      for (const MsCoupling &c : invariant_ms_couplings(f.ls, f.LS, true)) {
        f.ms_combs.insert(f.ms_combs.end(), c.ms.begin(), c.ms.end());
        f.gen_cgs.push_back(c.coeff);
      }
      if (f.gen_cgs.empty())
        rd.fail(s.line, key, "ls = " + join(f.ls) + ", LS = " + join(f.LS) + " couple to no rotation invariant");
      work[mu0].push_back(std::move(w));
    }
    // std::sort, not stable_sort: ML-PACE's order of equivalent functions (same ms lists,
    // different LS) is the one libstdc++'s std::sort leaves, so do the same sorts.
    std::sort(work[mu0].begin(), work[mu0].end(), pace_less);
  }
  out.functions.resize(nel);
  m.functions.resize(nel);
  out.projection = m;    // same elements, embeddings and bonds; adjusted below
  out.projection.functions.assign(nel, {});
  for (int mu = 0; mu < nel; ++mu) {
    std::sort(work[mu].begin(), work[mu].end(), pace_less);
    for (Work &w : work[mu]) compress(w.f);

    // Projection order: rank 1 first, each part in the sorted order.
    for (int pass = 0; pass < 2; ++pass)
      for (const Work &w : work[mu])
        if ((w.f.rank == 1) == (pass == 0)) out.functions[mu].push_back(w.f);

    // Energy model: merge functions with the same (mus, ns, ls), summing coeff * gen_cg
    // per m-combination in the sorted order (as ML-PACE's B -> C-tilde conversion).
    const int ndens = m.embeddings[mu].ndensity;
    using Key = std::tuple<std::vector<int>, std::vector<int>, std::vector<int>>;
    std::map<Key, std::map<std::vector<int>, std::vector<double>>> groups;
    for (const Work &w : work[mu]) {
      const BFunction &f = w.f;
      auto &g = groups[Key(f.mus, f.ns, f.ls)];
      for (size_t c = 0; c < f.gen_cgs.size(); ++c) {
        std::vector<int> ms(f.ms_combs.begin() + c * f.rank, f.ms_combs.begin() + (c + 1) * f.rank);
        std::vector<double> &ct = g[ms];
        ct.resize(ndens, 0.0);
        for (int p = 0; p < ndens; ++p) ct[p] += f.coeffs[p] * f.gen_cgs[c];
      }
    }
    for (int pass = 0; pass < 2; ++pass)
      for (const auto &kv : groups) {
        const int rank = static_cast<int>(std::get<0>(kv.first).size());
        if ((rank == 1) != (pass == 0)) continue;
        Function fn;
        fn.mu0 = mu;
        fn.rank = rank;
        fn.ndensity = ndens;
        fn.mus = std::get<0>(kv.first);
        fn.ns = std::get<1>(kv.first);
        fn.ls = std::get<2>(kv.first);
        for (const auto &ms : kv.second) {
          fn.ms_combs.insert(fn.ms_combs.end(), ms.first.begin(), ms.first.end());
          fn.ctildes.insert(fn.ctildes.end(), ms.second.begin(), ms.second.end());
        }
        m.functions[mu].push_back(std::move(fn));
      }

    // Projection model: each B function alone, one density, ctildes = its gen CGs.
    for (const BFunction &f : out.functions[mu]) {
      Function fn;
      fn.mu0 = mu;
      fn.rank = f.rank;
      fn.ndensity = 1;
      fn.mus = f.mus;
      fn.ns = f.ns;
      fn.ls = f.ls;
      fn.ms_combs = f.ms_combs;
      fn.ctildes = f.gen_cgs;
      out.projection.functions[mu].push_back(std::move(fn));
    }
  }

  // The projection model needs no embedding, no core repulsion and no inner cutoff: F = rho.
  Model &pm = out.projection;
  pm.format = "bbasis-projections";
  for (Embedding &e : pm.embeddings) {
    e.ndensity = 1;
    e.FS_parameters = {1.0, 1.0};
    e.npoti = "FinnisSinclairShiftedScaled";
    e.rho_core_cutoff = 100000.0;
    e.drho_core_cutoff = 250.0;
  }
  for (auto &kv : pm.bonds) {
    kv.second.prehc = 0.0;
    kv.second.lambdahc = 1.0;
    kv.second.inner_cutoff_type = "density";
    kv.second.rcut_in = 0.0;
    kv.second.dcut_in = 0.0;
  }
  m.validate();
  pm.validate();
  return out;
}

BBasis read_bbasis_file(const std::string &path)
{
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open the B-basis potential '" + path + "': " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read the B-basis potential '" + path + "'");
  return read_bbasis(s.str(), path);
}

}    // namespace mlff_ace
