/* -*- c++ -*- ----------------------------------------------------------
   mlff LAMMPS plugin: compute mlff/atom (GPL-2.0-or-later, see ../LICENSE)

   compute ID group mlff/atom NAME

   The per-atom output NAME (e.g. charges) of the model pair_style mlff runs, as
   computed on the current step: usable in dump, variable (atom-style), compute reduce,
   thermo and fix halt. Exact under MPI: each rank reports its own atoms.
------------------------------------------------------------------------- */

#ifndef LMP_COMPUTE_MLFF_ATOM_H
#define LMP_COMPUTE_MLFF_ATOM_H

#include "compute.h"

#include <string>

namespace LAMMPS_NS {

class PairMLFF;

class ComputeMLFFAtom : public Compute {
 public:
  ComputeMLFFAtom(class LAMMPS *, int, char **);
  ~ComputeMLFFAtom() override;
  void init() override;
  void compute_peratom() override;
  double memory_usage() override;

 private:
  std::string name_;
  PairMLFF *pair_ = nullptr;
  int column_ = -1;
  int nmax_ = 0;
  double *values_ = nullptr;
};

}    // namespace LAMMPS_NS

#endif
