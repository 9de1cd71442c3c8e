"""Synthetic populations, geography and contact networks."""
