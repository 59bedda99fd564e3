"""Helpers for the training tests (a unique module name: tests/ has no packages)."""

from __future__ import annotations

from pathlib import Path


def write_config(path: Path, db: Path, out: Path, **sections) -> Path:
    """A tiny but complete training config as YAML (mapping sections update the defaults)."""
    import yaml

    cfg = {
        "data": {"train": str(db), "valid_fraction": 0.2, "min_structures": 10},
        "model": {"cutoff": 3.6, "n_features": 8, "num_interactions": 1, "n_rbf": 6},
        "loss": {"energy_weight": 1.0, "forces_weight": 10.0, "stress_weight": 1.0},
        "optim": {"lr": 5e-3},
        "run": {"output_dir": str(out), "max_steps": 30, "batch_atoms": 32, "valid_every": 10,
                "dtype": "float64", "progress": False, "num_threads": 1},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(name, {}).update(values)
        else:  # a list section (terms)
            cfg[name] = values
    path.write_text(yaml.safe_dump(cfg))
    return path


#: molecules of H, C, N, O (all in ASE's EMT) for the multi-fidelity sets
MOLECULES = ("CH4", "H2O", "NH3", "CH3OH", "C2H6", "HCOOH", "CH3CHO", "HCN", "C2H4", "CH3CN")
#: the "lo" level: its energies are 1.2 x EMT plus these per-element offsets (eV), like a
#: method whose absolute energies sit far from the other level's
LO_OFFSETS = {1: -13.0, 6: -1020.0, 7: -1480.0, 8: -2040.0}


def molecule_records(copies: int = 3, seed: int = 0, energy_only: bool = False):
    """Rattled small molecules labelled by EMT, with partial charges that sum to 0.

    ``energy_only``: the "lo" level instead: energies only (1.2 x EMT + LO_OFFSETS per atom),
    no forces, no charges, no fidelity tag.
    """
    import numpy as np
    from ase.build import molecule
    from ase.calculators.emt import EMT

    from mlff.data import Record

    rng = np.random.default_rng(seed)
    out = []
    for name in MOLECULES:
        for c in range(copies):
            a = molecule(name)
            a.rattle(0.05, seed=int(rng.integers(1 << 30)))
            a.calc = EMT()
            energy, forces = float(a.get_potential_energy()), a.get_forces()
            rec = Record.from_atoms(a, id=f"{name}-{c}", info={"sample_id": f"{name}-{seed}-{c}"})
            if energy_only:
                rec.energy = 1.2 * energy + sum(LO_OFFSETS[int(z)] for z in a.numbers)
                rec.forces = None
            else:
                rec.energy, rec.forces = energy, forces
                z = a.numbers.astype(float)
                rec.charges = 0.05 * (z - z.mean())  # electronegativity-like, summing to 0
                rec.charge, rec.fidelity = 0.0, "hi"
            out.append(rec)
    return out


def write_mf_stores(folder: Path, copies: int = 3):
    """Two stores: hi.db (fidelity "hi": energy, forces, charges) and lo.db (untagged, energies only)."""
    from mlff.data import write_records

    hi, lo = folder / "hi.db", folder / "lo.db"
    if not hi.exists():
        write_records(hi, molecule_records(copies, seed=1), {"teacher": "emt"})
        write_records(lo, molecule_records(copies, seed=2, energy_only=True), {"teacher": "emt-scaled"})
    return hi, lo


#: a tiny two-fidelity AIMNet2 (every part on, Coulomb with short lists)
AIMNET2_SMALL = {"kind": "aimnet2", "cutoff": 3.0, "n_features": 8, "n_passes": 2, "n_gaussians": 6,
                 "use_fidelity_readouts": True, "fidelities": ["hi", "lo"], "coulomb": "dsf",
                 "coulomb_cutoff": 6.0, "sr_cutoff": 2.5}


def write_mf_config(path: Path, hi: Path, lo: Path, out: Path, **sections) -> Path:
    """A two-fidelity aimnet2 config on ``write_mf_stores`` (mapping sections update the defaults)."""
    import yaml

    cfg = {
        "data": {"train": [str(hi), {"path": str(lo), "fidelity": "lo"}], "valid_fraction": 0.2,
                 "min_structures": 10, "require_forces": False, "fidelities": ["hi", "lo"]},
        "model": dict(AIMNET2_SMALL),
        "loss": {"energy_weight": 1.0, "forces_weight": 10.0, "stress_weight": 0.0, "charges_weight": 1.0},
        "optim": {"lr": 5e-3},
        "sae": "fit",
        "run": {"output_dir": str(out), "max_steps": 20, "batch_atoms": 24, "valid_every": 10,
                "dtype": "float64", "progress": False, "num_threads": 1, "plots": False, "tensorboard": False},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(name, {}).update(values)
        else:
            cfg[name] = values
    path.write_text(yaml.safe_dump(cfg))
    return path
