"""ASE calculator: a drop-in replacement for any calculator (the adaptor translates only)."""

from __future__ import annotations

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
    through ``atoms.get_charges()``.

    ACE potentials (``.yace``, ``.ace``, B-basis ``.yaml``) run on mlff's native ACE core;
    ``activeset`` (a ``.asi`` file, with the B-basis ``.yaml``) adds the per-atom output
    ``extrapolation_grade``.

    ``compile=True`` wraps an eager module in ``torch.compile`` (TorchScript modules are
    already compiled). ``jit_optimize`` turns on TorchScript's graph-executor
    optimisations; they are off by default because its symbolic autodiff changes forces
    in the last bit, and off the results are bit-identical to the in-memory model.
    """

    implemented_properties = list(_BASE_PROPERTIES)

    def __init__(
        self,
        model: ModelSpec,
        device: str = "cpu",
        dtype: Optional[torch.dtype | str] = None,
        compile: bool = False,
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
        if compile:
            if isinstance(module, torch.jit.ScriptModule):
                raise ValueError("compile=True needs an eager model or checkpoint, not a TorchScript file")
            module = torch.compile(module, dynamic=True)
        self.module = module
        self.jit_optimize = jit_optimize
        self.cutoffs = meta.list_cutoffs
        self.cutoff = meta.cutoff
        self.charge = None if charge is None else meta.check_charge(charge)
        self.fidelity = meta.fidelity_index(fidelity)
        self.extra_outputs = [o for o in meta.outputs if o.name != "energies"]
        self.implemented_properties = _BASE_PROPERTIES + [o.name for o in self.extra_outputs]
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
        with torch.jit.optimized_execution(self.jit_optimize):
            out = evaluate(
                self.module, graph.atomic_numbers, graph.edge_indices, edge_vectors, graph.n_atoms,
                system, compute_virial=True,
            )
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
                res["stresses"] = np.array(
                    [full_3x3_to_voigt_6_stress(stress_from_virial(w, volume)) for w in atom_virial[sl].cpu().numpy()]
                )
            for spec in self.extra_outputs:
                value = out[spec.name].detach()
                if spec.per_atom:
                    res[spec.name] = value[sl].cpu().numpy()
                elif len(atoms_list) == 1:
                    res[spec.name] = value.cpu().numpy()
            res["free_energy"] = res["energy"]
            results.append(res)
        return results

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
