"""ASE calculator: a drop-in replacement for any calculator (the adaptor translates only)."""

from __future__ import annotations

import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .contract import SUPPORTED_DTYPES, evaluate, wrapped_positions
from .loading import ModelSpec, resolve_model
from .neighbors import batch_graphs, graph_from_atoms
from .runtime import tune_allocator
from .units import stress_from_virial

_BASE_PROPERTIES = ["energy", "free_energy", "forces", "stress", "energies", "stresses"]

#: Model kinds that ``compile="auto"`` compiles: those whose torch.compile speed-up and
#: warm-up were measured (BENCHMARKS.md, "Faster student (issue 14)"). Others stay eager.
AUTO_COMPILE_KINDS = frozenset({"painn"})

#: ``compile="auto"`` compiles once the calculator has evaluated more than this many
#: atoms in all (summed over calls). The count, not a clock, decides, so a rerun switches
#: at the same step. Sized so the eager steps before the switch cost about one
#: compilation (ski rental: never worse than 2x the better choice made in hindsight):
#: measured on one thread, the 864-atom PaiNN compiles in ~46 s and runs eager at
#: ~460 us/atom-step, 2.3x slower than compiled, so 100k atoms is ~46 s of eager steps
#: (116 steps at 864 atoms, 25 at 4000). See BENCHMARKS.md, "Faster student (issue 14)".
#: ``MLFF_COMPILE_AFTER_ATOMS`` overrides it.
AUTO_COMPILE_AFTER_ATOMS = 100_000


def _auto_compile_threshold() -> int:
    value = os.environ.get("MLFF_COMPILE_AFTER_ATOMS")
    return AUTO_COMPILE_AFTER_ATOMS if value is None else int(value)


def _engine_dtype(dtype: Union[torch.dtype, str, None]) -> Optional[torch.dtype]:
    """float32 or float64 (what the contract supports), refusing everything else up front."""
    if dtype is None:
        return None
    name = dtype if isinstance(dtype, str) else str(dtype).replace("torch.", "")
    if name not in SUPPORTED_DTYPES:
        raise ValueError(
            f"dtype {dtype!r} is not supported: mlff models run in {' or '.join(SUPPORTED_DTYPES)} "
            "(half precision gives NaN or meV-sized errors in forces and stress)"
        )
    return getattr(torch, name)


class MLFFCalculator(Calculator):
    """Energy, forces, stress, per-atom energies and the model's named outputs.

    ``model`` is an exported ``.pt`` file, a training checkpoint or an ``nn.Module``
    (an in-memory module is copied, never changed). ``dtype`` defaults to the model's
    own (float32 or float64). ``charge`` is the total charge (default: the structure's
    ``atoms.info["charge"]``, else 0) and ``fidelity`` the level of theory (a name or
    an index; default the first) for models that have them. Named per-atom outputs
    (e.g. ``charges``) appear in ``calc.results`` under their names; ``charges`` also
    through ``atoms.get_charges()``. A committee or shallow ensemble adds
    ``forces_uncertainty`` (per atom, eV/Å), its ``forces_uncertainty_max`` and
    ``forces_uncertainty_mean`` over the atoms, ``energy_uncertainty`` (eV), and the
    members' ``member_forces`` ``[N, M, 3]`` and ``member_energies`` ``[M]``.

    ACE potentials (``.yace``, ``.ace``, B-basis ``.yaml``) run on mlff's native ACE core;
    ``activeset`` (a ``.asi`` file, with the B-basis ``.yaml``) adds the per-atom output
    ``extrapolation_grade``.

    ``compile`` chooses torch.compile (inductor, dynamic shapes) for eager modules
    (checkpoints and ``nn.Module``; a TorchScript ``.pt`` cannot be compiled this way).
    The default ``"auto"`` compiles on CPU, for the model kinds in ``AUTO_COMPILE_KINDS``,
    once the calculator has evaluated more than ``AUTO_COMPILE_AFTER_ATOMS`` (100k) atoms
    in all: an MD run or optimisation pays the warm-up (~45 s) once and then runs about
    2.3x faster, while one-off evaluations never pay it. After the switch, numbers differ
    from the eager model's at float round-off (1e-6 eV/Å in float32). ``compile=False``
    (or ``MLFF_NO_COMPILE=1``) keeps the eager model, bit-identical to the in-memory one;
    ``compile=True`` compiles from the first call. If compilation fails (no C++
    compiler, an unsupported operation) under ``"auto"``, the calculator warns once and
    stays eager. ``jit_optimize`` turns on TorchScript's graph-executor
    optimisations; they are off by default because its symbolic autodiff changes forces
    in the last bit, and off the results are bit-identical to the in-memory model.
    """

    implemented_properties = list(_BASE_PROPERTIES)

    def __init__(
        self,
        model: ModelSpec,
        device: str = "cpu",
        dtype: Optional[torch.dtype | str] = None,
        compile: Union[bool, str] = "auto",
        jit_optimize: bool = False,
        charge: Optional[float] = None,
        fidelity: Union[int, str, None] = None,
        activeset: Optional[str] = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        tune_allocator()
        requested = _engine_dtype(dtype)
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was requested but torch sees no CUDA device")
        module, meta = resolve_model(model, self.device, activeset=activeset)
        self.metadata = meta
        self.dtype = requested or meta.torch_dtype
        if self.dtype != meta.torch_dtype:
            module = module.to(self.dtype)
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        if compile not in (True, False, "auto"):
            raise ValueError(f"compile must be True, False or 'auto', got {compile!r}")
        scripted = isinstance(module, torch.jit.ScriptModule)
        self._eager_module = module
        if compile is True:
            if scripted:
                raise ValueError("compile=True needs an eager model or checkpoint, not a TorchScript file")
            module = torch.compile(module, dynamic=True)
        self.module = module
        # compile="auto": only where the warm-up is repaid (CPU MD loops of measured kinds);
        # GPUs get AOTInductor .pt2 files instead (issue 14, item 1)
        self._auto_compile = (
            compile == "auto"
            and not scripted
            and self.device.type == "cpu"
            and meta.kind in AUTO_COMPILE_KINDS
            and not os.environ.get("MLFF_NO_COMPILE")
        )
        self._atoms_evaluated = 0
        self._compile_threshold = _auto_compile_threshold() if self._auto_compile else 0
        self._first_auto_compiled_call = False
        self.jit_optimize = jit_optimize
        self.cutoffs = meta.list_cutoffs
        self.cutoff = meta.cutoff
        self.charge = None if charge is None else meta.check_charge(charge)
        self.fidelity = meta.fidelity_index(fidelity)
        self.extra_outputs = [o for o in meta.outputs if o.name != "energies"]
        self.implemented_properties = _BASE_PROPERTIES + [o.name for o in self.extra_outputs] + [
            o.name + suffix for o in meta.derived_outputs if o.per_atom for suffix in ("_max", "_mean")
        ]
        self.n_calls = 0
        self._warned_close = False

    # ------------------------------------------------------------------ helpers
    def _charge_of(self, atoms: Atoms) -> float:
        if self.charge is not None:
            return self.charge
        return self.metadata.check_charge(atoms.info.get("charge", 0.0), "atoms.info['charge']: ")

    def _run(self, atoms_list: Sequence[Atoms]) -> List[Dict[str, Any]]:
        for a in atoms_list:
            self.metadata.check_elements(a.get_atomic_numbers())
            if not np.isfinite(a.positions).all() or not np.isfinite(np.asarray(a.cell)).all():
                raise ValueError("the structure has non-finite positions or cell vectors")
            self.metadata.check_periodic(a.get_pbc())
        charges = [self._charge_of(a) for a in atoms_list]
        graphs = [graph_from_atoms(a, self.cutoffs, self.dtype, self.device) for a in atoms_list]
        graph, batch = batch_graphs(graphs) if len(graphs) > 1 else (graphs[0], None)
        if batch is not None and self.metadata.locality == "global":
            # whole-system sums must stay per structure: the batched form of the system
            # inputs (what trainers pass), with the structure index of every atom
            system = {
                "charge": torch.tensor(charges, dtype=torch.float64, device=self.device),
                "fidelity": torch.full((len(graphs),), self.fidelity, dtype=torch.long, device=self.device),
                "batch": batch,
            }
        else:
            if len(set(charges)) > 1:
                # one forward pass of a local model takes one set of system inputs
                raise ValueError("evaluate_batch needs structures with the same total charge")
            system = self.metadata.system_inputs(charges[0], self.fidelity, self.device)
        if self.metadata.needs_geometry:
            system = {**system, **self._geometry(atoms_list, batch is not None)}
        edge_vectors = [ev.detach().requires_grad_(True) for ev in graph.edge_vectors()]
        self._check_close_contacts(edge_vectors[0])
        self._maybe_compile(graph.n_atoms)

        def run(module):
            with torch.jit.optimized_execution(self.jit_optimize):
                return evaluate(
                    module, graph.atomic_numbers, graph.edge_indices, edge_vectors, graph.n_atoms,
                    system, compute_virial=True,
                )

        if self._first_auto_compiled_call:
            # compilation happens inside this call; a failure there must not end an MD run
            # that the user never asked to compile
            self._first_auto_compiled_call = False
            try:
                out = run(self.module)
            except Exception as exc:  # inductor raises many types (missing compiler, lowering)
                self.module = self._eager_module
                warnings.warn(
                    f"torch.compile failed ({type(exc).__name__}: {exc}); continuing with the eager "
                    "model (pass compile=False or set MLFF_NO_COMPILE=1 to skip the attempt)",
                    RuntimeWarning,
                    stacklevel=4,
                )
                edge_vectors = [ev.detach().requires_grad_(True) for ev in graph.edge_vectors()]
                out = run(self.module)
        else:
            out = run(self.module)
        self.n_calls += 1
        energies = out["energies"].detach()
        forces = out["forces"].detach()
        atom_virial = out["atom_virial"].detach()
        results = []
        start = 0
        for a, g in zip(atoms_list, graphs):
            sl = slice(start, start + g.n_atoms)
            start += g.n_atoms
            e_atoms = energies[sl].cpu().numpy()
            res: Dict[str, Any] = {
                "energy": float(e_atoms.sum()),
                "energies": e_atoms,
                "forces": forces[sl].cpu().numpy(),
            }
            if a.pbc.all():
                volume = a.get_volume()
                virial = atom_virial[sl].sum(0)
                res["stress"] = full_3x3_to_voigt_6_stress(stress_from_virial(virial, volume).cpu().numpy())
                # one batched numpy expression, the same element-wise operations as the former
                # per-atom loop (bit-identical), without ~4 ms of Python at 864 atoms
                res["stresses"] = np.ascontiguousarray(
                    full_3x3_to_voigt_6_stress(stress_from_virial(atom_virial[sl].cpu().numpy(), volume))
                )
            # one structure's returned outputs, then the derived ones (committee deviations);
            # global outputs of a batch would mix structures, so they come for one only
            mine: Dict[str, torch.Tensor] = {}
            for spec in self.metadata.returned_outputs:
                value = out[spec.name].detach()
                if spec.per_atom:
                    mine[spec.name] = value[sl]
                elif len(atoms_list) == 1:
                    mine[spec.name] = value
            for key, value in self.metadata.complete_outputs(mine).items():
                res[key] = value.cpu().numpy()
            for spec in self.metadata.derived_outputs:
                if spec.per_atom and spec.name in res and res[spec.name].size:
                    # the per-frame statistics of a per-atom deviation (DeePMD: max_devi_f, avg_devi_f)
                    res[spec.name + "_max"] = float(res[spec.name].max())
                    res[spec.name + "_mean"] = float(res[spec.name].mean())
            res["free_energy"] = res["energy"]
            results.append(res)
        return results

    @property
    def compiled(self) -> bool:
        """Whether evaluations now run through torch.compile."""
        return self.module is not self._eager_module

    def _maybe_compile(self, n_atoms: int) -> None:
        if not self._auto_compile:
            return
        self._atoms_evaluated += n_atoms
        if self._atoms_evaluated > self._compile_threshold:
            self._auto_compile = False
            self.module = torch.compile(self._eager_module, dynamic=True)
            self._first_auto_compiled_call = True

    def _geometry(self, atoms_list: Sequence[Atoms], batched: bool) -> Dict[str, torch.Tensor]:
        """``system["positions"]`` (wrapped into the cell) and ``system["cell"]`` ([B, 3, 3]
        for a batch) for models with geometry inputs (Ewald); see mlff.contract."""
        positions = np.concatenate([wrapped_positions(a.positions, a.cell[:]) for a in atoms_list])
        cells = np.stack([np.asarray(a.cell[:], dtype=np.float64) for a in atoms_list])
        cell = cells if batched else cells[0]
        return self.metadata.geometry_system(
            torch.as_tensor(positions, device=self.device), torch.as_tensor(cell, device=self.device), self.dtype
        )

    def _check_close_contacts(self, vectors: torch.Tensor) -> None:
        limit = self.metadata.close_contact_limit()
        if limit is None or self._warned_close or vectors.shape[0] == 0:
            return
        shortest = float(torch.linalg.norm(vectors.detach(), dim=1).min())
        if shortest < limit:
            self._warned_close = True  # once per calculator, as LAMMPS does once per run
            warnings.warn(self.metadata.close_contact_message(shortest), UserWarning, stacklevel=4)

    # ------------------------------------------------------------------ ASE API
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if ("stress" in properties or "stresses" in properties) and not self.atoms.pbc.all():
            raise PropertyNotImplementedError(
                "stress needs a structure periodic in all three directions"
            )
        self.results = self._run([self.atoms])[0]

    def get_charges(self, atoms: Optional[Atoms] = None) -> np.ndarray:
        """Per-atom charges predicted by the model (``atoms.get_charges()`` calls this)."""
        if not any(o.name == "charges" for o in self.extra_outputs):
            raise PropertyNotImplementedError(
                f"this {self.metadata.kind} model predicts no charges (its outputs: "
                f"{self.metadata.output_names})"
            )
        return self.get_property("charges", atoms)

    def evaluate_batch(self, atoms_list: Sequence[Atoms]) -> List[Dict[str, Any]]:
        """Evaluate many structures in one forward pass; one result dict per structure."""
        if not atoms_list:
            return []
        return self._run(list(atoms_list))
