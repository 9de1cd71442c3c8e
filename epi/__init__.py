"""Epidemic modules a model composes: natural history (disease, course, durations, severity),
contact, interventions (vaccination, testing, tracing), rationing, demography, observation and
the transmission log."""
