"""The ACE extrapolation grade in OpenMM: a reporter, as OpenMM users monitor a run.

The grade of a B-basis ACE potential needs its active set and the native ACE core, which
run on the CPU outside TorchForce; like LAMMPS's ``gamma_every N`` it is computed every
``reportInterval`` steps only, so the other steps run at full speed. Above
``stop_above`` the reporter raises :class:`ExtrapolationError` (LAMMPS's ``fix halt``).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, TextIO, Union

import numpy as np

NM_TO_ANGSTROM = 10.0


class ExtrapolationError(RuntimeError):
    """The simulation left the potential's training domain (γ above the limit)."""


class ExtrapolationGradeReporter:
    """Writes ``step max_gamma mean_gamma`` every ``reportInterval`` steps.

    ``atoms``: indices of the ML particles (default all); their elements come from
    ``topology``. The per-atom grades of the last report are in ``last_grades``.
    """

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

        if int(reportInterval) < 1:
            raise ValueError(f"reportInterval must be a positive number of steps, not {reportInterval!r}")
        self._interval = int(reportInterval)
        self._module, self._meta = native_module(potential, activeset)
        numbers = atomic_numbers_of(topology)
        self._atoms = None if atoms is None else np.asarray(atoms, dtype=np.int64)
        if self._atoms is not None:
            numbers = numbers[self._atoms]
        check_elements(numbers, self._meta)
        self._numbers = numbers
        self._stop_above = stop_above
        self._torch = torch
        self._own = isinstance(file, (str, os.PathLike))
        self._out = open(file, "w") if self._own else file
        self._out.write("# step max_gamma mean_gamma\n")
        self.last_grades: Optional[np.ndarray] = None

    def describeNextReport(self, simulation):
        steps = self._interval - simulation.currentStep % self._interval
        # positions only, not wrapped: the neighbour list handles the images
        return {"steps": steps, "periodic": False, "include": ["positions"]}

    def report(self, simulation, state) -> None:
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
        grades = out["extrapolation_grade"].numpy()
        self.last_grades = grades
        gmax = float(grades.max()) if grades.size else 0.0
        self._out.write(f"{simulation.currentStep} {gmax:.8g} {float(grades.mean()) if grades.size else 0.0:.8g}\n")
        self._out.flush()
        if self._stop_above is not None and gmax > self._stop_above:
            raise ExtrapolationError(
                f"step {simulation.currentStep}: extrapolation grade {gmax:.3g} > {self._stop_above:g} "
                f"(atom {int(grades.argmax())}): the simulation left the training domain of {self._meta.kind} "
                "potential; add such structures to the training data"
            )

    def __del__(self):
        if getattr(self, "_own", False) and not self._out.closed:
            self._out.close()
