"""``python -m llmops.cli`` is the ``llmops`` console script."""

from __future__ import annotations

import sys

from llmops.cli import main

sys.exit(main())
