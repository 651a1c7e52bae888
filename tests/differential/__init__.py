"""Differential testing: random asyncio programs run on ferroloop and on
stdlib asyncio's ``SelectorEventLoop``, whose traces must be identical.

- ``generator.py`` writes a program (Python source) from a seed;
- ``runner.py`` runs a program on one loop and records its trace, and
  compares the traces of the two loops;
- ``run.py`` is the command line: ``python tests/differential/run.py
  --count 100000`` runs many programs, ``--seed N`` one program (printing its
  source and both traces).

``tests/test_differential.py`` runs a few thousand programs and the seeds of
every divergence found so far.
"""
