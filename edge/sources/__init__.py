"""Frame sources of the device daemon (camera, video file, RTSP stream) and their event sinks."""

from edgecascade.edge.sources.camera import CameraSource
from edgecascade.edge.sources.events import CameraEvent, DetectionEvent, Event, EventSink, MemoryEventSink
from edgecascade.edge.sources.frames import ClassifierFrames, DetectorFrames, FrameAnswerer
from edgecascade.edge.sources.wiring import build, build_camera_source, build_event_sink

__all__ = [
    "CameraEvent",
    "CameraSource",
    "ClassifierFrames",
    "DetectionEvent",
    "DetectorFrames",
    "Event",
    "FrameAnswerer",
    "EventSink",
    "MemoryEventSink",
    "build",
    "build_camera_source",
    "build_event_sink",
]
