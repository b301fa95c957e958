"""jlmarl: cooperative multi-agent RL under partial observability on one JAX engine."""

__version__ = "0.1.0"
