/* mlff ACE core: the in-memory form of an ACE potential in the C-tilde representation.
 *
 * One struct for every source: the .yace (YAML) reader, the old .ace text reader and
 * Python (mlff.ace._ace.Model.from_dict) all fill it, and the evaluator reads only it.
 * Field names follow the .yace keys so the file and the code read the same
 * (see ../../../../../shared/DESIGN.md, "ACE facts"). Species are indices into
 * `elements` (the file's order), not atomic numbers.
 *
 * Licence: this folder is part of mlff (permissive); the LAMMPS plugin compiles it in.
 */
#ifndef MLFF_ACE_MODEL_H
#define MLFF_ACE_MODEL_H

#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mlff_ace {

// A malformed or unsupported file: the message names the file, the line and the key.
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Embedding {                       // .yace `embeddings: {mu: {...}}`
  int ndensity = 1;
  std::vector<double> FS_parameters;     // [w0, m0, w1, m1, ...], 2 * ndensity values
  std::string npoti;                     // FinnisSinclair | FinnisSinclairShiftedScaled
  double rho_core_cutoff = 0.0;
  double drho_core_cutoff = 0.0;
};

struct Bond {                            // .yace `bonds: {[mu_i, mu_j]: {...}}`
  int nradmax = 0;
  int lmax = 0;
  int nradbasemax = 0;
  std::string radbasename;               // ChebExpCos | ChebPow | ChebLinear | SBessel
  std::vector<double> radparameters;     // e.g. [lambda]
  // crad[n][l][k], n < nradmax, l <= lmax, k < nradbasemax, stored flat:
  // radcoefficients[(n * (lmax + 1) + l) * nradbasemax + k]
  std::vector<double> radcoefficients;
  double prehc = 0.0;                    // core repulsion prefactor and exponent
  double lambdahc = 0.0;
  double rcut = 0.0;
  double dcut = 0.0;
  double rcut_in = 0.0;                  // inner cutoff (ZBL or core blending)
  double dcut_in = 0.0;
  std::string inner_cutoff_type;         // "" (none/density) | density | distance | zbl
  double crad(int n, int l, int k) const
  {
    return radcoefficients[(static_cast<size_t>(n) * (lmax + 1) + l) * nradbasemax + k];
  }
};

struct Function {                        // one entry of .yace `functions: {mu0: [...]}`
  int mu0 = 0;
  int rank = 0;
  int ndensity = 1;
  std::vector<int> mus;                  // [rank] neighbour species
  std::vector<int> ns;                   // [rank] radial index, 1-based as in the file
  std::vector<int> ls;                   // [rank]
  // ms_combs[c * rank + t], c < num_ms_combs (a half basis: Re() of the products)
  std::vector<int> ms_combs;
  // ctildes[c * ndensity + p]
  std::vector<double> ctildes;
  int num_ms_combs() const { return rank ? static_cast<int>(ms_combs.size()) / rank : 0; }
};

struct Model {
  std::string source;                    // file name for messages
  std::string format;                    // yace | ace | dict
  std::vector<std::string> elements;     // species index -> symbol
  std::vector<double> E0;                // [nelements] eV, 0 when absent
  double deltaSplineBins = 0.001;
  std::vector<Embedding> embeddings;     // [nelements]
  std::map<std::pair<int, int>, Bond> bonds;
  std::vector<std::vector<Function>> functions;    // [nelements][...]
  // Where each key was read ("bonds[0, 1].rcut" -> line), so that validate() can name
  // the line of a value that is well-formed but wrong. Empty for models built in memory.
  std::map<std::string, int> key_lines;

  int nelements() const { return static_cast<int>(elements.size()); }
  double max_cutoff() const;             // the largest bond rcut: the interaction range
  // Checks indices, array sizes and ranges; throws FormatError naming what is wrong.
  void validate() const;
  // The inner cutoff type every bond shares ("density" when the file names none).
  std::string inner_cutoff_type() const;
  // "<source>:<line>: <key>" (or "<source>: <key>" when the line is unknown), for messages.
  std::string where(const std::string &key) const;
};

// Atomic number of a chemical symbol (H..Lr, as ML-PACE's ZBL knows them); 0 if unknown.
int atomic_number(const std::string &symbol);

// Reads .yace (YAML) or .ace (text), chosen by content; throws FormatError.
Model read_model(const std::string &text, const std::string &source);
Model read_model_file(const std::string &path);

}    // namespace mlff_ace

#endif
