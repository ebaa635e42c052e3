"""A storyboard's shots as work: ``plan`` resolves and prices every shot, ``shot`` is one shot's
self-contained job, ``render`` drives them (resume, credits, order, hand-off) and ``ray_fanout``
runs them on Ray workers. The storyboard file and the editor hand-off live in engine/sequence."""
