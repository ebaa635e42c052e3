"""Reading filmmaking language: a shot description becomes camera move drafts.

The words live in ``engine/data/camera_vocabulary.json``; this module only knows how to read
them. A description is split into *steps* (sentences and sequence words such as "then")
and *clauses* (commas and "and"/"while"/"as"). In each clause a *head* ("dolly", "pan",
"rack focus", ...) is read with the direction or focus target that follows it and the
speed and easing words around it. A head counts as camera language when it is
unambiguous, or when its clause is about the camera (the word "camera" or "shot" next to
it, a speed word before it, or a clause made only of camera words), so "Mara tilts her
head" is not read as a tilt. Camera words that cannot be turned into a move are returned
as ``unknown`` and never silently dropped.

:func:`engine.camera.path.parse_shot` is the public entry point; it turns the drafts into a
timed camera path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..storage import read_data

# Categories of phrases, in the order that wins between matches of equal length.
CATEGORIES = ("unsupported", "head", "framing", "angle", "sequence", "easing", "speed", "intensifier", "clause")
# The vocabulary entries whose keys (or items) are phrases to read.
_PHRASE_KEYS = ("heads", "unsupported", "framings", "angles", "sequence_words", "easings", "speeds", "intensifiers",
                "clause_words", "directions_like", "target_prepositions", "target_skip", "camera_subjects",
                "context_words", "fillers", "angle_units")
# Which vocabulary entry fills each phrase table.
_TABLES = {"unsupported": "unsupported", "head": "heads", "framing": "framings", "angle": "angles",
           "sequence": "sequence_words", "easing": "easings", "speed": "speeds", "intensifier": "intensifiers",
           "clause": "clause_words"}
_WORD = re.compile(r"[a-z0-9]+|[.,;:!?]")
_SUFFIXES = (("ies", "y"), ("ied", "y"), ("ying", "y"), ("es", ""), ("s", ""), ("ing", ""), ("ing", "e"),
             ("ed", ""), ("ed", "e"), ("d", ""))


@dataclass(frozen=True)
class Token:
    """One word (its text and reduced form) or one punctuation mark."""

    text: str
    lemma: str

    @property
    def is_punctuation(self) -> bool:
        return not self.text[0].isalnum()


@dataclass
class Item:
    """A recognised phrase (or a plain word) at token positions ``start:end``."""

    category: str  # one of CATEGORIES, "word", "step" or "clause"
    value: Any  # by category: a move head, a direction, a speed entry, ...
    start: int
    end: int
    text: str


@dataclass
class MoveDraft:
    """A move as read from the words, before timing and amounts are worked out."""

    kind: str
    direction: str
    text: str
    position: int
    speed: str = ""
    factor: float = 1.0
    easing: str = ""
    explicit_speed: bool = False
    degrees: float | None = None  # an angle the words give ("orbit 90 degrees")


@dataclass
class HeadRead:
    """What followed a head: the move it names (if complete) or why not."""

    head: str
    spec: dict
    start: int
    end: int
    move: str = ""  # "kind direction"
    explicit: bool = False  # the direction or target was written, not defaulted
    bad: bool = False  # a direction or target was given but not understood
    degrees: float | None = None
    trailing: list[Item] = field(default_factory=list)


@dataclass
class Reading:
    """Everything read from one description."""

    steps: list[list[MoveDraft]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    framing: dict | None = None
    angle: dict | None = None


class Vocabulary:
    """The camera vocabulary, indexed for phrase matching."""

    def __init__(self, data: dict) -> None:
        self.data = data
        self.moves: dict[str, dict] = data["moves"]
        self.heads: dict[str, dict] = data["heads"]
        self.lexicon: set[str] = set()
        self._collect_words([list(data[key]) for key in _PHRASE_KEYS])
        self._collect_words([list(spec.get("directions", {})) for spec in self.heads.values()])
        self._collect_words(list(data["targets"].values()))
        self.tables: dict[str, dict[tuple[str, ...], object]] = {c: {} for c in CATEGORIES}
        for category, key in _TABLES.items():
            entries = list(self.heads) if key == "heads" else data[key]
            pairs = entries.items() if isinstance(entries, dict) else ((phrase, phrase) for phrase in entries)
            for phrase, value in pairs:
                self._add(category, phrase, value)
        self.longest = max(len(key) for table in self.tables.values() for key in table)
        self.targets = {self.lemma(word): target for target, words in data["targets"].items() for word in words}
        self.directions_like = {self.lemma(w) for w in data["directions_like"]}
        self.fillers = {self.lemma(w) for w in data["fillers"]} | self.directions_like
        self.camera_subjects = {self.lemma(w) for w in data["camera_subjects"]}
        self.context_words = {self.lemma(w) for w in data["context_words"]}
        self.target_prepositions = {self.lemma(w) for w in data["target_prepositions"]}
        self.target_skip = {self.lemma(w) for w in data["target_skip"]}
        self.angle_units = {self.lemma(w) for w in data["angle_units"]}

    def _collect_words(self, value: object) -> None:
        if isinstance(value, str):
            self.lexicon.update(_WORD.findall(value.lower().replace("-", " ").replace("_", " ")))
        elif isinstance(value, list):
            for item in value:
                self._collect_words(item)

    def _add(self, category: str, phrase: str, value: object) -> None:
        key = tuple(token.lemma for token in self.tokenize(phrase))
        self.tables[category][key] = value

    def lemma(self, word: str) -> str:
        """The vocabulary form of ``word`` (pans, panning, panned -> pan); unknown words unchanged."""
        if word in self.lexicon or not word.isalpha():
            return word
        for suffix, replacement in _SUFFIXES:
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                stem = word[: -len(suffix)]
                for candidate in (stem + replacement, stem[:-1] if stem[-1:] == stem[-2:-1] else ""):
                    if candidate and candidate in self.lexicon:
                        return candidate
        return word

    def tokenize(self, text: str) -> list[Token]:
        """Lower-cased words and punctuation; hyphens split words, apostrophes are dropped."""
        clean = text.lower().replace("'", "").replace("\u2019", "").replace("-", " ").replace("_", " ")
        return [Token(w, self.lemma(w)) for w in _WORD.findall(clean)]

    def match(self, lemmas: list[str], i: int) -> tuple[str, object, int] | None:
        """The longest phrase starting at ``i``: (category, value, length)."""
        for length in range(min(self.longest, len(lemmas) - i), 0, -1):
            key = tuple(lemmas[i:i + length])
            for category in CATEGORIES:
                if key in self.tables[category]:
                    return category, self.tables[category][key], length
        return None


@lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    """The bundled camera vocabulary (loaded once)."""
    return Vocabulary(read_data("camera_vocabulary.json"))


# --------------------------------------------------------------------------- reading


def read(text: str, vocab: Vocabulary, targets: Mapping[str, str] | None = None) -> Reading:
    """Read ``text`` into steps of move drafts, framing, angle and unknown camera words."""
    tokens = vocab.tokenize(text)
    items = _scan(tokens, vocab, {vocab.lemma(k.lower()): v for k, v in (targets or {}).items()})
    reading = Reading()
    for item in items:
        if item.category == "unsupported":
            reading.unknown.append(item.text)
        elif item.category == "framing":
            reading.framing = dict(item.value)
        elif item.category == "angle":
            reading.angle = dict(item.value)
    for step in _split(items, "step", "sequence"):
        drafts: list[MoveDraft] = []
        camera_seen = False
        for clause in _split(step, "clause"):
            moves = _clause_moves(clause, vocab, camera_seen, reading.unknown)
            if not moves and drafts and _only_modifiers(clause, vocab):
                _attach_modifiers(clause, [(-1, drafts[-1])], vocab)  # "pull back, ease out"
            drafts.extend(moves)
            camera_seen = camera_seen or any(_is_word(i, vocab.camera_subjects) for i in clause)
        if drafts:
            reading.steps.append(drafts)
    reading.unknown.extend(_unknown_camera_verbs(items, vocab))
    return reading


def _scan(tokens: list[Token], vocab: Vocabulary, targets: Mapping[str, str]) -> list[Item]:
    """Phrases and plain words in order; heads are read together with what follows them."""
    lemmas = [t.lemma for t in tokens]
    items: list[Item] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.is_punctuation:
            step = token.text in vocab.data["step_punctuation"]
            items.append(Item("step" if step else "clause", token.text, i, i + 1, token.text))
            i += 1
            continue
        found = vocab.match(lemmas, i)
        if found is None:
            items.append(Item("word", token.lemma, i, i + 1, token.text))
            i += 1
            continue
        category, value, length = found
        if category == "head":
            head = _read_head(str(value), tokens, lemmas, (i, i + length), vocab, targets)
            items.append(Item("head", head, i, head.end, _text(tokens, i, head.end)))
            items.extend(head.trailing)
            i = head.end
            continue
        items.append(Item(category, value, i, i + length, _text(tokens, i, i + length)))
        i += length
    return items


def _read_head(name: str, tokens: list[Token], lemmas: list[str], span: tuple[int, int], vocab: Vocabulary,
               targets: Mapping[str, str]) -> HeadRead:
    """A head and the direction or target after it (a speed adverb may come in between)."""
    spec = vocab.heads[name]
    start, end = span
    head = HeadRead(name, spec, start, end)
    j = end
    found = vocab.match(lemmas, j) if j < len(tokens) else None
    if found and found[0] in ("speed", "easing"):
        head.trailing.append(Item(found[0], found[1], j, j + found[2], _text(tokens, j, j + found[2])))
        j += found[2]
    if "target" in spec:
        j = _read_target(head, tokens, j, vocab, targets)
    else:
        j = _read_degrees(head, lemmas, j, vocab)
        word = lemmas[j] if j < len(tokens) else ""
        if word in spec.get("directions", {}):
            head.move, head.explicit = spec["directions"][word], True
            j += 1
        elif word in vocab.directions_like:
            head.bad = True
            j += 1
        j = _read_degrees(head, lemmas, j, vocab)
    consumed = j > end + sum(t.end - t.start for t in head.trailing)
    if not consumed:
        head.trailing.clear()  # nothing after the head: an adverb there is read on its own
        j = end
    if not head.move and not head.bad and spec.get("default") and spec["needs"] != "direction":
        head.move = spec["default"]
    head.end = j
    return head


def _read_target(head: HeadRead, tokens: list[Token], j: int, vocab: Vocabulary, targets: Mapping[str, str]) -> int:
    """``to the background`` / ``from her to the horizon`` / ``on Mara`` after a focus head."""
    kind = head.spec["target"]
    n = len(tokens)
    if j < n and tokens[j].lemma == "focus":
        j += 1
    if j < n and tokens[j].lemma == "from":
        for k in range(j + 1, min(j + 5, n)):
            if tokens[k].lemma in vocab.target_prepositions:
                j = k
                break
    has_preposition = j < n and tokens[j].lemma in vocab.target_prepositions
    k = j + 1 if has_preposition else j
    while k < n and tokens[k].lemma in vocab.target_skip:
        k += 1
    if k < n and not tokens[k].is_punctuation:
        word = tokens[k].lemma
        target = targets.get(word) or vocab.targets.get(word)
        if target:
            head.move, head.explicit = f"{kind} {target}", True
            return k + 1
        if has_preposition:
            head.bad = True
            return k + 1
    if head.spec["needs"] != "target" and head.spec.get("default"):
        head.move = head.spec["default"]
    return j


def _read_degrees(head: HeadRead, lemmas: list[str], j: int, vocab: Vocabulary) -> int:
    """``90 degrees`` after a head (before or after its direction): an explicit angle."""
    if j + 1 < len(lemmas) and lemmas[j].isdigit() and lemmas[j + 1] in vocab.angle_units:
        head.degrees = float(lemmas[j])
        return j + 2
    return j


def _split(items: list[Item], *separators: str) -> list[list[Item]]:
    groups: list[list[Item]] = [[]]
    for item in items:
        if item.category in separators:
            groups.append([])
        else:
            groups[-1].append(item)
    return [g for g in groups if g]


def _only_modifiers(clause: list[Item], vocab: Vocabulary) -> bool:
    kinds = {i.category for i in clause}
    return bool(kinds & {"speed", "easing"}) and all(
        i.category in ("speed", "easing", "intensifier") or _is_word(i, vocab.fillers) for i in clause)


def _is_word(item: Item, words: set[str]) -> bool:
    return item.category == "word" and item.value in words


def _clause_moves(clause: list[Item], vocab: Vocabulary, camera_seen: bool, unknown: list[str]) -> list[MoveDraft]:
    """The moves of one clause, with their speed and easing words attached."""
    camera_only = all(i.category != "word" or i.value in vocab.fillers or i.value in vocab.targets for i in clause)
    moves: list[tuple[int, MoveDraft]] = []
    for index, item in enumerate(clause):
        if item.category != "head":
            continue
        head: HeadRead = item.value
        before = clause[index - 1] if index else None
        context = (camera_only or before is None  # clause-initial: an instruction ("pan left", "orbit her")
                   or any(_is_word(i, vocab.context_words) for i in clause[max(0, index - 2):index + 2])
                   or (before is not None and before.category in ("speed", "easing", "intensifier")))
        camera = camera_seen or any(_is_word(i, vocab.camera_subjects) for i in clause[:index])
        needs = head.spec["needs"]
        someone_else = (before is not None and before.category == "word" and before.value not in vocab.fillers
                        and before.value not in vocab.camera_subjects)
        if someone_else and needs != "nothing" and not context:
            continue  # "Mara tilts ...": another subject's verb
        accepted = bool(head.move) and not head.bad and (
            needs in ("nothing", "direction", "target")
            or (needs == "context" and (context or head.explicit))
            or (needs == "camera" and camera))
        if accepted:
            kind, direction = head.move.split(" ", 1) if " " in head.move else (head.move, "")
            draft = MoveDraft(kind, direction, item.text, item.start, degrees=head.degrees)
            if head.degrees is not None and not vocab.moves[kind].get("degrees"):
                unknown.append(f"{head.degrees:g} degrees")  # an angle for a move that is not a turn
                draft.degrees = None
            if head.spec.get("speed"):
                _apply_speed(draft, vocab.data["speeds"].get(head.spec["speed"], {}), explicit=True)
            moves.append((index, draft))
        elif head.bad or context or (needs == "camera" and camera):
            unknown.append(item.text)
    _attach_modifiers(clause, moves, vocab)
    return [draft for _, draft in moves]


def _apply_speed(draft: MoveDraft, spec: dict, *, explicit: bool, power: float = 1.0) -> None:
    if not spec:
        return
    draft.speed = spec["speed"]
    draft.factor = float(spec["factor"]) ** power
    draft.explicit_speed = explicit


def _attach_modifiers(clause: list[Item], moves: list[tuple[int, MoveDraft]], vocab: Vocabulary) -> None:
    """Speed and easing words go to the move right after them, else the one before, else the next."""
    if not moves:
        return
    power = 1.0
    for index, item in enumerate(clause):
        if item.category == "intensifier":
            power = float(item.value)
            continue
        if item.category not in ("speed", "easing"):
            power = 1.0
            continue
        after = [(i, d) for i, d in moves if i > index]
        previous = [d for i, d in moves if i < index]
        right_after = bool(after) and after[0][0] == index + 1
        adjective = item.category == "speed" and item.value.get("form") == "adjective"
        if right_after or (adjective and after) or not previous:
            target = after[0][1]
        else:
            target = previous[-1]
        if item.category == "speed":
            _apply_speed(target, item.value, explicit=True, power=power)
        else:
            target.easing = str(item.value)
        power = 1.0


def _unknown_camera_verbs(items: list[Item], vocab: Vocabulary) -> list[str]:
    """"the camera floats ...": a verb after "camera" that is no camera move we know."""
    found = []
    suffixes = tuple(vocab.data["verb_suffixes"])
    for index, item in enumerate(items[:-1]):
        if not _is_word(item, vocab.camera_subjects) or item.value == "we":
            continue
        k = index + 1
        while k < len(items) and items[k].category in ("speed", "intensifier", "easing"):
            k += 1
        if k >= len(items):
            continue
        nxt = items[k]
        if (nxt.category == "word" and nxt.value not in vocab.fillers and nxt.value not in vocab.targets
                and len(nxt.text) > 3 and nxt.text.endswith(suffixes)):
            found.append(f"{item.text} {nxt.text}")
    return found


def _text(tokens: list[Token], start: int, end: int) -> str:
    return " ".join(t.text for t in tokens[start:end])
