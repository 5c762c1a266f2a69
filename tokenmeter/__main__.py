"""`python -m tokenmeter`: the same as the `tokenmeter` command."""

import sys

from tokenmeter.cli import main

sys.exit(main())
