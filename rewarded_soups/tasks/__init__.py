"""Task plug-ins. Each registered task module implements the functions of
:mod:`rewarded_soups.tasks.base`; the Snakemake rules call nothing else."""
