"""The target spec's knobs: tunable, reversible settings, applied through the environment (a
restart) or an HTTP call on the target (live). Re-exported by tasks.spec.

Also the base of every spec model: unknown keys refused, every number finite.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # every number in a spec is finite


class EnvApply(SpecModel):
    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class HttpTarget(SpecModel):
    method: Literal["PUT", "POST", "PATCH"] = "PUT"
    path: str = Field(pattern=r"^/([^/\\@\s][^\\@\s]*)?$")  # on the target itself: no other host, no userinfo
    field: str


class HttpApply(SpecModel):
    http: HttpTarget


def _apply_kind(value: Any) -> str:
    """``apply:`` holds ``http`` or ``env``: its errors are that kind's, not the other's."""
    return "http" if (isinstance(value, dict) and "http" in value) or isinstance(value, HttpApply) else "env"


class _KnobBase(SpecModel):
    apply: Annotated[Annotated[EnvApply, Tag("env")] | Annotated[HttpApply, Tag("http")], Discriminator(_apply_kind)]
    description: str = ""

    @property
    def needs_restart(self) -> bool:
        return isinstance(self.apply, EnvApply)


class IntKnob(_KnobBase):
    type: Literal["int"]
    low: int
    high: int
    default: int
    step: int = Field(default=1, ge=1)

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))

    @model_validator(mode="after")
    def _ordered(self) -> IntKnob:
        _check_range(self.low, self.high, self.default)
        return self


class FloatKnob(_KnobBase):
    type: Literal["float"]
    low: float
    high: float
    default: float

    @model_validator(mode="after")
    def _ordered(self) -> FloatKnob:
        _check_range(self.low, self.high, self.default)
        return self


def _check_range(low: float, high: float, default: float) -> None:
    if low > high:
        raise ValueError(f"low {low} is above high {high}")
    if not low <= default <= high:
        raise ValueError(f"default {default} is outside [{low}, {high}]")


class BoolKnob(_KnobBase):
    type: Literal["bool"]
    default: bool = False

    def values(self) -> list[bool]:
        return [False, True]


class ChoiceKnob(_KnobBase):
    type: Literal["choice"]
    choices: list[str] = Field(min_length=1)
    default: str

    def values(self) -> list[str]:
        return list(self.choices)

    @model_validator(mode="after")
    def _default_is_a_choice(self) -> ChoiceKnob:
        if self.default not in self.choices:
            raise ValueError(f"default {self.default!r} is not one of the choices {self.choices}")
        return self


Knob = Annotated[IntKnob | FloatKnob | BoolKnob | ChoiceKnob, Field(discriminator="type")]
KNOB_TYPES = ("int", "float", "bool", "choice")
