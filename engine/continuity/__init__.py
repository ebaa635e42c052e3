"""Continuity you can see: colour, likeness, reference flash and drift across a clip or a sequence.

``check.analyse`` measures clips against their references and returns a ``report.Report``
(JSON, text, headline figures); ``picture.draw`` turns it into a picture; ``anchor.anchor_clip``
moves a clip's colours onto an anchor. Thresholds are data in
``engine/data/continuity_thresholds.json``.
"""
