"""End-to-end jobs the ``hyenamd`` command runs: demo, train, property, bench.

They sit above every subpackage (surrogate, engine, io, validate, cluster) and below only
:mod:`hyenamd.cli`; nothing in the library imports them.
"""
