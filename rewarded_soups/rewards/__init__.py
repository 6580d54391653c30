"""Reward implementations, looked up by kind through :mod:`rewarded_soups.registry`."""
