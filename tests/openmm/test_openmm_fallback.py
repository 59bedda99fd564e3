"""Without openmm-torch, MLFFForce falls back to openmm.PythonForce and says so."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import numpy as np

from mlff.openmm import MLFFForce, available_backend

from omm_helpers import energy_forces, openmm_system, periodic_atoms

HCNO = (1, 6, 7, 8)


def test_torch_backend_is_preferred(make_model_file, caplog):
    assert available_backend() == "openmm-torch"
    atoms = periodic_atoms()
    with caplog.at_level(logging.INFO, logger="mlff.openmm"):
        force = MLFFForce(make_model_file(elements=HCNO), atoms)
    assert force.mlff_backend == "openmm-torch"
    assert force.getName() == "MLFFForce[openmm-torch]"
    assert "backend openmm-torch" in caplog.text


def test_fallback_without_openmmtorch(make_model_file, tmp_path):
    model = make_model_file(elements=HCNO)
    atoms = periodic_atoms()
    e_torch, f_torch = energy_forces(openmm_system(atoms, MLFFForce(model, atoms, backend="torch")),
                                     atoms.positions * 0.1, "CPU")
    np.savez(tmp_path / "box.npz", numbers=atoms.numbers, positions=atoms.positions, cell=np.asarray(atoms.cell))
    script = textwrap.dedent(
        f"""
        import json, logging, sys
        sys.modules["openmmtorch"] = None  # as if openmm-torch were missing or broken
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        import numpy as np
        from ase import Atoms
        from mlff.openmm import MLFFForce, available_backend
        sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
        from omm_helpers import energy_forces, openmm_system
        data = np.load({str(tmp_path / 'box.npz')!r})
        atoms = Atoms(numbers=data["numbers"], positions=data["positions"], cell=data["cell"], pbc=True)
        force = MLFFForce({str(model)!r}, atoms)
        # read before the System (which owns the force once added) goes away
        name, backend = force.getName(), force.mlff_backend
        e, f = energy_forces(openmm_system(atoms, force), atoms.positions * 0.1, "CPU")
        print(json.dumps(dict(available=available_backend(), backend=backend, name=name, e=e, f=f.tolist())))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["available"] == "openmm-python"
    assert out["backend"] == "openmm-python" and out["name"] == "MLFFForce[openmm-python]"
    assert "openmm-torch is not importable" in proc.stderr and "PythonForce" in proc.stderr
    assert abs(out["e"] - e_torch) <= 1e-10 * abs(e_torch)
    np.testing.assert_allclose(np.asarray(out["f"]), f_torch, rtol=0, atol=1e-10 * np.abs(f_torch).max())


def test_explicit_torch_backend_without_openmmtorch_fails_clearly(make_model_file):
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["openmmtorch"] = None
        from mlff.openmm import MLFFForce
        try:
            MLFFForce({str(make_model_file(elements=HCNO))!r}, [1, 6], backend="torch")
        except ImportError as exc:
            print("refused:", exc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "refused: backend='torch' was requested but openmm-torch cannot be imported" in proc.stdout, proc.stderr


def test_openmm_imported_before_torch(make_model_file):
    """openmm first: openmm-torch's kernel plugin failed to load then and must be reloaded."""
    script = textwrap.dedent(
        f"""
        import openmm  # before torch: libOpenMMTorchReference.so cannot find libnvrtc yet
        import numpy as np
        from mlff.openmm import MLFFForce
        system = openmm.System()
        for _ in range(3):
            system.addParticle(1.0)
        force = MLFFForce({str(make_model_file(elements=HCNO))!r}, [1, 8, 1], backend="torch")
        system.addForce(force)
        for name in ("Reference", "CPU"):
            ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(name))
            ctx.setPositions(np.array([[0, 0, 0], [0.1, 0, 0], [0.1, 0.1, 0]]))
            print(name, ctx.getState(getEnergy=True).getPotentialEnergy()._value)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split() for line in proc.stdout.strip().splitlines())
    assert float(lines["Reference"]) == float(lines["CPU"])
