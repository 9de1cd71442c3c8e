"""Benchmark harness and recorded results.

``populace bench NAME`` times a zoo model (benchmarks/harness.py) or, for the names in
:data:`KERNEL_BENCHES`, runs that module's own ``main(argv)`` (its options differ per family).
"""

#: benchmark modules with their own command line, run as ``populace bench NAME [options]``.
KERNEL_BENCHES = ("stigmergy", "swarm", "contagion")
