"""`platform/` is a source root, not a package: the stdlib `platform` module must always win."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = "import platform, sys; assert hasattr(platform, 'system'), platform; print(platform.system())"


def test_platform_is_stdlib_in_tests():
    import platform

    assert hasattr(platform, "system")
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert "site-packages" not in (platform.__file__ or "") and "lib/python" in platform.__file__


@pytest.mark.parametrize(
    "entry",
    [
        "import llmops.config.asgi",  # the web process
        "import gpu_worker.celery_app",  # the worker process
        "import torch",  # torch imports platform at import time
    ],
)
def test_platform_is_stdlib_in_every_process(entry):
    code = f"{entry}; {PROBE}"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("Linux")
