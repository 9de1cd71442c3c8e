"""Agent decisions: rules, differentiable stochastic choice, LLM archetypes."""
