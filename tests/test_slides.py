"""Slide changes inside a constant template, and OCR that reads titles, on decks built the way people build them."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from videopipe.analysis import AnalyzeOptions, analyze
from videopipe.config import Settings
from videopipe.keyframes import Keyframe
from videopipe.media.probe import probe
from videopipe.perception.slides import SlideChange, SlideDetector, split_scenes
from videopipe.scan import run_pass
from videopipe.scenes import Scene
from videopipe.testing.decks import DECK_TEXT, THEMES, DeckSlide, DeckVideo, render_deck_slide, write_deck_video
from videopipe.testing.media import Visit, write_fixed_camera_video, write_sample_video
from videopipe.testing.scoring import cer

# A short deck in one template: a title slide, a large one-word section title, a build-up of three bullets, a
# slide entered by a cross-fade, and code in monospace. Only the words change between slides.
DECK = (
    DECK_TEXT[0],
    DeckSlide("Volcanoes", section=True, duration_s=2.5),
    DECK_TEXT[2],
    DeckSlide(
        "Where magma comes from",
        ("Melting in the mantle wedge", "Water lowers the melting point"),
        duration_s=3.0,
        fade_in_s=0.5,
    ),
    DeckSlide("Reading the seismometer", code=DECK_TEXT[4].code, duration_s=3.0),
)


@pytest.fixture(scope="module", params=["dark", "light-speaker"])
def deck(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> DeckVideo:
    """A dark deck, and a light one with the speaker's webcam inset in a corner (never still)."""
    theme, _, speaker = str(request.param).partition("-")
    path = tmp_path_factory.mktemp("deck") / f"{request.param}.mp4"
    return write_deck_video(path, DECK, theme=theme, width=640, height=360, speaker=bool(speaker))


def _pass(path: Path, settings: Settings | None = None) -> tuple[Any, SlideDetector]:
    settings = settings or Settings()
    detector = SlideDetector(settings.slides)
    return run_pass(probe(path, settings.limits), settings, slides=detector), detector


def test_new_slides_split_the_scene_and_build_steps_only_add_keyframes(deck: DeckVideo) -> None:
    result, detector = _pass(deck.path)
    starts = [s.start_s for s in result.scenes[1:]]
    slides = [c.t_s for c in deck.changes if c.kind == "slide"]
    builds = [c.t_s for c in deck.changes if c.kind == "build"]
    assert len(builds) == 2 and len(slides) == len(DECK) - 1
    # Every new slide starts a scene within 1 s of it (most share the template: no hard cut), and nothing else does.
    assert len(starts) == len(slides), (starts, slides)
    for truth, found in zip(slides, starts, strict=True):
        assert 0 <= found - truth <= 1.0, (truth, found)
    # Build-up steps: found as such, a keyframe each, settled (after the step), in the same scene.
    found_builds = [c.t_s for c in detector.build_steps]
    assert len(found_builds) == len(builds) and all(
        abs(f - t) <= 1.0 for f, t in zip(found_builds, builds, strict=True)
    )
    build_scene = next(s for s in result.scenes if s.start_s <= builds[0] < s.end_s)
    in_scene = [k for k in result.keyframes if k.scene_index == build_scene.index]
    assert len(in_scene) == 3 and all(k.t_s > b for k, b in zip(in_scene[1:], builds, strict=True))
    # No keyframe inside the cross-fade, and every scene has one.
    fade = next(c.t_s for c in deck.changes if c.kind == "slide" and c.slide == 3)
    assert not [k for k in result.keyframes if fade - 0.05 <= k.t_s <= fade + 0.55]
    assert {k.scene_index for k in result.keyframes} == {s.index for s in result.scenes}
    assert sum(s.frame_count for s in result.scenes) == result.frames
    assert result.scenes[-1].end_s == pytest.approx(deck.duration_s, abs=0.05)


def test_camera_footage_has_no_slide_changes(tmp_path: Path) -> None:
    """Panning textures and a fixed camera with objects coming and going: moving content, never a slide."""
    pans = write_sample_video(tmp_path / "pans.mp4", shots_s=(3.0, 3.0), seed=3)
    gate = write_fixed_camera_video(
        tmp_path / "gate.mp4", [Visit(1.0, 2.5, y=0.5), Visit(4.0, 4.6, y=0.3, luma=220)], duration_s=6.0
    )
    for path in (pans.path, gate):
        _, detector = _pass(path)
        assert detector.changes == [], (path.name, detector.changes)


def test_split_scenes_moves_keyframes_and_counts_frames() -> None:
    scenes = [Scene(0, 0.0, 10.0, 0, 250), Scene(1, 10.0, 20.0, 250, 250)]
    changes = [
        SlideChange(4.0, 100, "slide", 0, 100, 0.05, 0.5),
        SlideChange(6.0, 150, "build", 0, 150, 0.01, 0.0),
        SlideChange(10.2, 255, "slide", 1, 5, 0.05, 0.5),  # too close to the cut: kept in its scene
    ]
    keyframes = [Keyframe(10, 0.4, 0, 1.0), Keyframe(110, 4.4, 0, 1.0), Keyframe(160, 6.4, 0, 1.0),
                 Keyframe(300, 12.0, 1, 1.0)]  # fmt: skip
    out, moved = split_scenes(scenes, keyframes, changes, min_scene_s=0.4)
    assert [(s.index, s.start_s, s.end_s, s.frame_count) for s in out] == [
        (0, 0.0, 4.0, 100),
        (1, 4.0, 10.0, 150),
        (2, 10.0, 20.0, 250),
    ]
    assert [k.scene_index for k in moved] == [0, 1, 1, 2]


def test_the_lecture_profile_finds_slides_and_the_general_one_does_not() -> None:
    assert AnalyzeOptions.for_profile("lecture").slides
    assert not AnalyzeOptions.for_profile("lecture", no_slides=True).slides
    assert not AnalyzeOptions.for_profile("general").slides
    assert not AnalyzeOptions().slides


@pytest.mark.parametrize("theme", sorted(THEMES))
def test_ocr_reads_every_title_and_code_line(theme: str) -> None:
    """Large one-word titles, light text on a dark bar or a dark theme, serif, monospace code: CER <= 0.05."""
    from videopipe.perception.ocr import make_reader

    reader = make_reader("tesserocr")
    for n, slide in enumerate(DECK_TEXT):
        text, confidence = reader.read(Image.fromarray(render_deck_slide(slide, THEMES[theme], n, len(slide.bullets))))
        assert cer(slide.title, text, ignore_case=True) <= 0.05, (theme, slide.title, text)
        for line in (*slide.bullets, *slide.code):
            assert cer(line, text, ignore_case=True) <= 0.1, (theme, line, text)
        assert confidence >= 0.5


def test_a_template_deck_becomes_one_chapter_per_slide_with_its_title(tmp_path: Path) -> None:
    deck = write_deck_video(tmp_path / "light.mp4", DECK, theme="light", width=960, height=540)
    doc = analyze(deck.path, tmp_path / "o", Settings(), AnalyzeOptions.for_profile("lecture", vlm="none", no_asr=True))
    stages = doc["run"]["stages"]
    assert stages["slides"] == {"status": "done", "new_slides": stages["slides"]["new_slides"], "build_steps": 2}
    assert len(doc["scenes"]) == len(DECK)
    chapters = doc["chapters"]
    assert len(chapters) == len(DECK)  # build-up steps are keyframes, not chapters
    for chapter, slide, start in zip(chapters, DECK, deck.slide_starts_s, strict=True):
        assert abs(chapter["start_s"] - start) <= 1.0
        assert difflib.SequenceMatcher(None, chapter["title"].lower(), slide.title.lower()).ratio() >= 0.9, chapter
    text = "\n".join(line["text"] for line in doc["ocr"])
    for slide in DECK:
        assert cer(slide.title, text, ignore_case=True) <= 0.05, (slide.title, text)
