#!/usr/bin/env python
"""The Fort & Scherlis studies as before; now `gzone run fort/...` (see `gzone list`).

    python scripts/hyperplanes.py --study radius                 # gzone run fort/radius (Fig. 3)
    python scripts/hyperplanes.py --study directions             # gzone run fort/directions (Sec. 2.4)
    python scripts/hyperplanes.py --study architectures          # gzone run fort/architectures (Fig. 4)
    python scripts/hyperplanes.py --study loss-radius            # gzone run fort/loss-radius (Fig. 5)
    python scripts/hyperplanes.py --study stokes                 # gzone run fort/stokes (Eq. 4)
    python scripts/hyperplanes.py --study hypersurface-training  # gzone run fort/hypersurface-training (Fig. 2)
    python scripts/hyperplanes.py --study init-selection         # gzone run fort/init-selection (Fig. 6)
    python scripts/hyperplanes.py --study radius-drift           # gzone run fort/radius-drift (obs. 8)

Every other option goes to the study unchanged (`gzone run NAME --help` lists them).
"""

import sys

from gzone.command import shim

STUDIES = ("radius", "directions", "architectures", "loss-radius", "stokes",
           "hypersurface-training", "init-selection", "radius-drift")

if __name__ == "__main__":
    sys.exit(shim(sys.argv[1:], {f"--study {s}": f"fort/{s}" for s in STUDIES}))
