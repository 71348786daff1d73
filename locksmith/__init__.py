"""Locksmith: decides when each host of a fleet reboots into its freshly installed update."""

__version__ = "0.1.0"
