"""Stage-duration estimates per (generator, quality): moving averages seeded from the benchmark.

The registry learns from every completed run, so the ETA of the next job follows what this
deployment's hardware actually does; until then the seeds below (``bench/pipeline.py`` on a
2-core CPU, 512-px photos, GLB) stand in.
"""

from __future__ import annotations

from collections.abc import Mapping

from serve_app.contracts.stages import MODEL_STAGES, Stage

#: Seconds per stage at quality 1..10, measured with the embedded ``inflate`` generator.
SEED_SECONDS: dict[Stage, tuple[float, ...]] = {
    Stage.BACKGROUND_REMOVAL: (0.35,) * 10,
    Stage.SHAPE_GENERATION: (0.02, 0.03, 0.05, 0.07, 0.10, 0.15, 0.22, 0.32, 0.45, 0.60),
    Stage.TEXTURE_SYNTHESIS: (0.02, 0.02, 0.03, 0.03, 0.03, 0.04, 0.04, 0.04, 0.05, 0.05),
    Stage.EXPORT: (0.01, 0.01, 0.02, 0.02, 0.03, 0.03, 0.04, 0.05, 0.05, 0.06),
}

#: Weight of the newest measurement in the exponential moving average.
SMOOTHING = 0.3

STAGES: tuple[Stage, ...] = MODEL_STAGES


def seed_seconds(stage: Stage, quality: int) -> float:
    """The benchmark's figure for ``stage`` at ``quality`` (clamped to 1..10)."""
    return SEED_SECONDS[stage][min(10, max(1, quality)) - 1]


class StageClock:
    """Expected seconds per stage for each (generator, quality), learnt as runs complete.

    A generator without measurements starts from the ``inflate`` seeds: a rough first
    guess that the first completed run replaces with most of its weight.
    """

    def __init__(self, smoothing: float = SMOOTHING) -> None:
        if not 0.0 < smoothing <= 1.0:
            raise ValueError("smoothing must lie in (0, 1]")
        self.smoothing = smoothing
        self._seconds: dict[tuple[str, int, Stage], float] = {}
        self._samples: dict[tuple[str, int, Stage], int] = {}

    def expected(self, generator: str, quality: int, stage: Stage) -> float:
        return self._seconds.get((generator, quality, stage), seed_seconds(stage, quality))

    def samples(self, generator: str, quality: int, stage: Stage) -> int:
        return self._samples.get((generator, quality, stage), 0)

    def total(self, generator: str, quality: int) -> float:
        """Expected seconds of a whole run."""
        return sum(self.expected(generator, quality, stage) for stage in STAGES)

    def observe(self, generator: str, quality: int, durations: Mapping[str, float]) -> None:
        """Fold a completed run's measured stage durations into the averages."""
        for name, seconds in durations.items():
            try:
                stage = Stage(name)
            except ValueError:
                continue
            if seconds < 0:
                continue
            key = (generator, quality, stage)
            if key in self._seconds:
                old = self._seconds[key]
                self._seconds[key] = old + self.smoothing * (seconds - old)
            else:
                # The seed is a guess from another machine: the first real run outweighs it.
                seed = seed_seconds(stage, quality)
                self._seconds[key] = seed + max(self.smoothing, 0.8) * (seconds - seed)
            self._samples[key] = self._samples.get(key, 0) + 1

    def remaining(
        self,
        generator: str,
        quality: int,
        stage: Stage | None,
        fraction: float,
        elapsed_in_stage_s: float,
    ) -> float:
        """Seconds left in a run that is ``fraction`` (0..1) through ``stage``.

        ``stage`` None means no stage has started yet (the whole run is left). Within the
        current stage the larger of "what the fraction leaves" and "what the clock leaves"
        is taken, so a stage that reports coarsely does not make the ETA jump to zero.
        """
        if stage is None:
            return self.total(generator, quality)
        index = STAGES.index(stage)
        current = self.expected(generator, quality, stage)
        fraction = min(1.0, max(0.0, fraction))
        left_here = max(current * (1.0 - fraction), current - elapsed_in_stage_s, 0.0)
        later = sum(self.expected(generator, quality, s) for s in STAGES[index + 1 :])
        return left_here + later


#: Seconds per denoising step of the text-to-image stage before any run was measured: a
#: placeholder between a GPU (hundredths of a second at 512 px) and a CPU (seconds), which
#: the first completed run replaces with most of its weight.
SEED_SECONDS_PER_STEP = 0.5


class ImageClock:
    """Expected seconds of the text-to-image stage, learnt as pictures are made.

    The stage is ``steps`` denoising steps and the decode of the picture, counted as one
    more step; what is learnt is the seconds per step of this deployment's model.
    """

    def __init__(
        self, seconds_per_step: float = SEED_SECONDS_PER_STEP, smoothing: float = SMOOTHING
    ) -> None:
        if not 0.0 < smoothing <= 1.0:
            raise ValueError("smoothing must lie in (0, 1]")
        self.seconds_per_step = seconds_per_step
        self.smoothing = smoothing
        self.samples = 0

    def expected(self, steps: int) -> float:
        return self.seconds_per_step * (max(1, steps) + 1)

    def observe(self, seconds: float, steps: int) -> None:
        """Fold a made picture's measured stage seconds (``steps`` steps) into the average."""
        if seconds < 0:
            return
        measured = seconds / (max(1, steps) + 1)
        weight = self.smoothing if self.samples else max(self.smoothing, 0.8)
        self.seconds_per_step += weight * (measured - self.seconds_per_step)
        self.samples += 1

    @staticmethod
    def remaining(expected_s: float, fraction: float, elapsed_s: float) -> float:
        """Seconds left in a stage ``fraction`` through after ``elapsed_s``: its steps take
        equal time, so once one is done the elapsed time says what is left."""
        fraction = min(1.0, max(0.0, fraction))
        if fraction > 0.0:
            return elapsed_s * (1.0 - fraction) / fraction
        return max(expected_s - elapsed_s, 0.0)
