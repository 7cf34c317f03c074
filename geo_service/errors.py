"""Domain errors: what went wrong, where (file, feature, field), separate from how it is shown."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: file, feature (1-based) or row, field, and what."""

    file: str
    feature: int | str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = [self.file]
        if self.feature is not None:
            where.append(f"feature {self.feature}")
        if self.field:
            where.append(f"field {self.field}")
        return f"{', '.join(where)}: {self.message}"


class LoadError(Exception):
    """A load was refused; nothing was written. Carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
