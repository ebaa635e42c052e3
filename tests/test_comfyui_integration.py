"""The pack inside a real ComfyUI v0.8.0: it loads without errors and every node is listed.

Runs when COMFYUI_DIR and COMFYUI_PY are set (see docs/development.md); skips with the
reason otherwise.
"""

from __future__ import annotations

import pytest

import comfyui_server
from refvideo import NODE_CLASS_MAPPINGS

pytestmark = [pytest.mark.comfyui]
_reason = comfyui_server.missing_reason()
if _reason:
    pytestmark.append(pytest.mark.skip(reason=_reason))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = comfyui_server.start(tmp_path_factory.mktemp("comfyui_base"))
    yield started
    started.stop()


def test_pack_loads_without_import_errors(server):
    log = server.log()
    assert "RefVideo: could not load" not in log
    import_section = log.split("Import times for custom nodes", 1)[-1]
    failed = [line for line in import_section.splitlines() if "IMPORT FAILED" in line]
    assert not failed, failed
    assert "custom_nodes/refvideo" in import_section


def test_every_node_is_in_object_info(server):
    status, info = server.get("/object_info")
    assert status == 200
    missing = sorted(set(NODE_CLASS_MAPPINGS) - set(info))
    assert not missing, f"not registered in ComfyUI: {missing}"
    for node_id, cls in NODE_CLASS_MAPPINGS.items():
        entry = info[node_id]
        assert entry["category"] == cls.CATEGORY
        assert list(entry["output"]) == list(cls.RETURN_TYPES)
        expected = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            assert set(entry["input"].get(section, {})) == set(expected.get(section, {})), (node_id, section)
