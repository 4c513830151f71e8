"""Odd but possible pictures through the vision pipeline, with the shipped models: no
pixels at all, a colour picture with an alpha channel. Each gives an answer (faces or
none), never a traceback from deep inside the detector."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_app.vision.blazeface import BlazeFace
from edge_app.vision.detector import BlazeFaceDetector, FaceDetector


@pytest.fixture(scope="module")
def net() -> BlazeFace:
    return BlazeFace()



@pytest.mark.parametrize("shape", [(0, 0), (0, 40), (40, 0), (0, 0, 3)])
def test_a_picture_without_pixels_has_no_face_with_either_detector(shape):
    """Haar said "no face" of an empty picture; BlazeFace raised ZeroDivisionError (or
    OpenCV's "!ssize.empty()") from its letterbox."""
    empty = np.zeros(shape, np.uint8)
    assert BlazeFaceDetector(face_check=False).detect(empty) == []
    assert FaceDetector(profile=False).detect(empty) == []


def test_the_network_reads_a_picture_with_alpha_as_its_colours(net, grace):
    """BGRA (a screenshot, a PNG with transparency read by OpenCV) could not be broadcast
    into the network's three-channel input."""
    bgra = cv2.cvtColor(grace, cv2.COLOR_BGR2BGRA)
    found, expected = net.detect(bgra), net.detect(grace)
    assert len(found) == len(expected) == 1
    assert np.allclose(found[0].box, expected[0].box) and found[0].score == pytest.approx(expected[0].score)
