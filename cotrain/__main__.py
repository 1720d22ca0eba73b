"""``python -m cotrain SUBCOMMAND ...`` (what torchrun runs: ``torchrun ... -m cotrain train RECIPE``)."""

import sys

from cotrain.cli import main

sys.exit(main())
