"""Where the layers meet, values have real types: the sampler job, the render request, the model
handle, the backend and the budget. A seam typed ``Any`` again (alone or in a union) fails here."""

from __future__ import annotations

import ast
import dataclasses
import inspect

import numpy as np
import pytest

from refvideo.engine.credits import budget
from refvideo.jobs import generation
from refvideo.models import backend, family, registry

# The checked job and the calls that carry it to the model and the ledger.
SEAM_CLASSES = [generation.Job, backend.RenderRequest, backend.RenderResult, registry.ModelHandle,
                family.PipelineFamily]
SEAM_FUNCTIONS = [generation.prepare, generation.run, generation.check_model, generation.check_budget,
                  generation.plan_for, generation.sampling, generation.parse_camera, generation.plan_memory,
                  generation._reserve, generation._commit, generation._render, generation._release,
                  backend.VideoBackend.render, registry.ModelHandle.backend, registry.resolve,
                  family.ChosenModel.spec.fget, budget.CreditBudget.reserve, budget.CreditHold.commit,
                  budget.CreditHold.release, budget.Budget.reserve]


def typed_any(annotation: object) -> bool:
    """True when an annotation is ``Any``, or a union (``X | Any``, ``Optional[Any]``) with ``Any`` in it.

    Containers of ``Any`` (``dict[str, Any]``: a JSON object) are allowed.
    """
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    tree = ast.parse(str(text), mode="eval").body

    def members(node: ast.expr) -> list[ast.expr]:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return members(node.left) + members(node.right)
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", "") in ("Optional", "Union"):
            inner = node.slice
            return [m for e in (inner.elts if isinstance(inner, ast.Tuple) else [inner]) for m in members(e)]
        return [node]

    return any(isinstance(m, ast.Name) and m.id == "Any" or
               isinstance(m, ast.Attribute) and m.attr == "Any" for m in members(tree))


@pytest.mark.parametrize("cls", SEAM_CLASSES, ids=lambda c: c.__qualname__)
def test_seam_classes_have_no_field_typed_any(cls):
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    assert fields
    assert [name for name, kind in fields.items() if typed_any(kind)] == []


@pytest.mark.parametrize("function", SEAM_FUNCTIONS, ids=lambda f: f.__qualname__)
def test_seam_functions_have_no_parameter_or_result_typed_any(function):
    annotations = inspect.get_annotations(function)
    parameters = [p for p in inspect.signature(function).parameters if p not in ("self", "cls")]
    assert set(parameters) <= set(annotations), f"untyped parameters: {set(parameters) - set(annotations)}"
    assert "return" in annotations
    assert [name for name, kind in annotations.items() if typed_any(kind)] == []


@pytest.mark.parametrize("annotation, flagged", [
    ("Any", True), ("int | Any", True), ("Optional[Any]", True), ("typing.Any", True), ("Union[str, Any]", True),
    ("dict[str, Any]", False), ("ModelHandle", False), ("CreditBudget | None", False), ("object", False),
])
def test_the_any_finder(annotation, flagged):
    assert typed_any(annotation) is flagged


def test_the_job_carries_typed_values_end_to_end():
    """A prepared job holds the real types (not merely annotated ones)."""
    from refvideo.engine.camera.path import ShotCamera
    from refvideo.engine.credits.ledger import Reservation
    from refvideo.engine.memory_plan import MemoryDecision
    from refvideo.engine.references.reference import Reference, ReferenceSet
    from refvideo.models.spec import ModelSpec

    image = np.full((48, 40, 3), 0.5, np.float32)
    refs = ReferenceSet((Reference(image, np.ones((48, 40), np.float32), "character", "Mara"),))
    job = generation.prepare(generation.SamplerInputs(model="previz", references=refs, prompt="slow dolly in",
                                                      resolution="144p"))
    assert isinstance(job.handle, registry.ModelHandle) and isinstance(job.spec, ModelSpec)
    assert isinstance(job.camera, ShotCamera) and isinstance(job.memory, MemoryDecision)
    assert isinstance(job.handle.backend(), backend.VideoBackend) and job.budget is None
    assert issubclass(budget.Budget, budget.CreditBudget) and issubclass(Reservation, budget.CreditHold)
