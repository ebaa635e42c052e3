"""The work a node does end to end, tying the engine's domain to the models: the sampler's
generation job and reference-set preparation (which runs background removal)."""
