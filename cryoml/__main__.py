"""``python -m cryoml`` runs the command line."""

import sys

from cryoml.cli import main

sys.exit(main())
