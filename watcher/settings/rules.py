"""How jobs are judged (`[rules]`): thresholds, hysteresis, first sight, removal, and the
alert semantics of Contract v1.1 (stalls, reminders, flapping, expiry, per-job overrides,
maintenance windows; their vocabulary is in `alerting.py`)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from watcher.settings.alerting import MaintenanceWindow, Override, check_levels
from watcher.settings.common import Section


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
    stall_after: float = Field(
        600.0, ge=0, description="seconds a job must not move before `stalled`; 0 = off"
    )
    repeat_interval: float = Field(
        14400.0, ge=0, description="seconds between reminders of a critical condition; 0 = off"
    )
    flap_threshold: int = Field(
        6, ge=0, description="changes within flap_window that make a job flap; 0 = off"
    )
    flap_window: float = Field(3600.0, gt=0, description="seconds")
    expiry_warnings: list[float] = Field(
        default_factory=lambda: [7.0, 1.0], description="days before ExpireTime; [] = off"
    )
    overrides: list[Override] = Field(default_factory=list, description="first match wins")
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)

    @field_validator("delay_thresholds")
    @classmethod
    def _levels(cls, value: dict[str, float]) -> dict[str, float]:
        return dict(check_levels(value))

    @field_validator("flap_threshold")
    @classmethod
    def _flap_threshold(cls, value: int) -> int:
        if value == 1:
            raise ValueError("1 would make every change a flap: 0 (off) or 2 and more")
        return value

    @field_validator("expiry_warnings")
    @classmethod
    def _expiry_warnings(cls, value: list[float]) -> list[float]:
        if any(not days > 0 for days in value):
            raise ValueError("each warning is a positive number of days")
        return sorted(set(value), reverse=True)

    @model_validator(mode="after")
    def _window_names(self) -> RulesSettings:
        names = [window.name for window in self.maintenance]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(
                f"maintenance window {twice[0]!r} is defined twice (DTS_WATCHER_RULES__MAINTENANCE "
                "or [[rules.maintenance]]): names identify silences"
            )
        return self

    def applied(self, override: Override) -> RulesSettings:
        """These settings with what `override` sets (already validated on both sides)."""
        return self.model_copy(update=override.values())
