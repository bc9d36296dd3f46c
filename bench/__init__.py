"""The side-by-side benchmark (issues 6 and 12): our pipeline, libvips, the system, a Celery equivalent and
thumbor.

    python -m bench            # make bench: everything, writes results/bench/bench.json and bench.png
    python -m bench --quick    # make bench-quick: one tiny size, a few jobs; checks that it works
    python -m bench.thumbor_bench  # make bench-thumbor: thumbor vs the system only
"""
