/* ----------------------------------------------------------------------
   mlff LAMMPS plugin: pair_style mlff (GPL-2.0-or-later, see ../LICENSE)

   Implements the mlff exported-model contract (python/mlff/contract.py) in LAMMPS:
   the graph is built from LAMMPS's full neighbour list, edges beyond the model cutoff
   are dropped here, and forces, virial and per-atom virial follow from dE/dr_ij:
   F_i += g, F_j -= g, W = -sum r_ij (x) g, half of each edge's W to i and to j.
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

#include "backend_loader.h"
#include "build_info.h"

#include <cmath>
#include <cstring>
#include <exception>
#include <unordered_map>

using namespace LAMMPS_NS;

namespace {
// CODATA-based value LAMMPS itself uses to relate real and metal units
constexpr double KCAL_PER_MOL_PER_EV = 23.060549;
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
    energy_factor_ = KCAL_PER_MOL_PER_EV;
  else
    error->all(FLERR,
               "pair_style mlff supports 'units metal' (eV, Angstrom) and 'units real' "
               "(kcal/mol, Angstrom); this input uses 'units {}'",
               units);
}

/* ----------------------------------------------------------------------
   pair_style mlff MODEL [device cpu|cuda|cuda:N] [graph auto|ghosts]
------------------------------------------------------------------------- */

void PairMLFF::settings(int narg, char **arg)
{
  if (narg < 1)
    error->all(FLERR, "Illegal pair_style mlff command: expected pair_style mlff MODEL.pt "
                      "[device cpu|cuda|cuda:N]");
  check_units();
  std::string path = arg[0];
  std::string device = "cpu";
  force_ghost_mode_ = false;
  for (int iarg = 1; iarg < narg; iarg += 2) {
    std::string key = arg[iarg];
    if (iarg + 1 >= narg) error->all(FLERR, "pair_style mlff: keyword {} needs a value", key);
    std::string val = arg[iarg + 1];
    if (key == "device") {
      device = val;
    } else if (key == "graph") {
      if (val == "auto")
        force_ghost_mode_ = false;
      else if (val == "ghosts")
        force_ghost_mode_ = true;
      else
        error->all(FLERR, "pair_style mlff: graph must be auto or ghosts, not {}", val);
    } else {
      error->all(FLERR, "pair_style mlff: unknown keyword '{}' (known: device, graph)", key);
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

  try {
    model_ = mlff_lmp::read_model_info(path);
  } catch (std::exception &e) {
    error->all(FLERR, "pair_style mlff: {}", e.what());
  }
  cut_model_sq_ = model_.cutoff * model_.cutoff;

  // ranks sharing a node share its GPUs: "device cuda" spreads them round-robin
  int local_rank = 0;
  if (device_type_ == "cuda") {
    MPI_Comm node;
    MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, comm->me, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_free(&node);
  }

  backend_.reset();
  std::string failure;
  try {
    backend_ = mlff_lmp::create_backend(path, model_.dtype, device_type_, device_index_, local_rank);
  } catch (std::exception &e) {
    failure = e.what();
  }
  int bad = failure.empty() ? 0 : 1, anybad = 0, allbad = 0;
  MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, world);
  MPI_Allreduce(&bad, &allbad, 1, MPI_INT, MPI_MIN, world);
  if (allbad) error->all(FLERR, "pair_style mlff: {}", failure);
  if (bad) error->one(FLERR, "pair_style mlff: {}", failure);
  if (anybad) error->all(FLERR, "pair_style mlff: loading the model failed on another rank");

  if (comm->me == 0) {
    std::string elements;
    for (int z : model_.elements) elements += " " + mlff_lmp::element_symbol(z);
    utils::logmesg(lmp,
                   "pair mlff: {} ({}, elements{}, cutoff {} A, {} interaction(s), interaction "
                   "range {} A, {}, written by mlff {} / torch {}) on {}\n"
                   "pair mlff: plugin of mlff " MLFF_VERSION " built for LAMMPS " MLFF_LAMMPS_VERSION
                   " and torch " MLFF_TORCH_VERSION "\n",
                   path, model_.kind, elements, model_.cutoff, model_.num_interactions,
                   model_.interaction_range, model_.dtype, model_.mlff_version,
                   model_.torch_version, backend_->device());
  }
}

/* ----------------------------------------------------------------------
   pair_coeff * * Cu O ... : LAMMPS types -> elements, NULL = not this style
------------------------------------------------------------------------- */

void PairMLFF::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg != 2 + ntypes)
    error->all(FLERR,
               "pair_coeff for mlff needs * * and one element symbol (or NULL) per atom type: "
               "{} types, got {} symbols",
               ntypes, narg - 2);
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

  ghost_mode_ = force_ghost_mode_ || comm->nprocs > 1 || !atom->tag_enable;
  if (ghost_mode_) {
    // message passing reaches num_interactions * cutoff; atoms move up to skin/2
    // between neighbour list builds, so the ghost shell must cover range + skin
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
  // neighbours of ghost atoms are only needed within the model cutoff
  cutghost[i][j] = cutghost[j][i] = model_.cutoff;
  return model_.cutoff;
}

/* ---------------------------------------------------------------------- */

void PairMLFF::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  try {
    build_graph();
    if (graph_.n_nodes > 0) {
      backend_->compute(graph_, result_);
      apply_result();
    }
  } catch (std::exception &e) {
    // rank-local failure (other ranks may be fine): abort all with the message
    error->one(FLERR, "pair mlff: {}", e.what());
  }
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

  graph_.species.clear();
  graph_.edge_index.clear();
  graph_.edge_vectors.clear();
  node_atom_.clear();
  edge_i_.clear();
  edge_j_.clear();
  atom_node_.assign(nall, -1);

  for (int ii = 0; ii < inum; ii++) {
    int i = ilist[ii];
    if (type_z_[type[i]] <= 0) continue;
    atom_node_[i] = static_cast<int>(node_atom_.size());
    node_atom_.push_back(i);
  }
  const int n_local = static_cast<int>(node_atom_.size());

  auto within = [&](int i, int j) {
    double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
    return dx * dx + dy * dy + dz * dz < cut_model_sq_;
  };
  auto add_edge = [&](int i, int j) {
    edge_i_.push_back(i);
    edge_j_.push_back(j);
    graph_.edge_vectors.push_back(x[j][0] - x[i][0]);
    graph_.edge_vectors.push_back(x[j][1] - x[i][1]);
    graph_.edge_vectors.push_back(x[j][2] - x[i][2]);
  };

  // a ghost that is a periodic image of an atom owned here is that atom's node: with
  // one rank that is every ghost (the periodic graph ASE builds); with several it
  // spares the images across periodic directions the rank spans by itself
  std::unordered_map<tagint, int> owner;
  if (atom->tag_enable) {
    owner.reserve(2 * n_local + 1);
    for (int k = 0; k < n_local; k++) owner[atom->tag[node_atom_[k]]] = k;
  }
  auto own_image = [&](int j) {
    if (j < nlocal || !atom->tag_enable) return false;
    auto it = owner.find(atom->tag[j]);
    if (it == owner.end()) return false;
    atom_node_[j] = it->second;
    return true;
  };

  if (!ghost_mode_) {
    for (int k = 0; k < n_local; k++) {
      int i = node_atom_[k];
      const int *jlist = firstneigh[i];
      for (int jj = 0; jj < numneigh[i]; jj++) {
        int j = jlist[jj] & NEIGHMASK;
        if (type_z_[type[j]] <= 0 || !within(i, j)) continue;
        if (atom_node_[j] < 0 && !own_image(j))
          throw std::runtime_error("ghost atom " + std::to_string(atom->tag[j]) +
                                   " has no owned image on this rank");
        add_edge(i, j);
      }
    }
  } else {
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
          if (hop_[j] >= 0 || type_z_[type[j]] <= 0 || !within(i, j)) continue;
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
        if (type_z_[type[j]] <= 0 || !within(i, j)) continue;
        if (atom_node_[j] < 0 && !own_image(j))
          throw std::runtime_error("internal error: neighbour outside the message-passing shell");
        add_edge(i, j);
      }
    }
  }

  const size_t ne = edge_i_.size();
  graph_.n_nodes = static_cast<int64_t>(node_atom_.size());
  graph_.n_local = n_local;
  graph_.species.resize(node_atom_.size());
  for (size_t k = 0; k < node_atom_.size(); k++) graph_.species[k] = type_z_[type[node_atom_[k]]];
  graph_.edge_index.resize(2 * ne);
  for (size_t e = 0; e < ne; e++) {
    graph_.edge_index[e] = atom_node_[edge_i_[e]];
    graph_.edge_index[ne + e] = atom_node_[edge_j_[e]];
  }
}

void PairMLFF::apply_result()
{
  double **f = atom->f;
  const double s = energy_factor_;
  const size_t ne = edge_i_.size();
  const int n_local = static_cast<int>(graph_.n_local);

  for (int k = 0; k < n_local; k++) {
    double e = s * result_.energies[k];
    if (eflag_global) eng_vdwl += e;
    if (eflag_atom) eatom[node_atom_[k]] += e;
  }

  const double *g = result_.edge_grad.data();
  const double *r = graph_.edge_vectors.data();
  for (size_t e = 0; e < ne; e++) {
    const int i = edge_i_[e], j = edge_j_[e];
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
