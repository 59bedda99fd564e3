/* .yace reader: pyace's save_yaml / pace_yaml2yace output (see DESIGN.md, "ACE facts").
 * Required keys are required: a missing one is an error naming its parent's line, never a
 * default. Optional keys are those ML-PACE itself treats as optional (E0, rcut_in,
 * dcut_in, inner_cutoff_type, deltaSplineBins, which only sizes ML-PACE's splines). */
#include "ace_readers.h"
#include "yaml_lite.h"

#include <limits>

namespace mlff_ace {

namespace {

using yaml_lite::Node;

class YaceReader {
 public:
  YaceReader(Model &model) : m_(model) {}

  void read(const Node &root)
  {
    if (!root.is_mapping())
      fail(root.line, "(top level)", "expected a mapping with the keys elements, embeddings, bonds, functions");
    const Node &elements = required(root, "elements", "");
    m_.key_lines["elements"] = elements.line;
    if (!elements.is_sequence()) fail(elements.line, "elements", "expected a list of element symbols");
    for (const Node &e : elements.items) {
      if (!e.is_scalar()) fail(e.line, "elements", "expected an element symbol, got '" + e.text() + "'");
      m_.elements.push_back(e.value);
    }
    const int nel = m_.nelements();
    if (nel == 0) fail(elements.line, "elements", "the list of elements is empty");

    if (const Node *e0 = root.find("E0")) {
      m_.key_lines["E0"] = e0->line;
      m_.E0 = numbers(*e0, "E0");
      if (static_cast<int>(m_.E0.size()) != nel)
        fail(e0->line, "E0", "has " + std::to_string(m_.E0.size()) + " values for " + std::to_string(nel) + " elements");
    } else {
      m_.E0.assign(nel, 0.0);
    }
    if (const Node *d = root.find("deltaSplineBins")) {
      m_.key_lines["deltaSplineBins"] = d->line;
      m_.deltaSplineBins = number(*d, "deltaSplineBins");
      if (!(m_.deltaSplineBins > 0)) fail(d->line, "deltaSplineBins", "must be positive");
    }

    read_embeddings(required(root, "embeddings", ""));
    read_bonds(required(root, "bonds", ""));
    read_functions(required(root, "functions", ""));
  }

 private:
  Model &m_;

  [[noreturn]] void fail(int line, const std::string &key, const std::string &what) const
  {
    throw FormatError(m_.source + ":" + std::to_string(line) + ": " + key + ": " + what);
  }

  const Node &required(const Node &map, const char *key, const std::string &parent) const
  {
    const Node *n = map.find(key);
    const std::string where = parent.empty() ? std::string(key) : parent;
    if (!n) fail(map.line, where, parent.empty() ? "missing required key" : std::string("missing required key '") + key + "'");
    if (n->is_null()) fail(n->line, parent.empty() ? where : parent + "." + key, "has no value");
    return *n;
  }

  double number(const Node &n, const std::string &key) const
  {
    double x = 0.0;
    if (!yaml_lite::to_double(n, &x)) fail(n.line, key, "expected a number, got '" + n.text() + "'");
    return x;
  }
  int integer(const Node &n, const std::string &key) const
  {
    long long x = 0;
    if (!yaml_lite::to_int(n, &x)) fail(n.line, key, "expected an integer, got '" + n.text() + "'");
    if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max())
      fail(n.line, key, "integer out of range: " + n.text());
    return static_cast<int>(x);
  }
  std::string string(const Node &n, const std::string &key) const
  {
    if (!n.is_scalar()) fail(n.line, key, "expected a name, got '" + n.text() + "'");
    return n.value;
  }
  std::vector<double> numbers(const Node &n, const std::string &key) const
  {
    if (!n.is_sequence()) fail(n.line, key, "expected a list of numbers, got '" + short_text(n) + "'");
    std::vector<double> out;
    out.reserve(n.items.size());
    for (const Node &x : n.items) out.push_back(number(x, key));
    return out;
  }
  std::vector<int> integers(const Node &n, const std::string &key) const
  {
    if (!n.is_sequence()) fail(n.line, key, "expected a list of integers, got '" + short_text(n) + "'");
    std::vector<int> out;
    out.reserve(n.items.size());
    for (const Node &x : n.items) out.push_back(integer(x, key));
    return out;
  }
  static std::string short_text(const Node &n)
  {
    std::string t = n.text();
    return t.size() > 60 ? t.substr(0, 57) + "..." : t;
  }

  // A species index used as a mapping key (embeddings, functions).
  int species_key(const Node &k, const std::string &section) const
  {
    int mu = integer(k, section);
    if (mu < 0 || mu >= m_.nelements())
      fail(k.line, section + "[" + k.text() + "]",
           "species index out of range (the potential has " + std::to_string(m_.nelements()) + " elements)");
    return mu;
  }

  template <class Fn>
  void read_fields(const Node &map, const std::string &key, Fn &&fields)
  {
    if (!map.is_mapping()) fail(map.line, key, "expected a mapping, got '" + short_text(map) + "'");
    m_.key_lines[key] = map.line;
    for (const auto &e : map.entries) m_.key_lines[key + "." + e.first.text()] = e.second.line;
    fields();
  }

  void read_embeddings(const Node &emb)
  {
    m_.key_lines["embeddings"] = emb.line;
    if (!emb.is_mapping()) fail(emb.line, "embeddings", "expected a mapping from species index to parameters");
    const int nel = m_.nelements();
    m_.embeddings.assign(nel, Embedding());
    std::vector<bool> seen(nel, false);
    for (const auto &e : emb.entries) {
      const int mu = species_key(e.first, "embeddings");
      const std::string k = embedding_key(mu);
      seen[mu] = true;
      const Node &v = e.second;
      read_fields(v, k, [&] {
        Embedding &out = m_.embeddings[mu];
        out.ndensity = integer(required(v, "ndensity", k), k + ".ndensity");
        out.FS_parameters = numbers(required(v, "FS_parameters", k), k + ".FS_parameters");
        out.npoti = string(required(v, "npoti", k), k + ".npoti");
        out.rho_core_cutoff = number(required(v, "rho_core_cutoff", k), k + ".rho_core_cutoff");
        out.drho_core_cutoff = number(required(v, "drho_core_cutoff", k), k + ".drho_core_cutoff");
      });
    }
    for (int mu = 0; mu < nel; ++mu)
      if (!seen[mu]) fail(emb.line, "embeddings", "no entry for species " + std::to_string(mu) + " (" + m_.elements[mu] + ")");
  }

  void read_bonds(const Node &bonds)
  {
    m_.key_lines["bonds"] = bonds.line;
    if (!bonds.is_mapping()) fail(bonds.line, "bonds", "expected a mapping from [mu_i, mu_j] to parameters");
    const int nel = m_.nelements();
    for (const auto &e : bonds.entries) {
      const Node &key = e.first;
      if (!key.is_sequence() || key.items.size() != 2)
        fail(key.line, "bonds", "a bond key must be a pair [mu_i, mu_j], got '" + key.text() + "'");
      const int i = integer(key.items[0], "bonds[" + key.text() + "]");
      const int j = integer(key.items[1], "bonds[" + key.text() + "]");
      const std::string k = bond_key(i, j);
      if (i < 0 || i >= nel || j < 0 || j >= nel)
        fail(key.line, k, "species index out of range (the potential has " + std::to_string(nel) + " elements)");
      const Node &v = e.second;
      Bond b;
      read_fields(v, k, [&] {
        b.radbasename = string(required(v, "radbasename", k), k + ".radbasename");
        if (b.radbasename.rfind("ACE.jl", 0) == 0)
          fail(v.line, k + ".radbasename", "ACE.jl radial bases ('" + b.radbasename + "') are not supported");
        b.nradmax = integer(required(v, "nradmax", k), k + ".nradmax");
        b.lmax = integer(required(v, "lmax", k), k + ".lmax");
        b.nradbasemax = integer(required(v, "nradbasemax", k), k + ".nradbasemax");
        if (b.nradmax < 0 || b.lmax < 0 || b.nradbasemax < 0)
          fail(v.line, k, "nradmax, lmax and nradbasemax must be >= 0");
        b.radparameters = numbers(required(v, "radparameters", k), k + ".radparameters");
        read_radcoefficients(required(v, "radcoefficients", k), k + ".radcoefficients", b);
        b.prehc = number(required(v, "prehc", k), k + ".prehc");
        b.lambdahc = number(required(v, "lambdahc", k), k + ".lambdahc");
        b.rcut = number(required(v, "rcut", k), k + ".rcut");
        b.dcut = number(required(v, "dcut", k), k + ".dcut");
        if (const Node *n = v.find("rcut_in")) b.rcut_in = number(*n, k + ".rcut_in");
        if (const Node *n = v.find("dcut_in")) b.dcut_in = number(*n, k + ".dcut_in");
        // files written before inner cutoff types existed meant the density cutoff
        if (const Node *n = v.find("inner_cutoff_type"))
          b.inner_cutoff_type = string(*n, k + ".inner_cutoff_type");
        else
          b.inner_cutoff_type = "density";
      });
      if (!m_.bonds.emplace(std::make_pair(i, j), std::move(b)).second)
        fail(key.line, k, "the bond is listed twice");
    }
  }

  // radcoefficients[n][l][k] as nested lists, checked against nradmax, lmax + 1, nradbasemax.
  void read_radcoefficients(const Node &n, const std::string &key, Bond &b) const
  {
    auto expect_list = [&](const Node &x, size_t size, const char *what, const std::string &at) {
      if (!x.is_sequence()) fail(x.line, at, std::string("expected a list over ") + what + ", got '" + short_text(x) + "'");
      if (x.items.size() != size)
        fail(x.line, at, "has " + std::to_string(x.items.size()) + " entries over " + what + ", expected " +
                             std::to_string(size));
    };
    const size_t N = static_cast<size_t>(b.nradmax), L = static_cast<size_t>(b.lmax) + 1,
                 K = static_cast<size_t>(b.nradbasemax);
    expect_list(n, N, "n (nradmax)", key);
    b.radcoefficients.assign(N * L * K, 0.0);
    for (size_t in = 0; in < N; ++in) {
      const Node &ln = n.items[in];
      const std::string kn = key + "[" + std::to_string(in) + "]";
      expect_list(ln, L, "l (lmax + 1)", kn);
      for (size_t il = 0; il < L; ++il) {
        const Node &kl = ln.items[il];
        const std::string kk = kn + "[" + std::to_string(il) + "]";
        expect_list(kl, K, "k (nradbasemax)", kk);
        for (size_t ik = 0; ik < K; ++ik) b.radcoefficients[(in * L + il) * K + ik] = number(kl.items[ik], kk);
      }
    }
  }

  void read_functions(const Node &fns)
  {
    m_.key_lines["functions"] = fns.line;
    if (!fns.is_mapping()) fail(fns.line, "functions", "expected a mapping from species index to a list of functions");
    const int nel = m_.nelements();
    m_.functions.assign(nel, {});
    for (const auto &e : fns.entries) {
      const int mu = species_key(e.first, "functions");
      const Node &list = e.second;
      const std::string lk = "functions[" + std::to_string(mu) + "]";
      m_.key_lines[lk] = list.line;
      if (list.is_null()) continue;    // an element without functions
      if (!list.is_sequence()) fail(list.line, lk, "expected a list of functions");
      auto &out = m_.functions[mu];
      out.reserve(list.items.size());
      for (size_t f = 0; f < list.items.size(); ++f) {
        const Node &v = list.items[f];
        const std::string k = function_key(mu, f);
        Function fn;
        read_fields(v, k, [&] {
          fn.mu0 = integer(required(v, "mu0", k), k + ".mu0");
          fn.rank = integer(required(v, "rank", k), k + ".rank");
          fn.ndensity = integer(required(v, "ndensity", k), k + ".ndensity");
          const Node &nms_node = required(v, "num_ms_combs", k);
          const int nms = integer(nms_node, k + ".num_ms_combs");
          if (fn.rank < 1) fail(v.line, k + ".rank", "must be >= 1, got " + std::to_string(fn.rank));
          if (fn.ndensity < 1) fail(v.line, k + ".ndensity", "must be >= 1, got " + std::to_string(fn.ndensity));
          if (nms < 1) fail(nms_node.line, k + ".num_ms_combs", "must be >= 1, got " + std::to_string(nms));
          auto sized = [&](const char *name, size_t expected, const std::string &why) {
            const Node &x = required(v, name, k);
            if (x.is_sequence() && x.items.size() != expected)
              fail(x.line, k + "." + name, "has " + std::to_string(x.items.size()) + " values, expected " + why +
                                               " = " + std::to_string(expected));
            return &x;
          };
          const size_t r = static_cast<size_t>(fn.rank);
          fn.mus = integers(*sized("mus", r, "rank"), k + ".mus");
          fn.ns = integers(*sized("ns", r, "rank"), k + ".ns");
          fn.ls = integers(*sized("ls", r, "rank"), k + ".ls");
          fn.ms_combs = integers(*sized("ms_combs", r * nms, "rank x num_ms_combs"), k + ".ms_combs");
          fn.ctildes = numbers(*sized("ctildes", static_cast<size_t>(fn.ndensity) * nms, "ndensity x num_ms_combs"),
                               k + ".ctildes");
        });
        out.push_back(std::move(fn));
      }
    }
  }
};

}    // namespace

Model read_yace(const std::string &text, const std::string &source)
{
  Model m;
  m.source = source;
  m.format = "yace";
  Node root;
  try {
    root = yaml_lite::parse(text, source);
  } catch (const yaml_lite::Error &e) {
    throw FormatError(e.what());
  }
  YaceReader(m).read(root);
  return m;
}

}    // namespace mlff_ace
