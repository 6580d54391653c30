"""Rewarded soups: one RL fine-tune per proxy reward, then interpolate the weights.

Ramé et al., "Rewarded soups: towards Pareto-optimal alignment by interpolating
weights fine-tuned on diverse rewards", NeurIPS 2023.

Importing this package (and its ``grid``, ``registry`` and ``config`` modules)
must stay cheap: Snakemake imports them while it parses the DAG.
"""

__version__ = "0.1.0"
