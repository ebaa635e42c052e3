"""The one walk of a workflow graph: every node after the nodes it reads from.

The runner orders execution with it and finds cycles with it; ``scripts/build_workflows.py``
numbers the UI nodes with it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

Node = TypeVar("Node", bound=Hashable)


def dependency_order(starts: Iterable[Node], sources: Callable[[Node], Iterable[Node]],
                     on_cycle: Callable[[list[Node]], None] | None = None) -> list[Node]:
    """``starts`` and every node they read from (``sources``), each once, each after its sources.

    Depth first, in the order given. A source that is still being walked closes a cycle:
    ``on_cycle`` receives it as a path from that node back to itself, and the walk goes on.
    """
    order: list[Node] = []
    state: dict[Node, bool] = {}  # False: being walked, True: done
    stack: list[Node] = []

    def visit(node: Node) -> None:
        state[node] = False
        stack.append(node)
        for source in sources(node):
            if state.get(source) is False:
                if on_cycle is not None:
                    on_cycle(stack[stack.index(source):] + [source])
            elif source not in state:
                visit(source)
        stack.pop()
        state[node] = True
        order.append(node)

    for start in starts:
        if start not in state:
            visit(start)
    return order
