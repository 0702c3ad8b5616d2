"""``python -m medadapt.cli``: the ``medadapt`` command."""

import sys

from medadapt.cli.main import main

sys.exit(main())
