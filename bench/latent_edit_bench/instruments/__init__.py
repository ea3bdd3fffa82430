"""Measuring networks ("instruments"): landmarks, emotions, attributes, identity, perceptual features."""
