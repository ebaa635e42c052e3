"""Build the shipped workflows from one Python description each (run: python scripts/build_workflows.py).

Each description below names the nodes, their values and links, the notes and the groups of one
workflow. From it this script writes

- ``workflows/<stem>.json``: the UI format, as ComfyUI's frontend 1.35 saves a graph (shown in the
  template browser);
- ``workflows/api/<stem>.json``: the API twin, with every widget value explicit (what
  ``refvideo run`` and ``POST /prompt`` take);
- ``workflows/<stem>.jpg`` (the template thumbnail) and ``docs/images/<stem>_strip.jpg`` (the
  gallery's frame strip), both taken from the files the API workflow writes when it runs
  in-process as shipped, in a temporary ``REFVIDEO_HOME``.

How the frontend saves a node (what the UI files follow):

- ``inputs`` lists the node's sockets in declaration order (required, then optional; optional
  ones with ``shape: 7``) plus the widgets that are fed by a link (with ``widget: {name}``);
  unlinked widgets are not listed. A link's target slot is the input's index in that list.
- ``widgets_values`` holds the widgets in declaration order (``forceInput`` inputs are sockets,
  not widgets); an INT named ``seed`` (or declared with ``control_after_generate``) is followed
  by its control value (``fixed`` here, so a saved shot re-renders the same); a node whose
  required combo has ``image_upload`` gets the upload button last, which saves the value
  ``image``. A widget fed by a link keeps its own (default) value.

``--check`` compares the JSON files with the descriptions and writes nothing; ``--no-images``
writes only the JSON files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACK_ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = PACK_ROOT / "workflows"
API_DIR = WORKFLOWS / "api"
DOC_IMAGES = PACK_ROOT / "docs" / "images"

THUMBNAIL_SIZE = (512, 288)
STRIP_FRAME = (192, 108)
STRIP_FRAMES = 6
JPEG_QUALITY = 82
CONTROL_VALUE = "fixed"
UPLOAD_VALUE = "image"
NODE_SIZES = {
    "LoadReferenceSet": (430, 760),
    "StyleSkill": (400, 430),
    "RefVideoModelLoader": (430, 420),
    "CreditMeter": (400, 310),
    "RefVideoSampler": (440, 560),
    "VideoEncode": (420, 560),
    "RefVideoAudio": (400, 380),
    "JoinClips": (380, 330),
    "RefVideoStoryboard": (520, 720),
    "ContinuityReport": (420, 420),
}
GROUP_COLOURS = {"references": "#8A8", "model": "#88A", "shot": "#b58b2a", "sequence": "#a1309b"}

MARA, HARBOUR, LANTERN = "samples/character_mara.png", "samples/environment_harbour.png", "samples/prop_lantern.png"
SAMPLE_REFERENCES = {
    "image_1": MARA, "role_1": "character", "label_1": "Mara, red coat", "background_1": "flat background",
    "image_2": HARBOUR, "role_2": "environment", "label_2": "harbour at dusk", "background_2": "off",
    "image_3": LANTERN, "role_3": "prop", "label_3": "brass lantern", "background_3": "flat background",
}
REFERENCES_GROUP = "Mara (character) · the harbour (scene) · the lantern (prop)"


# --------------------------------------------------------------------------- descriptions


@dataclass(frozen=True)
class Out:
    """A link source: output ``name`` of node ``node``."""

    node: int
    name: str


@dataclass
class Node:
    id: int
    cls: str
    title: str
    pos: tuple[int, int]
    values: dict[str, Any] = field(default_factory=dict)  # widget values and links (Out); others: defaults
    size: tuple[int, int] | None = None


@dataclass
class Note:
    id: int
    title: str
    text: str
    pos: tuple[int, int]
    size: tuple[int, int]


@dataclass
class Group:
    title: str
    members: tuple[int, ...]
    colour: str


@dataclass
class Workflow:
    stem: str
    nodes: list[Node]
    notes: list[Note]
    groups: list[Group]
    thumbnail: int  # the output node whose file gives the thumbnail
    strip: tuple[int, ...]  # the output nodes whose files give the strip's rows
    tile: bool = False  # a sheet of stills: tile them instead of taking the middle frame


def on_a_gpu(extra: str = "") -> str:
    """The note paragraph every workflow carries: which real model to choose, and where it goes."""
    return ("ON A GPU: download a Wan 2.1 VACE model folder into ComfyUI/models/diffusers/<folder> (e.g. "
            "ComfyUI/models/diffusers/Wan2.1-VACE-14B-diffusers), refresh the page (R) and choose the folder in "
            "the loader's model combo. Wan2.1-VACE-1.3B-diffusers renders 480p drafts: set the sampler's "
            "resolution to 480p (about 16 GB on disk; 4 GB of VRAM with memory_mode group_offload, 19 GB with "
            "none). Wan2.1-VACE-14B-diffusers renders 720p (about 47 GB on disk; 18 GB of VRAM with "
            "group_offload, 60 GB with none). memory_mode auto picks the fastest mode that fits. Download "
            "commands and memory tables: docs/models.md." + (f"\n\n{extra}" if extra else ""))


CREDITS = ("CREDITS: previz is free. A Wan clip costs 840 credits at 720p (x0.5 at 480p, x2 at 1080p, x1.25 with "
           "audio) and a new account starts at 0: top up with `refvideo credits topup 5000 --comfyui-dir "
           "/path/to/ComfyUI`. The Credit Meter refuses a plan the balance does not cover before anything "
           "renders; the sampler is charged only when the clip exists.")
HEADLESS = "Headless: refvideo run workflows/api/{stem}.json (add --server http://127.0.0.1:8188 to use this ComfyUI)."


def references(node_id: int, pos: tuple[int, int], title: str, **values: Any) -> Node:
    return Node(node_id, "LoadReferenceSet", title, pos, {**SAMPLE_REFERENCES, **values})


def previz_loader(node_id: int, pos: tuple[int, int], **values: Any) -> Node:
    return Node(node_id, "RefVideoModelLoader", "Model: previz (CPU animatic; a Wan2.1-VACE folder on a GPU)", pos,
                {"model": "previz", **values})


def encode(node_id: int, pos: tuple[int, int], title: str, sampler: int | None, prefix: str, **values: Any) -> Node:
    links = {"frames": Out(sampler, "frames"), "fps": Out(sampler, "fps"),
             "generation_info": Out(sampler, "generation_info")} if sampler is not None else {}
    return Node(node_id, "VideoEncode", title, pos, {**links, "filename_prefix": prefix, **values})


def metered_shot(prompt: str, seed: int, meter_title: str, *, resolution: str = "720p", audio: bool = False,
                 **loader: Any) -> list[Node]:
    """Nodes 1-4 of a one-shot workflow: the samples, previz, a Credit Meter for one clip, the sampler."""
    return [
        references(1, (40, 400), "References: Mara, the harbour, the lantern"),
        previz_loader(2, (40, 1260), **loader),
        Node(3, "CreditMeter", meter_title, (520, 1260),
             {"model": Out(2, "model"), "resolution": resolution, "duration": 5.0, "audio": audio, "clips": 1}),
        Node(4, "RefVideoSampler", f"Shot: {resolution}, 16:9, 5 s", (520, 400),
             {"model": Out(2, "model"), "references": Out(1, "references"), "budget": Out(3, "budget"),
              "prompt": prompt, "seed": seed, "resolution": resolution, "aspect": "16:9", "duration": 5.0}),
    ]


def shot_groups(title: str, members: tuple[int, ...]) -> list[Group]:
    return [Group(REFERENCES_GROUP, (1,), GROUP_COLOURS["references"]),
            Group("Model and credits", (2, 3), GROUP_COLOURS["model"]),
            Group(title, members, GROUP_COLOURS["shot"])]


def demo_shot() -> Workflow:
    """What `refvideo demo` runs: the bundled samples, previz, 720p 16:9 5 s, MP4."""
    prompt = ("Mara waits on the harbour at dusk beside her brass lantern as the street lamps come on. "
              "Slow dolly in, then rack focus to the background.")
    return Workflow(
        "demo_shot",
        nodes=[references(1, (40, 400), "Sample references: Mara, the harbour, the lantern"),
               previz_loader(2, (40, 1260)),
               Node(3, "RefVideoSampler", "Shot: 720p, 16:9, 5 s", (520, 400),
                    {"model": Out(2, "model"), "references": Out(1, "references"), "prompt": prompt, "seed": 7,
                     "resolution": "720p", "aspect": "16:9", "duration": 5.0}),
               encode(4, (1010, 400), "Write the MP4", 3, "RefVideo/demo_shot")],
        notes=[Note(5, "About this workflow", "\n\n".join([
            "DEMO SHOT: what `refvideo demo` renders. Previz, no weights needed.",
            "LoadReferenceSet reads the three bundled samples (a character, the place, a prop). The "
            "flat-background key cuts Mara and the lantern out of their plain backdrops; its report shows how "
            "each image fares against the reference best practices.",
            "RefVideoSampler reads the camera from the prompt: dolly in/out, push in, pull back, truck/track "
            "left/right, pan, tilt, crane up/down, zoom, arc/orbit, rack focus to background/foreground/subject, "
            "handheld, static, whip pan; speed words (slow, gentle, steady, fast, sudden) and 'then' for "
            "sequences. Camera words it does not understand are listed in generation_info.",
            "VideoEncode writes output/RefVideo/demo_shot_00001.mp4 with the generation info inside "
            "(refvideo info FILE prints it).",
            on_a_gpu(), "Same graph from a terminal: refvideo demo"]), (1010, 1040), (420, 780))],
        groups=[Group(REFERENCES_GROUP, (1,), GROUP_COLOURS["references"]),
                Group("Model", (2,), GROUP_COLOURS["model"]),
                Group("The shot", (3, 4), GROUP_COLOURS["shot"])],
        thumbnail=4, strip=(4,))


def single_shot() -> Workflow:
    prompt = ("Mara lifts the brass lantern and turns to face the camera as the harbour lamps come on. "
              "Slow push in, then rack focus to the background.")
    return Workflow(
        "single_shot",
        nodes=[*metered_shot(prompt, 42, "Credits: this clip, checked before it renders"),
               encode(5, (1010, 400), "Write the MP4", 4, "RefVideo/single_shot")],
        notes=[Note(6, "About this workflow", "\n\n".join([
            "SINGLE SHOT: 1-3 references + a shot description -> a 16:9 720p clip of 5 s, written as MP4. Runs "
            "on a fresh install with previz (a CPU animatic, no weights).",
            "References: up to three images, one subject each, with a role (character, environment, prop, "
            "style) and a label the prompt can use. Set image_2 or image_3 to 'none' to use fewer. Upload your "
            "own with the image_1 button; the report in the node says how each image fares against the "
            "reference best practices.",
            "The prompt holds the action and the camera in filmmaking language (dolly in, pan left, rack focus "
            "to the background, then ...). The Credit Meter prices the clip and its budget goes into the "
            "sampler, which reserves the credits before any model work.",
            on_a_gpu(), CREDITS, HEADLESS.format(stem="single_shot")]), (1010, 1040), (420, 780))],
        groups=shot_groups("The shot", (4, 5)),
        thumbnail=5, strip=(5,))


SHOTS = (
    ("wide", "Wide establishing shot of the harbour at dusk: Mara walks along the quay carrying the brass lantern. "
             "Slow truck right."),
    ("medium", "Medium shot: Mara stops at the water's edge and raises the lantern. Slow push in."),
    ("close-up", "Close-up on Mara's face in the lantern light as she looks out to sea. Slow dolly in, then rack "
                 "focus to the background."),
)
CONTINUE_FRAMES = 9  # 4k+1: kept frames fill whole latent frames


def continuity_three_shots() -> Workflow:
    nodes = [
        references(1, (40, 400), "Reference set: Mara, the harbour, the lantern (all three shots)"),
        Node(2, "StyleSkill", "Style skill: the look of the scene (all three shots)", (40, 1260),
             {"style": "blue hour over the harbour, warm lantern light, 35mm film look, soft haze, gentle contrast",
              "negative": "oversaturated, cartoon, text, watermark", "camera": "slow push in"}),
        previz_loader(3, (520, 400)),
        Node(4, "CreditMeter", "Credits: the whole sequence (3 clips), checked up front", (520, 920),
             {"model": Out(3, "model"), "resolution": "720p", "duration": 5.0, "clips": 3}),
    ]
    groups = [Group(REFERENCES_GROUP, (1,), GROUP_COLOURS["references"]),
              Group("The look of the scene", (2,), GROUP_COLOURS["references"]),
              Group("Model and credits", (3, 4), GROUP_COLOURS["model"])]
    join: dict[str, Any] = {"transition": "crossfade", "crossfade_frames": CONTINUE_FRAMES}
    for i, (framing, prompt) in enumerate(SHOTS):
        sampler, writer, y = 5 + 2 * i, 6 + 2 * i, 400 + 680 * i
        values: dict[str, Any] = {
            "model": Out(3, "model"), "references": Out(1, "references"), "style": Out(2, "style"),
            "budget": Out(4, "budget"), "prompt": prompt, "seed": 101 + i, "resolution": "720p", "aspect": "16:9",
            "duration": 5.0, "continue_frames": CONTINUE_FRAMES}
        if i:
            values["first_frames"] = Out(sampler - 2, "frames")
        continues = f", continues from shot {i}" if i else ""
        nodes.append(Node(sampler, "RefVideoSampler", f"Shot {i + 1}: {framing}{continues}", (1000, y), values))
        nodes.append(encode(writer, (1490, y), f"Shot {i + 1} clip", sampler,
                            f"RefVideo/continuity/shot{i + 1}_{framing}"))
        groups.append(Group(f"Shot {i + 1}: {framing}", (sampler, writer), GROUP_COLOURS["shot"]))
        join[f"clip_{i + 1}"] = Out(sampler, "frames")
        join[f"fps_{i + 1}"] = Out(sampler, "fps")
    nodes += [Node(11, "JoinClips", "Join the three shots", (1980, 1080), join),
              Node(12, "VideoEncode", "Sequence file", (2410, 1080),
                   {"frames": Out(11, "frames"), "fps": Out(11, "fps"),
                    "filename_prefix": "RefVideo/continuity/sequence"}),
              Node(14, "ContinuityReport", "Continuity report: colour, flash and drift of the three shots",
                   (2410, 1500), {"references": Out(1, "references"), "encoder": "none",
                                  **{f"frames_{i + 1}": Out(5 + 2 * i, "frames") for i in range(len(SHOTS))}})]
    groups.append(Group("The sequence", (11, 12, 14), GROUP_COLOURS["sequence"]))
    text = "\n\n".join([
        "CONTINUITY: three shots of one scene (wide, medium, close-up) from ONE reference set and ONE style skill, "
        "so every shot keeps the same character, place, prop and look. Each shot is its own clip (its own Video "
        "Encode); Join Clips makes one sequence file. Runs on a fresh install with previz.",
        f"Shots 2 and 3 continue from the last {CONTINUE_FRAMES} frames of the shot before (first_frames + "
        f"continue_frames); Join Clips crossfades over the same {CONTINUE_FRAMES} frames, so the joins are seamless.",
        "The Continuity Report checks the shots against the references and each other: colour distance, exposure "
        "and white balance, references flashing into the opening frames, drift across shots, each finding with a "
        "fix (ColorAnchor corrects colour). Choose an encoder from models/clip_vision/ (e.g. clip_vision_h) for "
        "likeness; its picture output can go to a Preview Image node.",
        "The Credit Meter prices all three clips (clips = 3) and refuses the sequence up front if the balance does "
        "not cover it; each sampler then reserves its own clip.",
        "To keep the look for the next scene, type a name in the style skill's save_as; it then appears in "
        "saved_skill. Save the references the same way (reference_sheet workflow).",
        on_a_gpu(), CREDITS, HEADLESS.format(stem="continuity_three_shots")])
    return Workflow("continuity_three_shots", nodes, [Note(13, "About this workflow", text, (1980, 400), (840, 600))],
                    groups, thumbnail=12, strip=(12,))


def shot_with_audio() -> Workflow:
    prompt = "Mara walks toward the camera along the quay, the lantern swinging in her hand. Slow pull back."
    return Workflow(
        "shot_with_audio",
        nodes=[
            *metered_shot(prompt, 7, "Credits: one clip with audio", audio=True),
            Node(5, "RefVideoAudio", "Audio: tiny-random = PLACEHOLDER noise (choose stable-audio-open-1.0)",
                 (1010, 400),
                 {"model": "tiny-random",
                  "prompt": "harbour at dusk: small waves on the quay, distant gulls, footsteps",
                  "frames": Out(4, "frames"), "fps": Out(4, "fps"), "seed": 5,
                  "generation_info": Out(4, "generation_info")}),
            encode(6, (1460, 400), "Write the MP4 with its sound", 4, "RefVideo/shot_with_audio",
                   audio=Out(5, "audio")),
        ],
        notes=[Note(7, "About this workflow", "\n\n".join([
            "SHOT WITH AI AUDIO: the single shot plus a sound track made for it and muxed into the MP4 (AAC).",
            "Audio for Clip runs on 'tiny-random' here: a PLACEHOLDER that makes noise of the right length, so the "
            "workflow runs on a fresh install. For real sound put Stable Audio Open (diffusers format, "
            "stabilityai/stable-audio-open-1.0, about 5 GB, its own community licence) into "
            "ComfyUI/models/diffusers/stable-audio-open-1.0 and choose it in the model combo. An empty audio "
            "prompt uses the shot's prompt and style.",
            "The Credit Meter has audio on, so the plan is priced with the audio multiplier.",
            on_a_gpu(), CREDITS, HEADLESS.format(stem="shot_with_audio")]), (1460, 1040), (420, 860))],
        groups=shot_groups("The shot and its sound", (4, 5, 6)),
        thumbnail=6, strip=(6,))


def shot_1080p() -> Workflow:
    prompt = "Mara stands on the harbour plaza as the street lamps come on. Slow crane up, then pan right."
    return Workflow(
        "shot_1080p",
        nodes=[*metered_shot(prompt, 1080, "Credits: one 1080p clip", resolution="1080p", hd_strategy="auto"),
               encode(5, (1010, 400), "Write the 1080p MP4", 4, "RefVideo/shot_1080p", crf=18)],
        notes=[Note(6, "About this workflow", "\n\n".join([
            "1080p SHOT: a 1920x1080 16:9 clip of 5 s. 1080 is not a multiple of 16, so a diffusion model either "
            "renders 1920x1088 and crops 4 rows top and bottom, or renders 720p and upscales; the loader's "
            "hd_strategy chooses (auto: 720p upscaled for every Wan model, which were not trained above 720p; "
            "crop renders 1920x1088 natively on request) and the generation info says which was done. Previz "
            "draws 1080p directly.",
            on_a_gpu("Wan renders 720p and upscales by default; hd_strategy crop asks for a native 1920x1088 render "
                     "(2.3x the tokens of 720p). Turn on vae_tiling if memory is short."),
            CREDITS, HEADLESS.format(stem="shot_1080p")]), (1010, 1040), (420, 780))],
        groups=shot_groups("The shot", (4, 5)),
        thumbnail=5, strip=(5,))


SHEET_NAME = "Mara at the harbour"


def reference_sheet() -> Workflow:
    return Workflow(
        "reference_sheet",
        nodes=[
            references(1, (40, 400), f"Reference sheet: prepare, check and save as '{SHEET_NAME}'",
                       rembg_model="u2netp", strict=False, save_as=SHEET_NAME, overwrite=True),
            Node(2, "VideoEncode", "The prepared references as PNGs", (520, 400),
                 {"frames": Out(1, "images"), "fps": 1.0,
                  "filename_prefix": "RefVideo/reference_sheet/mara_at_the_harbour",
                  "format": "png-sequence"}),
        ],
        notes=[Note(3, "About this workflow", "\n\n".join([
            "REFERENCE SHEET: prepare the references of a character and its scene once, check them, and save them "
            f"as a named set ('{SHEET_NAME}') that every shot reuses: choose it in LoadReferenceSet's saved_set "
            "(refresh the page after saving).",
            "Background removal: 'flat background' (the default here) keys out a plain, evenly lit backdrop and "
            "needs no model. 'rembg' runs a segmentation model for busy backgrounds: pip install \"rembg[cpu]\" "
            "and put its model file in ComfyUI/models/rembg/ (e.g. ComfyUI/models/rembg/u2netp.onnx, 4.6 MB; or "
            "in the folder U2NET_HOME names). RefVideo never downloads it; docs/references.md lists the files.",
            "Quality report: the node shows, per image, what to fix (blur, noise, JPEG artefacts, resolution, busy "
            "background, a cropped subject, several subjects). Turn on strict to refuse the set until it is clean.",
            "overwrite is ON here because this is the workflow you iterate on: each run replaces the sheet with what "
            "you prepared last (saves are atomic, and re-saving the same content changes nothing). Once shots "
            "have been rendered from the sheet, turn overwrite off, or save under a new name ('... v2'), so a "
            "finished sheet cannot change under them.",
            "Video Encode writes the prepared references (over white where the background was removed) as PNGs "
            "to look at.",
            on_a_gpu("The shots that use this sheet choose the model; the sheet itself needs no GPU."),
            HEADLESS.format(stem="reference_sheet")]), (1000, 400), (480, 1100))],
        groups=[Group(f"Reference sheet: {REFERENCES_GROUP}", (1,), GROUP_COLOURS["references"]),
                Group("Look at the result", (2,), GROUP_COLOURS["shot"])],
        thumbnail=2, strip=(2,), tile=True)


def previz_to_diffusion() -> Workflow:
    prompt = ("Mara turns from the water to face the camera, the brass lantern raised in her hand. Slow dolly in, "
              "then rack focus to the background.")
    shot = {"references": Out(1, "references"), "prompt": prompt, "seed": 7, "aspect": "16:9", "duration": 5.0}
    return Workflow(
        "previz_to_diffusion",
        nodes=[
            references(1, (40, 400), "References: Mara, the harbour, the lantern"),
            Node(2, "RefVideoModelLoader", "Previz, timed for the diffusion model (match_frames_of)", (520, 400),
                 {"model": "previz", "match_frames_of": "tiny-random"}),
            Node(3, "RefVideoSampler", "1. The animatic: check blocking, action and camera first", (1000, 400),
                 {"model": Out(2, "model"), **shot, "resolution": "480p"}),
            encode(4, (1490, 400), "Write the animatic", 3, "RefVideo/previz_to_diffusion/animatic"),
            Node(9, "RefVideoModelLoader", "Previz as a depth video (render: depth)", (520, 740),
                 {"model": "previz", "match_frames_of": "tiny-random", "render": "depth"}),
            Node(10, "RefVideoSampler", "2. The same shot as a depth control video", (1000, 740),
                 {"model": Out(9, "model"), **shot, "resolution": "480p"}),
            Node(5, "RefVideoModelLoader", "Diffusion model: tiny-random = PLACEHOLDER (choose Wan2.1-VACE)",
                 (520, 1080), {"model": "tiny-random"}),
            Node(6, "RefVideoSampler", "3. Diffusion steered by the depth video", (1000, 1080),
                 {"model": Out(5, "model"), **shot, "control_video": Out(10, "frames"), "resolution": "144p"}),
            encode(7, (1490, 1080), "Write the diffusion clip", 6, "RefVideo/previz_to_diffusion/diffusion"),
        ],
        notes=[Note(8, "About this workflow", "\n\n".join([
            "PREVIZ, THEN DIFFUSION: render the shot as a previz animatic first (seconds on a CPU), check the "
            "blocking, the action and the camera, then render it with a diffusion model that follows the same "
            "shot, frame for frame, through a depth control video. Keep the prompts the same.",
            "The second previz loader has render = depth: its sampler's frames are a depth video (near = bright), "
            "the kind of control Wan VACE was trained on, so the action is steered rather than copied from the "
            "animatic's pixels. render = layout gives flat-coloured silhouettes instead.",
            "The previz loaders' match_frames_of must name the diffusion model, so the animatic has the model's "
            "fps and frame count (Wan: 16 fps, 81 frames for 5 s). On a fresh install the diffusion model is "
            "'tiny-random': a PLACEHOLDER with random weights whose output is noise, at the 144p it supports, so "
            "the workflow runs anywhere.",
            on_a_gpu("Here: choose the Wan folder in the diffusion loader AND in both previz loaders' "
                     "match_frames_of, and set the samplers to the model's resolution (1.3B: 480p, 14B: 720p). "
                     "Add a Credit Meter (model from the diffusion loader) to check the price before rendering."),
            HEADLESS.format(stem="previz_to_diffusion")]), (1980, 400), (520, 1000))],
        groups=[Group(REFERENCES_GROUP, (1,), GROUP_COLOURS["references"]),
                Group("1. Previz first", (2, 3, 4, 9, 10), GROUP_COLOURS["model"]),
                Group("2. Then diffusion, steered by the depth video", (5, 6, 7), GROUP_COLOURS["shot"])],
        thumbnail=4, strip=(4, 7))


def storyboard_sequence() -> Workflow:
    """A whole scene from one storyboard (the node's own example): priced up front, rendered shot by shot."""
    from refvideo.nodes.storyboard import EXAMPLE

    return Workflow(
        "storyboard_sequence",
        nodes=[references(1, (40, 400), "References: Mara, the harbour, the lantern (every shot)"),
               Node(2, "StyleSkill", "Style skill: the look of the scene (every shot)", (40, 1260),
                    {"style": "blue hour over the harbour, warm lantern light, 35mm film look, soft haze",
                     "negative": "oversaturated, cartoon, text, watermark", "camera": "slow push in"}),
               previz_loader(3, (520, 400)),
               Node(4, "CreditMeter", "Credits: the account and a cap for the whole sequence", (520, 920),
                    {"model": Out(3, "model"), "resolution": "720p", "duration": 5.0, "clips": 3}),
               Node(5, "RefVideoStoryboard", "Storyboard: three shots, continued and crossfaded", (1000, 400),
                    {"model": Out(3, "model"), "references": Out(1, "references"), "style": Out(2, "style"),
                     "budget": Out(4, "budget"), "storyboard": EXAMPLE,
                     "output_folder": "RefVideo/sequences"})],
        notes=[Note(6, "About this workflow", "\n\n".join([
            "STORYBOARD: a whole scene from one shot list. The storyboard (YAML) names each shot, its prompt and "
            "seed, which shot it continues from, and how the shots join. The sockets (model, references, style, "
            "budget) replace the storyboard's defaults; a shot may still set its own value.",
            "Every shot is checked and the whole sequence priced before anything renders. Each shot's credits are "
            "reserved before it starts and charged once its file exists. Queue again after changing one shot: "
            "the others are kept (their files record their settings) and not charged again.",
            "Files in output/RefVideo/sequences/harbour_scene/: wide.mp4, medium.mp4, close.mp4, the joined "
            "harbour_scene.mp4, an OpenTimelineIO timeline harbour_scene.otio for an editing application, and "
            "harbour_scene_contact.png (one frame per shot).",
            on_a_gpu(), CREDITS, HEADLESS.format(stem="storyboard_sequence"),
            "Or the storyboard file itself: refvideo sequence render workflows/storyboards/harbour_scene.yaml "
            "(add --ray to spread the shots over a Ray cluster)."]), (1540, 400), (460, 900))],
        groups=[Group(REFERENCES_GROUP, (1, 2), GROUP_COLOURS["references"]),
                Group("Model and credits", (3, 4), GROUP_COLOURS["model"]),
                Group("The scene", (5,), GROUP_COLOURS["sequence"])],
        thumbnail=5, strip=(5,))


DESCRIPTIONS = (demo_shot, single_shot, continuity_three_shots, shot_with_audio, shot_1080p, reference_sheet,
                previz_to_diffusion, storyboard_sequence)


# --------------------------------------------------------------------------- the two formats


def _classes() -> dict[str, type]:
    from refvideo.nodes import NODE_CLASS_MAPPINGS

    return NODE_CLASS_MAPPINGS


def _specs(cls: type) -> dict:
    from refvideo.headless.schema import input_specs

    return input_specs(cls)


def _is_socket(spec: Any) -> bool:
    return not spec.is_widget or bool(spec.options.get("forceInput"))


def _has_control(spec: Any) -> bool:
    if "control_after_generate" in spec.options:
        return bool(spec.options["control_after_generate"])
    return spec.type == "INT" and spec.name in ("seed", "noise_seed")


def _has_upload(cls: type) -> bool:
    return any(spec.type == "COMBO" and spec.required and spec.options.get("image_upload")
               for spec in _specs(cls).values())


def _check_values(node: Node, specs: dict) -> None:
    unknown = sorted(set(node.values) - set(specs))
    if unknown:
        raise ValueError(f"node {node.id} ({node.cls}) has no input(s) {unknown}")


def api_workflow(workflow: Workflow, classes: dict[str, type]) -> dict[str, dict]:
    """The API format: every widget value explicit, links as ``[source id, output slot]``."""
    api: dict[str, dict] = {}
    for node in sorted(workflow.nodes, key=lambda n: n.id):
        specs = _specs(classes[node.cls])
        _check_values(node, specs)
        inputs: dict[str, Any] = {}
        for name, spec in specs.items():
            value = node.values.get(name)
            if isinstance(value, Out):
                source = next(n for n in workflow.nodes if n.id == value.node)
                inputs[name] = [str(value.node), list(classes[source.cls].RETURN_NAMES).index(value.name)]
            elif name in node.values:
                inputs[name] = value
            elif not _is_socket(spec):
                inputs[name] = spec.default
        api[str(node.id)] = {"class_type": node.cls, "_meta": {"title": node.title}, "inputs": inputs}
    return api


def _execution_order(workflow: Workflow) -> list[int]:
    from refvideo.headless.graph import dependency_order

    by_id = {n.id: n for n in workflow.nodes}
    return dependency_order(sorted(by_id), lambda node_id: [v.node for v in by_id[node_id].values.values()
                                                             if isinstance(v, Out)])


def _bounding(nodes: Iterable[Node]) -> list[int]:
    boxes = [(n.pos[0], n.pos[1], n.pos[0] + _size(n)[0], n.pos[1] + _size(n)[1]) for n in nodes]
    x0, y0 = min(b[0] for b in boxes) - 20, min(b[1] for b in boxes) - 30 - 60  # node title bar, group title
    x1, y1 = max(b[2] for b in boxes) + 20, max(b[3] for b in boxes) + 20
    return [x0, y0, x1 - x0, y1 - y0]


def _size(node: Node) -> tuple[int, int]:
    return node.size or NODE_SIZES[node.cls]


def ui_workflow(workflow: Workflow, classes: dict[str, type]) -> dict[str, Any]:
    """The UI format as frontend 1.35 saves it (see the module docstring)."""
    order = {node_id: i for i, node_id in enumerate(_execution_order(workflow))}
    by_id = {n.id: n for n in workflow.nodes}
    links: list[list] = []
    outputs: dict[tuple[int, int], list[int]] = {}
    nodes: list[dict] = []
    for node in sorted(workflow.nodes, key=lambda n: n.id):
        cls = classes[node.cls]
        specs = _specs(cls)
        _check_values(node, specs)
        inputs, widgets = [], []
        for name, spec in specs.items():
            value = node.values.get(name)
            linked = isinstance(value, Out)
            if _is_socket(spec) or linked:
                entry: dict[str, Any] = {"name": name, "type": spec.type}
                if not _is_socket(spec):
                    entry["widget"] = {"name": name}
                entry["link"] = None
                if linked:
                    source_cls = classes[by_id[value.node].cls]
                    slot = list(source_cls.RETURN_NAMES).index(value.name)
                    link_id = len(links) + 1
                    links.append([link_id, value.node, slot, node.id, len(inputs), source_cls.RETURN_TYPES[slot]])
                    outputs.setdefault((value.node, slot), []).append(link_id)
                    entry["link"] = link_id
                if not spec.required:
                    entry["shape"] = 7
                inputs.append(entry)
            if not _is_socket(spec):
                widgets.append(spec.default if linked or name not in node.values else value)
                if _has_control(spec):
                    widgets.append(CONTROL_VALUE)
        if _has_upload(cls):
            widgets.append(UPLOAD_VALUE)
        nodes.append({"id": node.id, "type": node.cls, "pos": list(node.pos), "size": list(_size(node)),
                      "flags": {}, "order": order[node.id], "mode": 0, "inputs": inputs, "outputs": [],
                      "title": node.title, "properties": {"Node name for S&R": node.cls}, "widgets_values": widgets})
    for entry, node in zip(nodes, sorted(workflow.nodes, key=lambda n: n.id)):
        cls = classes[node.cls]
        entry["outputs"] = [{"name": name, "type": kind, "links": outputs.get((node.id, slot))}
                            for slot, (name, kind) in enumerate(zip(cls.RETURN_NAMES, cls.RETURN_TYPES))]
    for i, note in enumerate(workflow.notes):
        nodes.append({"id": note.id, "type": "Note", "pos": list(note.pos), "size": list(note.size), "flags": {},
                      "order": len(workflow.nodes) + i, "mode": 0, "inputs": [], "outputs": [], "title": note.title,
                      "properties": {}, "widgets_values": [note.text], "color": "#432", "bgcolor": "#653"})
    groups = [{"id": i, "title": g.title, "bounding": _bounding(by_id[m] for m in g.members), "color": g.colour,
               "font_size": 24, "flags": {}} for i, g in enumerate(workflow.groups, 1)]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"refvideo/workflows/{workflow.stem}")),
        "revision": 0,
        "last_node_id": max(n["id"] for n in nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": groups,
        "config": {},
        "extra": {"ds": {"scale": 0.6, "offset": [60, 40]}},
        "version": 0.4,
    }


def dumps(value: Any, indent: int = 0) -> str:
    """JSON with two-space indents, lists of plain values on one line (positions, links, links' ids)."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(f"{inner}{dumps(v, indent + 1)}" for v in value) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False)


def rendered_files(workflow: Workflow, classes: dict[str, type]) -> dict[Path, str]:
    """Every JSON file of ``workflow``: path -> text."""
    return {WORKFLOWS / f"{workflow.stem}.json": dumps(ui_workflow(workflow, classes)) + "\n",
            API_DIR / f"{workflow.stem}.json": dumps(api_workflow(workflow, classes)) + "\n"}


# --------------------------------------------------------------------------- thumbnails and strips


def _decode(path: Path) -> list[Any]:
    """The frames of a written file (a video, or one image of a PNG sequence) as PIL images."""
    from PIL import Image

    if path.suffix.lower() == ".png":
        with Image.open(path) as image:
            return [image.convert("RGB")]
    import av

    with av.open(str(path)) as container:
        return [frame.to_image() for frame in container.decode(video=0)]


def _fit(image: Any, size: tuple[int, int]) -> Any:
    """``image`` scaled to cover ``size`` and centre-cropped to it (16:9 stays 16:9)."""
    from PIL import ImageOps

    return ImageOps.fit(image, size, method=3)  # Image.BICUBIC


def _tile(images: list[Any], size: tuple[int, int]) -> Any:
    """Stills side by side on white, each fitted whole into an equal share of ``size``."""
    from PIL import Image, ImageOps

    sheet = Image.new("RGB", size, (255, 255, 255))
    cell = (size[0] // len(images), size[1])
    for i, image in enumerate(images):
        sheet.paste(ImageOps.pad(image, cell, color=(255, 255, 255)), (i * cell[0], 0))
    return sheet


def thumbnail(frames: list[Any], tile: bool) -> Any:
    """The template thumbnail: the middle frame (or the stills tiled), 16:9, small."""
    return _tile(frames, THUMBNAIL_SIZE) if tile else _fit(frames[len(frames) // 2], THUMBNAIL_SIZE)


def strip(rows: list[list[Any]], tile: bool) -> Any:
    """The gallery strip: one row of evenly spaced frames per output (or each output's stills tiled)."""
    from PIL import Image

    width, height = STRIP_FRAME[0] * STRIP_FRAMES, STRIP_FRAME[1] * (2 if tile else 1)
    sheet = Image.new("RGB", (width, height * len(rows)), (255, 255, 255))
    for r, frames in enumerate(rows):
        if tile:
            sheet.paste(_tile(frames, (width, height)), (0, r * height))
            continue
        picks = [frames[round(i * (len(frames) - 1) / (STRIP_FRAMES - 1))] for i in range(STRIP_FRAMES)]
        for c, frame in enumerate(picks):
            sheet.paste(_fit(frame, STRIP_FRAME), (c * STRIP_FRAME[0], r * height))
    return sheet


def render_images(workflow: Workflow, classes: dict[str, type]) -> dict[Path, Any]:
    """Run the API workflow in-process as shipped; return the thumbnail and the strip as PIL images."""
    from refvideo.headless.runner import execute

    result = execute(api_workflow(workflow, classes), classes)
    outputs = {int(node): [frame for path in paths for frame in _decode(path)] for node, paths in result.files.items()}
    return {WORKFLOWS / f"{workflow.stem}.jpg": thumbnail(outputs[workflow.thumbnail], workflow.tile),
            DOC_IMAGES / f"{workflow.stem}_strip.jpg": strip([outputs[n] for n in workflow.strip], workflow.tile)}


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the shipped workflows (UI + API), thumbnails and strips.")
    parser.add_argument("--check", action="store_true", help="only compare the JSON files with the descriptions")
    parser.add_argument("--no-images", action="store_true", help="write the JSON files only")
    parser.add_argument("stems", nargs="*", help="only these workflows (default: all)")
    args = parser.parse_args(argv)
    home = tempfile.TemporaryDirectory(prefix="refvideo_build_")
    os.environ["REFVIDEO_HOME"] = home.name  # a fresh install: no saved sets, no models, an empty ledger
    os.environ.pop("REFVIDEO_MODELS", None)
    classes = _classes()
    chosen = [d() for d in DESCRIPTIONS if not args.stems or d.__name__ in args.stems]
    stale = []
    for workflow in chosen:
        for path, text in rendered_files(workflow, classes).items():
            current = path.read_text(encoding="utf-8") if path.is_file() else None
            if args.check:
                if current != text:
                    stale.append(path)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if current != text:
                path.write_text(text, encoding="utf-8")
                print(f"wrote {path.relative_to(PACK_ROOT)}")
        if args.check or args.no_images:
            continue
        for path, image in render_images(workflow, classes).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path, quality=JPEG_QUALITY, optimize=True)
            print(f"wrote {path.relative_to(PACK_ROOT)} ({path.stat().st_size / 1024:.1f} KB)")
    home.cleanup()
    for path in stale:
        print(f"out of date: {path.relative_to(PACK_ROOT)} (run python scripts/build_workflows.py)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
