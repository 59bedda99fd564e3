"""PaiNN-style equivariant message passing (Schütt et al., 2021) behind the mlff contract.

Scalar features ``s [N, F]`` and vector features ``v [N, 3, F]`` are updated by
``num_interactions`` message/update blocks. Messages flow along the engine's edges
(j -> i for edge (i, j)), so the model is exact for any graph the engine builds,
including LAMMPS's ghost atoms. Per-atom energy = readout(s) * scale + shift[element].

Shallow ensemble (``n_heads = M >= 2``): M readout MLPs on the one backbone, trained
together (each head on its own loss, see :func:`mlff.training.metrics.loss_terms`); the
energy is the mean of the heads' and the heads' disagreement is the model's uncertainty,
returned as the member outputs of :mod:`mlff.uncertainty.members`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, List, Literal, Mapping, Optional, Sequence, Set, Tuple

import torch
from pydantic import Field
from torch import nn

from ..contract import wants_outputs
from ..elements import element_indices, element_table
from ..uncertainty.members import member_outputs, uncertainty_output_specs
from .base import MLFFModel, ModelOptions, add_to_atomic_energies, conventional_no_decay, force_rms
from .radial import CosineCutoff, PolynomialCutoff, SineBasis
from .shifts import fit_atomic_energies

if TYPE_CHECKING:  # pragma: no cover
    from ..data.records import Record


class _Interaction(nn.Module):
    """One message block followed by one update block."""

    def __init__(self, n_features: int, n_rbf: int):
        super().__init__()
        f = n_features
        self.n_features = f
        self.phi = nn.Sequential(nn.Linear(f, f), nn.SiLU(), nn.Linear(f, 3 * f))
        self.filter = nn.Linear(n_rbf, 3 * f)
        self.U = nn.Linear(f, f, bias=False)
        self.V = nn.Linear(f, f, bias=False)
        self.update = nn.Sequential(nn.Linear(2 * f, f), nn.SiLU(), nn.Linear(f, 3 * f))

    def forward(
        self,
        s: torch.Tensor,
        v: torch.Tensor,
        edge_index: torch.Tensor,
        rbf_fc: torch.Tensor,
        fc: torch.Tensor,
        unit: torch.Tensor,
        first: bool = False,
        n_out: int = -1,
    ):
        # The step is memory-bound on [E, 3, F] edge tensors (issue 14: 44 % broadcast
        # multiplies, 12 % index_add, 7 % gathers); the changes below drop or speed up
        # passes over edge tensors.
        # ``first`` says v is the zero tensor (the first layer). ``n_out`` >= 0: only the
        # first n_out nodes are updated and returned (layer exchange: the rest are ghosts
        # whose new states come from their owners; every edge is centred on one of them).
        f = self.n_features
        i = edge_index[0]
        j = edge_index[1]
        # index_select rather than x[j]: the same rows, but its backward is a plain
        # index_add instead of advanced indexing's slower accumulate-put
        # The filter times the cutoff weight, (rbf A^T + b) * fc, is formed as
        # (rbf * fc) A^T + fc b (rbf_fc = rbf * fc, shared by all layers): the same function
        # (edges past the cutoff still carry exactly nothing), but autograd then keeps only
        # [E, n_rbf] operands for it instead of the filter's [E, 3F] output, one of the few
        # [E, 3F] tensors a layer keeps for the backward pass (peak memory is what limits
        # the atoms per rank)
        w = torch.addmm(fc.unsqueeze(1) * self.filter.bias, rbf_fc, self.filter.weight.t())
        x = torch.index_select(self.phi(s), 0, j) * w
        xs, xvv, xvs = torch.split(x, f, dim=-1)
        dv_edge = xvs.unsqueeze(1) * unit.unsqueeze(2)
        if not first:
            # v is exactly zero entering the first layer, so this term is skipped there
            # (adding +0 changes no bits, and IEEE addition commutes)
            dv_edge = xvv.unsqueeze(1) * torch.index_select(v, 0, j) + dv_edge
        if n_out >= 0:
            s = s.narrow(0, 0, n_out)
            v = v.narrow(0, 0, n_out)
        # Sum the messages into their centres with scatter_add over a broadcast (expanded)
        # index rather than index_add: the same sums at the same speed, but index_add's
        # autograd keeps its whole [E, ...] source alive for the backward pass (for its
        # shape), scatter_add only the index, whose expanded view costs E integers.
        # xs is a strided column slice of x; the sum over a contiguous copy is faster than
        # over the view (its rows are 3F apart), in the forward and the backward.
        s = s.scatter_add(0, i.unsqueeze(1).expand(xs.shape), xs.contiguous())
        v = v.scatter_add(0, i.view(-1, 1, 1).expand(dv_edge.shape), dv_edge)

        uv = self.U(v)
        vv = self.V(v)
        # eps keeps the norm differentiable where vector features vanish (first layer)
        vnorm = torch.sqrt(torch.sum(vv * vv, dim=1) + 1e-8)
        a = self.update(torch.cat([s, vnorm], dim=-1))
        avv, asv, ass = torch.split(a, f, dim=-1)
        v = v + avv.unsqueeze(1) * uv
        s = s + asv * torch.sum(uv * vv, dim=1) + ass
        return s, v


class _Heads(nn.Module):
    """M readout MLPs ``F -> H -> 1`` evaluated together: ``[N, F] -> [N, M]``.

    Each head has its own hidden layer (not just its own last layer): the readout costs
    under 2 % of a PaiNN step either way (one [N, F] x [F, M*H] product against the
    backbone's [E, 3F] edge tensors), and heads that differ non-linearly disagree more
    usefully away from the data than heads that are linear maps of one shared hidden
    layer. The M first layers are one ``Linear(F, M*H)`` and the M last layers one
    batched contraction, so the heads cost one readout's kernel launches, not M. Its
    initialisation is that of M separate ``nn.Linear`` pairs (fan-in bounds), each head
    with its own random draw.
    """

    def __init__(self, n_features: int, n_hidden: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.n_hidden = n_hidden
        self.hidden = nn.Linear(n_features, n_heads * n_hidden)
        bound = 1.0 / math.sqrt(n_hidden)
        self.weight = nn.Parameter(torch.empty(n_heads, n_hidden).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_heads).uniform_(-bound, bound))
        self.act = nn.SiLU()

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        h = self.act(self.hidden(s)).view(s.shape[0], self.n_heads, self.n_hidden)
        return (h * self.weight).sum(-1) + self.bias


class PaiNNOptions(ModelOptions):
    """The ``model:`` block of a PaiNN (``kind: painn``); defaults are the constructor's."""

    cutoff: float = Field(5.0, gt=0, description="neighbour-list cutoff, Å")
    n_features: int = Field(64, ge=2)
    num_interactions: int = Field(3, ge=1, description="message-passing layers")
    n_rbf: int = Field(20, ge=1, description="radial basis functions")
    cutoff_fn: Literal["cosine", "polynomial"] = Field(
        "polynomial", description="envelope; the cosine one has a force kink at the cutoff"
    )
    n_heads: int = Field(
        1, ge=1, description="readout heads on the one backbone: >= 2 is a shallow ensemble with uncertainty outputs"
    )


class PaiNN(MLFFModel, nn.Module):
    """Student model. Configuration is kept in ``self.config`` so checkpoints rebuild it.

    The default cutoff envelope is the C2-smooth polynomial: with the cosine cutoff the
    force has a kink at rc and 1 fs Verlet drifts ~15x more (measured on Cu at 600 K).
    """

    kind = "painn"
    Options = PaiNNOptions

    def __init__(
        self,
        elements: Sequence[int],
        cutoff: float = 5.0,
        n_features: int = 64,
        num_interactions: int = 3,
        n_rbf: int = 20,
        cutoff_fn: str = "polynomial",
        shifts: Optional[Sequence[float]] = None,
        scale: float = 1.0,
        n_heads: int = 1,
    ):
        super().__init__()
        if int(n_heads) < 1:
            raise ValueError(f"n_heads must be >= 1, got {n_heads}")
        elements = sorted(int(z) for z in elements)
        if len(set(elements)) != len(elements) or not elements:
            raise ValueError(f"elements must be a non-empty list of distinct atomic numbers, got {elements}")
        self.config: Dict[str, Any] = dict(
            elements=elements,
            cutoff=float(cutoff),
            n_features=int(n_features),
            num_interactions=int(num_interactions),
            n_rbf=int(n_rbf),
            cutoff_fn=cutoff_fn,
        )
        if int(n_heads) != 1:
            # only then: a single-head model keeps its config, hence its metadata, unchanged
            self.config["n_heads"] = int(n_heads)
        self.n_heads = int(n_heads)
        self.cutoff = float(cutoff)
        self.num_interactions = int(num_interactions)
        self.register_buffer("z_to_index", element_table(elements))
        self.embedding = nn.Embedding(len(elements), n_features)
        self.rbf = SineBasis(n_rbf, cutoff)
        if cutoff_fn == "cosine":
            self.fcut = CosineCutoff(cutoff)
        elif cutoff_fn == "polynomial":
            self.fcut = PolynomialCutoff(cutoff)
        else:
            raise ValueError(f"cutoff_fn must be 'cosine' or 'polynomial', got {cutoff_fn!r}")
        self.interactions = nn.ModuleList(
            [_Interaction(n_features, n_rbf) for _ in range(num_interactions)]
        )
        if self.n_heads == 1:
            self.readout = nn.Sequential(
                nn.Linear(n_features, n_features // 2), nn.SiLU(), nn.Linear(n_features // 2, 1)
            )
        else:
            self.readout = _Heads(n_features, n_features // 2, self.n_heads)
        init = torch.zeros(len(elements)) if shifts is None else torch.as_tensor(shifts, dtype=torch.float32)
        # trainable so fine-tuning can adjust them; fitted by least squares before training
        self.atomic_energies = nn.Parameter(init.clone())
        self.register_buffer("scale", torch.tensor(float(scale)))

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> Dict[str, Any]:
        values = super().validate_options(options)
        # a single head is the plain PaiNN: leaving the default out keeps the stored
        # configs of existing runs and checkpoints equal to what they were (resume, compare)
        if values.get("n_heads") == 1:
            del values["n_heads"]
        return values

    @torch.jit.unused
    def neighbor_lists(self) -> List[Tuple[str, float, float]]:
        # the last layer's messages start at most (layers - 1) cutoffs from a counted atom
        return [("local", self.cutoff, (self.num_interactions - 1) * self.cutoff)]

    @torch.jit.unused
    def contract_info(self) -> Dict[str, Any]:
        info = dict(
            kind=self.kind,
            elements=list(self.config["elements"]),
            neighbor_lists=self.neighbor_lists(),
            num_interactions=self.num_interactions,
            min_distance=getattr(self, "min_distance", None),
            hyperparameters=dict(self.config),
        )
        if self.n_heads > 1:
            info["outputs"] = uncertainty_output_specs(self.n_heads)
        return info

    # ------------------------------------------------------------------ training interface
    @torch.jit.unused
    def initialize_from_data(self, records: Sequence["Record"]) -> None:
        """Least-squares per-element energies, and an output scale of the force RMS.

        The scale keeps the initial forces of the random network on the scale of the
        data's; both are written into the parameters in their current dtype.
        """
        shifts = fit_atomic_energies(self.config["elements"], [r.numbers for r in records], [r.energy for r in records])
        rms = force_rms(records)
        if rms is None:
            raise ValueError("PaiNN is trained on forces: the training records have none")
        with torch.no_grad():
            self.atomic_energies.copy_(torch.as_tensor(shifts))
            self.scale.fill_(max(rms, 1e-3))

    @torch.jit.unused
    def shift_energies(self, per_atom: float) -> None:
        add_to_atomic_energies(self, per_atom)

    @torch.jit.unused
    def no_decay_parameters(self) -> Set[str]:
        return conventional_no_decay(self)

    @classmethod
    def parameter_roles(cls) -> Dict[str, List[str]]:
        # the readout MLP and the per-element shifts map features to energies: a new
        # teacher's energy scale and offsets land there first
        return {"backbone": [r"^embedding\.", r"^interactions\."],
                "readout": [r"^readout\.", r"^atomic_energies$"]}

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_indices: List[torch.Tensor],
        edge_vectors: List[torch.Tensor],
        n_local: int,
        system: Dict[str, torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        if self.n_heads == 1:
            return self.energies(atomic_numbers, edge_indices[0], edge_vectors[0])
        heads = self.head_energies(atomic_numbers, edge_indices[0], edge_vectors[0])
        # the mean of the heads' full per-atom energies: the shifts enter once (their mean
        # over heads is themselves), the heads' readouts averaged
        result: Dict[str, torch.Tensor] = {"energies": heads.mean(dim=1)}
        if self.training:
            # each head is trained on its own loss (mlff.training.metrics): an undeclared
            # output that only the trainer reads
            result["head_energies"] = heads
        elif wants_outputs(system):
            for key, value in member_outputs(list(heads.unbind(1)), edge_indices, edge_vectors, n_local).items():
                result[key] = value
        return result

    def energies(
        self, atomic_numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        """Per-atom energies from the one list PaiNN uses (the version-1 forward).

        With several heads: their mean (the members are :meth:`head_energies`).
        """
        if self.n_heads != 1:
            return {"energies": self.head_energies(atomic_numbers, edge_index, edge_vectors).mean(dim=1)}
        s, idx = self.features(atomic_numbers, edge_index, edge_vectors)
        energies = self.readout(s).squeeze(-1) * self.scale + self.atomic_energies[idx]
        return {"energies": energies}

    def head_energies(
        self, atomic_numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> torch.Tensor:
        """Each head's per-atom energies ``[N, M]`` (readout * scale + the shared shifts)."""
        s, idx = self.features(atomic_numbers, edge_index, edge_vectors)
        return self.readout(s) * self.scale + self.atomic_energies[idx].unsqueeze(1)

    def features(
        self, atomic_numbers: torch.Tensor, edge_index: torch.Tensor, edge_vectors: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The backbone: final scalar features ``[N, F]`` and the element indices ``[N]``."""
        idx = element_indices(self.z_to_index, atomic_numbers, "PaiNN")
        n_atoms = atomic_numbers.shape[0]
        dtype = edge_vectors.dtype
        fc, rbf_fc, unit = self._edge_terms(edge_vectors)
        s = self.embedding(idx).to(dtype)
        v = torch.zeros((n_atoms, 3, s.shape[1]), dtype=dtype, device=s.device)
        for n, block in enumerate(self.interactions):
            s, v = block(s, v, edge_index, rbf_fc, fc, unit, n == 0)
        return s, idx

    def _edge_terms(self, edge_vectors: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cutoff weight ``fc [E]``, radial basis times it ``[E, n_rbf]`` and unit vector ``[E, 3]``
        of each edge."""
        r = torch.linalg.norm(edge_vectors, dim=1)
        # edges beyond the cutoff (LAMMPS skin) get exactly zero weight; clamp avoids 0/0
        r_safe = torch.clamp(r, min=1e-6)
        fc = self.fcut(r)
        return fc, self.rbf(r_safe) * fc.unsqueeze(1), edge_vectors / r_safe.unsqueeze(1)

    # ------------------------------------------------------------------ layer exchange (contract v3)
    # The node state x [N, 4F] is s [N, F] followed by v [N, 3, F] flattened; engines that
    # exchange ghost atoms' states between MPI ranks after each layer (LAMMPS) call these
    # instead of forward, which they compose to exactly (mlff.contract.evaluate_layers).
    # Shallow ensembles (n_heads > 1) have member outputs and do not offer them.

    @torch.jit.unused
    def layer_exchange_info(self) -> Optional[Dict[str, int]]:
        """``{"layers", "width"}`` for the metadata's ``message_passing`` (None: not offered)."""
        if self.n_heads != 1:
            return None
        return {"layers": self.num_interactions, "width": 4 * int(self.config["n_features"])}

    def _single_head(self) -> None:
        if self.n_heads != 1:
            raise RuntimeError("PaiNN with several heads does not expose its layers (no layer exchange)")

    @torch.jit.export
    def embed(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        """The node state entering layer 0: ``[s, v]`` with v = 0, ``[N, 4F]``."""
        self._single_head()
        idx = element_indices(self.z_to_index, atomic_numbers, "PaiNN")
        s = self.embedding(idx).to(self.atomic_energies.dtype)
        return torch.cat([s, torch.zeros((s.shape[0], 3 * s.shape[1]), dtype=s.dtype, device=s.device)], dim=1)

    @torch.jit.export
    def edge_features(self, edge_vectors: torch.Tensor) -> torch.Tensor:
        """What every layer needs of an edge, computed once: ``[E, 1 + n_rbf + 3]`` =
        cutoff weight, radial basis times it and unit vector (the same numbers :meth:`features` uses)."""
        self._single_head()
        fc, rbf_fc, unit = self._edge_terms(edge_vectors)
        return torch.cat([fc.unsqueeze(1), rbf_fc, unit], dim=1)

    @torch.jit.export
    def layer(
        self, k: int, x: torch.Tensor, edge_index: torch.Tensor, edge_features: torch.Tensor, n_local: int
    ) -> torch.Tensor:
        """Interaction block ``k``: node states ``x [N, 4F]`` -> the new states of the first
        ``n_local`` nodes ``[n_local, 4F]`` (same ops as :meth:`features`)."""
        self._single_head()
        if k < 0 or k >= self.num_interactions:
            raise RuntimeError("PaiNN.layer: layer index out of range")
        if n_local < 0 or n_local > x.shape[0]:
            raise RuntimeError("PaiNN.layer: n_local out of range")
        n_atoms = x.shape[0]
        f = x.shape[1] // 4
        s = x[:, :f].contiguous()
        v = x[:, f:].reshape(n_atoms, 3, f).contiguous()
        # one split (its backward is one concatenation, not a zero-filled [E, D] per slice)
        fc, rbf_fc, unit = torch.split(edge_features, [1, edge_features.shape[1] - 4, 3], dim=1)
        fc = fc.squeeze(1)
        for n, block in enumerate(self.interactions):
            if n == k:
                s, v = block(s, v, edge_index, rbf_fc, fc, unit, n == 0, n_local)
        return torch.cat([s, v.reshape(n_local, 3 * f)], dim=1)

    @torch.jit.export
    def readout_energies(self, x: torch.Tensor, atomic_numbers: torch.Tensor) -> torch.Tensor:
        """Per-atom energies ``[N]`` from the node state after the last layer."""
        self._single_head()
        idx = element_indices(self.z_to_index, atomic_numbers, "PaiNN")
        s = x[:, : x.shape[1] // 4].contiguous()
        return self.readout(s).squeeze(-1) * self.scale + self.atomic_energies[idx]
