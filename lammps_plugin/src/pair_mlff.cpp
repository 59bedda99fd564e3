/* ----------------------------------------------------------------------
   mlff LAMMPS plugin: pair_style mlff (GPL-2.0-or-later, see ../LICENSE)

   Implements the mlff exported-model contract (python/mlff/contract.py) in LAMMPS:
   one full neighbour list at the largest cutoff the model asks for is filtered into
   one edge set per model list, and forces, virial and per-atom virial follow from
   dE/dr_ij of every list: F_i += g, F_j -= g, W = -sum r_ij (x) g, half of each
   edge's W to i and to j. Models with geometry inputs (an Ewald sum) also get the
   nodes' positions and the cell, and their gradients add F_i -= dE/dpos_i and
   W -= sum pos (x) dE/dpos + sum h_k (x) dE/dh_k (one rank only; see below).
------------------------------------------------------------------------- */

#include "pair_mlff.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

#include "ace_backend.h"
#include "backend_loader.h"
#include "build_info.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>

using namespace LAMMPS_NS;

namespace {
// the model's whole-system sums, summed over the ranks of this LAMMPS instance
class WorldReducer : public mlff_lmp::Reducer {
 public:
  explicit WorldReducer(MPI_Comm world) : world_(world) {}
  void sum(double *data, int n) override { MPI_Allreduce(MPI_IN_PLACE, data, n, MPI_DOUBLE, MPI_SUM, world_); }

 private:
  MPI_Comm world_;
};

// a structure with a pair closer than this fraction of the shortest training distance
// is far outside what the model has seen (the Python engines use the same rule)
constexpr double CLOSE_CONTACT_FRACTION = 0.75;
}    // namespace

/* ---------------------------------------------------------------------- */

PairMLFF::PairMLFF(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;    // the model lives in its own file: re-specify pair_style after read_restart
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;    // the virial comes from edge gradients, also on one rank
  centroidstressflag = CENTROID_AVAIL;
}

PairMLFF::~PairMLFF()
{
  if (copymode) return;
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
  memory->destroy(peratom_out_);
  memory->destroy(partial_atom_);
  memory->destroy(xfeat_);
  memory->destroy(pvector);
}

double PairMLFF::memory_usage()
{
  double bytes = Pair::memory_usage();
  bytes += (double) nmax_out_ * ncols_out_ * sizeof(double);
  bytes += (double) nmax_partial_ * ncols_partial_ * sizeof(double);
  bytes += (double) nmax_feat_ * ncols_feat_ * sizeof(double);
  bytes += (double) (atom_node_.size() + node_atom_.size() + hop_.size()) * sizeof(int);
  for (const auto &list : graph_.lists)
    bytes += (double) list.edge_index.size() * sizeof(int64_t) + list.edge_vectors.size() * sizeof(double);
  return bytes;
}

/* ---------------------------------------------------------------------- */

void PairMLFF::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  for (int i = 1; i < n; i++)
    for (int j = i; j < n; j++) setflag[i][j] = 0;
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(cutghost, n, n, "pair:cutghost");
  type_symbol_.assign(n, "NULL");
  type_z_.assign(n, 0);
}

void PairMLFF::check_units()
{
  std::string units = update->unit_style;
  if (units == "metal")
    energy_factor_ = 1.0;
  else if (units == "real")
    energy_factor_ = utils::get_conversion_factor(utils::ENERGY, utils::METAL2REAL);
  else
    error->all(FLERR,
               "pair_style mlff supports 'units metal' (eV, Angstrom) and 'units real' "
               "(kcal/mol, Angstrom); this input uses 'units {}'",
               units);
}

// Reads a file on rank 0 and broadcasts its bytes: on a cluster every rank reading (and
// checking) the same file at once hammers the shared file system.
std::string PairMLFF::read_broadcast(const std::string &path)
{
  std::string data, failure;
  if (comm->me == 0) {
    try {
      data = mlff_lmp::read_file(path);
    } catch (std::exception &e) {
      failure = e.what();
    }
  }
  int nfail = static_cast<int>(failure.size());
  MPI_Bcast(&nfail, 1, MPI_INT, 0, world);
  if (nfail) {
    failure.resize(nfail);
    MPI_Bcast(&failure[0], nfail, MPI_CHAR, 0, world);
    error->all(FLERR, "pair_style mlff: {}", failure);
  }
  bigint size = static_cast<bigint>(data.size());
  MPI_Bcast(&size, 1, MPI_LMP_BIGINT, 0, world);
  data.resize(size);
  for (bigint off = 0; off < size; off += MAXSMALLINT) {
    int chunk = static_cast<int>(std::min<bigint>(MAXSMALLINT, size - off));
    MPI_Bcast(&data[off], chunk, MPI_CHAR, 0, world);
  }
  return data;
}

/* ----------------------------------------------------------------------
   pair_style mlff MODEL [device cpu|cuda|cuda:N] [graph auto|ghosts]
                         [charge Q] [fidelity NAME|INDEX]
------------------------------------------------------------------------- */

void PairMLFF::settings(int narg, char **arg)
{
  if (narg < 1)
    error->all(FLERR, "Illegal pair_style mlff command: expected pair_style mlff MODEL.pt "
                      "[device cpu|cuda|cuda:N] [graph auto|ghosts] [charge Q] [fidelity NAME|INDEX]");
  check_units();
  std::string path = arg[0];
  std::string device = "cpu", fidelity;
  mlff_lmp::AceOptions ace_options;
  output_every_ = 1;
  every_keyword_.clear();
  bool have_charge = false;
  double charge = 0.0;
  force_ghost_mode_ = false;
  exchange_allowed_ = true;
  // a keyword with two values: true for `yes`, false for `no`, anything else an error
  auto two_way = [&](const std::string &key, const std::string &val, const char *yes, const char *no) {
    if (val != yes && val != no)
      error->all(FLERR, "pair_style mlff: {} must be {} or {}, not {}", key, yes, no, val);
    return val == yes;
  };
  for (int iarg = 1; iarg < narg; iarg += 2) {
    std::string key = arg[iarg];
    if (iarg + 1 >= narg) error->all(FLERR, "pair_style mlff: keyword {} needs a value", key);
    std::string val = arg[iarg + 1];
    if (key == "device") {
      device = val;
    } else if (key == "graph") {
      force_ghost_mode_ = two_way(key, val, "ghosts", "auto");
    } else if (key == "exchange") {
      exchange_allowed_ = two_way(key, val, "auto", "no");
    } else if (key == "charge") {
      charge = utils::numeric(FLERR, val, false, lmp);
      have_charge = true;
    } else if (key == "fidelity") {
      fidelity = val;
    } else if (key == "activeset") {
      ace_options.activeset = val;
    } else if (key == "gamma_every" || key == "outputs_every") {
      output_every_ = utils::inumeric(FLERR, val, false, lmp);
      if (output_every_ < 1)
        error->all(FLERR, "pair_style mlff: {} must be a positive number of steps, not {}", key, val);
      every_keyword_ = key;
    } else {
      error->all(FLERR,
                 "pair_style mlff: unknown keyword '{}' (known: device, graph, exchange, charge, "
                 "fidelity, outputs_every, activeset, gamma_every)",
                 key);
    }
  }
  if (device == "cpu") {
    device_type_ = "cpu";
    device_index_ = -1;
  } else if (device == "cuda") {
    device_type_ = "cuda";
    device_index_ = -1;
  } else if (utils::strmatch(device, "^cuda:\\d+$")) {
    device_type_ = "cuda";
    device_index_ = utils::inumeric(FLERR, device.substr(5), false, lmp);
  } else {
    error->all(FLERR, "pair_style mlff: device must be cpu, cuda or cuda:N, not '{}'", device);
  }

  std::string data = read_broadcast(path);
  if (!ace_options.activeset.empty()) ace_options.activeset_data = read_broadcast(ace_options.activeset);

  // ACE files (.yace, .ace) are evaluated by the native ACE core; everything else is an
  // exported TorchScript model for the torch backend
  const bool ace = mlff_lmp::is_ace_file(path, data);
  std::string failure;
  backend_.reset();
  if (ace) {
    failure.clear();
    try {
      backend_ = mlff_lmp::create_ace_backend(data, path, ace_options, model_);
    } catch (std::exception &e) {
      failure = e.what();
    }
    // the file is the same on every rank, so is the outcome
    if (!failure.empty()) error->all(FLERR, "pair_style mlff: {}", failure);
    if (output_every_ != 1 && ace_options.activeset.empty())
      error->all(FLERR, "pair_style mlff: gamma_every sets how often the extrapolation grade is "
                        "computed, which needs an active set: add 'activeset FILE.asi'");
    if (device_type_ != "cpu")
      error->all(FLERR,
                 "pair_style mlff: ACE files run on the CPU in LAMMPS (the native ACE core); for a "
                 "GPU, export a TorchScript model with 'mlff export {} -o model.pt' and use that "
                 "file with device {}",
                 path, device);
  } else {
    if (!ace_options.activeset.empty() || every_keyword_ == "gamma_every")
      error->all(FLERR, "pair_style mlff: the activeset and gamma_every keywords are for ACE "
                        "potentials, and {} is not one (outputs_every N sets how often a model's "
                        "named outputs are computed)", path);
    try {
      model_ = mlff_lmp::parse_model_info(path, data);
    } catch (std::exception &e) {
      error->all(FLERR, "pair_style mlff: {}", e.what());
    }
    if (output_every_ != 1 && model_.outputs.empty())
      error->all(FLERR, "pair_style mlff: outputs_every sets how often the model's named outputs are "
                        "computed, and model {} has none (energies only)", path);
  }
  cut_sq_.clear();
  for (const auto &nl : model_.lists) cut_sq_.push_back(nl.cutoff * nl.cutoff);
  cut_first_sq_ = cut_sq_.front();

  // system inputs: the same checks and wording as ModelMetadata in python/mlff/contract.py
  std::string valid;
  for (size_t k = 0; k < model_.fidelities.size(); k++)
    valid += fmt::format("{}{} ('{}')", k ? ", " : "", k, model_.fidelities[k]);
  if (valid.empty()) valid = "0 (the only one)";
  fidelity_ = 0;
  if (!fidelity.empty()) {
    if (utils::is_integer(fidelity)) {
      fidelity_ = utils::inumeric(FLERR, fidelity, false, lmp);
      int n = std::max<int>(1, model_.fidelities.size());
      if (fidelity_ < 0 || fidelity_ >= n)
        error->all(FLERR, "pair_style mlff: fidelity index {} is out of range; model {} has: {}",
                   fidelity_, path, valid);
    } else {
      auto it = std::find(model_.fidelities.begin(), model_.fidelities.end(), fidelity);
      if (it == model_.fidelities.end())
        error->all(FLERR, "pair_style mlff: unknown fidelity '{}'; model {} has: {}", fidelity, path,
                   valid);
      fidelity_ = static_cast<int>(it - model_.fidelities.begin());
    }
  }
  if (have_charge && charge != 0.0 && !model_.uses_charge)
    error->all(FLERR,
               "pair_style mlff: total charge {} was given, but this {} model has no charge input "
               "(it was trained on neutral systems only and would ignore it); use a model trained "
               "with total charges, or leave the charge at 0",
               charge, model_.kind);
  charge_ = charge;

  // what compute mlff/atom (per-atom scalars) and compute pair mlff (global scalars) show;
  // partial member outputs are reduced here (ghosts to owners, ranks summed) and their
  // derived deviations computed (see store_outputs)
  peratom_names_.clear();
  global_names_.clear();
  partial_width_ = 0;
  partial_offset_.clear();
  for (const auto &o : model_.outputs) {
    if (o.partial && o.per_atom) {
      partial_offset_[o.name] = partial_width_;
      partial_width_ += o.width;
    }
    if (o.width != 1) continue;
    (o.per_atom ? peratom_names_ : global_names_).push_back(o.name);
  }
  memory->destroy(pvector);
  nextra = static_cast<int>(global_names_.size());
  if (nextra) memory->create(pvector, nextra, "pair:mlff:pvector");
  for (int k = 0; k < nextra; k++) pvector[k] = 0.0;

  // ranks sharing a node share its GPUs: "device cuda" spreads them round-robin
  int local_rank = 0;
  if (device_type_ == "cuda") {
    MPI_Comm node;
    MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_free(&node);
  }

  auto make_options = [&]() {
    mlff_lmp::BackendOptions options;
    options.dtype = model_.dtype;
    options.device = device_type_;
    options.device_index = device_index_;
    options.local_rank = local_rank;
    options.contract_version = model_.contract_version;
    options.contract_key = model_.contract_key();
    for (const auto &o : model_.outputs)
      if (!o.derived()) options.outputs.push_back({o.name, o.per_atom, o.width, o.partial});
    options.global_sums = model_.global_sums;
    options.compiled = model_.compiled();
    options.compiled_devices = model_.compiled_devices;
    options.compiled_isa = model_.compiled_isa;
    options.compiled_torch = model_.compiled_torch;
    for (const auto &nl : model_.lists) options.list_cutoffs.push_back(nl.cutoff);
    options.first_element = model_.elements.front();
    if (!model_.compiled()) {    // .pt2 packages export forward only
      options.exchange_layers = model_.mp_layers;
      options.exchange_width = model_.mp_width;
    }
    return options;
  };
  auto try_create = [&](const std::string &bytes, const std::string &name) {
    failure.clear();
    try {
      backend_ = mlff_lmp::create_backend(bytes, name, make_options());
    } catch (std::exception &e) {
      failure = e.what();
    }
  };

  failure.clear();
  if (!ace) try_create(data, path);
  int bad = failure.empty() ? 0 : 1, anybad = 0, allbad = 0;
  MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, world);
  const auto slash = path.find_last_of('/');
  const std::string fallback = model_.compiled_fallback.empty() ? std::string() :
      (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + model_.compiled_fallback;
  int have_fallback = 0;
  if (anybad && !ace && model_.compiled() && !fallback.empty()) {
    if (comm->me == 0) have_fallback = std::ifstream(fallback).good() ? 1 : 0;
    MPI_Bcast(&have_fallback, 1, MPI_INT, 0, world);
  }
  if (have_fallback) {
    // a .pt2 that cannot run here (another device, torch or CPU): the TorchScript model
    // exported beside it gives the same numbers, more slowly
    // every rank learns rank 0's reason for the message
    int len = static_cast<int>(failure.size());
    MPI_Bcast(&len, 1, MPI_INT, 0, world);
    std::string why = failure;
    why.resize(len);
    if (len) MPI_Bcast(&why[0], len, MPI_CHAR, 0, world);
    if (comm->me == 0)
      error->warning(FLERR, "pair_style mlff: {}; running {} instead (TorchScript)",
                     why.empty() ? "the compiled model failed to load on a rank" : why, fallback);
    backend_.reset();
    data = read_broadcast(fallback);
    try {
      model_ = mlff_lmp::parse_model_info(fallback, data);
    } catch (std::exception &e) {
      error->all(FLERR, "pair_style mlff: {}", e.what());
    }
    if (model_.compiled()) error->all(FLERR, "pair_style mlff: the fallback {} is a .pt2 package too", fallback);
    try_create(data, fallback);
    bad = failure.empty() ? 0 : 1;
  }
  MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, world);
  MPI_Allreduce(&bad, &allbad, 1, MPI_INT, MPI_MIN, world);
  if (allbad) error->all(FLERR, "pair_style mlff: {}", failure);
  if (bad) error->one(FLERR, "pair_style mlff: {}", failure);
  if (anybad) error->all(FLERR, "pair_style mlff: loading the model failed on another rank");

  if (comm->me == 0) {
    std::string elements, lists, outputs;
    for (int z : model_.elements) elements += " " + mlff_lmp::element_symbol(z);
    for (const auto &nl : model_.lists) lists += fmt::format(" {} {} A", nl.name, nl.cutoff);
    for (const auto &o : model_.outputs) outputs += " " + o.name;
    if (ace)
      utils::logmesg(lmp, "pair mlff: {} (ACE, elements{}, cutoff {} A) on {}\n", path, elements,
                     model_.cutoff, backend_->device());
    else
      utils::logmesg(lmp,
                     "pair mlff: {} ({}, elements{}, lists{}, {} interaction(s), interaction "
                     "range {} A, {}, written by mlff {} / torch {}) on {}\n",
                     path, model_.kind, elements, lists, model_.num_interactions,
                     model_.interaction_range, model_.dtype, model_.mlff_version,
                     model_.torch_version, backend_->device());
    if (!outputs.empty() || model_.uses_charge || !model_.fidelities.empty())
      utils::logmesg(lmp, "pair mlff: outputs{}{}; total charge {}; fidelity {}{}\n",
                     outputs.empty() ? " (energies only)" : outputs, "", charge_, fidelity_,
                     model_.fidelities.empty() ? "" : " (" + model_.fidelities[fidelity_] + ")");
    utils::logmesg(lmp,
                   "pair mlff: plugin of mlff " MLFF_VERSION " built for LAMMPS " MLFF_LAMMPS_VERSION
                   " and torch " MLFF_TORCH_VERSION "\n");
  }
}

/* ----------------------------------------------------------------------
   pair_coeff * * Cu O ... : LAMMPS types -> elements, NULL = not this style
------------------------------------------------------------------------- */

void PairMLFF::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg != 2 + ntypes) {
    // in pair_style hybrid a second sub-style on the same line ends up here as extra words
    std::string words;
    for (int k = 2; k < narg; k++) words += std::string(" ") + arg[k];
    error->all(FLERR,
               "pair_coeff for mlff needs * * and one element symbol (or NULL) per atom type: "
               "{} types, got {} words ({}). In pair_style hybrid or hybrid/overlay every "
               "sub-style takes its own pair_coeff line, e.g. 'pair_coeff * * mlff Cu' and "
               "'pair_coeff 1 1 zbl 29 29'",
               ntypes, narg - 2, words);
  }
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for mlff must start with * * (one line maps all types)");

  for (int t = 1; t <= ntypes; t++) {
    std::string sym = arg[t + 1];
    if (sym != "NULL" && mlff_lmp::atomic_number(sym) == 0)
      error->all(FLERR, "pair_coeff mlff: '{}' (type {}) is not an element symbol", sym, t);
    type_symbol_[t] = sym;
  }
  map_types();

  if (comm->me == 0) {
    std::string table = fmt::format("pair mlff: type map for {}\n  type  element    Z\n", model_.path);
    for (int t = 1; t <= ntypes; t++) {
      if (type_z_[t] > 0)
        table += fmt::format("  {:>4}  {:<7} {:>4}\n", t, type_symbol_[t], type_z_[t]);
      else
        table += fmt::format("  {:>4}  NULL       -  (not handled by mlff)\n", t);
    }
    utils::logmesg(lmp, table);
  }

  int count = 0;
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) {
      setflag[i][j] = (type_z_[i] > 0 && type_z_[j] > 0) ? 1 : 0;
      count += setflag[i][j];
    }
  if (count == 0) error->all(FLERR, "pair_coeff mlff: every type is NULL");
}

// element symbols -> atomic numbers of the current model (settings() may have
// loaded another model since pair_coeff)
void PairMLFF::map_types()
{
  for (size_t t = 1; t < type_symbol_.size(); t++) {
    if (type_symbol_[t] == "NULL") {
      type_z_[t] = 0;
      continue;
    }
    int z = mlff_lmp::atomic_number(type_symbol_[t]);
    bool known = false;
    for (int mz : model_.elements) known = known || (mz == z);
    if (!known) {
      std::string have;
      for (int mz : model_.elements) have += " " + mlff_lmp::element_symbol(mz);
      error->all(FLERR, "pair_coeff mlff: element {} (type {}) is not in model {}, which knows{}",
                 type_symbol_[t], t, model_.path, have);
    }
    type_z_[t] = z;
  }
}

/* ---------------------------------------------------------------------- */

void PairMLFF::init_style()
{
  check_units();
  if (!backend_) error->all(FLERR, "pair_style mlff: no model loaded");
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style mlff requires newton pair on: forces on ghost atoms are summed "
                      "back to their owners (remove 'newton off')");
  map_types();
  // partial member outputs (a committee's member forces) travel back like forces
  comm_reverse = partial_width_;

  // an Ewald sum (geometry inputs): one rank and a fully periodic box, or a refusal that
  // says so (before the generic whole-system check below, whose advice does not apply)
  check_geometry_inputs();

  // whole-system terms (a charge normalisation over all atoms, an Ewald sum) see only
  // this rank's atoms unless the model hands its sums to the engine (global_sums), which
  // then all-reduces them and their adjoints: never a silently per-rank result
  if (model_.global && model_.global_sums == 0 && comm->nprocs > 1)
    error->all(FLERR,
               "pair_style mlff: model {} has whole-system terms (locality 'global', e.g. a charge "
               "normalisation over all atoms) but does not expose their sums (global_sums), so this "
               "plugin evaluates it exactly on one MPI rank only; run it with one rank (mpirun -np 1, "
               "or one rank per replica with -partition), or re-export it with an mlff that writes "
               "global_sums",
               model_.path);

  // types mapped to elements but no atom of them: mlff would silently add nothing
  bigint mine = 0, all = 0;
  for (int i = 0; i < atom->nlocal; i++)
    if (type_z_[atom->type[i]] > 0) mine++;
  MPI_Allreduce(&mine, &all, 1, MPI_LMP_BIGINT, MPI_SUM, world);
  if (all == 0 && atom->natoms > 0 && comm->me == 0)
    error->warning(FLERR,
                   "pair mlff: none of the {} atoms has a type that pair_coeff maps to an element "
                   "(every type present is NULL for mlff), so mlff contributes no energy or forces; "
                   "check the pair_coeff line",
                   atom->natoms);

  ghost_mode_ = force_ghost_mode_ || comm->nprocs > 1 || !atom->tag_enable;
  layer_exchange_ = ghost_mode_ && exchange_allowed_ && model_.mp_layers > 0 && !model_.compiled();
  exchange_width_ = layer_exchange_ ? model_.mp_width : 0;
  comm_forward = exchange_width_;
  comm_reverse = std::max(partial_width_, exchange_width_);
  if (atom->tag_enable && atom->map_style == Atom::MAP_NONE) {
    // ghosts that are periodic images of owned atoms are found through the atom map;
    // LAMMPS keeps it up to date from now on (as after 'atom_modify map yes')
    // (map_init() picks the style itself and must see it change from none, or it
    // reuses a map that was never allocated)
    atom->map_user = Atom::MAP_YES;
    atom->map_init();
    atom->map_set();
  }
  std::string mode;
  if (!ghost_mode_)
    mode = "periodic graph on one rank (ghosts are images of owned atoms)";
  else if (layer_exchange_)
    mode = fmt::format("layer exchange: ghost shell of one cutoff ({} + skin {} A), {} layers exchanging "
                       "{} numbers per ghost atom",
                       model_.lists.front().cutoff, neighbor->skin, model_.mp_layers, model_.mp_width);
  else
    mode = fmt::format("deep ghost shell (interaction range {} + skin {} A){}", model_.interaction_range,
                       neighbor->skin,
                       model_.mp_layers > 0 ? (exchange_allowed_ ? " (compiled package: no layer exchange)"
                                                                 : " (exchange no)")
                                            : " (the model does not expose its layers: contract v2)");
  if (mode != mode_logged_ && comm->me == 0) utils::logmesg(lmp, "pair mlff: graph mode: {}\n", mode);
  mode_logged_ = mode;
  if (layer_exchange_) {
    // edges are centred on owned atoms only, and each layer's messages come from atoms
    // within one cutoff: the default comm cutoff (cutoff + skin) is the whole shell, and
    // no neighbour lists of ghosts are needed
    if (comm->mode != Comm::SINGLE)
      error->all(FLERR, "pair_style mlff needs comm_modify mode single");
    ghostneigh = 0;
    neighbor->add_request(this, NeighConst::REQ_FULL);
  } else if (ghost_mode_) {
    // message passing reaches num_interactions * cutoff (and longer lists their own range);
    // atoms move up to skin/2 between neighbour list builds, so the ghost shell must cover
    // range + skin
    double need = model_.interaction_range + neighbor->skin;
    if (comm->mode != Comm::SINGLE)
      error->all(FLERR, "pair_style mlff needs comm_modify mode single");
    if (comm->cutghostuser < need) {
      if (comm->cutghostuser > 0.0 && comm->cutghostuser != cutghost_set_ && comm->me == 0)
        error->warning(FLERR,
                       "pair mlff: comm_modify cutoff {} is smaller than the ghost shell model "
                       "{} needs for exact results across MPI ranks (interaction range {} + "
                       "skin {}); using {}",
                       comm->cutghostuser, model_.path, model_.interaction_range,
                       neighbor->skin, need);
      comm->cutghostuser = need;
      cutghost_set_ = need;
    }
    ghostneigh = 1;
    neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
  } else {
    ghostneigh = 0;
    neighbor->add_request(this, NeighConst::REQ_FULL);
  }
}

double PairMLFF::init_one(int i, int j)
{
  if (setflag[i][j] == 0)
    error->all(FLERR,
               "pair mlff: no coefficients for atom types {} and {} (NULL in pair_coeff); NULL "
               "types are for pair_style hybrid or hybrid/overlay, where another sub-style "
               "handles them",
               i, j);
  // neighbours of ghost atoms are only needed within the largest model cutoff
  cutghost[i][j] = cutghost[j][i] = model_.cutoff;
  return model_.cutoff;
}

int PairMLFF::output_column(const std::string &name) const
{
  for (size_t k = 0; k < peratom_names_.size(); k++)
    if (peratom_names_[k] == name) return static_cast<int>(k);
  return -1;
}

/* ---------------------------------------------------------------------- */

void PairMLFF::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  try {
    build_graph();
    graph_.charge = charge_;
    graph_.fidelity = fidelity_;
    graph_.want_outputs = update->ntimestep % output_every_ == 0;
    set_geometry();
    if (layer_exchange_) {
      // collective: every rank takes part in every exchange, an empty graph too
      struct PairExchanger : mlff_lmp::Exchanger {
        PairMLFF *pair;
        explicit PairExchanger(PairMLFF *p) : pair(p) {}
        void forward(double *rows) override { pair->exchange_forward(rows); }
        void reverse(double *rows) override { pair->exchange_reverse(rows); }
      } exchanger(this);
      if (graph_.n_nodes > 0) {
        backend_->compute_layered(graph_, result_, &exchanger);
        apply_result();
      } else {
        for (int k = 1; k < model_.mp_layers; k++) exchange_forward(nullptr);
        for (int k = 1; k < model_.mp_layers; k++) exchange_reverse(nullptr);
      }
    } else if (model_.global_sums > 0 && comm->nprocs > 1) {
      // every rank takes part in the all-reduces, an empty subdomain with zeros
      WorldReducer reducer(world);
      if (graph_.n_nodes > 0) {
        backend_->compute(graph_, result_, &reducer);
        apply_result();
      } else {
        std::vector<double> zeros(model_.global_sums, 0.0);
        reducer.sum(zeros.data(), model_.global_sums);
        std::fill(zeros.begin(), zeros.end(), 0.0);
        reducer.sum(zeros.data(), model_.global_sums);
      }
    } else if (graph_.n_nodes > 0) {
      backend_->compute(graph_, result_, nullptr);
      apply_result();
    }
    if (graph_.want_outputs) {
      store_outputs();
      last_output_step_ = update->ntimestep;
    }
  } catch (std::exception &e) {
    // rank-local failure (other ranks may be fine): abort all with the message
    error->one(FLERR, "pair mlff: {}", e.what());
  }
  check_distances();
  last_step_ = update->ntimestep;
}

// squared distance from x to this rank's subdomain (a lower bound for triclinic boxes:
// the largest distance to one of the bounding planes)
double PairMLFF::subdomain_distance_sq(const double *x) const
{
  if (!domain->triclinic) {
    double dsq = 0.0;
    for (int d = 0; d < 3; d++) {
      double out = std::max({0.0, domain->sublo[d] - x[d], x[d] - domain->subhi[d]});
      dsq += out * out;
    }
    return dsq;
  }
  double lamda[3];
  domain->x2lamda(const_cast<double *>(x), lamda);
  const double *hi = domain->h_inv;
  // rows of h_inv: d(lamda_k)/dx; 1/|row| is the distance per unit of lamda_k
  const double row[3][3] = {{hi[0], hi[5], hi[4]}, {0.0, hi[1], hi[3]}, {0.0, 0.0, hi[2]}};
  double best = 0.0;
  for (int d = 0; d < 3; d++) {
    double out = std::max({0.0, domain->sublo_lamda[d] - lamda[d], lamda[d] - domain->subhi_lamda[d]});
    double norm = std::sqrt(row[d][0] * row[d][0] + row[d][1] * row[d][1] + row[d][2] * row[d][2]);
    best = std::max(best, out / norm);
  }
  return best * best;
}

void PairMLFF::build_graph()
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int *type = atom->type;
  double **x = atom->x;
  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  const size_t nlists = cut_sq_.size();

  graph_.species.clear();
  graph_.lists.resize(nlists);
  edge_i_.resize(nlists);
  edge_j_.resize(nlists);
  for (size_t k = 0; k < nlists; k++) {
    graph_.lists[k].clear();
    edge_i_[k].clear();
    edge_j_[k].clear();
  }
  node_atom_.clear();
  atom_node_.assign(nall, -1);

  for (int ii = 0; ii < inum; ii++) {
    int i = ilist[ii];
    if (type_z_[type[i]] <= 0) continue;
    atom_node_[i] = static_cast<int>(node_atom_.size());
    node_atom_.push_back(i);
  }
  const int n_local = static_cast<int>(node_atom_.size());

  auto dist_sq = [&](int i, int j) {
    double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
    return dx * dx + dy * dy + dz * dz;
  };
  // how far from an owned atom each list's edges are needed (only the several-list
  // ghost graph below prunes by it; dsq is 0 everywhere else)
  std::vector<double> reach_sq(nlists);
  for (size_t k = 0; k < nlists; k++) {
    double reach = model_.lists[k].reach >= 0.0 ? model_.lists[k].reach : model_.interaction_range;
    reach += 0.5 * neighbor->skin;
    reach_sq[k] = reach * reach;
  }
  // every list is filtered from LAMMPS's one list at the largest cutoff (+ skin)
  auto add_edges = [&](int i, int j, double rsq, double dsq) {
    for (size_t k = 0; k < nlists; k++) {
      if (rsq >= cut_sq_[k] || dsq > reach_sq[k]) continue;
      auto &list = graph_.lists[k];
      edge_i_[k].push_back(i);
      edge_j_[k].push_back(j);
      list.edge_vectors.push_back(x[j][0] - x[i][0]);
      list.edge_vectors.push_back(x[j][1] - x[i][1]);
      list.edge_vectors.push_back(x[j][2] - x[i][2]);
    }
  };

  // a ghost that is a periodic image of an atom owned here is that atom's node: with
  // one rank that is every ghost (the periodic graph ASE builds); with several it
  // spares the images across periodic directions the rank spans by itself
  const bool have_map = atom->tag_enable && atom->map_style != Atom::MAP_NONE;
  auto own_image = [&](int j) {
    if (j < nlocal || !have_map) return false;
    int m = atom->map(atom->tag[j]);
    if (m < 0 || m >= nlocal || atom_node_[m] < 0) return false;
    atom_node_[j] = atom_node_[m];
    return true;
  };

  if (!ghost_mode_ || layer_exchange_) {
    // edges centred on owned atoms. On one rank every ghost is a periodic image of an
    // owned atom (its node); with layer exchange the other neighbours (within one cutoff)
    // become ghost nodes, whose states their owners send before every layer
    const double cut_sq = layer_exchange_ ? cut_first_sq_ : model_.cutoff * model_.cutoff;
    for (int k = 0; k < n_local; k++) {
      int i = node_atom_[k];
      const int *jlist = firstneigh[i];
      for (int jj = 0; jj < numneigh[i]; jj++) {
        int j = jlist[jj] & NEIGHMASK;
        if (type_z_[type[j]] <= 0) continue;
        double rsq = dist_sq(i, j);
        if (rsq >= cut_sq) continue;
        if (atom_node_[j] < 0 && !own_image(j)) {
          if (!layer_exchange_)
            throw std::runtime_error("ghost atom " + std::to_string(atom->tag[j]) +
                                     " has no owned image on this rank");
          atom_node_[j] = static_cast<int>(node_atom_.size());
          node_atom_.push_back(j);
        }
        add_edges(i, j, rsq, 0.0);
      }
    }
  } else if (nlists == 1) {
    // only atoms within num_interactions hops of an owned atom can change owned
    // energies, and only edges centred within num_interactions-1 hops carry a message
    // that arrives in time: prune the rest of the (large) ghost shell
    const int L = model_.num_interactions;
    hop_.assign(nall, -1);
    std::vector<int> frontier(node_atom_), next;
    for (int i : frontier) hop_[i] = 0;
    for (int layer = 0; layer < L; layer++) {
      next.clear();
      for (int i : frontier) {
        const int *jlist = firstneigh[i];
        for (int jj = 0; jj < numneigh[i]; jj++) {
          int j = jlist[jj] & NEIGHMASK;
          if (hop_[j] >= 0 || type_z_[type[j]] <= 0 || dist_sq(i, j) >= cut_first_sq_) continue;
          if (own_image(j)) {
            hop_[j] = 0;    // its neighbourhood is expanded through the owned original
            continue;
          }
          hop_[j] = layer + 1;
          atom_node_[j] = static_cast<int>(node_atom_.size());
          node_atom_.push_back(j);
          next.push_back(j);
        }
      }
      frontier.swap(next);
    }
    for (size_t k = 0; k < node_atom_.size(); k++) {
      int i = node_atom_[k];
      if (hop_[i] >= L) continue;
      const int *jlist = firstneigh[i];
      for (int jj = 0; jj < numneigh[i]; jj++) {
        int j = jlist[jj] & NEIGHMASK;
        if (type_z_[type[j]] <= 0) continue;
        double rsq = dist_sq(i, j);
        if (rsq >= cut_first_sq_) continue;
        if (atom_node_[j] < 0 && !own_image(j))
          throw std::runtime_error("internal error: neighbour outside the message-passing shell");
        add_edges(i, j, rsq, 0.0);
      }
    }
  } else {
    // several lists (a network plus a long-range term): no hop structure to prune by.
    // Every atom of the ghost shell is a node; list k carries the edges centred on atoms
    // within its reach of an owned atom. Atoms near the outer edge of the shell have
    // incomplete neighbourhoods, but the shell is interaction range + skin wide, so
    // nothing computed from them reaches an owned atom's energy.
    // with no owned atom here, nothing on this rank is counted: leave the ghosts out
    const int nghost_list = n_local > 0 ? list->gnum : 0;
    for (int ii = inum; ii < inum + nghost_list; ii++) {
      int j = ilist[ii];
      if (type_z_[type[j]] <= 0 || atom_node_[j] >= 0 || own_image(j)) continue;
      atom_node_[j] = static_cast<int>(node_atom_.size());
      node_atom_.push_back(j);
    }
    // owned atoms lie within this rank's subdomain grown by skin/2 (they move at most
    // that far between neighbour-list builds), so the distance to the subdomain minus
    // skin/2 is a lower bound of the distance to the nearest owned atom (reach_sq above
    // includes the skin/2)
    for (size_t n = 0; n < node_atom_.size(); n++) {
      int i = node_atom_[n];
      double dsq = n < static_cast<size_t>(n_local) ? 0.0 : subdomain_distance_sq(x[i]);
      const int *jlist = firstneigh[i];
      for (int jj = 0; jj < numneigh[i]; jj++) {
        int j = jlist[jj] & NEIGHMASK;
        if (type_z_[type[j]] <= 0) continue;
        double rsq = dist_sq(i, j);
        if (rsq >= model_.cutoff * model_.cutoff) continue;
        // a neighbour of a shell atom that is not in the ghost list lies beyond the
        // interaction range of every owned atom: the edge cannot reach owned energies
        if (atom_node_[j] < 0 && !own_image(j)) continue;
        add_edges(i, j, rsq, dsq);
      }
    }
  }

  graph_.n_nodes = static_cast<int64_t>(node_atom_.size());
  graph_.n_local = n_local;
  graph_.species.resize(node_atom_.size());
  for (size_t k = 0; k < node_atom_.size(); k++) graph_.species[k] = type_z_[type[node_atom_[k]]];
  for (size_t k = 0; k < nlists; k++) {
    const size_t ne = edge_i_[k].size();
    auto &ei = graph_.lists[k].edge_index;
    ei.resize(2 * ne);
    for (size_t e = 0; e < ne; e++) {
      ei[e] = atom_node_[edge_i_[k][e]];
      ei[ne + e] = atom_node_[edge_j_[k][e]];
    }
  }
}

void PairMLFF::apply_result()
{
  double **f = atom->f;
  const double s = energy_factor_;
  const int n_local = static_cast<int>(graph_.n_local);

  for (int k = 0; k < n_local; k++) {
    double e = s * result_.energies[k];
    if (eflag_global) eng_vdwl += e;
    if (eflag_atom) eatom[node_atom_[k]] += e;
  }

  for (size_t k = 0; k < graph_.lists.size(); k++) {
    const size_t ne = edge_i_[k].size();
    const double *g = result_.edge_grad[k].data();
    const double *r = graph_.lists[k].edge_vectors.data();
    for (size_t e = 0; e < ne; e++) {
      const int i = edge_i_[k][e], j = edge_j_[k][e];
      const double gx = s * g[3 * e], gy = s * g[3 * e + 1], gz = s * g[3 * e + 2];
      f[i][0] += gx;
      f[i][1] += gy;
      f[i][2] += gz;
      f[j][0] -= gx;
      f[j][1] -= gy;
      f[j][2] -= gz;
      if (!vflag_either) continue;
      const double rx = r[3 * e], ry = r[3 * e + 1], rz = r[3 * e + 2];
      // W_ab = -r_a g_b: LAMMPS's del (x_i - x_j) times the force on i
      const double w[9] = {-rx * gx, -ry * gy, -rz * gz, -rx * gy, -rx * gz,
                           -ry * gz, -ry * gx, -rz * gx, -rz * gy};
      if (vflag_global)
        for (int c = 0; c < 6; c++) virial[c] += w[c];
      if (vflag_atom)
        for (int c = 0; c < 6; c++) {
          vatom[i][c] += 0.5 * w[c];
          vatom[j][c] += 0.5 * w[c];
        }
      if (cvflag_atom)
        for (int c = 0; c < 9; c++) {
          cvatom[i][c] += 0.5 * w[c];
          cvatom[j][c] += 0.5 * w[c];
        }
    }
  }
  apply_geometry_result();
}

/* ----------------------------------------------------------------------
   geometry inputs (models that declare them: an Ewald sum over the periodic cell)
------------------------------------------------------------------------- */

// The reciprocal-space sum runs over every atom of the cell. This plugin passes the
// positions of one rank's nodes, which are all atoms only on one rank; on several ranks
// the structure factors would be a second whole-system reduction (after the charges').
// Refuse instead of computing a per-rank sum.
void PairMLFF::check_geometry_inputs()
{
  if (!model_.needs_geometry()) return;
  if (comm->nprocs > 1)
    error->all(FLERR,
               "pair_style mlff: model {} sums its Coulomb energy with Ewald (it needs the positions "
               "and the periodic cell), which this plugin evaluates exactly on one MPI rank only; run "
               "it with one rank (mpirun -np 1, or one rank per replica with -partition), or use a "
               "model with coulomb dsf, which is exact on any number of ranks",
               model_.path);
  if (!domain->xperiodic || !domain->yperiodic || !domain->zperiodic)
    error->all(FLERR,
               "pair_style mlff: model {} sums its Coulomb energy with Ewald, which needs a box "
               "periodic in x, y and z ('boundary p p p'); this box is not. Use a periodic box, or a "
               "model with coulomb dsf (slabs, condensed phases) or simple (molecules)",
               model_.path);
}

// positions of the graph's nodes and the cell (lattice vectors as rows) for the model
void PairMLFF::set_geometry()
{
  graph_.positions.clear();
  graph_.cell.clear();
  if (!model_.needs_geometry()) return;
  double **x = atom->x;
  graph_.positions.resize(3 * node_atom_.size());
  for (size_t k = 0; k < node_atom_.size(); k++)
    for (int d = 0; d < 3; d++) graph_.positions[3 * k + d] = x[node_atom_[k]][d];
  // domain->h = (xprd, yprd, zprd, yz, xz, xy): a = (xprd, 0, 0), b = (xy, yprd, 0),
  // c = (xz, yz, zprd) (zero tilts for orthogonal boxes)
  const double *h = domain->h;
  graph_.cell = {h[0], 0.0, 0.0, h[5], h[1], 0.0, h[4], h[3], h[2]};
}

// the contract's rule for the geometry inputs (python/mlff/contract.py):
// F_i -= dE/dpos_i, W_ab -= pos_i,a dE/dpos_i,b + h_k,a dE/dh_k,b; per atom, the position
// term to its atom and the cell term in equal shares to the owned nodes
void PairMLFF::apply_geometry_result()
{
  if (graph_.positions.empty() || result_.position_grad.empty()) return;
  double **f = atom->f;
  const double s = energy_factor_;
  const double *p = result_.position_grad.data();
  const double *pos = graph_.positions.data();
  auto voigt9 = [](const double W[3][3], double w[9]) {
    // LAMMPS order: xx yy zz xy xz yz, then yx zx zy (centroid)
    w[0] = W[0][0]; w[1] = W[1][1]; w[2] = W[2][2]; w[3] = W[0][1]; w[4] = W[0][2];
    w[5] = W[1][2]; w[6] = W[1][0]; w[7] = W[2][0]; w[8] = W[2][1];
  };
  for (size_t k = 0; k < node_atom_.size(); k++) {
    const int i = node_atom_[k];
    const double g[3] = {s * p[3 * k], s * p[3 * k + 1], s * p[3 * k + 2]};
    for (int d = 0; d < 3; d++) f[i][d] -= g[d];
    if (!vflag_either) continue;
    double W[3][3], w[9];
    for (int a = 0; a < 3; a++)
      for (int b = 0; b < 3; b++) W[a][b] = -pos[3 * k + a] * g[b];
    voigt9(W, w);
    if (vflag_global)
      for (int c = 0; c < 6; c++) virial[c] += w[c];
    if (vflag_atom)
      for (int c = 0; c < 6; c++) vatom[i][c] += w[c];
    if (cvflag_atom)
      for (int c = 0; c < 9; c++) cvatom[i][c] += w[c];
  }
  if (!vflag_either || result_.cell_grad.size() != 9) return;
  const double *h = graph_.cell.data();
  const double *c9 = result_.cell_grad.data();
  double W[3][3], w[9];
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 3; b++) {
      W[a][b] = 0.0;
      for (int k = 0; k < 3; k++) W[a][b] -= h[3 * k + a] * s * c9[3 * k + b];
    }
  voigt9(W, w);
  if (vflag_global)
    for (int c = 0; c < 6; c++) virial[c] += w[c];
  const int n_local = static_cast<int>(graph_.n_local);
  if (n_local == 0) return;
  for (int k = 0; k < n_local; k++) {
    const int i = node_atom_[k];
    if (vflag_atom)
      for (int c = 0; c < 6; c++) vatom[i][c] += w[c] / n_local;
    if (cvflag_atom)
      for (int c = 0; c < 9; c++) cvatom[i][c] += w[c] / n_local;
  }
}

namespace {
// member_deviation of python/mlff/contract.py: x holds M members' values of `per` numbers
// each; sqrt(mean_m |x_m - mean_m x|^2)
double member_deviation(const double *x, int members, int per)
{
  double mean[16] = {0.0};
  std::vector<double> big;
  double *m = mean;
  if (per > 16) {
    big.assign(per, 0.0);
    m = big.data();
  }
  for (int k = 0; k < members; k++)
    for (int d = 0; d < per; d++) m[d] += x[k * per + d];
  for (int d = 0; d < per; d++) m[d] /= members;
  double sq = 0.0;
  for (int k = 0; k < members; k++)
    for (int d = 0; d < per; d++) {
      const double diff = x[k * per + d] - m[d];
      sq += diff * diff;
    }
  return std::sqrt(sq / members);
}
}    // namespace

// energies in outputs follow the run's energy unit, as the pair energy does
double PairMLFF::output_scale(const mlff_lmp::OutputInfo &o) const
{
  return o.unit.rfind("eV", 0) == 0 ? energy_factor_ : 1.0;
}

// A per-atom array of `cols` columns for atom->nmax atoms (reallocated when either grew or
// the columns changed: a new pair_style line may bring another model), first `rows` zeroed.
void PairMLFF::grow_zeroed(double **&array, int &nmax, int &ncols, int cols, int rows, const char *name)
{
  if (atom->nmax > nmax || cols != ncols) {
    memory->destroy(array);
    nmax = atom->nmax;
    ncols = cols;
    memory->create(array, nmax, cols, name);
  }
  for (int i = 0; i < rows; i++)
    for (int c = 0; c < cols; c++) array[i][c] = 0.0;
}

// The named outputs of owned atoms (for compute mlff/atom) and the global ones (pvector,
// for compute pair mlff). Collective on output steps: every rank takes part in the reverse
// communication and the sums of partial outputs, also with an empty subdomain.
void PairMLFF::store_outputs()
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const bool have = graph_.n_nodes > 0;    // result_ is this step's

  // 1. partial per-atom outputs: node values onto their LAMMPS atoms, ghosts sent home
  if (partial_width_ > 0) {
    grow_zeroed(partial_atom_, nmax_partial_, ncols_partial_, partial_width_, nall, "pair:mlff:partial");
    if (have) {
      for (const auto &o : model_.outputs) {
        if (!(o.partial && o.per_atom)) continue;
        const int off = partial_offset_.at(o.name);
        const auto &v = result_.outputs.at(o.name);
        for (int64_t k = 0; k < graph_.n_nodes; k++) {
          double *row = partial_atom_[node_atom_[k]] + off;
          for (int c = 0; c < o.width; c++) row[c] += v[k * o.width + c];
        }
      }
    }
    comm_what_ = COMM_PARTIAL;
    comm->reverse_comm(this, partial_width_);
  }

  // 2. partial global outputs: summed over the ranks
  std::map<std::string, std::vector<double>> global_sum;
  for (const auto &o : model_.outputs) {
    if (!o.partial || o.per_atom) continue;
    std::vector<double> v(o.width, 0.0);
    if (have) v = result_.outputs.at(o.name);
    MPI_Allreduce(MPI_IN_PLACE, v.data(), o.width, MPI_DOUBLE, MPI_SUM, world);
    global_sum[o.name] = v;
  }

  // 3. per-atom scalars of owned atoms
  const int ncol = static_cast<int>(peratom_names_.size());
  if (ncol > 0) {
    grow_zeroed(peratom_out_, nmax_out_, ncols_out_, ncol, nlocal, "pair:mlff:peratom_out");
    for (int c = 0; c < ncol; c++) {
      const mlff_lmp::OutputInfo &o = *model_.output(peratom_names_[c]);
      const double scale = output_scale(o);
      if (o.derived()) {
        const mlff_lmp::OutputInfo &src = *model_.output(o.derived_from);
        const int off = partial_offset_.at(src.name);
        const int per = src.width / src.members;
        for (int i = 0; i < nlocal; i++)
          if (atom_node_.size() > static_cast<size_t>(i) && atom_node_[i] >= 0)
            peratom_out_[i][c] = scale * member_deviation(partial_atom_[i] + off, src.members, per);
      } else if (have) {
        const auto &v = result_.outputs.at(o.name);
        const double *src = v.data();
        std::vector<double> owned;
        if (o.partial) {    // a partial scalar: the reduced value of the owned atom
          owned.assign(nlocal, 0.0);
          for (int i = 0; i < nlocal; i++) owned[i] = partial_atom_[i][partial_offset_.at(o.name)];
        }
        for (int64_t k = 0; k < graph_.n_local; k++) {
          const int i = node_atom_[k];
          peratom_out_[i][c] = scale * (o.partial ? owned[i] : src[k]);
        }
      }
    }
  }

  // 4. global scalars: compute pair mlff sums pvector over the ranks, so rank 0 holds them
  for (int k = 0; k < nextra; k++) {
    const mlff_lmp::OutputInfo &o = *model_.output(global_names_[k]);
    double value = 0.0;
    if (o.derived()) {
      const mlff_lmp::OutputInfo &src = *model_.output(o.derived_from);
      const auto &v = global_sum.at(src.name);
      value = member_deviation(v.data(), src.members, src.width / src.members);
    } else if (o.partial) {
      value = global_sum.at(o.name)[0];
    } else if (have) {
      value = result_.outputs.at(o.name)[0];    // a whole-system output: one rank's view
    }
    pvector[k] = comm->me == 0 ? output_scale(o) * value : 0.0;
  }
}

// the reverse communication carries partial member outputs (store_outputs) or, with
// layer exchange, the gradients of ghost atoms' node states (exchange_reverse)
int PairMLFF::pack_reverse_comm(int n, int first, double *buf)
{
  int m = 0;
  if (comm_what_ == COMM_FEATURES) {
    for (int i = first; i < first + n; i++)
      for (int c = 0; c < exchange_width_; c++) buf[m++] = xfeat_[i][c];
    return m;
  }
  for (int i = first; i < first + n; i++)
    for (int c = 0; c < partial_width_; c++) buf[m++] = partial_atom_[i][c];
  return m;
}

void PairMLFF::unpack_reverse_comm(int n, int *list, double *buf)
{
  int m = 0;
  if (comm_what_ == COMM_FEATURES) {
    for (int i = 0; i < n; i++) {
      double *row = xfeat_[list[i]];
      for (int c = 0; c < exchange_width_; c++) row[c] += buf[m++];
    }
    return;
  }
  for (int i = 0; i < n; i++) {
    const int j = list[i];
    for (int c = 0; c < partial_width_; c++) partial_atom_[j][c] += buf[m++];
  }
}

// forward communication: node states of layer exchange only (sent from owned atoms and,
// in later swaps, from ghosts already received)
int PairMLFF::pack_forward_comm(int n, int *list, double *buf, int /*pbc_flag*/, int * /*pbc*/)
{
  int m = 0;
  for (int i = 0; i < n; i++) {
    const double *row = xfeat_[list[i]];
    for (int c = 0; c < exchange_width_; c++) buf[m++] = row[c];
  }
  return m;
}

void PairMLFF::unpack_forward_comm(int n, int first, double *buf)
{
  int m = 0;
  for (int i = first; i < first + n; i++)
    for (int c = 0; c < exchange_width_; c++) xfeat_[i][c] = buf[m++];
}

void PairMLFF::exchange_forward(double *rows)
{
  // (re)allocated when the atoms grew or the width changed (a new pair_style line on
  // this instance may load a model with another width); no rows need zeroing here
  grow_zeroed(xfeat_, nmax_feat_, ncols_feat_, exchange_width_, 0, "pair:mlff:xfeat");
  const int W = exchange_width_;
  const int64_t n_local = graph_.n_nodes > 0 ? graph_.n_local : 0;
  const int64_t n_nodes = graph_.n_nodes;
  for (int64_t k = 0; k < n_local; k++) std::memcpy(xfeat_[node_atom_[k]], rows + k * W, sizeof(double) * W);
  comm_what_ = COMM_FEATURES;
  comm->forward_comm(this, W);
  for (int64_t k = n_local; k < n_nodes; k++) std::memcpy(rows + k * W, xfeat_[node_atom_[k]], sizeof(double) * W);
}

void PairMLFF::exchange_reverse(double *rows)
{
  const int W = exchange_width_;
  const int nall = atom->nlocal + atom->nghost;
  const int64_t n_local = graph_.n_nodes > 0 ? graph_.n_local : 0;
  const int64_t n_nodes = graph_.n_nodes;
  grow_zeroed(xfeat_, nmax_feat_, ncols_feat_, W, nall, "pair:mlff:xfeat");
  for (int64_t k = n_local; k < n_nodes; k++) {
    std::memcpy(xfeat_[node_atom_[k]], rows + k * W, sizeof(double) * W);
    std::memset(rows + k * W, 0, sizeof(double) * W);
  }
  comm_what_ = COMM_FEATURES;
  comm->reverse_comm(this, W);
  comm_what_ = COMM_PARTIAL;
  for (int64_t k = 0; k < n_local; k++) {
    const double *row = xfeat_[node_atom_[k]];
    double *dst = rows + k * W;
    for (int c = 0; c < W; c++) dst[c] += row[c];
  }
}

// warn (once) when atoms come much closer than anything in the training data: the model
// then extrapolates, and usually attracts where it should repel (remedy: ZBL)
void PairMLFF::check_distances()
{
  if (warned_distance_ || !(model_.min_distance > 0.0)) return;
  double local_min = 1e300;
  const size_t ne = edge_i_.empty() ? 0 : edge_i_.front().size();
  const double *r = ne ? graph_.lists.front().edge_vectors.data() : nullptr;
  for (size_t e = 0; e < ne; e++) {
    if (edge_i_[0][e] >= atom->nlocal) continue;
    double rsq = r[3 * e] * r[3 * e] + r[3 * e + 1] * r[3 * e + 1] + r[3 * e + 2] * r[3 * e + 2];
    local_min = std::min(local_min, rsq);
  }
  double global_min = local_min;
  MPI_Allreduce(&local_min, &global_min, 1, MPI_DOUBLE, MPI_MIN, world);
  double limit = CLOSE_CONTACT_FRACTION * model_.min_distance;
  if (global_min < limit * limit) {
    warned_distance_ = true;
    if (comm->me == 0)
      error->warning(FLERR,
                     "pair mlff: two atoms are {:.3f} A apart at step {}, far closer than the "
                     "shortest distance in the model's training data ({:.3f} A): the model "
                     "extrapolates there (and may attract instead of repel). Add a core "
                     "repulsion, e.g. pair_style hybrid/overlay mlff {} zbl 1.0 2.0 (this warning "
                     "is shown once)",
                     std::sqrt(global_min), update->ntimestep, model_.min_distance, model_.path);
  }
}
