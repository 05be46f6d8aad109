"""likestream benchmark suite: ``python -m bench.run`` (``make bench``).

Every figure is reported next to the machine's own limit, measured side by side in the
same run (the machine is small, shared and noisy), plus the absolute numbers.
Results: ``bench/results/<name>.json`` and ``bench/results/RESULTS.md``.
"""
