"""Files copied into a traced target's PYTHONPATH (never imported by perfagents itself).

This __init__ only makes packaging (setuptools packages.find) ship the folder's modules.
"""
