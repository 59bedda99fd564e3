"""``MLFFForce``: an OpenMM Force that evaluates an exported mlff model.

The force is an openmm-torch ``TorchForce`` when openmm-torch can be imported (the fast
path: the whole step, neighbour list included, runs inside libtorch on the platform's
device), and an ``openmm.PythonForce`` otherwise. Both run the same TorchScript
module (:class:`~mlff.openmm.module.MLFFOpenMMModule`), so they give the same numbers.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..contract import ModelMetadata, V1Adapter
from ..loading import ModelSpec, resolve_model
from .module import NM_TO_ANGSTROM, MLFFOpenMMModule, static_sizes

log = logging.getLogger("mlff.openmm")

TORCH_BACKEND = "openmm-torch"
PYTHON_BACKEND = "openmm-python"
BACKENDS = (TORCH_BACKEND, PYTHON_BACKEND)

_torch_import_error: Optional[str] = None


def _import_openmmtorch():
    """openmm-torch, or None with the reason kept for the log.

    torch is imported first on purpose: the CUDA torch wheel loads the CUDA libraries
    (libnvrtc, ...) that the openmm-torch extension links against, which the dynamic
    loader would not find on its own.
    """
    global _torch_import_error
    root = logging.getLogger()

    def quiet(record: logging.LogRecord) -> bool:
        # openmmtorch 1.5 still imports the deprecated simtk.openmm, which logs on the root logger
        return "simtk.openmm" not in record.getMessage()

    root.addFilter(quiet)
    try:
        import openmmtorch  # noqa: F401  (torch is already imported at module level)
    except Exception as exc:  # ImportError, or OSError from a torch/ABI mismatch
        _torch_import_error = f"{type(exc).__name__}: {exc}"
        return None
    finally:
        root.removeFilter(quiet)
    _reload_torch_plugins()
    return openmmtorch


_reloaded_plugins: set = set()


def _reload_torch_plugins() -> None:
    """Load openmm-torch's kernel plugins that failed when ``openmm`` was imported before torch.

    OpenMM loads its plugin directory on ``import openmm``; libOpenMMTorchReference.so
    (and the CUDA one) then cannot find CUDA's libnvrtc, which only ``import torch``
    makes available, and TorchForce would later fail with "does not support all
    required kernels". Loading them again once torch is in makes the import order moot.
    """
    import re

    import openmm

    for message in openmm.Platform.getPluginLoadFailures():
        match = re.match(r"Error loading library (.+?): ", message)
        if match is None:
            continue
        path = match.group(1)
        if "OpenMMTorch" not in os.path.basename(path) or path in _reloaded_plugins:
            continue
        _reloaded_plugins.add(path)
        try:
            openmm.Platform.loadPluginLibrary(path)
            log.debug("mlff: loaded openmm-torch plugin %s after torch", path)
        except Exception as exc:  # e.g. the OpenCL plugin on a machine without OpenCL
            log.debug("mlff: openmm-torch plugin %s still does not load: %s", path, exc)


def available_backend() -> str:
    """The backend ``MLFFForce(backend="auto")`` would use in this process."""
    return TORCH_BACKEND if _import_openmmtorch() is not None else PYTHON_BACKEND


# --------------------------------------------------------------------------- elements


def _symbols(numbers: Iterable[int]) -> List[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[int(z)] for z in numbers]


def atomic_numbers_of(source: Any, n_hint: Optional[int] = None) -> Optional[np.ndarray]:
    """Atomic numbers from an OpenMM Topology, an ase.Atoms or a sequence of integers."""
    if source is None:
        return None
    if hasattr(source, "atoms") and hasattr(source, "getNumAtoms"):  # openmm.app.Topology
        numbers = []
        for atom in source.atoms():
            if atom.element is None:
                raise ValueError(
                    f"topology atom {atom.index} ({atom.name!r} in residue {atom.residue.name} "
                    f"{atom.residue.id}) has no element; mlff needs the element of every ML atom"
                )
            numbers.append(atom.element.atomic_number)
        return np.asarray(numbers, dtype=np.int64)
    if hasattr(source, "get_atomic_numbers"):  # ase.Atoms
        return np.asarray(source.get_atomic_numbers(), dtype=np.int64)
    return np.asarray(list(source), dtype=np.int64)


def check_elements(numbers: np.ndarray, meta: ModelMetadata, where: str = "the ML atoms") -> None:
    """Refuse elements the model was not trained on (the contract's check, OpenMM wording)."""
    meta.check_elements(numbers, where)


def _is_compiled(model: ModelSpec) -> bool:
    from ..compiled import is_compiled_path

    return isinstance(model, (str, os.PathLike)) and is_compiled_path(model)


def _load(model: ModelSpec, device: str = "cpu") -> Tuple[torch.nn.Module, ModelMetadata]:
    # the module runs inside TorchScript (TorchForce, or the scripted PythonForce wrapper);
    # an AOTInductor package runs in Python (the PythonForce wrapper, eager)
    if _is_compiled(model):
        return resolve_model(model, device)
    return resolve_model(model, "cpu", scriptable=True)


# --------------------------------------------------------------------------- module


def build_module(
    model: ModelSpec,
    atomic_numbers: Optional[Sequence[int]] = None,
    atoms: Optional[Sequence[int]] = None,
    periodic: bool = False,
    device: str = "cpu",
    static_shapes: bool = False,
    positions: Optional[np.ndarray] = None,
    box: Optional[np.ndarray] = None,
    static_capacity_factor: float = 1.5,
    check_overflow: bool = True,
    charge: float = 0.0,
    fidelity: Union[int, str, None] = None,
) -> Tuple[torch.jit.ScriptModule, ModelMetadata]:
    """Script the OpenMM module for ``model`` (positions/box in nm for static sizing).

    An AOTInductor ``.pt2`` package is compiled code already: its module stays eager
    Python (for the PythonForce backend), on ``device``.
    """
    from ..compiled import CompiledModel

    module, meta = _load(model, device)
    compiled = isinstance(module, CompiledModel)
    if not compiled:
        module = module.to("cpu").eval()
    for p in module.parameters():
        p.requires_grad_(False)
    if not compiled and not isinstance(module, torch.jit.ScriptModule) and not isinstance(module, V1Adapter):
        module = torch.jit.script(module)
    z = np.asarray(atomic_numbers, dtype=np.int64)
    check_elements(z, meta)
    meta.check_periodic([periodic] * 3, "the OpenMM System")
    q = meta.check_charge(charge, "MLFFForce: ")
    fid = meta.fidelity_index(fidelity)
    atoms_t = None if atoms is None else torch.as_tensor(np.asarray(atoms, dtype=np.int64))
    static = None
    if static_shapes:
        if positions is None:
            raise ValueError("static_shapes=True needs initial positions to size the neighbour list")
        pos = torch.as_tensor(np.asarray(positions, dtype=np.float64) * NM_TO_ANGSTROM)
        if atoms_t is not None:
            pos = pos[atoms_t]
        box_t = None if not periodic else torch.as_tensor(np.asarray(box, dtype=np.float64) * NM_TO_ANGSTROM)
        static = [
            static_sizes(pos, box_t, c, static_capacity_factor, box_cutoff=meta.cutoff) for c in meta.list_cutoffs
        ]
    wrapper = MLFFOpenMMModule(
        module, torch.as_tensor(z), meta.list_cutoffs, meta.torch_dtype, periodic, atoms_t,
        charge=q, fidelity=fid, static=static, check_overflow=check_overflow,
        close_contact_limit=meta.close_contact_limit(), geometry=meta.needs_geometry,
        derived=[(o.name, o.derived_from, o.per_atom) for o in meta.derived_outputs],
    )
    if compiled:
        return wrapper.eval().to(device), meta
    scripted = torch.jit.script(wrapper.eval())
    return scripted.to(device), meta


# --------------------------------------------------------------------------- PythonForce


class _PythonForceComputation:
    """The PythonForce callback: the scripted module called from Python.

    A class rather than a closure so that OpenMM can pickle it (XmlSerializer, copying
    a System): the module travels as TorchScript bytes.
    """

    def __init__(self, module: torch.jit.ScriptModule, periodic: bool, device: str = "cpu"):
        self.module = module
        self.periodic = periodic
        self.device = device

    def __call__(self, state):
        from openmm import unit

        pos = torch.from_numpy(np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)))
        pos = pos.to(self.device)
        box = None
        if self.periodic:
            box = torch.from_numpy(
                np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer))
            ).to(self.device)
        with torch.enable_grad():
            energy, forces = self.module(pos, box)
        return float(energy), forces.detach().cpu().numpy()

    def __getstate__(self):
        import io

        if not isinstance(self.module, torch.jit.ScriptModule):
            raise TypeError(
                "an MLFFForce running an AOTInductor .pt2 package cannot be serialised (XmlSerializer, "
                "copying a System); build the force from the .pt model for that"
            )
        buffer = io.BytesIO()
        torch.jit.save(self.module, buffer)
        return {"module": buffer.getvalue(), "periodic": self.periodic, "device": self.device}

    def __setstate__(self, state):
        import io

        self.device = state.get("device", "cpu")
        self.module = torch.jit.load(io.BytesIO(state["module"]), map_location=self.device)
        self.periodic = state["periodic"]


# --------------------------------------------------------------------------- the force


def MLFFForce(
    model: ModelSpec,
    topology: Any = None,
    atoms: Optional[Sequence[int]] = None,
    *,
    atomic_numbers: Optional[Sequence[int]] = None,
    periodic: Optional[bool] = None,
    backend: str = "auto",
    device: Optional[str] = None,
    cuda_graphs: bool = False,
    static_shapes: Optional[bool] = None,
    positions: Any = None,
    box_vectors: Any = None,
    static_capacity_factor: float = 1.5,
    force_group: Optional[int] = None,
    charge: float = 0.0,
    fidelity: Union[int, str, None] = None,
):
    """An OpenMM Force for ``model`` (an exported ``.pt``, a checkpoint or an ``nn.Module``).

    Parameters
    ----------
    topology
        Where the elements come from: an ``openmm.app.Topology``, an ``ase.Atoms`` or a
        sequence of atomic numbers, each describing every particle of the System.
        Alternatively ``atomic_numbers=`` gives those of the ML atoms only; a
        single-element model needs neither when ``atoms=`` is given.
    atoms
        Indices of the ML atoms in the System; ``None`` means every particle.
    periodic
        Default: periodic when the topology has box vectors (or the ase.Atoms is
        periodic); otherwise open boundaries.
    backend
        ``"auto"`` (TorchForce if openmm-torch imports, else PythonForce), ``"torch"``
        or ``"python"``. The result's ``mlff_backend`` attribute and the log say which.
    device
        Torch device of the PythonForce backend (TorchForce follows the OpenMM platform).
    cuda_graphs
        Ask openmm-torch to capture the step in a CUDA graph (CUDA platform). Implies
        ``static_shapes``.
    static_shapes, positions, box_vectors, static_capacity_factor
        Fixed-size neighbour list sized from ``positions`` (nm, whole system) and
        ``box_vectors`` (nm) with ``static_capacity_factor`` headroom; needed for CUDA
        graphs, optional otherwise.
    charge, fidelity
        The system inputs of the model: total charge of the ML atoms (e) and the level
        of theory (a name from the model's fidelities, or an index). Fixed for the force;
        an unknown fidelity or a charge for a model without a charge input is refused.
    """
    atoms = None if atoms is None else [int(a) for a in atoms]
    numbers_all = atomic_numbers_of(topology)
    if periodic is None:
        periodic = False
        if topology is not None and hasattr(topology, "getPeriodicBoxVectors"):
            periodic = topology.getPeriodicBoxVectors() is not None
        elif topology is not None and hasattr(topology, "get_pbc"):
            pbc = topology.get_pbc()
            if pbc.any() and not pbc.all():
                raise ValueError("OpenMM boxes are periodic in all three directions or none; got pbc=" + str(pbc))
            periodic = bool(pbc.all())
        else:
            # a list of atomic numbers says nothing about the box; a silently open force in
            # a periodic System gives plausible but wrong energies, so say so loudly
            warnings.warn(
                "MLFFForce: periodic= was not given and a list of atomic numbers does not tell "
                "whether the System is periodic; assuming open boundaries. Pass periodic=True "
                "(or an OpenMM Topology with box vectors) for a periodic System",
                UserWarning,
                stacklevel=2,
            )
    if atomic_numbers is not None:
        numbers = np.asarray(list(atomic_numbers), dtype=np.int64)
    elif numbers_all is not None:
        if atoms is not None:
            idx = np.asarray(atoms, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= len(numbers_all)):
                raise ValueError(f"atoms= holds indices outside 0..{len(numbers_all) - 1}")
            numbers = numbers_all[idx]
        else:
            numbers = numbers_all
    else:
        numbers = None

    if numbers is None:
        _, meta = _load(model)
        if len(meta.elements) != 1 or atoms is None:
            raise ValueError(
                "MLFFForce needs the elements of the ML atoms: pass topology= (an OpenMM Topology, "
                "an ase.Atoms or the atomic numbers of every particle) or atomic_numbers= (of the "
                "ML atoms); a single-element model also accepts atoms= alone"
            )
        numbers = np.full(len(atoms), meta.elements[0], dtype=np.int64)
    if atoms is not None and len(atoms) != len(numbers):
        raise ValueError(f"atoms= has {len(atoms)} entries but {len(numbers)} atomic numbers were given")
    if atoms is not None and len(set(atoms)) != len(atoms):
        raise ValueError("atoms= contains duplicate indices")

    if backend not in ("auto", "torch", "python", TORCH_BACKEND, PYTHON_BACKEND):
        raise ValueError(f"backend must be 'auto', 'torch' or 'python', got {backend!r}")
    openmmtorch = None
    if backend in ("auto", "torch", TORCH_BACKEND):
        openmmtorch = _import_openmmtorch()
        if openmmtorch is None and backend != "auto":
            raise ImportError(f"backend='torch' was requested but openmm-torch cannot be imported ({_torch_import_error})")
    chosen = TORCH_BACKEND if openmmtorch is not None else PYTHON_BACKEND
    if _is_compiled(model):
        # openmm-torch runs TorchScript only; the compiled package runs from Python
        if backend in ("torch", TORCH_BACKEND):
            raise ValueError(
                f"{model} is an AOTInductor .pt2 package, which openmm-torch's TorchForce cannot run; "
                "use backend='python' (the default for .pt2 files) or the .pt model"
            )
        chosen = PYTHON_BACKEND

    static = bool(static_shapes) or cuda_graphs
    pos_nm = box_nm = None
    if static:
        from openmm import unit

        if positions is None:
            raise ValueError("static_shapes/cuda_graphs need positions= (nm) to size the neighbour list")
        pos_nm = np.asarray(positions.value_in_unit(unit.nanometer) if hasattr(positions, "value_in_unit") else positions)
        if periodic:
            if box_vectors is None and topology is not None and hasattr(topology, "getPeriodicBoxVectors"):
                box_vectors = topology.getPeriodicBoxVectors()
            if box_vectors is None:
                raise ValueError("static_shapes for a periodic system needs box_vectors= (nm)")
            bv = box_vectors.value_in_unit(unit.nanometer) if hasattr(box_vectors, "value_in_unit") else box_vectors
            box_nm = np.asarray([[float(x) for x in v] for v in bv])
        if chosen == PYTHON_BACKEND and atoms is not None:
            # PythonForce hands the module the ML particles only (setParticles)
            pos_nm = pos_nm[np.asarray(atoms, dtype=np.int64)]
    module, meta = build_module(
        model, numbers, atoms if chosen == TORCH_BACKEND else None, periodic,
        device="cpu" if chosen == TORCH_BACKEND else (device or "cpu"),
        static_shapes=static, positions=pos_nm, box=box_nm,
        static_capacity_factor=static_capacity_factor,
        # a read-back inside a CUDA graph is impossible; NaN energies flag overflows there
        check_overflow=not cuda_graphs,
        charge=charge, fidelity=fidelity,
    )

    if chosen == TORCH_BACKEND:
        force = openmmtorch.TorchForce(module)
        force.setOutputsForces(True)
        force.setUsesPeriodicBoundaryConditions(bool(periodic))
        if cuda_graphs:
            force.setProperty("useCUDAGraphs", "true")
    else:
        import openmm

        if _is_compiled(model):
            log.info("mlff: %s is an AOTInductor package; it runs through openmm.PythonForce", model)
        elif chosen != backend and backend == "auto":
            log.warning(
                "mlff: openmm-torch is not importable (%s); using the slower openmm.PythonForce backend",
                _torch_import_error,
            )
        force = openmm.PythonForce(_PythonForceComputation(module, bool(periodic), device or "cpu"))
        force.setUsesPeriodicBoundaryConditions(bool(periodic))
        if atoms is not None:
            force.setParticles(atoms)
    force.setName(f"MLFFForce[{chosen}]")
    if force_group is not None:
        force.setForceGroup(int(force_group))
    force.mlff_backend = chosen
    force.mlff_metadata = meta
    # the module the force runs, for per-atom outputs (MLFFOpenMMModule.outputs)
    force.mlff_module = module
    log.info(
        "mlff: MLFFForce with backend %s: %d ML atoms (%s), %s, model %s cutoff %.3g Å",
        chosen, len(numbers), " ".join(sorted(set(_symbols(numbers)))),
        "periodic" if periodic else "non-periodic", meta.kind, meta.cutoff,
    )
    return force


def backend_of(force) -> str:
    """Which backend an MLFFForce uses, also for a Force read back from a System."""
    backend = getattr(force, "mlff_backend", None)
    if backend is not None:
        return backend
    name = force.getName()
    for b in BACKENDS:
        if b in name:
            return b
    raise ValueError(f"{name!r} is not an MLFFForce")


def save_torchforce_module(
    path: Union[str, os.PathLike],
    model: ModelSpec,
    topology: Any,
    atoms: Optional[Sequence[int]] = None,
    periodic: Optional[bool] = None,
) -> ModelMetadata:
    """Write the TorchScript module a TorchForce runs, for OpenMM applications without Python.

    C++: ``TorchForce force("file.pt"); force.setOutputsForces(true);
    force.setUsesPeriodicBoundaryConditions(periodic);``. ``topology`` gives the elements as
    for :func:`MLFFForce`. The model's metadata travels inside the file too.
    """
    numbers = atomic_numbers_of(topology)
    if atoms is not None:
        atoms = [int(a) for a in atoms]
        numbers = numbers[np.asarray(atoms, dtype=np.int64)]
    if periodic is None:
        periodic = bool(
            (hasattr(topology, "getPeriodicBoxVectors") and topology.getPeriodicBoxVectors() is not None)
            or (hasattr(topology, "get_pbc") and topology.get_pbc().all())
        )
    module, meta = build_module(model, numbers, atoms, bool(periodic))
    from ..atomic import atomic_write
    from ..contract import METADATA_ENTRY

    extra = {METADATA_ENTRY: meta.to_json(), "mlff_openmm.json": '{"periodic": %s, "outputs_forces": true}' % str(bool(periodic)).lower()}
    atomic_write(Path(path), lambda tmp: torch.jit.save(module, tmp, _extra_files=extra))
    return meta
