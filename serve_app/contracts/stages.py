"""The pipeline stages, the run plans that order them, and each stage's progress band."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """The pipeline stages, in the order a run goes through them.

    ``text_to_image`` runs only in a text job's run (a prompt made into its picture); the
    other four make a model of a picture (``MODEL_STAGES``).
    """

    TEXT_TO_IMAGE = "text_to_image"
    BACKGROUND_REMOVAL = "background_removal"
    SHAPE_GENERATION = "shape_generation"
    TEXTURE_SYNTHESIS = "texture_synthesis"
    EXPORT = "export"


#: The stages that make a model of a picture (uploaded, or made from a prompt).
MODEL_STAGES: tuple[Stage, ...] = (
    Stage.BACKGROUND_REMOVAL,
    Stage.SHAPE_GENERATION,
    Stage.TEXTURE_SYNTHESIS,
    Stage.EXPORT,
)

#: Overall progress band (percent) of each stage of a model run (a picture → a model).
STAGE_BANDS: dict[Stage, tuple[float, float]] = {
    Stage.BACKGROUND_REMOVAL: (0.0, 10.0),
    Stage.SHAPE_GENERATION: (10.0, 60.0),
    Stage.TEXTURE_SYNTHESIS: (60.0, 90.0),
    Stage.EXPORT: (90.0, 100.0),
}

#: The share (percent) of a prompt-to-model run that making the picture takes; the model
#: stages' bands are rescaled into the rest, in order.
TEXT_TO_IMAGE_SHARE = 30.0


class RunPlan(StrEnum):
    """Which stages one run of a job goes through."""

    #: A picture (uploaded, or made by an earlier run) → a model: the four model stages.
    MODEL = "model"
    #: A prompt → a picture: ``text_to_image`` alone.
    IMAGE = "image"
    #: A prompt → a picture → a model, in one run: all five stages.
    TEXT_TO_MODEL = "text_to_model"

    @property
    def stages(self) -> tuple[Stage, ...]:
        return PLAN_STAGES[self]

    @property
    def makes_image(self) -> bool:
        return self is not RunPlan.MODEL

    @property
    def makes_model(self) -> bool:
        return self is not RunPlan.IMAGE


PLAN_STAGES: dict[RunPlan, tuple[Stage, ...]] = {
    RunPlan.MODEL: MODEL_STAGES,
    RunPlan.IMAGE: (Stage.TEXT_TO_IMAGE,),
    RunPlan.TEXT_TO_MODEL: (Stage.TEXT_TO_IMAGE, *MODEL_STAGES),
}


def _text_to_model_bands() -> dict[Stage, tuple[float, float]]:
    share = TEXT_TO_IMAGE_SHARE
    scale = (100.0 - share) / 100.0
    bands = {Stage.TEXT_TO_IMAGE: (0.0, share)}
    for stage, (lo, hi) in STAGE_BANDS.items():
        bands[stage] = (share + lo * scale, share + hi * scale)
    return bands


#: Each plan's stages and their bands: consecutive, from 0 to 100, in the plan's order.
PLAN_BANDS: dict[RunPlan, dict[Stage, tuple[float, float]]] = {
    RunPlan.MODEL: STAGE_BANDS,
    RunPlan.IMAGE: {Stage.TEXT_TO_IMAGE: (0.0, 100.0)},
    RunPlan.TEXT_TO_MODEL: _text_to_model_bands(),
}


def overall_progress(stage: Stage, fraction: float, plan: RunPlan = RunPlan.MODEL) -> float:
    """Map ``fraction`` (0..1) of ``stage`` onto the 0..100 progress scale of a ``plan`` run.

    Raises KeyError for a stage the plan does not go through.
    """
    lo, hi = PLAN_BANDS[plan][stage]
    return lo + (hi - lo) * min(1.0, max(0.0, fraction))
