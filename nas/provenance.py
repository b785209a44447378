"""What a result records about the software that produced it: the installed versions of the Python
packages it names (bench tables and exported architectures both record them)."""
from __future__ import annotations

from importlib import metadata


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed version of each distribution in `names`; one that is not installed is left out."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
