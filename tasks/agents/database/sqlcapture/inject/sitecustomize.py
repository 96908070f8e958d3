"""perfagents: capture the SQL statements this process runs (only when PERFAGENTS_SQL_LOG is set).

Put first on the target's PYTHONPATH by tasks.agents.database.sqlcapture.capture_env. It installs the
capture (standard library only) and then runs the sitecustomize this one shadows, if any.
"""

import os
import sys


def _run_shadowed_sitecustomize():
    """Execute the next ``sitecustomize`` on sys.path (the one this file hides), if there is one."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    mine = sys.modules.get("sitecustomize")
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules["sitecustomize"] = mine
        raise


if os.environ.get("PERFAGENTS_SQL_LOG"):
    try:
        import perfagents_sqlcapture

        perfagents_sqlcapture.install_from_env()
    except Exception as _exc:  # the target must start even if capture cannot
        sys.stderr.write(f"perfagents sqlcapture: not installed ({_exc})\n")

_run_shadowed_sitecustomize()
