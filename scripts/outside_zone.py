#!/usr/bin/env python
"""The ICML App. E studies as before; now `gzone run icml/...` (see `gzone list`).

    python scripts/outside_zone.py --study uso            # gzone run icml/uso (Fig. 11 left)
    python scripts/outside_zone.py --study uso-retrain    # gzone run icml/uso-retrain (Fig. 11 right)
    python scripts/outside_zone.py --study probe          # gzone run icml/probe (Fig. 12 left)
    python scripts/outside_zone.py --study lazy           # gzone run icml/lazy
    python scripts/outside_zone.py --study random-labels  # gzone run icml/random-labels (Fig. 12 right)

Every other option goes to the study unchanged (`gzone run NAME --help` lists them).
"""

import sys

from gzone.command import shim

STUDIES = ("uso", "uso-retrain", "probe", "lazy", "random-labels")

if __name__ == "__main__":
    sys.exit(shim(sys.argv[1:], {f"--study {s}": f"icml/{s}" for s in STUDIES}))
