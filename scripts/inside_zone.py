#!/usr/bin/env python
"""The ICML Sec. 4 and App. D studies as before; now `gzone run icml/...` (see `gzone list`).

    python scripts/inside_zone.py --study fig3         # gzone run icml/gterm-prediction
    python scripts/inside_zone.py --study fig4-right   # gzone run icml/gamma-entropy
    python scripts/inside_zone.py --study fig5-left    # gzone run icml/gradient-cosines
    python scripts/inside_zone.py --study fig5-right   # gzone run icml/gradient-prior
    python scripts/inside_zone.py --study fig6         # gzone run icml/many-inits
    python scripts/inside_zone.py --study fig10        # gzone run icml/pre-collapse

Every other option goes to the study unchanged (`gzone run NAME --help` lists them).
"""

import sys

from gzone.command import shim

STUDIES = {"fig3": "icml/gterm-prediction", "fig4-right": "icml/gamma-entropy",
           "fig5-left": "icml/gradient-cosines", "fig5-right": "icml/gradient-prior",
           "fig6": "icml/many-inits", "fig10": "icml/pre-collapse"}

if __name__ == "__main__":
    sys.exit(shim(sys.argv[1:], {f"--study {k}": v for k, v in STUDIES.items()}))
