"""mlff's own ACE fit (permissive licence): basis construction from a pacemaker-style spec
(:mod:`.basis`), L-BFGS fitting with analytic gradients (:mod:`.fit`), a ``.yace`` writer
(:mod:`.yace_writer`) and the ``mlff train`` driver for ``model.kind: ace`` (:mod:`.train`)."""

from .basis import ACEBasis, build_basis, extend_basis, to_bbasis_yaml
from .fit import ACEFitOptions, ACEFitResult, Structure, evaluate, fit_ace
from .yace_writer import write_yace, yace_text

__all__ = [
    "ACEBasis",
    "build_basis",
    "extend_basis",
    "to_bbasis_yaml",
    "ACEFitOptions",
    "ACEFitResult",
    "Structure",
    "evaluate",
    "fit_ace",
    "write_yace",
    "yace_text",
]
