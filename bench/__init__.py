"""The side-by-side benchmark (issue 6): our pipeline, libvips, the system and a Celery equivalent.

    python -m bench            # make bench: everything, writes results/bench/bench.json and bench.png
    python -m bench --quick    # make bench-quick: one tiny size, a few jobs; checks that it works
"""
