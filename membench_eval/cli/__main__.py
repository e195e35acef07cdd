"""``python -m membench_eval.cli``: the same as the ``membench`` command."""

import sys

from membench_eval.cli import main

sys.exit(main())
