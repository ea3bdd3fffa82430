"""Metric plugins (top-k change ratio, gesture, emotion disturbance, landmarks, identity)."""
