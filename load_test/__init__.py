"""Load tests and experiments: bulk uploads, bursts, scaling runs and their analysis (see the README)."""
