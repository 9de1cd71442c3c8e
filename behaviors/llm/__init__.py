"""LLM archetype behaviours: one prompt per archetype, broadcast to its agents."""
