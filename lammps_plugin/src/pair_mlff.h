/* -*- c++ -*- ----------------------------------------------------------
   mlff LAMMPS plugin: pair_style mlff (GPL-2.0-or-later, see ../LICENSE)

   pair_style mlff MODEL.pt [device cpu|cuda|cuda:N]
   pair_coeff * * Cu O ...        (NULL for types left to other styles in hybrid)
------------------------------------------------------------------------- */

#ifndef LMP_PAIR_MLFF_H
#define LMP_PAIR_MLFF_H

#include "pair.h"

#include "mlff_backend.h"
#include "model_file.h"

#include <memory>
#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairMLFF : public Pair {
 public:
  PairMLFF(class LAMMPS *);
  ~PairMLFF() override;

  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 protected:
  void allocate();
  void check_units();
  void map_types();
  void build_graph();
  void apply_result();

  mlff_lmp::ModelInfo model_;
  std::unique_ptr<mlff_lmp::Backend> backend_;
  std::string device_type_ = "cpu";
  int device_index_ = -1;
  double energy_factor_ = 1.0;    // eV -> LAMMPS energy unit
  double cut_model_sq_ = 0.0;

  std::vector<std::string> type_symbol_;    // per LAMMPS type, "NULL" if unmapped
  std::vector<int> type_z_;                 // per LAMMPS type, 0 if unmapped

  // graph mode: with one rank every ghost is an image of an owned atom, so the graph
  // can be the periodic one (ghost -> owner node, as ASE does); with several ranks the
  // ghosts are nodes of their own and the ghost shell covers the interaction range
  bool ghost_mode_ = false;
  bool force_ghost_mode_ = false;
  double cutghost_set_ = 0.0;    // the comm cutoff this style last set

  mlff_lmp::Graph graph_;
  mlff_lmp::Result result_;
  std::vector<int> node_atom_;     // node -> LAMMPS atom index
  std::vector<int> atom_node_;     // LAMMPS atom index -> node or -1
  std::vector<int> hop_;           // message-passing distance from an owned atom
  std::vector<int> edge_i_, edge_j_;    // LAMMPS atom indices of each edge
};

}    // namespace LAMMPS_NS

#endif
