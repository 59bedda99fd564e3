"""AIMNet2-style message passing with charges that sum to the total charge (``kind: aimnet2``).

Our own implementation of the ideas of AIMNet2 (Anstine, Zubatyuk, Isayev 2024), written
for the mlff contract. Notation: P passes (``n_passes``), F features, G Gaussians, rc the
network cutoff, edge (i, j) with r = |r_ij|, unit vector u_ij, envelope fc(r).

Geometry (shared by every pass)::

    b_k(r) = fc(r) exp(-(r - mu_k)^2 / (2 sigma^2)),  mu_k = 0.8 .. rc (G centres), sigma = spacing

Pass 0 (atoms only)::

    a_i^0 = embedding[fidelity, Z_i]
    a_i^1 = a_i^0 + MLP([a_i^0, s_i, |v_i|^2]),  s_i = sum_j (W_f b) * (W_h a_j),
                                                 v_i = sum_j (W_f' b) * (W_h' a_j) u_ij   (3 x F)
    (q_u,i, y_i) = MLP(a_i^1),  f_i = y_i^2 + eps

Charge normalisation (the only whole-system step; K = 2 sums, see ``global_sums``)::

    q_i^0 = q_u,i + f_i / S_f (Q - S_q),   S_f = sum f_i,  S_q = sum q_u,i   (per structure)

Passes t = 1 .. P-1 (charges enter the messages, then are updated)::

    a_i^{t+1} = a_i^t + MLP([a_i^t, s_i, |v_i|^2])  with h_j = [a_j^t, q_j^{t-1}] in the messages
    q_i^t     = q_i^{t-1} + sum_j w_t(r_ij) (chi_t(a_j^t) - chi_t(a_i^t)),  w_t = (c_t . b(r))^2

The update moves charge along edges: every full list holds (i, j) and (j, i) with the
same r, so the transfers cancel pairwise and the total charge stays exactly Q without a
second whole-system sum (hence one normalisation, after pass 0, and K = 2 in total: exact
on several LAMMPS ranks with a single all-reduce).

Energy, per atom (head and shift chosen by the structure's fidelity)::

    E_i = scale * MLP_fid([a_i^P, q_i]) + e0[fid, Z_i] + E_i^Coulomb(q),   q = q^{P-1}

Coulomb on the predicted charges (``coulomb: simple | dsf | ewald``) uses the second list
and subtracts the part within ``sr_cutoff`` that the network already describes
(:mod:`mlff.physics.coulomb`). ``ewald`` (periodic cells only) adds the reciprocal-space
sum (:mod:`mlff.physics.ewald`), which needs the positions and the cell: the model then
declares ``geometry_inputs: [positions, cell]`` and engines pass them (LAMMPS on one MPI
rank; several ranks are refused at ``init``: the structure factors would be a second
whole-system reduction after the charges'). alpha and the reciprocal cutoff follow from
``ewald_accuracy`` and ``coulomb_cutoff`` and are recorded in the hyperparameters.

Ranges (documented because LAMMPS builds its ghost shell from them): a^t and q^{t-1}
depend on atoms t hops away, so the final features and charges reach P hops (P rc) and
the last pass needs network edges centred up to (P-1) rc from a counted atom. The Coulomb
energy of atom i pairs it with partners j up to the Coulomb cutoff Rc, whose charges need
their own network edges: the network list's reach is therefore Rc + (P-1) rc, the Coulomb
list's reach 0 (only counted atoms' Coulomb edges are used), and the interaction range
Rc + P rc. Without Coulomb: reach (P-1) rc and range P rc, as for PaiNN. (Measured: with
the network list's reach only (P-1) rc, two LAMMPS ranks miss 1e-7 eV on a water box.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Literal, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from ..elements import element_indices, element_table
from ..physics.coulomb import DEFAULT_SWITCH_WIDTH, coulomb_dsf, coulomb_simple
from ..physics.ewald import DEFAULT_ACCURACY, coulomb_ewald, ewald_parameters, require_geometry
from .base import MLFFModel, ModelOptions, add_to_atomic_energies, conventional_no_decay, force_rms
from .fidelity import per_atom_fidelity
from .radial import PolynomialCutoff
from .shifts import fit_atomic_energies

if TYPE_CHECKING:  # pragma: no cover
    from ..data.records import Record

#: the whole-system sums: [sum f_i, sum q_u,i] (the order of ``global_sums``' last axis)
N_GLOBAL_SUMS = 2
#: keeps sum f > 0 when every raw weight vanishes (the excess is then shared equally)
WEIGHT_EPSILON = 1e-4
#: the lowest Gaussian centre (Å): nothing closer occurs in chemistry
FIRST_CENTRE = 0.8


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with SiLU between them (none after the last)."""
    layers: List[nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class GaussianBasis(nn.Module):
    """G Gaussians exp(-(r - mu_k)^2 / 2 sigma^2), centres evenly from 0.8 Å to the cutoff,
    sigma the spacing (neighbours overlap at half height, so every r is resolved)."""

    def __init__(self, n_gaussians: int, cutoff: float, start: float = FIRST_CENTRE):
        super().__init__()
        centres = torch.linspace(start, cutoff, n_gaussians, dtype=torch.float64)
        width = (cutoff - start) / max(n_gaussians - 1, 1)
        self.register_buffer("centres", centres)
        self.inv_two_sigma2 = 1.0 / (2.0 * width * width)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        d = r.unsqueeze(-1) - self.centres.to(r.dtype)
        return torch.exp(-self.inv_two_sigma2 * d * d)


class _Convolution(nn.Module):
    """One message pass: radially filtered scalar and vector sums over neighbours, the
    vector channels contracted to invariants |v|^2, and a residual MLP update."""

    def __init__(self, in_channels: int, n_features: int, n_gaussians: int):
        super().__init__()
        f = n_features
        self.n_features = f
        self.neighbour = nn.Linear(in_channels, 2 * f, bias=False)
        # no bias: the basis carries fc, so edges past the cutoff give exactly zero
        self.filter = nn.Linear(n_gaussians, 2 * f, bias=False)
        self.update = _mlp([3 * f, f, f])

    def forward(
        self, a: torch.Tensor, h: torch.Tensor, edge_index: torch.Tensor, basis: torch.Tensor, unit: torch.Tensor
    ) -> torch.Tensor:
        f = self.n_features
        i = edge_index[0]
        j = edge_index[1]
        x = self.neighbour(h)[j] * self.filter(basis)
        xs, xv = torch.split(x, f, dim=-1)
        n = a.shape[0]
        s = torch.zeros((n, f), dtype=a.dtype, device=a.device).index_add(0, i, xs)
        v = torch.zeros((n, 3, f), dtype=a.dtype, device=a.device).index_add(
            0, i, xv.unsqueeze(1) * unit.unsqueeze(2)
        )
        invariant = torch.sum(v * v, dim=1)  # rotation-invariant angular information
        return a + self.update(torch.cat([a, s, invariant], dim=-1))


class _FirstPass(nn.Module):
    """Pass 0: features from the elements alone, then raw charges q_u and weights f."""

    def __init__(self, n_features: int, n_gaussians: int):
        super().__init__()
        self.conv = _Convolution(n_features, n_features, n_gaussians)
        self.charges = _mlp([n_features, n_features // 2, 2])
        self.weight_epsilon = WEIGHT_EPSILON  # an attribute: TorchScript reads no module globals

    def forward(
        self, a: torch.Tensor, edge_index: torch.Tensor, basis: torch.Tensor, unit: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = self.conv(a, a, edge_index, basis, unit)
        out = self.charges(a)
        q_raw = out[:, 0]
        weight = out[:, 1] * out[:, 1] + self.weight_epsilon
        return a, q_raw, weight


class _ChargePass(nn.Module):
    """Passes 1..P-1: neighbours' charges enter the messages, then charge flows along
    edges (antisymmetric transfers: the total is conserved without another global sum)."""

    def __init__(self, n_features: int, n_gaussians: int):
        super().__init__()
        self.conv = _Convolution(n_features + 1, n_features, n_gaussians)
        self.electronegativity = _mlp([n_features, n_features // 2, 1])
        self.coupling = nn.Linear(n_gaussians, 1, bias=False)

    def forward(
        self,
        a: torch.Tensor,
        q: torch.Tensor,
        edge_index: torch.Tensor,
        basis: torch.Tensor,
        unit: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        i = edge_index[0]
        j = edge_index[1]
        # the transfer uses the features before this pass, so q^t reaches t + 1 hops as a^{t+1} does
        chi = self.electronegativity(a).squeeze(-1)
        w = self.coupling(basis).squeeze(-1)
        transfer = w * w * (chi[j] - chi[i])  # symmetric weight x antisymmetric difference
        q_new = q.index_add(0, i, transfer)
        a = self.conv(a, torch.cat([a, q.unsqueeze(1)], dim=1), edge_index, basis, unit)
        return a, q_new


class AIMNet2Options(ModelOptions):
    """The ``model:`` block of an AIMNet2-style model (``kind: aimnet2``)."""

    cutoff: float = Field(5.0, gt=FIRST_CENTRE, description="network neighbour-list cutoff, Å")
    n_features: int = Field(64, ge=2)
    n_passes: int = Field(3, ge=1, description="message passes (charges from pass 0, updated in later ones)")
    n_gaussians: int = Field(16, ge=2, description="Gaussian radial functions between 0.8 Å and the cutoff")
    use_fidelity_readouts: bool = Field(
        False, description="per-fidelity embeddings, energy heads and shifts on one backbone"
    )
    fidelities: List[str] = Field(default_factory=list, description="names of the levels of theory")
    coulomb: Literal["none", "simple", "dsf", "ewald"] = Field(
        "dsf",
        description="long-range Coulomb on the predicted charges (dsf: damped shifted force, for MD; "
        "ewald: periodic cells, one LAMMPS rank)",
    )
    coulomb_cutoff: float = Field(15.0, gt=0, description="Coulomb neighbour-list cutoff, Å")
    dsf_alpha: float = Field(0.2, gt=0, description="DSF damping, 1/Å")
    sr_cutoff: float = Field(4.6, ge=0, description="short range the network describes (Coulomb subtracted there), Å")
    ewald_accuracy: float = Field(
        DEFAULT_ACCURACY, gt=0, lt=1, description="Ewald target accuracy (sets alpha and the k-space cutoff)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> "AIMNet2Options":
        check_settings(self.use_fidelity_readouts, self.fidelities, self.coulomb, self.coulomb_cutoff, self.sr_cutoff)
        return self


def check_settings(
    use_fidelity_readouts: bool, fidelities: Sequence[str], coulomb: str, coulomb_cutoff: float, sr_cutoff: float
) -> None:
    """Refuse option combinations that cannot work (shared by the options and the constructor)."""
    fidelities = list(fidelities)
    if len(set(fidelities)) != len(fidelities):
        raise ValueError(f"duplicate fidelity names {fidelities}")
    if use_fidelity_readouts and not fidelities:
        raise ValueError("use_fidelity_readouts needs the fidelity names (fidelities: [pbe-def2svp, gfn2, ...])")
    if not use_fidelity_readouts and len(fidelities) > 1:
        raise ValueError(
            f"{len(fidelities)} fidelities {fidelities} need use_fidelity_readouts: true "
            "(a plain model has one energy head)"
        )
    if coulomb not in ("none", "simple", "dsf", "ewald"):
        raise ValueError(f"coulomb must be 'none', 'simple', 'dsf' or 'ewald', got {coulomb!r}")
    if coulomb == "none":
        return
    if not 0.0 <= sr_cutoff < coulomb_cutoff:
        raise ValueError(f"sr_cutoff ({sr_cutoff} Å) must lie in [0, coulomb_cutoff = {coulomb_cutoff} Å)")
    if coulomb == "simple" and coulomb_cutoff - sr_cutoff < DEFAULT_SWITCH_WIDTH:
        # the simple term switches off over its last DEFAULT_SWITCH_WIDTH Å, outside the short range
        raise ValueError(
            f"coulomb 'simple' needs coulomb_cutoff - sr_cutoff >= {DEFAULT_SWITCH_WIDTH} Å "
            f"(got {coulomb_cutoff} - {sr_cutoff})"
        )


class AIMNet2(MLFFModel, nn.Module):
    """AIMNet2-style network with normalised charges and optional Coulomb (see the module docstring)."""

    kind = "aimnet2"
    Options = AIMNet2Options

    def __init__(
        self,
        elements: Sequence[int],
        cutoff: float = 5.0,
        n_features: int = 64,
        n_passes: int = 3,
        n_gaussians: int = 16,
        use_fidelity_readouts: bool = False,
        fidelities: Sequence[str] = (),
        coulomb: str = "dsf",
        coulomb_cutoff: float = 15.0,
        dsf_alpha: float = 0.2,
        sr_cutoff: float = 4.6,
        scale: float = 1.0,
        ewald_accuracy: float = DEFAULT_ACCURACY,
    ):
        super().__init__()
        elements = sorted(int(z) for z in elements)
        if len(set(elements)) != len(elements) or not elements:
            raise ValueError(f"elements must be a non-empty list of distinct atomic numbers, got {elements}")
        check_settings(use_fidelity_readouts, fidelities, coulomb, coulomb_cutoff, sr_cutoff)
        self.config: Dict[str, Any] = dict(
            elements=elements,
            cutoff=float(cutoff),
            n_features=int(n_features),
            n_passes=int(n_passes),
            n_gaussians=int(n_gaussians),
            use_fidelity_readouts=bool(use_fidelity_readouts),
            fidelities=list(fidelities),
            coulomb=coulomb,
            coulomb_cutoff=float(coulomb_cutoff),
            dsf_alpha=float(dsf_alpha),
            sr_cutoff=float(sr_cutoff),
        )
        if coulomb == "ewald":  # only then: configs of the other methods stay as they were
            self.config["ewald_accuracy"] = float(ewald_accuracy)
        # Ewald splitting alpha and reciprocal cutoff kc (1/Å), fixed by the accuracy and Rc
        self.ewald_alpha, self.ewald_kspace_cutoff = (
            ewald_parameters(coulomb_cutoff, ewald_accuracy) if coulomb == "ewald" else (0.0, 0.0)
        )
        self.cutoff = float(cutoff)
        self.n_passes = int(n_passes)
        self.coulomb = coulomb
        self.coulomb_cutoff = float(coulomb_cutoff)
        self.dsf_alpha = float(dsf_alpha)
        self.sr_cutoff = float(sr_cutoff)
        self.n_elements = len(elements)
        # one table (embedding rows, head, shifts) per fidelity, or one for a plain model
        self.n_tables = len(fidelities) if use_fidelity_readouts else 1
        self.register_buffer("z_to_index", element_table(elements))
        f = int(n_features)
        self.embedding = nn.Embedding(self.n_tables * self.n_elements, f)
        self.basis = GaussianBasis(n_gaussians, cutoff)
        self.fcut = PolynomialCutoff(cutoff)
        self.first = _FirstPass(f, n_gaussians)
        self.passes = nn.ModuleList([_ChargePass(f, n_gaussians) for _ in range(self.n_passes - 1)])
        self.heads = nn.ModuleList([_mlp([f + 1, f, f // 2, 1]) for _ in range(self.n_tables)])
        # trainable so fine-tuning can adjust them; fitted by least squares before training
        self.atomic_energies = nn.Parameter(torch.zeros(self.n_tables, self.n_elements))
        self.register_buffer("scale", torch.tensor(float(scale)))

    # ------------------------------------------------------------------ contract description
    @torch.jit.unused
    def neighbor_lists(self) -> List[Tuple[str, float, float]]:
        network_reach = (self.n_passes - 1) * self.cutoff
        if self.coulomb == "none":
            return [("local", self.cutoff, network_reach)]
        # Coulomb partners (up to Rc away) need their charges, i.e. their own network edges
        return [
            ("local", self.cutoff, self.coulomb_cutoff + network_reach),
            ("coulomb", self.coulomb_cutoff, 0.0),
        ]

    @torch.jit.unused
    def interaction_range(self) -> float:
        """How far an atom's energy reaches: P hops of charges and features, plus Rc."""
        charges_range = self.n_passes * self.cutoff
        return charges_range + (0.0 if self.coulomb == "none" else self.coulomb_cutoff)

    @torch.jit.unused
    def contract_info(self) -> Dict[str, Any]:
        return dict(
            kind=self.kind,
            elements=list(self.config["elements"]),
            neighbor_lists=self.neighbor_lists(),
            num_interactions=self.n_passes,
            interaction_range=self.interaction_range(),
            outputs=[{"name": "charges", "per_atom": True, "unit": "e",
                      "description": "atomic charges summing to the total charge"}],
            fidelities=list(self.config["fidelities"]),
            uses_charge=True,
            locality="global",
            global_sums=N_GLOBAL_SUMS,
            min_distance=getattr(self, "min_distance", None),
            hyperparameters=self._hyperparameters(),
            **({"geometry_inputs": ["positions", "cell"]} if self.coulomb == "ewald" else {}),
        )

    @torch.jit.unused
    def _hyperparameters(self) -> Dict[str, Any]:
        """The config, plus the Ewald parameters it implies (so the metadata shows them)."""
        hyper = dict(self.config)
        if self.coulomb == "ewald":
            hyper.update(ewald_alpha=self.ewald_alpha, ewald_kspace_cutoff=self.ewald_kspace_cutoff)
        return hyper

    # ------------------------------------------------------------------ training interface
    @torch.jit.unused
    def fidelity_of(self, record: "Record") -> int:
        """The table index of a record's level of theory (``record.fidelity``, a name; an
        index is accepted too). A plain model has one table; None means the first."""
        value: Union[int, str, None] = getattr(record, "fidelity", None)
        if value is None:
            value = record.info.get("fidelity")
        if self.n_tables == 1 or value is None:
            return 0
        names = self.config["fidelities"]
        if isinstance(value, str) and value in names:
            return names.index(value)
        if isinstance(value, (int, np.integer)) and 0 <= int(value) < len(names):
            return int(value)
        raise ValueError(f"record {record.id}: fidelity {value!r} is not one of the model's {names}")

    @torch.jit.unused
    def initialize_from_data(self, records: Sequence["Record"]) -> None:
        """Per-fidelity least-squares element energies, and an output scale of the force RMS.

        Fidelities without records get the shifts of all records together (absolute
        energies of different levels differ by orders of magnitude, so give each
        fidelity data; a dedicated SAE fit can overwrite ``atomic_energies``).
        """
        elements = self.config["elements"]
        everything = fit_atomic_energies(elements, [r.numbers for r in records], [r.energy for r in records])
        shifts = np.tile(everything, (self.n_tables, 1))
        groups: Dict[int, List["Record"]] = {}
        for r in records:
            groups.setdefault(self.fidelity_of(r), []).append(r)
        for k, group in groups.items():
            shifts[k] = fit_atomic_energies(elements, [r.numbers for r in group], [r.energy for r in group])
        rms = force_rms(records)
        with torch.no_grad():
            self.atomic_energies.copy_(torch.as_tensor(shifts))
            self.scale.fill_(max(rms if rms is not None else 1.0, 1e-3))  # energies-only data: unit scale

    @torch.jit.unused
    def shift_energies(self, per_atom: float) -> None:
        """Every fidelity's shifts (the trainer measures the offset on its batches)."""
        add_to_atomic_energies(self, per_atom)

    @torch.jit.unused
    def no_decay_parameters(self) -> Set[str]:
        return conventional_no_decay(self)

    @classmethod
    def parameter_roles(cls) -> Dict[str, List[str]]:
        # the charge updates of the passes are part of the representation (charges feed
        # the next pass); the per-fidelity energy heads and shifts are the readout
        return {"backbone": [r"^embedding\.", r"^first\.", r"^passes\."],
                "readout": [r"^heads\.", r"^atomic_energies$"]}

    # ------------------------------------------------------------------ evaluation
    def _element_index(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        return element_indices(self.z_to_index, atomic_numbers, "aimnet2")

    def _fidelity_index(self, n_atoms: int, system: Dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        """The table of every atom: the structure's fidelity (0 for a plain model)."""
        if self.n_tables == 1:
            return torch.zeros(n_atoms, dtype=torch.long, device=device)
        fid = per_atom_fidelity(n_atoms, system, device)
        if fid.device.type == "cpu" and n_atoms > 0 and bool(((fid < 0) | (fid >= self.n_tables)).any()):
            raise RuntimeError("mlff: fidelity index out of range for this model")
        return fid

    def _pass0(
        self,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vectors: torch.Tensor,
        system: Dict[str, torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Geometry and pass 0: (element index, fidelity index, basis, unit vectors, a^1, q_u, f)."""
        idx = self._element_index(atomic_numbers)
        fid = self._fidelity_index(atomic_numbers.shape[0], system, atomic_numbers.device)
        r = torch.linalg.norm(edge_vectors, dim=1)
        # edges beyond the cutoff (LAMMPS skin) get exactly zero weight; clamp avoids 0/0
        r_safe = torch.clamp(r, min=1e-6)
        basis = self.basis(r_safe) * self.fcut(r).unsqueeze(1)
        unit = edge_vectors / r_safe.unsqueeze(1)
        a0 = self.embedding(fid * self.n_elements + idx).to(edge_vectors.dtype)
        a, q_raw, weight = self.first(a0, edge_index, basis, unit)
        return idx, fid, basis, unit, a, q_raw, weight

    def _owned_sums(
        self, q_raw: torch.Tensor, weight: torch.Tensor, n_local: int, system: Dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """[sum f, sum q_u] over the atoms < n_local: [K], or [B, K] per structure of a batch."""
        parts = torch.stack([weight, q_raw], dim=1)[:n_local]
        if "batch" in system:
            n_structures = system["charge"].shape[0]
            out = torch.zeros((n_structures, parts.shape[1]), dtype=parts.dtype, device=parts.device)
            return out.index_add(0, system["batch"][:n_local], parts)
        return parts.sum(0)

    @torch.jit.export
    def global_sums(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """This process's share of the whole-system sums, [sum f_i, sum q_u,i] over atoms < n_local.

        Shape [K] = [2]; [B, 2] (one row per structure) when ``system`` has ``"batch"``.
        Only pass 0 runs. Engines with several processes all-reduce it and pass the total
        as ``system["global_sums"]``.
        """
        _, _, _, _, _, q_raw, weight = self._pass0(atomic_numbers, edge_indices[0], edge_vectors[0], system)
        return self._owned_sums(q_raw, weight, n_local, system)

    def _normalise(
        self, q_raw: torch.Tensor, weight: torch.Tensor, sums: torch.Tensor, system: Dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """q = q_u + f / S_f (Q - S_q) for every node, ghosts included (same sums)."""
        total = system["charge"].to(q_raw.dtype) if "charge" in system else torch.zeros_like(q_raw[:1]).sum()
        if "batch" in system:
            batch = system["batch"]
            per_atom = sums[batch]
            return q_raw + weight / per_atom[:, 0] * (total[batch] - per_atom[:, 1])
        return q_raw + weight / sums[0] * (total - sums[1])

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        edge_index = edge_indices[0]
        idx, fid, basis, unit, a, q_raw, weight = self._pass0(atomic_numbers, edge_index, edge_vectors[0], system)
        if "global_sums" in system:  # all-reduced over every process by the engine
            sums = system["global_sums"].to(q_raw.dtype)
        else:
            sums = self._owned_sums(q_raw, weight, n_local, system)
        q = self._normalise(q_raw, weight, sums, system)
        for block in self.passes:
            a, q = block(a, q, edge_index, basis, unit)
        x = torch.cat([a, q.unsqueeze(1)], dim=1)
        # every head on every atom, then each atom's own: no device read-back, and the
        # readout is small next to the message passing
        outs: List[torch.Tensor] = []
        for head in self.heads:
            outs.append(head(x))
        heads = torch.cat(outs, dim=1)
        energies = heads.gather(1, fid.unsqueeze(1)).squeeze(1) * self.scale + self.atomic_energies[fid, idx]
        if self.coulomb == "simple":
            energies = energies + coulomb_simple(
                q, edge_indices[1], edge_vectors[1], self.coulomb_cutoff, self.sr_cutoff
            )
        elif self.coulomb == "dsf":
            energies = energies + coulomb_dsf(
                q, edge_indices[1], edge_vectors[1], self.dsf_alpha, self.coulomb_cutoff, self.sr_cutoff
            )
        elif self.coulomb == "ewald":
            positions, cell = require_geometry(system)
            batch: Optional[torch.Tensor] = None
            if "batch" in system:
                batch = system["batch"]
            energies = energies + coulomb_ewald(
                q, edge_indices[1], edge_vectors[1], positions, cell, n_local, self.ewald_alpha,
                self.ewald_kspace_cutoff, self.coulomb_cutoff, self.sr_cutoff, batch=batch,
            )
        return {"energies": energies, "charges": q}


__all__ = ["AIMNet2", "AIMNet2Options", "GaussianBasis", "N_GLOBAL_SUMS"]
