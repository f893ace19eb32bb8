"""Speech, on-screen text and motion on generated media with known content."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.cli import run_cli
from videopipe.analysis import AnalyzeOptions, analyze
from videopipe.config import MotionSettings, Settings
from videopipe.perception.audio import SAMPLE_RATE, iter_audio_chunks
from videopipe.testing.media import (
    LectureVideo,
    SampleVideo,
    Slide,
    Visit,
    write_fixed_camera_video,
    write_lecture_video,
    write_sample_video,
)

SLIDES = [
    Slide("Entropy and information", ("Shannon 1948", "measured in bits"), 8.0),
    Slide("How volcanoes erupt", ("magma chambers", "eruption warning signs"), 35.0),  # long: 2 keyframes
    Slide("Elephant family life", ("memory", "family groups"), 8.0),
    Slide("Telescopes and galaxies", ("mirrors and lenses", "distant galaxies"), 8.0),
]
NARRATION = [
    (1.0, "Entropy measures uncertainty in a message."),
    (9.0, "A volcano can erupt without warning."),
    (30.0, "Scientists measure the earthquake."),
    (44.0, "Elephants remember their families for decades."),
    (52.0, "The telescope revealed distant galaxies."),
]
# (stem of a key word, the time it is spoken: its utterance's start, plus one short word for "A volcano")
KEY_WORDS = [("entrop", 1.0), ("volcan", 9.2), ("earthquake", 31.0), ("elephant", 44.0), ("telescop", 52.2)]


@pytest.fixture(scope="module")
def lecture(tmp_path_factory: pytest.TempPathFactory) -> LectureVideo:
    return write_lecture_video(
        tmp_path_factory.mktemp("lecture") / "lecture.mp4", SLIDES, NARRATION, width=960, height=540
    )


@pytest.fixture(scope="module")
def lecture_doc(lecture: LectureVideo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("lecture-out")
    return analyze(lecture.path, out, Settings(), AnalyzeOptions.for_profile("lecture", vlm="none"))


def _norm(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def test_key_words_are_heard_at_their_times(lecture_doc: dict[str, Any]) -> None:
    words = [(_norm(w["text"]), w["start_s"]) for seg in lecture_doc["transcript"] for w in seg["words"]]
    for stem, spoken_s in KEY_WORDS:
        hits = [t for w, t in words if w.startswith(stem)]
        assert hits, f"{stem!r} not in transcript: {[s['text'] for s in lecture_doc['transcript']]}"
        assert min(abs(t - spoken_s) for t in hits) <= 1.5, (stem, hits)
    for seg in lecture_doc["transcript"]:
        assert 0 <= seg["start_s"] < seg["end_s"] <= lecture_doc["video"]["duration_s"] + 0.5
    assert lecture_doc["run"]["stages"]["speech"]["status"] == "done"


def test_slides_are_read_once_each(lecture: LectureVideo, lecture_doc: dict[str, Any]) -> None:
    ocr = lecture_doc["ocr"]
    assert len(lecture_doc["keyframes"]) > len(SLIDES)  # the long slide had two keyframes...
    assert len(ocr) == len(SLIDES)  # ...and was read once
    for line, slide, start in zip(ocr, SLIDES, lecture.slide_starts_s, strict=True):
        title = line["text"].splitlines()[0]
        assert difflib.SequenceMatcher(None, title.lower(), slide.title.lower()).ratio() >= 0.8, title
        assert start <= line["t_s"] < start + slide.duration_s
        assert line["confidence"] >= 0.5
        body = line["text"].lower()
        assert sum(difflib.SequenceMatcher(None, body, bullet.lower()).find_longest_match().size >= len(bullet) - 3
                   for bullet in slide.lines) >= 1  # fmt: skip


def test_slide_changes_become_chapters(lecture: LectureVideo, lecture_doc: dict[str, Any]) -> None:
    chapters = lecture_doc["chapters"]
    assert [c["start_s"] for c in chapters] == pytest.approx(lecture.slide_starts_s, abs=0.05)
    assert all(c["source"] == "extractive" for c in chapters)
    assert difflib.SequenceMatcher(None, chapters[0]["title"].lower(), "entropy and information").ratio() > 0.8
    assert "entropy" in chapters[0]["summary"].lower()


VISITS = [Visit(3.0, 5.0, y=0.5), Visit(8.0, 9.5, y=0.3, luma=220)]


@pytest.fixture(scope="module")
def camera_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixed_camera_video(tmp_path_factory.mktemp("cam") / "gate.mp4", VISITS, duration_s=12.0)


def _motion(video: Path, out: Path, **motion: Any) -> dict[str, Any]:
    settings = Settings(motion=MotionSettings(**motion))
    return analyze(video, out, settings, AnalyzeOptions.for_profile("surveillance", vlm="none"))


def test_objects_entering_a_fixed_camera_are_events_at_their_times(camera_video: Path, tmp_path: Path) -> None:
    doc = _motion(camera_video, tmp_path / "o")
    events = [e for e in doc["events"] if e["source"] == "motion"]
    assert len(events) == len(VISITS), events
    for event, visit in zip(events, VISITS, strict=True):
        assert abs(event["start_s"] - visit.enter_s) <= 0.5 and abs(event["end_s"] - visit.leave_s) <= 0.5
        top, bottom = event["bbox"][1], event["bbox"][3]
        assert top <= visit.y * 1000 <= bottom and bottom - top <= 300  # the band the object moved in
    # Nothing during the still parts.
    still = [(0.0, 3.0), (5.0, 8.0), (9.5, 12.0)]
    for e in events:
        for a, b in still:
            overlap = min(e["end_s"], b) - max(e["start_s"], a)
            assert overlap <= 0.5, (e, a, b)
    assert doc["run"]["stages"]["motion"]["moving_camera_scenes_skipped"] == 0
    assert doc["transcript"] == [] and doc["run"]["stages"]["speech"]["status"] == "off"  # surveillance profile


def test_zones_limit_where_motion_counts(camera_video: Path, tmp_path: Path) -> None:
    # Exclude the band of the first visit: only the second one remains.
    doc = _motion(camera_video, tmp_path / "ex", exclude_zones=[(0, 400, 1000, 600)])
    assert [round(e["start_s"]) for e in doc["events"]] == [8]
    # Include only the bottom strip, where nothing moves: no events.
    doc = _motion(camera_video, tmp_path / "in", include_zones=[(0, 850, 1000, 1000)])
    assert doc["events"] == []


def test_moving_camera_does_not_flood_events(shots_video: SampleVideo, tmp_path: Path) -> None:
    doc = _motion(shots_video.path, tmp_path / "o")
    stages = doc["run"]["stages"]["motion"]
    assert stages["moving_camera_scenes_skipped"] >= len(shots_video.cut_times_s) // 2
    assert len(doc["events"]) <= 2


def test_no_audio_track_and_silent_audio_both_pass(tmp_path: Path) -> None:
    mute = write_sample_video(tmp_path / "mute.mp4", shots_s=(2.0, 2.0), audio=False)
    doc = analyze(mute.path, tmp_path / "m", Settings(), AnalyzeOptions.for_profile("lecture", vlm="none"))
    assert doc["transcript"] == []
    assert doc["run"]["stages"]["speech"]["status"] == "skipped: the video has no audio track"

    silent = write_lecture_video(
        tmp_path / "silent.mp4", [Slide("Quiet", ("nothing said",), 4.0)], [], width=640, height=360
    )
    doc = analyze(silent.path, tmp_path / "s", Settings(), AnalyzeOptions.for_profile("lecture", vlm="none"))
    assert doc["transcript"] == [] and doc["run"]["stages"]["speech"]["status"] == "done"
    assert doc["video"]["has_audio"] is True


def test_audio_is_streamed_in_chunks_that_cover_every_sample(lecture: LectureVideo) -> None:
    chunks = list(iter_audio_chunks(lecture.path, chunk_s=30.0, search_s=5.0))
    assert len(chunks) >= 2
    total = sum(c.size for _, c in chunks)
    assert total == pytest.approx(lecture.duration_s * SAMPLE_RATE, abs=SAMPLE_RATE * 0.1)
    position = 0.0
    for offset, samples in chunks:
        assert offset == pytest.approx(position, abs=1e-6)
        assert samples.dtype == np.float32 and samples.size <= (30.0 + 5.0) * SAMPLE_RATE
        position += samples.size / SAMPLE_RATE


def test_profiles_and_switches_on_the_command_line(camera_video: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "analyze",
        str(camera_video),
        "--profile",
        "surveillance",
        "--no-motion",
        "--json",
        "--vlm",
        "none",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    stages = json.loads(proc.stdout)["run"]["stages"]
    assert {k: stages[k]["status"] for k in ("speech", "ocr", "motion")} == {
        "speech": "off",
        "ocr": "off",
        "motion": "off",
    }


def test_words_are_split_into_sentences_at_punctuation_pauses_and_length() -> None:
    from videopipe.perception.asr import Word, sentences

    def w(text: str, start: float) -> Word:
        return Word(text, start, start + 0.3, 0.9)

    words = [w("Hello", 0.0), w("there.", 0.4), w("no", 1.0), w("stop", 1.4), w("after", 3.0), w("pause", 3.4)]
    words += [w(f"w{i}", 4.0 + 0.5 * i) for i in range(40)]  # 20 s without a break
    out = sentences(words)
    # The third runs from 3.0 s to w27's end at 17.8 s: the next word would pass 15 s.
    assert [s.text for s in out[:3]] == [
        "Hello there.",
        "no stop",
        "after pause " + " ".join(f"w{i}" for i in range(28)),
    ]
    assert all(s.end_s - s.start_s <= 15.0 for s in out)
    assert sum(len(s.words) for s in out) == len(words)


@pytest.mark.parametrize("backend", ["tesserocr", "rapidocr"])
def test_ocr_backend_contract(backend: str, shots_video: SampleVideo, tmp_path: Path) -> None:
    """Every installed OCR backend reads slide text and finds none in textures (one suite for all)."""
    from PIL import Image

    from videopipe.perception import OCR_BACKENDS, installed
    from videopipe.perception.ocr import make_reader
    from videopipe.testing.media import render_slide

    if backend not in installed(OCR_BACKENDS):
        pytest.skip(f"{backend} is not installed")
    reader = make_reader(backend)
    for n, slide in enumerate(SLIDES):
        text, confidence = reader.read(Image.fromarray(render_slide(slide, 960, 540, tint=(n * 37) % 60)))
        title = text.splitlines()[0] if text else ""
        assert difflib.SequenceMatcher(None, title.lower(), slide.title.lower()).ratio() >= 0.8, (backend, text)
        assert 0.5 <= confidence <= 1.0
    doc = analyze(
        shots_video.path, tmp_path / "o", Settings(), AnalyzeOptions(vlm="none", asr=False, ocr=False, motion=False)
    )
    for k in doc["keyframes"]:
        with Image.open(tmp_path / "o" / k["image"]) as image:
            text, _ = reader.read(image)
        assert len(text) <= 8, (backend, text)  # textures: nothing, or a stray glyph or two
