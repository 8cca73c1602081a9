"""How jobs are judged (`[rules]`): thresholds, hysteresis, first sight, removal."""

from __future__ import annotations

from pydantic import Field, field_validator

from watcher.settings.common import TOKEN, Section


class RulesSettings(Section):
    delay_thresholds: dict[str, float] = Field(
        default_factory=lambda: {"warning": 60.0, "critical": 300.0}
    )
    delay_hysteresis: float = Field(0.1, ge=0, lt=1, description="fraction below a threshold")
    delay_for_cycles: int = Field(1, ge=1, description="cycles a delay must hold to enter")
    announce_existing: bool = Field(
        True, description="on first sight, also emit failures and delay levels already present"
    )
    removed_after: int = Field(2, ge=1, description="complete listings a job must be absent")

    @field_validator("delay_thresholds")
    @classmethod
    def _levels(cls, value: dict[str, float]) -> dict[str, float]:
        for name, seconds in value.items():
            if name == "ok" or not TOKEN.match(name):
                raise ValueError(f"{name!r} cannot name a delay level")
            if seconds <= 0:
                raise ValueError(f"level {name!r} needs a positive number of seconds")
        if len(set(value.values())) != len(value):
            raise ValueError("two delay levels share a threshold")
        return value
