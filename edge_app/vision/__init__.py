"""Perception: frame sources, the demo scene, face detection and tracking, the emotion classifier, still-image analysis."""
