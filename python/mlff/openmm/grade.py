"""Per-atom uncertainty in OpenMM: reporters, as OpenMM users monitor a run.

- :class:`ExtrapolationGradeReporter`: the extrapolation grade γ of a B-basis ACE
  potential (its active set and the native ACE core run on the CPU outside TorchForce).
- :class:`UncertaintyReporter`: the per-atom force deviation of a committee or shallow
  ensemble, from the MLFFForce's own module (the same code the force runs).

Both compute their quantity every ``reportInterval`` steps only, like LAMMPS's
``outputs_every``/``gamma_every N``, so the other steps run at full speed; they write
``step max mean`` lines and, above ``stop_above``, raise :class:`ExtrapolationError`
(LAMMPS's ``fix halt``).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, TextIO, Union

import numpy as np

NM_TO_ANGSTROM = 10.0


class ExtrapolationError(RuntimeError):
    """The simulation left the potential's training domain (γ above the limit)."""


class _PerAtomReporter:
    """``step max mean`` of a per-atom quantity every ``reportInterval`` steps; subclasses
    say what the quantity is (:meth:`_values`) and how to name it."""

    quantity = ""
    advice = ""

    def __init__(self, file: Union[str, os.PathLike, TextIO], reportInterval: int,
                 stop_above: Optional[float]) -> None:
        if int(reportInterval) < 1:
            raise ValueError(f"reportInterval must be a positive number of steps, not {reportInterval!r}")
        self._interval = int(reportInterval)
        self._stop_above = stop_above
        self._own = isinstance(file, (str, os.PathLike))
        self._out = open(file, "w") if self._own else file
        self._out.write(f"# step max_{self.quantity} mean_{self.quantity}\n")
        self.last_values: Optional[np.ndarray] = None

    def describeNextReport(self, simulation):
        steps = self._interval - simulation.currentStep % self._interval
        # positions only, not wrapped: the neighbour list handles the images
        return {"steps": steps, "periodic": False, "include": ["positions"]}

    def _values(self, simulation, state) -> np.ndarray:
        raise NotImplementedError

    def report(self, simulation, state) -> None:
        values = self._values(simulation, state)
        self.last_values = values
        vmax = float(values.max()) if values.size else 0.0
        vmean = float(values.mean()) if values.size else 0.0
        self._out.write(f"{simulation.currentStep} {vmax:.8g} {vmean:.8g}\n")
        self._out.flush()
        if self._stop_above is not None and vmax > self._stop_above:
            raise ExtrapolationError(
                f"step {simulation.currentStep}: {self.quantity} {vmax:.3g} > {self._stop_above:g} "
                f"(atom {int(values.argmax())}): the simulation left the training domain; {self.advice}"
            )

    def __del__(self):
        if getattr(self, "_own", False) and not self._out.closed:
            self._out.close()


class ExtrapolationGradeReporter(_PerAtomReporter):
    """Writes ``step max_gamma mean_gamma`` every ``reportInterval`` steps.

    ``atoms``: indices of the ML particles (default all); their elements come from
    ``topology``. The per-atom grades of the last report are in ``last_grades``.
    """

    quantity = "gamma"
    advice = "add such structures to the training data"

    def __init__(
        self,
        file: Union[str, os.PathLike, TextIO],
        reportInterval: int,
        potential: Union[str, os.PathLike],
        activeset: Union[str, os.PathLike],
        topology: Any,
        atoms: Optional[Sequence[int]] = None,
        stop_above: Optional[float] = None,
    ) -> None:
        import torch

        from ..ace.potential import native_module
        from .force import atomic_numbers_of, check_elements

        self._module, self._meta = native_module(potential, activeset)
        numbers = atomic_numbers_of(topology)
        self._atoms = None if atoms is None else np.asarray(atoms, dtype=np.int64)
        if self._atoms is not None:
            numbers = numbers[self._atoms]
        check_elements(numbers, self._meta)
        self._numbers = numbers
        self._torch = torch
        super().__init__(file, reportInterval, stop_above)

    @property
    def last_grades(self) -> Optional[np.ndarray]:
        return self.last_values

    def _values(self, simulation, state) -> np.ndarray:
        from ase import Atoms
        from openmm import unit

        from ..neighbors import graph_from_atoms

        pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer) * NM_TO_ANGSTROM
        if self._atoms is not None:
            pos = pos[self._atoms]
        box = state.getPeriodicBoxVectors(asNumpy=True)
        # periodic as the topology says (a system of non-periodic forces may still have a box)
        periodic = (simulation.topology.getPeriodicBoxVectors() is not None
                    or simulation.system.usesPeriodicBoundaryConditions())
        cell = box.value_in_unit(unit.nanometer) * NM_TO_ANGSTROM if periodic else np.zeros((3, 3))
        atoms = Atoms(numbers=self._numbers, positions=pos, cell=cell, pbc=periodic)
        g = graph_from_atoms(atoms, self._meta.list_cutoffs, self._torch.float64, "cpu")
        with self._torch.no_grad():  # the grade only: no forces
            out = self._module(g.atomic_numbers, g.edge_indices, g.edge_vectors(), g.n_atoms, {})
        return out["extrapolation_grade"].numpy()


class UncertaintyReporter(_PerAtomReporter):
    """Writes ``step max_forces_uncertainty mean_forces_uncertainty`` (eV/Å) every
    ``reportInterval`` steps for an ``MLFFForce`` of a committee or shallow ensemble.

    The force's own module evaluates the members on the Context's positions and box
    (``MLFFOpenMMModule.outputs``), so the numbers are those ASE and LAMMPS give. The
    per-atom values of the last report are in ``last_values``, the energy deviation (eV)
    in ``last_energy_uncertainty``. Above ``stop_above`` (eV/Å) the run stops with
    :class:`ExtrapolationError`.
    """

    quantity = "forces_uncertainty"
    advice = "label such structures with the teacher and retrain (mlff learn)"

    def __init__(
        self,
        file: Union[str, os.PathLike, TextIO],
        reportInterval: int,
        force: Any,
        stop_above: Optional[float] = None,
    ) -> None:
        module = getattr(force, "mlff_module", None)
        meta = getattr(force, "mlff_metadata", None)
        if module is None or meta is None:
            raise ValueError("UncertaintyReporter needs the force MLFFForce returned (it carries the model's module)")
        if not any(o.name == "forces_uncertainty" for o in meta.outputs):
            raise ValueError(
                f"this {meta.kind} model reports no forces_uncertainty; build a committee with "
                "`mlff ensemble m1.pt m2.pt ... -o committee.pt` or train a shallow ensemble (n_heads)"
            )
        self._module = module
        self.last_energy_uncertainty: Optional[float] = None
        super().__init__(file, reportInterval, stop_above)

    def _values(self, simulation, state) -> np.ndarray:
        import torch
        from openmm import unit

        positions = torch.from_numpy(np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)))
        box = None
        if simulation.system.usesPeriodicBoundaryConditions():
            box = torch.from_numpy(np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)))
        module = self._module
        device = module.atomic_numbers.device
        with torch.enable_grad():  # member forces come from autograd inside the model
            out = module.outputs(positions.to(device), None if box is None else box.to(device))
        if "energy_uncertainty" in out:
            self.last_energy_uncertainty = float(out["energy_uncertainty"].detach())
        return out["forces_uncertainty"].detach().cpu().numpy()
