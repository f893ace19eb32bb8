"""Parsing model answers: realistic Qwen3-VL outputs (written here), and the garbage a broken model emits."""

from __future__ import annotations

import pytest

from videopipe.vlm.parsing import (
    Chapter,
    Event,
    OutputParseError,
    clamp_and_merge_chapters,
    clamp_and_merge_events,
    parse_answer,
    parse_range,
    parse_time,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12.5", 12.5), ("12.5s", 12.5), ("12.5 seconds", 12.5), ("<12.5 seconds>", 12.5), (12, 12.0),
        ("00:23.00", 23.0), ("01:05.50", 65.5), ("75:12.25", 4512.25), ("1:02:03", 3723.0),
        ("01:02:03.250", 3723.25), ("00:00:07,5", 7.5),
    ],
)  # fmt: skip
def test_time_formats(text: object, seconds: float) -> None:
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "soon", "-3", "1:99:00", None, True, [1], float("nan"), "12:ab"])
def test_unreadable_times_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_time(bad)


def test_ranges() -> None:
    assert parse_range("00:23.00 - 00:48.00") == (23.0, 48.0)
    assert parse_range("12.5s to 20s") == (12.5, 20.0)
    assert parse_range("1:00:00–1:00:30") == (3600.0, 3630.0)


QWEN_STYLE = """Here is the analysis of the video:
```json
{
  "chapters": [
    {"start": "00:00.00", "end": "00:12.40", "title": "Opening", "summary": "The speaker introduces entropy."},
    {"start": "00:12.40", "end": "01:30.00", "title": "Definition", "summary": "Entropy is defined."},
  ],
  "events": [
    {"start": "00:05.20", "end": "00:07.80", "label": "slide change", "description": "A new slide appears."},
    {"start": "00:40.00", "end": "00:44.00", "label": "person enters", "description": "Someone walks in",
     "bbox_2d": [120, 300, 480, 990]}
  ],
  "captions": {"S1": "A title slide.", "S2": "A man at a whiteboard."},
  "tags": ["Lecture", "entropy", "lecture"]
}
```
Let me know if you need anything else."""


def test_fenced_json_with_trailing_commas() -> None:
    answer = parse_answer(QWEN_STYLE)
    assert [(c.start_s, c.end_s, c.title) for c in answer.chapters] == [
        (0.0, 12.4, "Opening"),
        (12.4, 90.0, "Definition"),
    ]
    assert answer.events[1].bbox == [120.0, 300.0, 480.0, 990.0]
    assert answer.events[0].bbox is None
    assert answer.captions == {"S1": "A title slide.", "S2": "A man at a whiteboard."}
    assert answer.tags == ["lecture", "entropy"]
    assert answer.dropped == 0


def test_cookbook_dense_caption_dict() -> None:
    answer = parse_answer('{"00:23.00 - 00:48.00": "A red truck stops at the gate.", "01:02.5 - 01:10": "It leaves."}')
    assert [(e.start_s, e.end_s) for e in answer.events] == [(23.0, 48.0), (62.5, 70.0)]
    assert answer.events[0].description == "A red truck stops at the gate."


def test_seconds_and_markers_as_times_and_a_bare_list() -> None:
    answer = parse_answer('[{"start": 3, "end": "<7.5 seconds>", "label": "wave"}, {"start": "8s", "end": 9.25}]')
    assert [(e.start_s, e.end_s) for e in answer.events] == [(3.0, 7.5), (8.0, 9.25)]


def test_unreadable_items_are_dropped_and_counted() -> None:
    answer = parse_answer(
        '{"chapters": [{"start": "soon", "end": "later", "title": "x"}, '
        '{"start": "00:01.00", "end": "00:02.00", "title": "ok"}, "junk"]}'
    )
    assert [c.title for c in answer.chapters] == ["ok"]
    assert answer.dropped == 2


@pytest.mark.parametrize("garbage", [
    "", "I cannot help with that.", "\ufffd\ufffd driAors\ufffdUof z([king de", "{not json at all", '{"answer": 42}',
    '{"chapters": [{"start": "x", "end": "y"}]}',
])  # fmt: skip
def test_garbage_raises_a_parse_error_not_a_crash(garbage: str) -> None:
    with pytest.raises(OutputParseError):
        parse_answer(garbage)


def test_chapters_are_clamped_sorted_and_made_consecutive() -> None:
    raw = [
        Chapter(start="00:50.00", end="02:30.00", title="C"),  # runs past the end of a 100 s video
        Chapter(start="00:00.00", end="00:30.00", title="A"),
        Chapter(start="00:20.00", end="00:55.00", title="B"),  # overlaps A and C
        Chapter(start="00:22.00", end="00:25.00", title="inside B"),
    ]  # type: ignore[call-arg]
    out = clamp_and_merge_chapters(raw, 0.0, 100.0)
    assert [(c.title, c.start_s, c.end_s) for c in out] == [("A", 0.0, 20.0), ("B", 20.0, 50.0), ("C", 50.0, 100.0)]


def test_overlapping_events_with_the_same_label_merge() -> None:
    raw = [
        Event(start=10, end=14, label="Person walking"),
        Event(start=12, end=18, label="person walking"),
        Event(start=13, end=15, label="car"),
        Event(start=55, end=75, label="gate opens"),
    ]  # type: ignore[call-arg]
    out = clamp_and_merge_events(raw, 0.0, 60.0)
    assert [(e.label, e.start_s, e.end_s) for e in out] == [
        ("Person walking", 10.0, 18.0),
        ("car", 13.0, 15.0),
        ("gate opens", 55.0, 60.0),
    ]


def test_bbox_outside_the_grid_is_clamped_and_bad_shape_dropped() -> None:
    answer = parse_answer(
        '{"events": [{"start": 1, "end": 2, "label": "a", "bbox_2d": [1200, -5, 100, 50]},'
        '{"start": 1, "end": 2, "label": "b", "bbox_2d": [1, 2]}]}'
    )
    assert answer.events[0].bbox == [100.0, 0.0, 1000.0, 50.0]
    assert [e.label for e in answer.events] == ["a"] and answer.dropped == 1
