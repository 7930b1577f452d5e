#!/usr/bin/env python
"""Django's command-line utility for the LLMOps platform."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    root = Path(__file__).resolve().parent
    # platform/ is a source root, not a package: see DESIGN.md.
    for path in (str(root / "platform"), str(root)):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.config.settings")
    from django.core.management import execute_from_command_line

    from llmops.core.startup import load_settings_or_exit

    # A bad environment value is one line naming the variable and exit code 2, not a traceback.
    load_settings_or_exit()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
