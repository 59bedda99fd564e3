"""ASE calculator: a drop-in replacement for any calculator (the adaptor translates only)."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from .contract import MLFFModelError, evaluate, stress_from_virial
from .loading import ModelSpec, resolve_model
from .neighbors import batch_graphs, graph_from_atoms
from .runtime import tune_allocator


class MLFFCalculator(Calculator):
    """Energy, forces, stress and per-atom energies from an mlff model.

    ``model`` is an exported ``.pt`` file, a training checkpoint or an ``nn.Module``.
    ``dtype`` defaults to the model's own; ``compile=True`` wraps an eager module in
    ``torch.compile`` (TorchScript modules are already compiled). ``jit_optimize``
    turns on TorchScript's graph-executor optimisations; they are off by default
    because its symbolic autodiff changes forces in the last bit, and off the results
    are bit-identical to the in-memory model.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies", "stresses"]

    def __init__(
        self,
        model: ModelSpec,
        device: str = "cpu",
        dtype: Optional[torch.dtype | str] = None,
        compile: bool = False,
        jit_optimize: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        tune_allocator()
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was requested but torch sees no CUDA device")
        module, meta = resolve_model(model, self.device)
        self.metadata = meta
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        self.dtype = dtype or meta.torch_dtype
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
        self.cutoff = meta.cutoff
        self.n_calls = 0

    # ------------------------------------------------------------------ helpers
    def _run(self, atoms_list: Sequence[Atoms]) -> List[Dict[str, np.ndarray]]:
        for a in atoms_list:
            self.metadata.check_elements(a.get_atomic_numbers())
        graphs = [graph_from_atoms(a, self.cutoff, self.dtype, self.device) for a in atoms_list]
        graph, batch = batch_graphs(graphs) if len(graphs) > 1 else (graphs[0], None)
        edge_vectors = graph.edge_vectors().detach().requires_grad_(True)
        with torch.jit.optimized_execution(self.jit_optimize):
            out = evaluate(
                self.module, graph.atomic_numbers, graph.edge_index, edge_vectors, graph.n_atoms,
                compute_virial=True,
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
            res = {
                "energy": float(e_atoms.sum()),
                "energies": e_atoms,
                "forces": forces[sl].cpu().numpy(),
            }
            if a.pbc.all():
                volume = a.get_volume()
                virial = atom_virial[sl].sum(0)
                res["stress"] = full_3x3_to_voigt_6_stress(stress_from_virial(virial, volume).cpu().numpy())
                res["stresses"] = np.array(
                    [full_3x3_to_voigt_6_stress(-w / volume) for w in atom_virial[sl].cpu().numpy()]
                )
            res["free_energy"] = res["energy"]
            results.append(res)
        return results

    # ------------------------------------------------------------------ ASE API
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if ("stress" in properties or "stresses" in properties) and not self.atoms.pbc.all():
            raise PropertyNotImplementedError(
                "stress needs a structure periodic in all three directions"
            )
        self.results = self._run([self.atoms])[0]

    def evaluate_batch(self, atoms_list: Sequence[Atoms]) -> List[Dict[str, np.ndarray]]:
        """Evaluate many structures in one forward pass; one result dict per structure."""
        if not atoms_list:
            return []
        return self._run(list(atoms_list))
