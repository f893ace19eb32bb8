"""How the tests and benchmarks score recognised text against the truth: one edit distance for words (WER) and
characters (CER)."""

from __future__ import annotations

import re
from collections.abc import Sequence


def edit_distance(reference: Sequence[object], hypothesis: Sequence[object]) -> int:
    """Substitutions + deletions + insertions turning `reference` into `hypothesis` (Levenshtein)."""
    row = list(range(len(hypothesis) + 1))
    for i in range(1, len(reference) + 1):
        diagonal, row[0] = row[0], i
        for j in range(1, len(hypothesis) + 1):
            same = reference[i - 1] == hypothesis[j - 1]
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (not same))
    return row[len(hypothesis)]


def normalize(text: str) -> list[str]:
    """Words for scoring: lower case, punctuation and dashes dropped (an apostrophe inside a word kept)."""
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / words in `reference`."""
    ref = normalize(reference)
    return edit_distance(ref, normalize(hypothesis)) / max(1, len(ref))


def cer(truth: str, text: str, ignore_case: bool = False) -> float:
    """Character error rate of `truth` against the best-matching line of `text` (edit distance / length), spaces
    collapsed; 1.0 when `text` has no line."""
    if ignore_case:
        truth, text = truth.lower(), text.lower()
    t = " ".join(truth.split())
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return min((edit_distance(t, line) / max(1, len(t)) for line in lines), default=1.0)
