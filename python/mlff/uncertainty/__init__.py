"""Uncertainty: committees and shallow ensembles whose disagreement every engine reports.

- :mod:`.members`: the member outputs both ensemble kinds return (one implementation).
- :mod:`.committee`: deep ensembles of exported models in one file (``mlff ensemble``).
- :mod:`.summary`: per-frame statistics (max/mean deviation) and the trust window.
- :mod:`.bench`: what uncertainty costs per atom-step (``python -m mlff.uncertainty.bench``).
"""

from .committee import COMMITTEE_KIND, Committee, build_committee
from .members import (
    ENERGY_UNCERTAINTY,
    FORCES_UNCERTAINTY,
    MEMBER_ENERGIES,
    MEMBER_FORCES,
    member_outputs,
    uncertainty_output_specs,
)

__all__ = [
    "COMMITTEE_KIND",
    "Committee",
    "ENERGY_UNCERTAINTY",
    "FORCES_UNCERTAINTY",
    "MEMBER_ENERGIES",
    "MEMBER_FORCES",
    "build_committee",
    "member_outputs",
    "uncertainty_output_specs",
]
