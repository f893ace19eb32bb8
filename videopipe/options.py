"""How to analyse a video: the profiles, the options of one in-process run, and job options as stored."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from videopipe.errors import BadRequest

PROFILES = {
    # What each kind of footage needs: lectures speak and show text; fixed cameras move.
    # Slides: new slides and build-up steps inside a scene whose template stays the same.
    "general": {"asr": True, "ocr": True, "motion": True, "slides": False},
    "lecture": {"asr": True, "ocr": True, "motion": False, "slides": True},
    "surveillance": {"asr": False, "ocr": False, "motion": True, "slides": False},
}


@dataclass(slots=True)
class AnalyzeOptions:
    vlm: str | None = None  # None: the settings' choice (VIDEOPIPE_VLM, default auto)
    asr: bool = True
    ocr: bool = True
    motion: bool = True
    slides: bool = False
    dump_prompt: Path | None = None  # write the exact prompts sent to the model here
    profile: str = "general"

    @classmethod
    def for_profile(
        cls,
        profile: str,
        *,
        no_asr: bool = False,
        no_ocr: bool = False,
        no_motion: bool = False,
        no_slides: bool = False,
        **kwargs: Any,
    ) -> AnalyzeOptions:
        """The profile's stages, minus any switched off explicitly."""
        base = PROFILES[profile]
        return cls(
            asr=base["asr"] and not no_asr,
            ocr=base["ocr"] and not no_ocr,
            motion=base["motion"] and not no_motion,
            slides=base["slides"] and not no_slides,
            profile=profile,
            **kwargs,
        )


class AnalysisOptions(BaseModel):
    """How to analyse a video, as a job stores it and the API accepts it. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    profile: Literal["general", "lecture", "surveillance"] = "general"
    vlm: Literal["auto", "none", "transformers", "openai"] | None = None
    asr: bool = True
    ocr: bool = True
    motion: bool = True
    slides: bool = True  # slide changes inside a constant template (on in the lecture profile)


def check_job_options(options: dict[str, Any]) -> dict[str, Any]:
    """Job options checked against `AnalysisOptions` (strictly: `true`, not `1`), whichever door they came
    through (API, batches, CLI): a wrong one must fail at submission, not inside a worker. Returned unchanged."""
    try:
        AnalysisOptions.model_validate(options, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise BadRequest(f"options: {where + ': ' if where else ''}{first.get('msg')}") from None
    return options
