"""One module per workload: ours and the raw-driver floor side by side, measured with ``harness``."""
