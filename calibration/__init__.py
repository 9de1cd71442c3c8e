"""Calibration of model parameters against data."""
