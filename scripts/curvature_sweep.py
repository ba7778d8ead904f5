#!/usr/bin/env python
"""The zone sweeps (ICML Fig. 1, 2, 4 left) as before; now `gzone run icml/...` (see `gzone list`).

    python scripts/curvature_sweep.py --alpha-grid          # gzone run icml/alpha-sweep
    python scripts/curvature_sweep.py --temperature-grid    # gzone run icml/temperature-sweep
    python scripts/curvature_sweep.py --alpha-temperature   # gzone run icml/alpha-temperature
    python scripts/curvature_sweep.py --dim-grid --dims 2,5,10,20,50,100   # gzone run icml/dim-sweep
    python scripts/curvature_sweep.py --alpha-grid --full-space

Every other option goes to the study unchanged (`gzone run icml/alpha-sweep --help` lists them).
"""

import sys

from gzone.command import shim

SWEEPS = {"--alpha-grid": "icml/alpha-sweep", "--temperature-grid": "icml/temperature-sweep",
          "--alpha-temperature": "icml/alpha-temperature", "--dim-grid": "icml/dim-sweep"}

if __name__ == "__main__":
    sys.exit(shim(sys.argv[1:], {**SWEEPS, **{f"--mode {k[2:]}": v for k, v in SWEEPS.items()}},
                  default="icml/alpha-sweep", option="--mode"))
