"""Write a ``.yace`` (ML-PACE's C-tilde YAML) from the core's model dict.

The dict is ``mlff.ace._ace.Model.to_dict()``'s schema (the keys of ``.yace`` itself, see
``shared/DESIGN.md`` "ACE facts"). The layout copies what ML-PACE's own writer emits (flow
mappings, one function per line, integer-keyed ``embeddings``/``functions`` and ``[i, j]``
bond keys), because ace-jax and older readers parse that layout. Floats are written with
``repr`` (shortest round-trip form), so every reader gets the same doubles back and the
written file evaluates exactly as the model it came from.
"""

from __future__ import annotations

from ...atomic import atomic_write

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from ...atomic import atomic_write


def _num(x: Any) -> str:
    x = float(x)
    if not np.isfinite(x):
        raise ValueError(f".yace writer: non-finite number {x}")
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def _flat(values: Any) -> str:
    return "[" + ", ".join(_num(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)) + "]"


def _ints(values: Any) -> str:
    return "[" + ", ".join(str(int(v)) for v in np.asarray(values).reshape(-1)) + "]"


def _nested(values: Any) -> str:
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 1:
        return _flat(a)
    return "[" + ", ".join(_nested(x) for x in a) + "]"


def yace_text(model: Mapping[str, Any]) -> str:
    """The ``.yace`` text of a model dict (``Model.to_dict()`` schema)."""
    elements = [str(e) for e in model["elements"]]
    nel = len(elements)
    e0 = model.get("E0", [0.0] * nel)
    lines = [
        "elements: [" + ", ".join(elements) + "]",
        f"E0: {_flat(e0)}",
        f"deltaSplineBins: {_num(model['deltaSplineBins'])}",
        "embeddings:",
    ]
    embs = model["embeddings"]
    emb_list = [embs[k] for k in sorted(embs)] if isinstance(embs, Mapping) else list(embs)
    for mu, e in enumerate(emb_list):
        lines.append(
            f"  {mu}: {{ndensity: {int(e['ndensity'])}, FS_parameters: {_flat(e['FS_parameters'])}, "
            f"npoti: {e['npoti']}, rho_core_cutoff: {_num(e['rho_core_cutoff'])}, "
            f"drho_core_cutoff: {_num(e['drho_core_cutoff'])}}}"
        )
    lines.append("bonds:")
    for key in sorted(model["bonds"], key=lambda k: tuple(int(v) for v in k)):
        b = model["bonds"][key]
        i, j = (int(v) for v in key)
        item = (
            f"nradmax: {int(b['nradmax'])}, lmax: {int(b['lmax'])}, nradbasemax: {int(b['nradbasemax'])}, "
            f"radbasename: {b['radbasename']}, radparameters: {_flat(b['radparameters'])}, "
            f"radcoefficients: {_nested(np.asarray(b['radcoefficients']).reshape(int(b['nradmax']), int(b['lmax']) + 1, int(b['nradbasemax'])))}, "
            f"prehc: {_num(b['prehc'])}, lambdahc: {_num(b['lambdahc'])}, rcut: {_num(b['rcut'])}, "
            f"dcut: {_num(b['dcut'])}"
        )
        if "rcut_in" in b:
            item += f", rcut_in: {_num(b['rcut_in'])}, dcut_in: {_num(b.get('dcut_in', 0.0))}"
        item += f", inner_cutoff_type: {b.get('inner_cutoff_type', 'density')}"
        lines.append(f"  [{i}, {j}]: {{{item}}}")
    lines.append("functions:")
    funcs = model["functions"]
    func_lists: Iterable[Any] = [funcs[k] for k in sorted(funcs)] if isinstance(funcs, Mapping) else list(funcs)
    for mu, flist in enumerate(func_lists):
        lines.append(f"  {mu}:")
        for f in flist:
            rank = int(f["rank"])
            ms = np.asarray(f["ms_combs"]).reshape(-1, rank)
            lines.append(
                f"    - {{mu0: {int(f['mu0'])}, rank: {rank}, ndensity: {int(f['ndensity'])}, "
                f"num_ms_combs: {ms.shape[0]}, mus: {_ints(f['mus'])}, ns: {_ints(f['ns'])}, "
                f"ls: {_ints(f['ls'])}, ms_combs: {_ints(ms)}, ctildes: {_flat(f['ctildes'])}}}"
            )
    return "\n".join(lines) + "\n"


def write_yace(model: Any, path: "str | os.PathLike[str]") -> None:
    """Write ``model`` (a model dict or a core ``Model``) as a ``.yace`` file; the text is
    checked by reading it back with the core's reader before the file is replaced."""
    from .. import _ace

    d = model.to_dict() if hasattr(model, "to_dict") else model
    text = yace_text(d)
    _ace.Model.from_text(text, os.fspath(path))  # raises a FormatError on a malformed file
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


__all__ = ["yace_text", "write_yace"]
