/* -*- c++ -*- ----------------------------------------------------------
   mlff LAMMPS plugin: pair_style mlff (GPL-2.0-or-later, see ../LICENSE)

   pair_style mlff MODEL.pt [device cpu|cuda|cuda:N] [graph auto|ghosts]
                            [charge Q] [fidelity NAME|INDEX] [outputs_every N]
                            [exchange auto|no]
   pair_style mlff POTENTIAL.yace|.ace [activeset FILE.asi] [gamma_every N]
   pair_coeff * * Cu O ...        (NULL for types left to other styles in hybrid)
------------------------------------------------------------------------- */

#ifndef LMP_PAIR_MLFF_H
#define LMP_PAIR_MLFF_H

#include "pair.h"

#include "mlff_backend.h"
#include "model_file.h"

#include <map>
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
  double memory_usage() override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;
  int pack_forward_comm(int, int *, double *, int, int *) override;
  void unpack_forward_comm(int, int, double *) override;

  // layer exchange (contract v3): collective on every rank, also with an empty graph.
  // rows: [graph nodes * width] node states; forward overwrites the ghost nodes' rows
  // with their owners', reverse adds the ghost nodes' rows into their owners' and zeroes them
  void exchange_forward(double *rows);
  void exchange_reverse(double *rows);

  // for compute mlff/atom: the model's per-atom output `name` of owned atom i, as
  // computed on the last step (0 for atoms mlff does not handle)
  const mlff_lmp::ModelInfo &model() const { return model_; }
  // the element of LAMMPS type t ("NULL": not handled by mlff)
  const std::string &type_symbol(int t) const { return type_symbol_[t]; }
  int output_column(const std::string &name) const;
  double output_value(int column, int i) const { return peratom_out_[i][column]; }
  bigint last_compute_step() const { return last_step_; }
  bigint last_output_step() const { return last_output_step_; }
  int output_every() const { return output_every_; }
  // the keyword that set it: gamma_every (ACE) or outputs_every
  std::string every_keyword() const { return every_keyword_.empty() ? "outputs_every" : every_keyword_; }

 protected:
  void allocate();
  void check_units();
  void map_types();
  void build_graph();
  void apply_result();
  void store_outputs();
  double output_scale(const mlff_lmp::OutputInfo &o) const;
  void grow_zeroed(double **&array, int &nmax, int &ncols, int cols, int rows, const char *name);
  void check_distances();
  void check_geometry_inputs();
  void set_geometry();
  void apply_geometry_result();
  std::string read_broadcast(const std::string &path);
  double subdomain_distance_sq(const double *x) const;

  mlff_lmp::ModelInfo model_;
  std::unique_ptr<mlff_lmp::Backend> backend_;
  std::string device_type_ = "cpu";
  int device_index_ = -1;
  double energy_factor_ = 1.0;    // eV -> LAMMPS energy unit
  std::vector<double> cut_sq_;    // per model neighbour list
  double cut_first_sq_ = 0.0;     // the first list: message passing (hop pruning)
  double charge_ = 0.0;           // system inputs
  int fidelity_ = 0;

  std::vector<std::string> type_symbol_;    // per LAMMPS type, "NULL" if unmapped
  std::vector<int> type_z_;                 // per LAMMPS type, 0 if unmapped

  // graph mode: with one rank every ghost is an image of an owned atom, so the graph
  // can be the periodic one (ghost -> owner node, as ASE does); with several ranks the
  // ghosts are nodes of their own and the ghost shell covers the interaction range
  bool ghost_mode_ = false;
  bool force_ghost_mode_ = false;
  double cutghost_set_ = 0.0;    // the comm cutoff this style last set
  bool warned_distance_ = false;

  // layer exchange (contract v3 message_passing, several ranks or graph ghosts): a ghost
  // shell of one cutoff, node states of ghosts refreshed between layers through LAMMPS's
  // forward communication and their gradients sent home through the reverse one
  bool layer_exchange_ = false;
  bool exchange_allowed_ = true;    // exchange auto|no
  int exchange_width_ = 0;
  double **xfeat_ = nullptr;        // per LAMMPS atom (owned and ghost): one node state
  int nmax_feat_ = 0, ncols_feat_ = 0;
  enum { COMM_PARTIAL, COMM_FEATURES } comm_what_ = COMM_PARTIAL;
  std::string mode_logged_;

  mlff_lmp::Graph graph_;
  mlff_lmp::Result result_;
  std::vector<int> node_atom_;                  // node -> LAMMPS atom index
  std::vector<int> atom_node_;                  // LAMMPS atom index -> node or -1
  std::vector<int> hop_;                        // message-passing distance from an owned atom
  std::vector<std::vector<int>> edge_i_, edge_j_;    // per list: LAMMPS atom indices of each edge

  // per-atom named outputs of owned atoms, one column per per-atom output of the model
  std::vector<std::string> peratom_names_;
  double **peratom_out_ = nullptr;
  int nmax_out_ = 0;
  bigint last_step_ = -1;           // last step with forces
  bigint last_output_step_ = -1;    // last step with the named outputs
  int output_every_ = 1;            // gamma_every / outputs_every: outputs on multiples of N only
  std::string every_keyword_;       // which of the two the input used

  // global scalar outputs, in pvector (compute pair mlff)
  std::vector<std::string> global_names_;
  // partial per-atom outputs (committee member forces) of every atom, ghosts included,
  // reverse-communicated to the owners; one column block per output
  std::map<std::string, int> partial_offset_;
  int partial_width_ = 0;
  double **partial_atom_ = nullptr;
  int nmax_partial_ = 0, ncols_partial_ = 0;
  int ncols_out_ = 0;    // columns of peratom_out_ as allocated
};

}    // namespace LAMMPS_NS

#endif
