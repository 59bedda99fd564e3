"""ACE potential files (.yace, .ace) for mlff's Python engines.

The native ACE core (``mlff.ace._ace``, the same C++ the LAMMPS plugin runs) reads the
file and evaluates it. This module only adapts it to the contract: its metadata, and a
``torch.nn.Module`` whose forward calls the core and whose backward hands back the
core's dE/dr_ij, so ASE and every other Python path (``contract.evaluate``) see an ACE
file exactly like any exported model. Where TorchScript is required (OpenMM's
TorchForce, CUDA, ``mlff export``) the engines use :mod:`mlff.ace.torch_module`
instead, which the tests check against this core to 1e-10 eV.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..contract import ENERGY_KEY, MLFFModelError, ModelMetadata, metadata_for

ACE_KIND = "ace"
ACE_LIST = "ace"


def _native():
    try:
        from . import _ace
    except ImportError as exc:  # a pure-Python install (MLFF_SKIP_NATIVE=1) or a broken build
        raise MLFFModelError(
            "ACE files need mlff's native ACE core (mlff.ace._ace), which is not built in this "
            f"installation ({exc}); reinstall mlff with `pip install --no-build-isolation -e .` "
            "(or `make test`) without MLFF_SKIP_NATIVE"
        ) from exc
    return _ace


def _is_bbasis(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in (".yaml", ".yml")


class ACEFormatError(MLFFModelError, ValueError):
    """A malformed ACE file (the message names the file, the line and the key): a model
    error like any unreadable model file, and a ``ValueError`` like the core's own."""


def load_potential(path: str | os.PathLike):
    """The file as the core's C-tilde ``Model`` (a B-basis .yaml is expanded); a malformed
    file raises :class:`ACEFormatError` naming the line and the key."""
    _ace = _native()
    try:
        if _is_bbasis(path):
            return _ace.BBasis.load(str(path)).energy_model
        return _ace.Model.load(str(path))
    except _ace.FormatError as exc:
        raise ACEFormatError(str(exc)) from exc


def load_grade(path: str | os.PathLike, activeset: str | os.PathLike) -> Any:
    """The extrapolation-grade evaluator of a B-basis potential and its active set (.asi)."""
    _ace = _native()
    if not _is_bbasis(path):
        raise MLFFModelError(
            f"the extrapolation grade (activeset {activeset}) needs the B-basis potential the active set "
            f"was made for (pacemaker's output_potential.yaml), not {path}: a .yace/.ace file merges the "
            "B functions whose projections the grade uses"
        )
    try:
        return _ace.GradeEvaluator(_ace.BBasis.load(str(path)), _ace.ActiveSet.load(str(activeset)))
    except _ace.FormatError as exc:
        raise ACEFormatError(str(exc)) from exc


def _atomic_numbers(symbols: List[str], where: str) -> List[int]:
    from ase.data import atomic_numbers

    out = []
    for s in symbols:
        if s not in atomic_numbers or atomic_numbers[s] == 0:
            raise MLFFModelError(f"{where}: element {s!r} is not a chemical element symbol")
        out.append(atomic_numbers[s])
    return out


GRADE_OUTPUT = {"name": "extrapolation_grade", "per_atom": True, "unit": "",
                "description": "ACE extrapolation grade gamma (> ~2: extrapolating, > ~10: unreliable)"}


def contract_info(model: Any, source: str = "ACE potential", grade: bool = False) -> Dict[str, Any]:
    """What ``contract.metadata_for`` needs, for the native and the TorchScript module alike.

    ACE is local: one neighbour list at the largest bond cutoff, reach = range = rcut.
    """
    return ace_contract_info(_atomic_numbers(list(model.elements), source), float(model.cutoff), model.summary(),
                             grade)


def ace_contract_info(elements: List[int], rcut: float, summary: Dict[str, Any], grade: bool = False) -> Dict[str, Any]:
    """The one description of an ACE potential under the contract (native core and
    TorchScript module alike, so both give the same contract key)."""
    info: Dict[str, Any] = {
        "kind": ACE_KIND,
        "elements": list(elements),
        "neighbor_lists": [{"name": ACE_LIST, "cutoff": rcut, "reach": rcut}],
        "num_interactions": 1,
        "interaction_range": rcut,
        "hyperparameters": {"ace": _jsonable(summary)},
    }
    if grade:
        info["outputs"] = [GRADE_OUTPUT]
    return info


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class _NativeACE(torch.autograd.Function):
    """E_i from the core; backward: dL/dr_ij = dL/dE_i * dE_i/dr_ij (r_ij moves E_i only)."""

    @staticmethod
    def forward(ctx, vectors: torch.Tensor, evaluator: Any, species: np.ndarray, n_local: int,
                edge_index: np.ndarray, n_nodes: int) -> torch.Tensor:
        vec = vectors.detach().to("cpu", torch.float64).numpy()
        energies, grad = evaluator.compute(species, n_local, edge_index, vec)
        ctx.save_for_backward(torch.from_numpy(np.ascontiguousarray(grad)).to(vectors))
        ctx.centres = torch.from_numpy(edge_index[0])
        out = torch.zeros(n_nodes, dtype=vectors.dtype, device=vectors.device)
        out[:n_local] = torch.from_numpy(np.asarray(energies)).to(vectors)
        return out

    @staticmethod
    def backward(ctx, grad_energies: torch.Tensor):
        (grad,) = ctx.saved_tensors
        centres = ctx.centres.to(grad_energies.device)
        return grad_energies[centres].unsqueeze(1) * grad, None, None, None, None, None


class NativeACEModule(torch.nn.Module):
    """An ACE file under the contract (v2 forward), evaluated by the native core on the CPU.

    Float64 inside whatever the input dtype; not TorchScript-able (use
    :func:`mlff.ace.torch_module.build_ace_module` for that).
    """

    def __init__(self, model: Any, source: str = "ACE potential", grade: Any = None):
        super().__init__()
        self.ace_model = model
        self.source = source
        self.grade = grade
        self._info = contract_info(model, source, grade=grade is not None)
        self.evaluator = _native().Evaluator(model)
        # species index of the file per atomic number (-1: not in the file)
        table = np.full(119, -1, dtype=np.int32)
        for mu, z in enumerate(_atomic_numbers(list(model.elements), source)):
            table[z] = mu
        self._species_of_z = table
        # the dtype the engines read from a module's buffers (the core is float64)
        self.register_buffer("_dtype_marker", torch.zeros((), dtype=torch.float64), persistent=False)

    def contract_info(self) -> Dict[str, Any]:
        return dict(self._info)

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Optional[Dict[str, torch.Tensor]] = None,
    ) -> Dict[str, torch.Tensor]:
        z = atomic_numbers.detach().cpu().numpy()
        if z.size and (z.min() < 1 or z.max() > 118):
            raise MLFFModelError(f"atomic numbers must be in 1..118, got {sorted(set(z.tolist()))}")
        species = np.ascontiguousarray(self._species_of_z[z])
        owned = species[: int(n_local)]
        if (owned < 0).any():
            missing = sorted(set(z[: int(n_local)][owned < 0].tolist()))
            raise MLFFModelError(f"atomic numbers {missing} are not in {self.source}")
        edge_index = np.ascontiguousarray(edge_indices[0].detach().cpu().numpy().astype(np.int64, copy=False))
        energies = _NativeACE.apply(edge_vectors[0], self.evaluator, species, int(n_local), edge_index, len(z))
        out = {ENERGY_KEY: energies}
        if self.grade is not None:
            vec = edge_vectors[0].detach().to("cpu", torch.float64).numpy()
            gamma = np.zeros(len(z))
            gamma[: int(n_local)] = self.grade.compute(species, int(n_local), edge_index, vec)
            out[GRADE_OUTPUT["name"]] = torch.from_numpy(gamma).to(edge_vectors[0])
        return out


def native_module(
    path: str | os.PathLike, activeset: Optional[str | os.PathLike] = None
) -> Tuple[NativeACEModule, ModelMetadata]:
    """(module, metadata) of an ACE file for the Python engines' CPU path; with an active
    set (.asi) the module also returns the per-atom ``extrapolation_grade``."""
    grade = None if activeset is None else load_grade(path, activeset)
    module = NativeACEModule(load_potential(path), str(path), grade)
    provenance = {"source": str(Path(path).resolve())}
    if activeset is not None:
        provenance["activeset"] = str(Path(activeset).resolve())
    meta = metadata_for(module, provenance)
    return module, meta
