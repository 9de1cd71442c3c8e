"""Prompt templates filled from archetype labels and environment values."""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Mapping

from populace.behaviors.llm.backends import Messages
from populace.behaviors.llm.schema import Schema


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    """A system and a user message with ``{name}`` fields.

    Fields come from the archetype's labels (``{age_band}``, ``{borough}``) and the step's
    environment (``{cases_per_100k}``, ``{change_pct}``); the schema's answer instructions are
    appended to the user message. A field that neither provides is an error, never left blank.
    """

    system: str
    user: str

    def fields(self) -> set[str]:
        """Every ``{name}`` used by the template."""
        found = set()
        for text in (self.system, self.user):
            found |= {f for _, f, _, _ in string.Formatter().parse(text) if f}
        return found

    def render(
        self, labels: Mapping[str, str], env: Mapping[str, object], schema: Schema | None = None
    ) -> Messages:
        """The chat messages of one archetype at one step."""
        values = {**env, **labels}
        missing = sorted(self.fields() - set(values))
        if missing:
            raise KeyError(
                f"prompt fields {missing} are neither archetype labels {sorted(labels)} nor "
                f"environment values {sorted(env)}"
            )
        user = self.user.format_map(values)
        if schema is not None:
            user = f"{user}\n{schema.instructions}"
        return [
            {"role": "system", "content": self.system.format_map(values)},
            {"role": "user", "content": user},
        ]
