/* ----------------------------------------------------------------------
   mlff LAMMPS plugin: fix mlff/extrapolation (GPL-2.0-or-later, see ../LICENSE)
------------------------------------------------------------------------- */

#include "fix_mlff_extrapolation.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "update.h"

#include "pair_mlff.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/file.h>
#include <unistd.h>
#include <vector>

using namespace LAMMPS_NS;
using namespace FixConst;

FixMLFFExtrapolation::FixMLFFExtrapolation(LAMMPS *lmp, int narg, char **arg) : Fix(lmp, narg, arg)
{
  const char *usage = "expected fix ID group mlff/extrapolation N FILE lo LO hi HI [output NAME]";
  if (narg != 9 && narg != 11) error->all(FLERR, "Illegal fix mlff/extrapolation command: {}", usage);
  nevery = utils::inumeric(FLERR, arg[3], false, lmp);
  if (nevery < 1) error->all(FLERR, "fix mlff/extrapolation: N must be a positive number of steps, not {}", arg[3]);
  path_ = arg[4];
  if (strcmp(arg[5], "lo") != 0 || strcmp(arg[7], "hi") != 0)
    error->all(FLERR, "Illegal fix mlff/extrapolation command: {}", usage);
  lo_ = utils::numeric(FLERR, arg[6], false, lmp);
  hi_ = utils::numeric(FLERR, arg[8], false, lmp);
  if (!(lo_ >= 0.0) || !(hi_ > lo_))
    error->all(FLERR, "fix mlff/extrapolation: the trust window needs 0 <= lo < hi, got lo {} hi {}", lo_, hi_);
  if (narg == 11) {
    if (strcmp(arg[9], "output") != 0) error->all(FLERR, "Illegal fix mlff/extrapolation command: {}", usage);
    output_ = arg[10];
  }
  vector_flag = 1;
  size_vector = 4;
  global_freq = nevery;
  extvector = 0;

  // rank 0 appends: a restarted run adds to the same queue
  int ok = 1;
  std::string why;
  if (comm->me == 0) {
    fp_ = fopen(path_.c_str(), "a");
    if (!fp_) {
      ok = 0;
      why = strerror(errno);
    }
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, world);
  if (!ok) error->one(FLERR, "fix mlff/extrapolation: cannot open {} for appending: {}", path_, why);
}

FixMLFFExtrapolation::~FixMLFFExtrapolation()
{
  if (fp_) fclose(fp_);
}

int FixMLFFExtrapolation::setmask()
{
  return END_OF_STEP;
}

void FixMLFFExtrapolation::init()
{
  pair_ = dynamic_cast<PairMLFF *>(force->pair_match("mlff", 1));
  if (!pair_) error->all(FLERR, "fix mlff/extrapolation needs pair_style mlff (alone or inside hybrid/overlay)");
  std::string name = output_;
  if (name.empty()) {
    for (const char *candidate : {"forces_uncertainty", "extrapolation_grade"})
      if (pair_->output_column(candidate) >= 0) {
        name = candidate;
        break;
      }
    if (name.empty())
      error->all(FLERR,
                 "fix mlff/extrapolation: model {} has no uncertainty output (forces_uncertainty of a "
                 "committee, made by 'mlff ensemble', or extrapolation_grade of an ACE potential with "
                 "'activeset FILE.asi')",
                 pair_->model().path);
  }
  column_ = pair_->output_column(name);
  if (column_ < 0)
    error->all(FLERR, "fix mlff/extrapolation: model {} has no per-atom output '{}'", pair_->model().path, name);
  output_ = name;
  if (nevery % pair_->output_every() != 0)
    error->all(FLERR,
               "fix mlff/extrapolation: N = {} is not a multiple of the {} steps between the "
               "model's outputs (pair_style mlff ... outputs_every/gamma_every)",
               nevery, pair_->output_every());
}

void FixMLFFExtrapolation::end_of_step()
{
  if (pair_->last_output_step() != update->ntimestep)
    error->all(FLERR, "fix mlff/extrapolation: pair mlff has no outputs for step {}", update->ntimestep);
  const int *mask = atom->mask;
  double mine = 0.0;
  for (int i = 0; i < atom->nlocal; i++)
    if (mask[i] & groupbit) mine = std::max(mine, pair_->output_value(column_, i));
  double all = 0.0;
  MPI_Allreduce(&mine, &all, 1, MPI_DOUBLE, MPI_MAX, world);
  last_max_ = all;
  checked_ += 1.0;
  if (all >= hi_)
    above_ += 1.0;
  else if (all >= lo_) {
    write_frame(all);
    written_ += 1.0;
  }
}

// one extended-XYZ frame of the group's atoms, in tag order, built on rank 0
void FixMLFFExtrapolation::write_frame(double max_value)
{
  constexpr int W = 6;    // tag, type, x, y, z, value
  const int *mask = atom->mask;
  std::vector<double> mine;
  for (int i = 0; i < atom->nlocal; i++) {
    if (!(mask[i] & groupbit)) continue;
    mine.insert(mine.end(), {static_cast<double>(atom->tag[i]), static_cast<double>(atom->type[i]),
                             atom->x[i][0] - domain->boxlo[0], atom->x[i][1] - domain->boxlo[1],
                             atom->x[i][2] - domain->boxlo[2], pair_->output_value(column_, i)});
  }
  int count = static_cast<int>(mine.size());
  std::vector<int> counts(comm->nprocs), displs(comm->nprocs);
  MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, world);
  std::vector<double> rows;
  if (comm->me == 0) {
    int total = 0;
    for (int r = 0; r < comm->nprocs; r++) {
      displs[r] = total;
      total += counts[r];
    }
    rows.resize(total);
  }
  MPI_Gatherv(mine.data(), count, MPI_DOUBLE, rows.data(), counts.data(), displs.data(), MPI_DOUBLE, 0, world);

  int ok = 1;
  std::string why;
  if (comm->me == 0) {
    const int n = static_cast<int>(rows.size() / W);
    std::vector<int> order(n);
    for (int k = 0; k < n; k++) order[k] = k;
    std::sort(order.begin(), order.end(), [&](int a, int b) { return rows[a * W] < rows[b * W]; });
    const double *h = domain->h;    // xprd yprd zprd yz xz xy: rows a, b, c of the cell
    std::string text = fmt::format("{}\n", n);
    text += fmt::format("Lattice=\"{:.17g} 0 0 {:.17g} {:.17g} 0 {:.17g} {:.17g} {:.17g}\" "
                        "Properties=species:S:1:pos:R:3:{}:R:1 pbc=\"{} {} {}\" step={} max_{}={:.17g} "
                        "source=lammps\n",
                        h[0], h[5], h[1], h[4], h[3], h[2], output_, domain->xperiodic ? "T" : "F",
                        domain->yperiodic ? "T" : "F", domain->zperiodic ? "T" : "F", update->ntimestep,
                        output_, max_value);
    for (int k : order) {
      const double *r = &rows[k * W];
      const std::string &symbol = pair_->type_symbol(static_cast<int>(r[1]));
      if (symbol == "NULL") {
        ok = 0;
        why = fmt::format("atom {} has a type that pair_coeff does not map to an element; use a group "
                          "of mlff atoms",
                          static_cast<bigint>(r[0]));
        break;
      }
      text += fmt::format("{} {:.17g} {:.17g} {:.17g} {:.17g}\n", symbol, r[2], r[3], r[4], r[5]);
    }
    // one write and a sync under an exclusive lock: a killed run leaves whole frames, and
    // two runs appending to one queue (replicas, a restart beside a running job) never
    // interleave their frames
    if (ok) {
      const int fd = fileno(fp_);
      if (flock(fd, LOCK_EX) != 0) {
        ok = 0;
        why = fmt::format("cannot lock {}: {}", path_, strerror(errno));
      } else {
        if (fwrite(text.data(), 1, text.size(), fp_) != text.size() || fflush(fp_) != 0 || fsync(fd) != 0) {
          ok = 0;
          why = fmt::format("writing {} failed: {}", path_, strerror(errno));
        }
        flock(fd, LOCK_UN);
      }
    }
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, world);
  if (!ok) {
    int len = static_cast<int>(why.size());
    MPI_Bcast(&len, 1, MPI_INT, 0, world);
    why.resize(len);
    MPI_Bcast(&why[0], len, MPI_CHAR, 0, world);
    error->all(FLERR, "fix mlff/extrapolation: {}", why);
  }
}

double FixMLFFExtrapolation::compute_vector(int n)
{
  switch (n) {
    case 0: return last_max_;
    case 1: return written_;
    case 2: return above_;
    default: return checked_;
  }
}
