/* ----------------------------------------------------------------------
   mlff LAMMPS plugin: compute mlff/atom (GPL-2.0-or-later, see ../LICENSE)
------------------------------------------------------------------------- */

#include "compute_mlff_atom.h"

#include "atom.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "update.h"

#include "pair_mlff.h"

using namespace LAMMPS_NS;

ComputeMLFFAtom::ComputeMLFFAtom(LAMMPS *lmp, int narg, char **arg) : Compute(lmp, narg, arg)
{
  if (narg != 4)
    error->all(FLERR, "Illegal compute mlff/atom command: expected compute ID group mlff/atom NAME "
                      "(a per-atom output of the model, e.g. charges)");
  name_ = arg[3];
  peratom_flag = 1;
  size_peratom_cols = 0;
}

ComputeMLFFAtom::~ComputeMLFFAtom()
{
  memory->destroy(values_);
}

void ComputeMLFFAtom::init()
{
  // pair_style mlff itself or a sub-style of pair_style hybrid(/overlay)
  pair_ = dynamic_cast<PairMLFF *>(force->pair_match("mlff", 1));
  if (!pair_)
    error->all(FLERR, "compute mlff/atom needs pair_style mlff (alone or inside hybrid/overlay)");
  column_ = pair_->output_column(name_);
  if (column_ < 0) {
    std::string have;
    for (const auto &o : pair_->model().outputs)
      if (o.per_atom && o.width == 1) have += " " + o.name;
    const mlff_lmp::OutputInfo *vec = pair_->model().output(name_);
    if (vec && vec->per_atom)
      error->all(FLERR, "compute mlff/atom: '{}' has {} numbers per atom (partial member values); the "
                        "compute shows per-atom scalars:{}", name_, vec->width, have);
    error->all(FLERR, "compute mlff/atom: model {} has no per-atom output '{}'; it has:{}",
               pair_->model().path, name_, have.empty() ? " none (energies only: use compute pe/atom)" : have);
  }
}

void ComputeMLFFAtom::compute_peratom()
{
  invoked_peratom = update->ntimestep;
  // with gamma_every/outputs_every N the outputs exist on multiples of N only
  if (pair_->last_output_step() != update->ntimestep && pair_->last_compute_step() == update->ntimestep)
    error->all(FLERR,
               "compute mlff/atom: pair mlff computes '{}' every {} steps ({}), not on "
               "step {}; use the compute on multiples of {} (e.g. 'dump ... {} ...', "
               "'fix halt {} ...')",
               name_, pair_->output_every(), pair_->every_keyword(), update->ntimestep, pair_->output_every(),
               pair_->output_every(), pair_->output_every());
  // the pair style computes its outputs with the forces, every step
  if (pair_->last_compute_step() != update->ntimestep)
    error->all(FLERR,
               "compute mlff/atom: pair mlff has not computed step {} (last: {}); the compute is "
               "valid on steps where forces are computed (thermo, dump and fix output steps)",
               update->ntimestep, pair_->last_compute_step());
  if (atom->nmax > nmax_) {
    memory->destroy(values_);
    nmax_ = atom->nmax;
    memory->create(values_, nmax_, "mlff/atom:values");
    vector_atom = values_;
  }
  const int *mask = atom->mask;
  for (int i = 0; i < atom->nlocal; i++)
    values_[i] = (mask[i] & groupbit) ? pair_->output_value(column_, i) : 0.0;
}

double ComputeMLFFAtom::memory_usage()
{
  return (double) nmax_ * sizeof(double);
}
