"""Flax modules shared by the methods."""
