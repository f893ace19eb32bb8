"""Time formats shown beside seconds everywhere (API, analysis.json, CLI): ``hh:mm:ss.mmm``."""

from __future__ import annotations


def fmt_time(t_s: float) -> str:
    ms = round(t_s * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"
