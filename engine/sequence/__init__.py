"""Sequences in the domain: the storyboard file (``storyboard``) and what the editor receives
(``handoff``: the joined sequence, an OpenTimelineIO timeline, a contact sheet). Rendering the
shots is work for jobs/sequence."""
