"""The views of a subject a job may carry: their names, and the one check of a view name."""

from __future__ import annotations

from enum import StrEnum

from serve_app.errors import ValidationFailedError


class ViewName(StrEnum):
    """Where the camera of a photo stands (orthographic, +Y up; see the README's camera
    convention). ``front`` is the job's photo itself; the others are optional."""

    FRONT = "front"
    LEFT = "left"
    BACK = "back"
    RIGHT = "right"
    TOP = "top"
    BOTTOM = "bottom"


#: Every view, in the order they are listed, stored and keyed.
VIEW_NAMES: tuple[ViewName, ...] = tuple(ViewName)
#: The views beside the front (the photo) that an upload may add.
EXTRA_VIEWS: tuple[ViewName, ...] = tuple(v for v in ViewName if v is not ViewName.FRONT)
#: The most views one job may carry.
MAX_VIEWS = len(VIEW_NAMES)


def check_view_name(name: str, allowed: tuple[ViewName, ...] = VIEW_NAMES) -> ViewName:
    """``name`` as a view, or a 422 naming it and the views that are allowed."""
    if name in allowed:
        return ViewName(name)
    known = ", ".join(allowed)
    raise ValidationFailedError(
        f"{name!r} is not a view; the views are {known}",
        view=name,
        views=list(allowed),
        fields=[{"loc": ["body", name], "message": "not a view name"}],
    )


def in_view_order(names: list[str] | tuple[str, ...]) -> list[ViewName]:
    """``names`` (each a view) in ``VIEW_NAMES``' order."""
    given = set(names)
    return [v for v in VIEW_NAMES if v in given]
