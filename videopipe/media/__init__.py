"""Everything that touches the video file itself: probing, the shared low-resolution decode pass, and
full-resolution grabs at chosen times. PyAV (FFmpeg) underneath; nothing here knows about a database or HTTP.
"""

from videopipe.media.decode import AnalysisFrame, iter_analysis_frames
from videopipe.media.grab import GrabbedFrame, grab_frames
from videopipe.media.probe import VideoInfo, probe

__all__ = ["AnalysisFrame", "GrabbedFrame", "VideoInfo", "grab_frames", "iter_analysis_frames", "probe"]
