"""perfagents: run the sitecustomize that ``opentelemetry-instrument`` shadows.

``opentelemetry-instrument`` puts its own ``sitecustomize`` first on PYTHONPATH and does not
chain to the next one, so another injected ``sitecustomize`` (perfagents' SQL capture, or the
target's own) would never run. OpenTelemetry calls every ``opentelemetry_pre_instrument``
entry point while it initializes; the dist-info written next to this file registers
``run_shadowed_sitecustomize`` as one. Standard library only, Python 3.8+ syntax: this runs in
the target's own interpreter.
"""

import importlib.machinery
import importlib.util
import os
import sys

_state = {"done": False}


def run_shadowed_sitecustomize():
    """Execute the first ``sitecustomize`` on sys.path other than OpenTelemetry's, once."""
    if _state["done"]:
        return
    _state["done"] = True
    current = sys.modules.get("sitecustomize")
    origin = getattr(current, "__file__", None)
    if not origin:
        return
    otel_dir = os.path.dirname(os.path.abspath(origin))
    saved = list(sys.path)
    rest = [p for p in saved if os.path.abspath(p or os.curdir) != otel_dir]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.path[:] = rest  # a sitecustomize that chains on must not find OpenTelemetry's again
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the target must start even if the shadowed one fails
        sys.stderr.write(f"perfagents: shadowed sitecustomize {spec.origin} failed ({exc})\n")
    finally:
        sys.path[:] = saved + [p for p in sys.path if p not in saved]
        sys.modules["sitecustomize"] = current
