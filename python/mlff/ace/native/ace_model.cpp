#include "ace_model.h"

#include "ace_readers.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace mlff_ace {

std::string bond_key(int mu_i, int mu_j)
{
  return "bonds[" + std::to_string(mu_i) + ", " + std::to_string(mu_j) + "]";
}
std::string embedding_key(int mu) { return "embeddings[" + std::to_string(mu) + "]"; }
std::string function_key(int mu, size_t index)
{
  return "functions[" + std::to_string(mu) + "][" + std::to_string(index) + "]";
}

int atomic_number(const std::string &symbol)
{
  static const char *const symbols[] = {
      "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si", "P",
      "S",  "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
      "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru", "Rh",
      "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd",
      "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",  "Re",
      "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th",
      "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr"};
  for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); ++i)
    if (symbol == symbols[i]) return static_cast<int>(i) + 1;
  return 0;
}

double Model::max_cutoff() const
{
  double rc = 0.0;
  for (const auto &b : bonds) rc = std::max(rc, b.second.rcut);
  return rc;
}

std::string Model::inner_cutoff_type() const
{
  for (const auto &b : bonds)
    if (!b.second.inner_cutoff_type.empty()) return b.second.inner_cutoff_type;
  return "density";
}

std::string Model::where(const std::string &key) const
{
  // the most specific recorded prefix: "functions[0][3].ns" falls back to "functions[0][3]"
  std::string probe = key;
  while (!probe.empty()) {
    auto it = key_lines.find(probe);
    if (it != key_lines.end()) return source + ":" + std::to_string(it->second) + ": " + key;
    size_t cut = probe.find_last_of(".[");
    if (cut == std::string::npos || cut == 0) break;
    probe = probe.substr(0, cut);
  }
  return source + ": " + key;
}

namespace {

bool finite_all(const std::vector<double> &v)
{
  for (double x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

std::string str(double x)
{
  std::ostringstream s;
  s.precision(17);
  s << x;
  return s.str();
}

}    // namespace

void Model::validate() const
{
  auto fail = [this](const std::string &key, const std::string &what) {
    throw FormatError(where(key) + ": " + what);
  };
  const int nel = nelements();
  if (nel == 0) fail("elements", "the potential has no elements");
  std::set<std::string> seen;
  for (int mu = 0; mu < nel; ++mu) {
    if (elements[mu].empty()) fail("elements", "element " + std::to_string(mu) + " has an empty name");
    if (!seen.insert(elements[mu]).second) fail("elements", "element '" + elements[mu] + "' is listed twice");
  }
  if (static_cast<int>(E0.size()) != nel)
    fail("E0", "has " + std::to_string(E0.size()) + " values for " + std::to_string(nel) + " elements");
  if (!finite_all(E0)) fail("E0", "contains a value that is not a finite number");

  // embeddings
  if (static_cast<int>(embeddings.size()) != nel)
    fail("embeddings", "has " + std::to_string(embeddings.size()) + " entries for " + std::to_string(nel) +
                           " elements");
  for (int mu = 0; mu < nel; ++mu) {
    const Embedding &e = embeddings[mu];
    const std::string k = embedding_key(mu);
    if (e.ndensity < 1) fail(k + ".ndensity", "must be at least 1, got " + std::to_string(e.ndensity));
    if (e.FS_parameters.size() != 2 * static_cast<size_t>(e.ndensity))
      fail(k + ".FS_parameters", "has " + std::to_string(e.FS_parameters.size()) +
                                     " values, expected 2 x ndensity = " + std::to_string(2 * e.ndensity));
    if (!finite_all(e.FS_parameters)) fail(k + ".FS_parameters", "contains a value that is not a finite number");
    if (e.npoti != "FinnisSinclair" && e.npoti != "FinnisSinclairShiftedScaled")
      fail(k + ".npoti", "unknown embedding '" + e.npoti +
                             "' (supported: FinnisSinclair, FinnisSinclairShiftedScaled)");
    if (!std::isfinite(e.rho_core_cutoff)) fail(k + ".rho_core_cutoff", "is not a finite number");
    if (!(e.drho_core_cutoff >= 0) || !std::isfinite(e.drho_core_cutoff))
      fail(k + ".drho_core_cutoff", "must be a finite number >= 0, got " + str(e.drho_core_cutoff));
  }

  // bonds: ML-PACE needs every ordered pair
  for (const auto &b : bonds) {
    const int i = b.first.first, j = b.first.second;
    if (i < 0 || i >= nel || j < 0 || j >= nel)
      fail(bond_key(i, j), "species index out of range (the potential has " + std::to_string(nel) +
                               " elements, indices 0.." + std::to_string(nel - 1) + ")");
  }
  std::string shared_type, shared_type_bond;
  for (int i = 0; i < nel; ++i)
    for (int j = 0; j < nel; ++j) {
      const std::string k = bond_key(i, j);
      auto it = bonds.find({i, j});
      if (it == bonds.end())
        fail("bonds", "no entry for the bond " + k.substr(5) + " (" + elements[i] + "-" + elements[j] + ")");
      const Bond &b = it->second;
      const std::string &rb = b.radbasename;
      if (rb != "ChebExpCos" && rb != "ChebPow" && rb != "ChebLinear" && rb != "SBessel")
        fail(k + ".radbasename", "unknown radial basis '" + rb +
                                     "' (supported: ChebExpCos, ChebPow, ChebLinear, SBessel)");
      if (b.nradmax < 0) fail(k + ".nradmax", "must be >= 0, got " + std::to_string(b.nradmax));
      if (b.lmax < 0) fail(k + ".lmax", "must be >= 0, got " + std::to_string(b.lmax));
      if (b.nradbasemax < 1) fail(k + ".nradbasemax", "must be >= 1, got " + std::to_string(b.nradbasemax));
      const size_t ncoef = static_cast<size_t>(b.nradmax) * (b.lmax + 1) * b.nradbasemax;
      if (b.radcoefficients.size() != ncoef)
        fail(k + ".radcoefficients", "has " + std::to_string(b.radcoefficients.size()) +
                                         " values, expected nradmax x (lmax + 1) x nradbasemax = " +
                                         std::to_string(ncoef));
      if (!finite_all(b.radcoefficients))
        fail(k + ".radcoefficients", "contains a value that is not a finite number");
      if (!finite_all(b.radparameters)) fail(k + ".radparameters", "contains a value that is not a finite number");
      if (rb == "ChebExpCos" || rb == "ChebPow") {
        if (b.radparameters.empty()) fail(k + ".radparameters", "is empty; " + rb + " needs lambda");
        if (rb == "ChebPow" && !(b.radparameters[0] > 0))
          fail(k + ".radparameters", "ChebPow needs lambda > 0, got " + str(b.radparameters[0]));
        if (rb == "ChebExpCos" && b.radparameters[0] == 0)
          fail(k + ".radparameters", "ChebExpCos needs lambda != 0");
      }
      if (!(b.rcut > 0) || !std::isfinite(b.rcut)) fail(k + ".rcut", "must be a positive number, got " + str(b.rcut));
      if (!(b.dcut >= 0) || !(b.dcut <= b.rcut))
        fail(k + ".dcut", "must be in [0, rcut = " + str(b.rcut) + "], got " + str(b.dcut));
      if (!(b.rcut_in >= 0) || !std::isfinite(b.rcut_in))
        fail(k + ".rcut_in", "must be a finite number >= 0, got " + str(b.rcut_in));
      if (!(b.dcut_in >= 0) || !std::isfinite(b.dcut_in))
        fail(k + ".dcut_in", "must be a finite number >= 0, got " + str(b.dcut_in));
      if (!std::isfinite(b.prehc)) fail(k + ".prehc", "is not a finite number");
      if (!std::isfinite(b.lambdahc)) fail(k + ".lambdahc", "is not a finite number");
      const std::string type = b.inner_cutoff_type.empty() ? "density" : b.inner_cutoff_type;
      if (type != "density" && type != "distance" && type != "zbl")
        fail(k + ".inner_cutoff_type", "unknown inner cutoff type '" + type + "' (supported: density, distance, zbl)");
      // ML-PACE keeps one type for the whole potential (the last bond's); refuse a mix
      // rather than silently apply one bond's choice to another
      if (shared_type.empty()) {
        shared_type = type;
        shared_type_bond = k;
      } else if (type != shared_type) {
        fail(k + ".inner_cutoff_type", "is '" + type + "' but " + shared_type_bond + " has '" + shared_type +
                                           "': ML-PACE applies one inner cutoff type to every bond");
      }
      if (type == "zbl") {
        if (!atomic_number(elements[i]) || !atomic_number(elements[j]))
          fail(k + ".inner_cutoff_type", "zbl needs chemical element symbols, got '" + elements[i] + "', '" +
                                             elements[j] + "'");
        if (!(b.dcut > 0))
          fail(k + ".dcut", "zbl smooths the pair term to zero over [rcut - dcut, rcut] and needs dcut > 0");
      }
    }

  // functions
  int nradbase = 0, nradmax = 0, lmax = 0;
  for (const auto &b : bonds) {
    nradbase = std::max(nradbase, b.second.nradbasemax);
    nradmax = std::max(nradmax, b.second.nradmax);
    lmax = std::max(lmax, b.second.lmax);
  }
  if (static_cast<int>(functions.size()) != nel)
    fail("functions", "has entries for " + std::to_string(functions.size()) + " species, expected " +
                          std::to_string(nel));
  for (int mu = 0; mu < nel; ++mu) {
    const int ndens = embeddings[mu].ndensity;
    for (size_t f = 0; f < functions[mu].size(); ++f) {
      const Function &fn = functions[mu][f];
      const std::string k = function_key(mu, f);
      if (fn.mu0 != mu) fail(k + ".mu0", "is " + std::to_string(fn.mu0) + " in the list of species " + std::to_string(mu));
      if (fn.rank < 1) fail(k + ".rank", "must be >= 1, got " + std::to_string(fn.rank));
      if (fn.ndensity != ndens)
        fail(k + ".ndensity", "is " + std::to_string(fn.ndensity) + " but the embedding of " + elements[mu] +
                                  " has ndensity " + std::to_string(ndens));
      const size_t r = static_cast<size_t>(fn.rank);
      if (fn.mus.size() != r) fail(k + ".mus", "has " + std::to_string(fn.mus.size()) + " values for rank " + std::to_string(fn.rank));
      if (fn.ns.size() != r) fail(k + ".ns", "has " + std::to_string(fn.ns.size()) + " values for rank " + std::to_string(fn.rank));
      if (fn.ls.size() != r) fail(k + ".ls", "has " + std::to_string(fn.ls.size()) + " values for rank " + std::to_string(fn.rank));
      if (fn.ms_combs.size() % r != 0 || fn.ms_combs.empty())
        fail(k + ".ms_combs", "has " + std::to_string(fn.ms_combs.size()) + " values, not a positive multiple of rank " +
                                  std::to_string(fn.rank));
      const size_t nms = fn.ms_combs.size() / r;
      if (fn.ctildes.size() != nms * static_cast<size_t>(ndens))
        fail(k + ".ctildes", "has " + std::to_string(fn.ctildes.size()) + " values, expected num_ms_combs x ndensity = " +
                                 std::to_string(nms * ndens));
      if (!finite_all(fn.ctildes)) fail(k + ".ctildes", "contains a value that is not a finite number");
      for (size_t t = 0; t < r; ++t) {
        if (fn.mus[t] < 0 || fn.mus[t] >= nel)
          fail(k + ".mus", "species index " + std::to_string(fn.mus[t]) + " out of range (the potential has " +
                               std::to_string(nel) + " elements)");
        if (fn.rank == 1) {
          if (fn.ns[t] < 1 || fn.ns[t] > nradbase)
            fail(k + ".ns", "n = " + std::to_string(fn.ns[t]) + " of a rank-1 function must be in 1..nradbase = " +
                                std::to_string(nradbase));
          if (fn.ls[t] != 0) fail(k + ".ls", "a rank-1 function has l = 0, got " + std::to_string(fn.ls[t]));
        } else {
          if (fn.ns[t] < 1 || fn.ns[t] > nradmax)
            fail(k + ".ns", "n = " + std::to_string(fn.ns[t]) + " must be in 1..nradmax = " + std::to_string(nradmax));
          if (fn.ls[t] < 0 || fn.ls[t] > lmax)
            fail(k + ".ls", "l = " + std::to_string(fn.ls[t]) + " must be in 0..lmax = " + std::to_string(lmax));
        }
      }
      for (size_t c = 0; c < nms; ++c)
        for (size_t t = 0; t < r; ++t) {
          const int m = fn.ms_combs[c * r + t];
          if (m < -fn.ls[t] || m > fn.ls[t])
            fail(k + ".ms_combs", "m = " + std::to_string(m) + " outside -l..l for l = " + std::to_string(fn.ls[t]));
        }
    }
  }
}

Model read_model(const std::string &text, const std::string &source)
{
  // The text format has `key=value` lines (nelements=, radbasename=, crad=) and
  // ctilde_basis_func: records at the start of lines; YAML never does.
  bool is_text = false;
  size_t pos = 0;
  while (pos < text.size() && !is_text) {
    size_t p = text.find_first_not_of(" \t", pos);
    if (p != std::string::npos)
      for (const char *marker : {"nelements=", "radbasename=", "ctilde_basis_func:"})
        if (text.compare(p, std::strlen(marker), marker) == 0) is_text = true;
    size_t e = text.find('\n', pos);
    if (e == std::string::npos) break;
    pos = e + 1;
  }
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) throw FormatError(source + ": the file is empty");
  Model m = is_text ? read_ace_text(text, source) : read_yace(text, source);
  m.validate();
  return m;
}

Model read_model_file(const std::string &path)
{
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open the ACE potential '" + path + "': " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) throw std::runtime_error("cannot read the ACE potential '" + path + "'");
  return read_model(s.str(), path);
}

}    // namespace mlff_ace
