"""The benchmark suite (``python -m bench`` / ``make bench``): every figure beside a baseline measured
in the same run on the same machine, as a ratio, with its target.  Timings live here, never in tests."""
