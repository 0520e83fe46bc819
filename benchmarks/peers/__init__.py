"""Peer implementations used only by benchmark scripts (never imported by ``circuitkg``).

Each peer lives in its own module and needs its own optional dependencies, installed in
``benchmarks/.venv-peers`` (not in the project's environment).
"""
