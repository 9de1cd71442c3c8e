"""Epidemic modules a model composes: disease natural history, contact, observation."""
