"""The application agent: the target's processes, its CPU profile and its code.

    agent.py        ApplicationAgent, the plug-in: what runs during and after the window
    process.py      psutil series of the process tree: cpu_saturation, memory_growth
    pyspy.py        py-spy in short low-rate bursts, and what they cost the target
    stacks.py       py-spy's collapsed stacks: parsed, own code told apart, aggregated
    hotspots.py     hot_function and blocking_call findings from those stacks
    complexity.py   the spec's complexity probes measured and fitted: superlinear_complexity
    payload.py      large and uncompressed responses: large_payload, uncompressed_response
"""

from __future__ import annotations

from tasks.agents.application.agent import ApplicationAgent

__all__ = ["ApplicationAgent"]
