"""`python -m ioncannon` is the `ioncannon` command."""

import sys

from ioncannon.cli import main

sys.exit(main())
