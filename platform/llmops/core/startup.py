"""Start-up guard shared by every entry point (manage.py, the `llmops` CLI, workers)."""

from __future__ import annotations

import sys

EXIT_BAD_CONFIG = 2


def load_settings_or_exit() -> None:
    """Load Django settings; a bad environment value ends the process with one line, exit 2.

    Settings raise ImproperlyConfigured with the variable's name first ("DATABASE_URL: ...");
    a traceback would bury that line, so print it alone.
    """
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 - touching a setting imports the settings module
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        raise SystemExit(EXIT_BAD_CONFIG) from None
