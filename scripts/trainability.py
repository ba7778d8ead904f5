#!/usr/bin/env python
"""The ICML Sec. 5 training grid as before; now `gzone run icml/trainability` or `icml/curves`.

    python scripts/trainability.py --grid                # gzone run icml/trainability (Fig. 8)
    python scripts/trainability.py --curves              # gzone run icml/curves (Fig. 9)
    python scripts/trainability.py --grid --labels random-per-step
    python scripts/trainability.py --grid --out runs/fig8 --plot-only   # gzone plot icml/trainability

Every other option goes to the study unchanged (`gzone run icml/trainability --help` lists them),
the several-process ones (--num-processes, --process-id) included.
"""

import sys

from gzone.command import shim

MODES = {"--grid": "icml/trainability", "--curves": "icml/curves",
         "--mode grid": "icml/trainability", "--mode curves": "icml/curves"}

if __name__ == "__main__":
    sys.exit(shim(sys.argv[1:], MODES, default="icml/trainability", option="--mode"))
