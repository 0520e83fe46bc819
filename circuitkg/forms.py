"""The forms of a model and of a compiled circuit: one type, one list, one check.

* ``score``: the KGE as published, unnormalised; conditionals are softmaxes of scores.
* ``monotone``: non-negative parameters, ``p = φ / Z``, run in log space.
* ``squared``: unrestricted parameters, ``p = φ² / Z``, run in linear space with scaling.

:data:`Form` is the type of a form name and :data:`FORMS` the names in that order, derived from it,
so nothing else spells the list out. This module imports nothing heavy (the CLI's ``--help`` reads
it without importing torch).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

from circuitkg.errors import FormError

Form = Literal["score", "monotone", "squared"]
#: every form, in the order above
FORMS: tuple[Form, ...] = get_args(Form)


def check_form(form: object, allowed: Iterable[str] = FORMS, owner: str = "") -> Form:
    """``form`` if it is one of ``allowed`` (by default every form), else :class:`FormError`
    naming ``owner`` (a model) when given."""
    allowed = tuple(allowed)
    if form in allowed:
        return form  # type: ignore[return-value]
    if owner:
        raise FormError(f"{owner} has no {form!r} form; it has {list(allowed)}")
    raise FormError(f"unknown form {form!r}; choose one of {', '.join(allowed)}")
