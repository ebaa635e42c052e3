"""The one workflow-graph walk: dependency order, each node once, cycles reported and survived."""

from __future__ import annotations

from refvideo.headless.graph import dependency_order


def test_each_node_comes_after_the_nodes_it_reads_from_once():
    reads = {"encode": ["sampler"], "sampler": ["refs", "model"], "refs": [], "model": [], "unused": ["model"]}
    order = dependency_order(["encode"], lambda n: reads[n])
    assert order == ["refs", "model", "sampler", "encode"]
    everything = dependency_order(sorted(reads), lambda n: reads[n])
    assert sorted(everything) == sorted(reads) and everything.index("model") < everything.index("unused")


def test_a_cycle_is_reported_as_a_path_back_to_its_start():
    reads = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}
    cycles: list[list[str]] = []
    order = dependency_order(["d"], lambda n: reads[n], on_cycle=cycles.append)
    assert cycles == [["a", "b", "c", "a"]] and order == ["c", "b", "a", "d"]
