"""Response compression, as both the application and the frontend agent judge it.

What counts as compressible (by content type), how big a response must be for compression to
matter (Lighthouse's floor), the saving worth reporting, and the spec's knob that turns
compression on. Shared here so that neither agent imports the other.
"""

from __future__ import annotations

import re
from typing import Any

from tasks.spec import EnvApply, TargetSpec

COMPRESSIBLE = re.compile(r"text/|javascript|json|xml|svg|css|font/ttf|font/otf", re.I)
COMPRESS_MIN_BYTES = 1400  # Lighthouse ignores smaller responses
COMPRESS_MIN_SAVING = 0.1  # report only if gzip saves at least this share
COMPRESSION_KNOB = re.compile(r"gzip|compress", re.I)


def compression_knob(spec: TargetSpec, config: dict[str, Any]) -> str | None:
    """A bool knob that turns on compression (by name or env var), unless it is already on."""
    for name, knob in spec.knobs.items():
        env = knob.apply.env if isinstance(knob.apply, EnvApply) else ""
        if knob.type == "bool" and (COMPRESSION_KNOB.search(name) or COMPRESSION_KNOB.search(env)):
            if config.get(name, knob.default) is not True:
                return name
    return None
