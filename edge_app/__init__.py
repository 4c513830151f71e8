"""engage-edge: on-device engagement detection from facial expressions.

``__version__`` is the release (setup.py's) and, when the package was built by
firmware/install.sh, the build: ``git describe --always --dirty`` of the checkout it came
from, recorded in ``edge_app/BUILD`` (``0.1.0+v0.1.0-12-g1a2b3c4``). Every build of a release
said 0.1.0, so a technician could not tell 30 desks' installs apart; ``engage-edge
--version`` and ``/healthz`` now tell. Without the file (a checkout, a plain ``pip wheel``)
it is the release alone.
"""
import re
from pathlib import Path

RELEASE = "0.1.0"


def build_version(package_dir: Path = Path(__file__).parent) -> str:
    """The release, with the build recorded beside the package when there is one."""
    try:
        build = (package_dir / "BUILD").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return RELEASE
    build = re.sub(r"[^0-9A-Za-z.-]+", "-", build)[:64].strip("-")  # one short token, whatever the file holds
    return f"{RELEASE}+{build}" if build else RELEASE


__version__ = build_version()
