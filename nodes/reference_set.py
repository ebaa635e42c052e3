"""LoadReferenceSet: 1-3 reference images with roles and labels, background removal and a quality report."""

from __future__ import annotations

from typing import Any

from ..engine.frames import to_mask, to_tensor
from ..engine.library import name_verdict
from ..engine.references.images import NONE, list_image_names
from ..engine.references.library import KIND as SET_KIND
from ..engine.references.library import list_sets
from ..engine.references.reference import ROLES
from ..jobs.reference_prep import (
    AUTO,
    BACKGROUND_MODES,
    ReferenceInput,
    inputs_fingerprint,
    preview_batch,
    reference_set,
)
from ..models.background_removal import model_names
from .common import CATEGORY, REFSET, with_ui

SLOTS = (1, 2, 3)
DEFAULT_ROLES = {1: "character", 2: "environment", 3: "prop"}
# ComfyUI's frontend gives one upload button per node, to its first image_upload combo
UPLOAD = {1: {"image_upload": True}}
UPLOAD_HINT = {False: "The upload button puts a new file into the input folder.",
               True: "Upload with the button of image_1 (or a Load Image node); 'none' leaves this slot empty."}


def _image_choices(names: list[str], optional: bool) -> list[str]:
    return [NONE, *names] if optional or not names else names


class LoadReferenceSet:
    """Builds the REFVIDEO_REFSET every backend reads, and shows how good the references are."""

    CATEGORY = CATEGORY
    FUNCTION = "load"
    OUTPUT_NODE = True
    RETURN_TYPES = (REFSET, "IMAGE", "MASK", "STRING")
    RETURN_NAMES = ("references", "images", "masks", "report")
    OUTPUT_TOOLTIPS = (
        "The reference set (images, roles, labels, mattes, content hashes) for RefVideoSampler.",
        "The prepared references, each over white where its matte says background (for preview).",
        "The mattes, 1 = subject.",
        "The quality report: one line per finding with its fix.",
    )
    DESCRIPTION = ("1-3 reference images (character, environment, prop, style) with labels. Optionally removes "
                   "the background (flat-background key or rembg), checks each image against the best practices "
                   "(sharp, clean, uncompressed, full subject, one subject, plain background) and saves or loads "
                   "the set by name for continuity across shots.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        required: dict[str, Any] = {}
        optional: dict[str, Any] = {}
        names = list_image_names()  # one walk of the input folder per schema request
        for i in SLOTS:
            choices = _image_choices(names, optional=i > 1)
            required[f"image_{i}"] = (choices, {
                **UPLOAD.get(i, {}), "default": NONE if i > 1 else choices[0],
                "tooltip": f"Reference image {i}: a file from ComfyUI's input folder or a bundled sample "
                           "(samples/...). " + UPLOAD_HINT[i > 1]})
            required[f"role_{i}"] = (list(ROLES), {
                "default": DEFAULT_ROLES[i],
                "tooltip": "What this reference is: character (a person or creature), environment (the place), "
                           "prop (an object) or style (the look; not pasted into the video)."})
            required[f"label_{i}"] = ("STRING", {
                "default": "", "tooltip": "A short description the prompt can refer to, e.g. 'Mara, red coat'."})
        for i in SLOTS:
            optional[f"image_in_{i}"] = ("IMAGE", {
                "tooltip": f"An image from any node for slot {i}; when connected it wins over image_{i} "
                           "(the first frame of a batch is used)."})
            optional[f"background_{i}"] = (list(BACKGROUND_MODES), {
                "default": AUTO,
                "tooltip": "Background removal for this reference. auto: a character or prop is cut out (its PNG "
                           "transparency, else rembg when installed, else the flat key on a plain backdrop, else "
                           "kept with a warning); an environment or style is used whole. off (keeps a PNG's "
                           "transparency), flat background (keys out a solid backdrop colour; no model needed) or "
                           "rembg (a segmentation model)."})
        optional["rembg_model"] = (model_names(), {
            "default": model_names()[0],
            "tooltip": "The rembg model for 'rembg' background removal. Its .onnx file goes into ComfyUI's "
                       "models/rembg folder (or U2NET_HOME); RefVideo never downloads it."})
        optional["strict"] = ("BOOLEAN", {
            "default": False, "tooltip": "Treat quality warnings as errors: the set is refused until they are fixed."})
        optional["saved_set"] = ([NONE, *list_sets()], {
            "default": NONE,
            "tooltip": "Load a saved reference set by name instead of the images above ('none' uses the images)."})
        optional["save_as"] = ("STRING", {
            "default": "", "tooltip": "Save this set under a name for reuse across shots (empty: do not save)."})
        optional["overwrite"] = ("BOOLEAN", {
            "default": False, "tooltip": "Allow save_as to replace a saved set with other content."})
        return {"required": required, "optional": optional}

    @classmethod
    def VALIDATE_INPUTS(cls, save_as: str = "") -> bool | str:
        return name_verdict(save_as, kind=SET_KIND)

    @classmethod
    def IS_CHANGED(cls, **inputs: Any) -> str:
        names = [inputs.get(f"image_{i}") or NONE for i in SLOTS]
        return inputs_fingerprint([str(n) for n in names], str(inputs.get("saved_set") or NONE))

    def load(self, image_1: str, role_1: str, label_1: str, image_2: str = NONE, role_2: str = "environment",
             label_2: str = "", image_3: str = NONE, role_3: str = "prop", label_3: str = "",
             image_in_1: Any = None, image_in_2: Any = None, image_in_3: Any = None,
             background_1: str = AUTO, background_2: str = AUTO, background_3: str = AUTO,
             rembg_model: str = "u2netp", strict: bool = False, saved_set: str = NONE, save_as: str = "",
             overwrite: bool = False) -> dict:
        slots = [ReferenceInput(1, image_1, image_in_1, role_1, label_1, background_1),
                 ReferenceInput(2, image_2, image_in_2, role_2, label_2, background_2),
                 ReferenceInput(3, image_3, image_in_3, role_3, label_3, background_3)]
        prepared = reference_set(slots, rembg_model=rembg_model, strict=strict, saved_set=saved_set,
                                 save_as=save_as, overwrite=overwrite)
        images, masks = preview_batch(prepared.references)
        result = (prepared.references, to_tensor(images), to_mask(masks), prepared.report)
        return with_ui(result, prepared.report)


NODES = {"LoadReferenceSet": (LoadReferenceSet, "Load Reference Set (RefVideo)")}
