"""ASE-calculator step time of one exported PaiNN under two checkouts of mlff (an A/B).

    git worktree add /tmp/old <commit>
    for i in 1 2; do
      OMP_NUM_THREADS=1 .venv/bin/python tools/bench_ab_calculator.py /tmp/old/python cosine old
      OMP_NUM_THREADS=1 .venv/bin/python tools/bench_ab_calculator.py python cosine new
    done

Each call exports a 48-feature, 2-layer, 5 Å PaiNN (float32, seed 0) with the given
envelope using the mlff found under the first argument, and prints the median of six
force evaluations of a 256-atom Cu cell. Alternate the calls: absolute times on a
shared machine drift.
"""

import sys
import time

sys.path.insert(0, sys.argv[1])

import torch  # noqa: E402
from ase.build import bulk  # noqa: E402

import mlff  # noqa: E402
from mlff.models import PaiNN  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(0)
envelope, tag = sys.argv[2], sys.argv[3]
model = PaiNN([29], cutoff=5.0, n_features=48, num_interactions=2, cutoff_fn=envelope).float().eval()
path = f"/tmp/ab_{tag}.pt"
mlff.export_model(model, path)
atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 4))
atoms.rattle(0.02, seed=0)
atoms.calc = mlff.MLFFCalculator(path)
atoms.get_forces()
times = []
for _ in range(6):
    atoms.positions += 0.001
    t0 = time.perf_counter()
    atoms.get_forces()
    times.append((time.perf_counter() - t0) * 1e3)
print(tag, envelope, "median ms", sorted(times)[3])
