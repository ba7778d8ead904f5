"""``python -m gzone`` is the ``gzone`` command (:mod:`gzone.command`)."""

import sys

from gzone.command import main

sys.exit(main())
