"""`python -m ioncannon` is the `ioncannon` command."""

import sys

from ioncannon.cli.main import main

sys.exit(main())
