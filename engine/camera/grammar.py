"""Reading filmmaking language: a shot description becomes camera move and action drafts.

The words live in ``engine/data/camera_vocabulary.json``; this module only knows how to read
them. A description is split into *steps* (sentences and sequence words such as "then")
and *clauses* (commas and "and"/"while"/"as"). In each clause a *head* ("dolly", "pan",
"rack focus", ...) is read with the direction or focus target that follows it and the
speed and easing words around it. A head counts as camera language when it is
unambiguous, or when its clause is about the camera (the word "camera" or "shot" next to
it, a speed word before it, or a clause made only of camera words), so "Mara tilts her
head" is not read as a tilt. Camera words that cannot be turned into a move are returned
as ``unknown`` and never silently dropped.

The same reader reads the action (the vocabulary's ``actions`` section): in each clause a
*actor* (a reference's label, or she/he/the character for the subject), an action *verb*
(enter, exit, walk, run, turn, stop, lift, carry) and its places ("from the left",
"to the background", "towards the camera"), and *environment* changes (a noun such as
"lamps", "night", "rain" with a change such as "come on", "falls", "starts"). Action
words that cannot be drawn are returned as ``action_unknown``.

:func:`engine.camera.path.parse_shot` is the public entry point; it turns the drafts into a
timed camera path and timed actions on one timeline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar, cast

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
V = TypeVar("V")
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


@dataclass(frozen=True)
class CastMember:
    """A reference the text may name: its label and role."""

    label: str
    role: str


@dataclass
class ActionDraft:
    """An action or environment change as read from the words, before timing."""

    kind: str  # enter, exit, walk, turn, stop, lift, carry, or "environment"
    actor: str = ""  # a reference label; "" = the subject (the first character)
    target: str = ""  # walk/enter/exit/carry: a place; turn: camera, away, around, left, right
    origin: str = ""  # a place the action starts from ("from the left"); turn: "away" when turning from something
    prop: str = ""  # lift/carry: the prop's label ("" = the first prop)
    channel: str = ""  # environment: lights, night, rain or fog
    level: float = 0.0  # environment: the value the channel goes to (0..1)
    state: bool = False  # environment: holds for the whole shot ("in the rain"), not a change
    pace: str = "walk"  # walk or run
    speed: str = ""
    factor: float = 1.0
    text: str = ""
    position: int = 0


@dataclass
class Step:
    """The camera moves and actions of one step; ``tied`` when a sequence word ("then") opened it."""

    moves: list[MoveDraft] = field(default_factory=list)
    actions: list[ActionDraft] = field(default_factory=list)
    tied: bool = False


@dataclass
class Reading:
    """Everything read from one description."""

    steps: list[Step] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    framing: dict | None = None
    angle: dict | None = None
    action_unknown: list[str] = field(default_factory=list)

    @property
    def has_moves(self) -> bool:
        return any(step.moves for step in self.steps)


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
        self._index_actions(data["actions"])

    def _index_actions(self, acts: dict) -> None:
        """Phrase tables of the action vocabulary (verbs, places, environment nouns and changes)."""
        environment = acts["environment"]
        lists = ("origin_words", "destination_words", "argument_skip", "subject_words", "prop_words", "possessives",
                 "changes_before_noun")
        self._collect_words([list(acts[k]) for k in ("verbs", "places", "turn_targets")] + [acts[k] for k in lists])
        for entry in environment.values():
            self._collect_words([entry["nouns"], list(entry["changes"])])
        self.actions = acts
        self.verbs = {self._key(p): dict(spec) for p, spec in acts["verbs"].items()}
        self.env_nouns = {self._key(n): name for name, entry in environment.items() for n in entry["nouns"]}
        self.env_changes = {name: {self._key(c): float(v) for c, v in entry["changes"].items()}
                            for name, entry in environment.items()}
        self.changes_before_noun = {self._key(c) for c in acts["changes_before_noun"]}
        self.action_words = {k: {self.lemma(w) for w in acts[k]} for k in lists[:-1]}
        self.places = {self.lemma(w): p for w, p in acts["places"].items()}
        self.turn_targets = {self.lemma(w): p for w, p in acts["turn_targets"].items()}

    def _key(self, phrase: str) -> tuple[str, ...]:
        return tuple(token.lemma for token in self.tokenize(phrase))

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


def read(text: str, vocab: Vocabulary, targets: Mapping[str, str] | None = None,
         cast: Mapping[str, CastMember] | None = None) -> Reading:
    """Read ``text`` into steps of move and action drafts, framing, angle and unknown words.

    ``cast`` maps words (reduced forms) to the references they name, for the action.
    """
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
    actions = ActionReader(tokens, vocab, {vocab.lemma(k.lower()): v for k, v in (cast or {}).items()},
                           reading.action_unknown)
    for tied, step in _steps(items):
        drafts: list[MoveDraft] = []
        acts: list[ActionDraft] = []
        camera_seen = False
        for clause in _split(step, "clause"):
            moves = _clause_moves(clause, vocab, camera_seen, reading.unknown)
            if not moves and drafts and _only_modifiers(clause, vocab):
                _attach_modifiers(clause, [(-1, drafts[-1])], vocab)  # "pull back, ease out"
            drafts.extend(moves)
            acts.extend(actions.clause(clause, {d.position for d in moves}))
            camera_seen = camera_seen or any(_is_word(i, vocab.camera_subjects) for i in clause)
        if drafts or acts:
            reading.steps.append(Step(drafts, acts, tied))
    reading.unknown.extend(_unknown_camera_verbs(items, vocab))
    return reading


def _steps(items: list[Item]) -> list[tuple[bool, list[Item]]]:
    """Steps split at sentence ends and sequence words; True for a step a sequence word opened."""
    groups: list[tuple[bool, list[Item]]] = []
    current: list[Item] = []
    tied = False
    for item in items:
        if item.category in ("step", "sequence"):
            if current:
                groups.append((tied, current))
                current, tied = [], False
            tied = tied or item.category == "sequence"
        else:
            current.append(item)
    if current:
        groups.append((tied, current))
    return groups


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


# --------------------------------------------------------------------------- action


class ActionReader:
    """Reads the action and environment changes of each clause, remembering who was named last."""

    def __init__(self, tokens: list[Token], vocab: Vocabulary, cast: Mapping[str, CastMember],
                 unknown: list[str]) -> None:
        self.tokens = tokens
        self.vocab = vocab
        self.cast = cast
        self.unknown = unknown
        self.actor: CastMember | None = None  # the last named character (she, he, ...)
        self.last: CastMember | None = None  # the last actor of an action
        self.prop: CastMember | None = None  # the last named prop (it)

    def clause(self, clause: list[Item], camera_heads: set[int]) -> list[ActionDraft]:
        """The actions of one clause; ``camera_heads`` are the start positions of its camera moves."""
        spans = [range(i.start, i.end) for i in clause
                 if i.category == "word" or (i.category == "head" and i.start not in camera_heads)
                 or (i.category in ("speed", "intensifier") and not camera_heads)]
        positions = [p for span in spans for p in span]
        drafts, used = self._environment(positions)
        action = self._action([p for p in positions if p not in used])
        return drafts + ([action] if action else [])

    # ---- environment

    def _environment(self, positions: list[int]) -> tuple[list[ActionDraft], set[int]]:
        """Environment nouns with a change after them ("the lamps come on") or a few before ("starts to rain");
        the drafts and the token positions they used."""
        vocab = self.vocab
        lemmas = [self.tokens[p].lemma for p in positions]
        used: set[int] = set()
        drafts = []
        i = 0
        while i < len(lemmas):
            found = _longest(vocab.env_nouns, lemmas, i)
            if found is None:
                i += 1
                continue
            name, length = found
            entry = vocab.actions["environment"][name]
            change = self._change(name, lemmas, i + length, i + length + 4, after=True)
            if change is None:
                change = self._change(name, lemmas, max(0, i - 4), i, after=False)
            used.update(positions[i:i + length])
            text = " ".join(self.tokens[p].text for p in positions[i:i + length])
            if change is not None:
                start, end, level = change
                used.update(positions[start:end])
                lo, hi = min(start, i), max(end, i + length)
                text = " ".join(self.tokens[p].text for p in positions[lo:hi])
                drafts.append(ActionDraft("environment", channel=entry["channel"], level=level, text=text,
                                          position=positions[i]))
            elif "state" in entry:
                drafts.append(ActionDraft("environment", channel=entry["channel"], level=float(entry["state"]),
                                          state=True, text=text, position=positions[i]))
            i += length
        return drafts, used

    def _change(self, name: str, lemmas: list[str], lo: int, hi: int, *, after: bool) -> tuple[int, int, float] | None:
        table = self.vocab.env_changes[name]
        for j in range(lo, min(hi, len(lemmas))):
            found = _longest(table, lemmas, j)
            if found is not None and (after or _key_at(lemmas, j, found[1]) in self.vocab.changes_before_noun):
                return j, j + found[1], found[0]
        return None

    # ---- action

    def _member(self, position: int) -> CastMember | None:
        """The reference a word names: a label word, she/he/the character, or it."""
        token = self.tokens[position]
        for word in (token.lemma, token.text, token.text[:-1] if token.text.endswith("s") else ""):
            if word and word in self.cast:
                return self.cast[word]
        if token.lemma in self.vocab.action_words["subject_words"]:
            return self.actor or CastMember("", "character")
        if token.lemma in self.vocab.action_words["prop_words"]:
            return self.prop or CastMember("", "prop")
        return None

    def _action(self, words: list[int]) -> ActionDraft | None:
        vocab = self.vocab
        lemmas = [self.tokens[p].lemma for p in words]
        actor: CastMember | None = None
        verb: tuple[dict, int, int] | None = None
        speed: dict = {}
        power = 1.0
        i = 0
        while i < len(lemmas) and verb is None:
            found = _longest(vocab.verbs, lemmas, i) if not (i and self._possessive(words[i - 1])) else None
            if found is not None:
                length = found[1]
                skip = vocab.action_words["argument_skip"]
                if length > 1 and i + length < len(lemmas) and lemmas[i + length] in skip:
                    found = _longest(vocab.verbs, lemmas[:i + length - 1], i) or found  # "walks in the rain"
                verb = (found[0], i, i + found[1])
                break
            rate = vocab.match(lemmas, i)
            if rate and rate[0] == "intensifier":
                power = float(cast(float, rate[1]))
            elif rate and rate[0] == "speed":
                speed = dict(cast(dict, rate[1]))
            elif actor is None:
                actor = self._member(words[i])
                if actor is not None and actor.role == "character" and actor.label:
                    self.actor = actor  # "Mara, the lantern raised in her hand": her is Mara
            i += 1
        if verb is None:
            self._report_unknown_verb(words, lemmas, actor)
            return None
        spec, start, end = verb
        if actor is None:
            actor = self.last or CastMember("", "character")
        draft = ActionDraft(spec["kind"], pace=spec.get("pace", "walk"), position=words[start])
        args = words[end:]
        text = " ".join(self.tokens[p].text for p in words[start:])
        for k in range(end, len(lemmas)):
            rate = vocab.match(lemmas, k)
            if rate and rate[0] == "speed" and not speed:
                speed = dict(cast(dict, rate[1]))
        speed = speed or vocab.data["speeds"].get(spec.get("speed", ""), {})
        if speed:
            draft.speed, draft.factor = speed["speed"], float(speed["factor"]) ** power
        if draft.kind == "stop":
            args = []  # "waits on the harbour at dusk": where it stands is the blocking's
            text = " ".join(self.tokens[p].text for p in words[start:end])
        held = actor.role == "prop" and draft.kind in ("lift", "carry")
        named = draft.kind in ("lift", "carry") and any(
            (m := self._member(p)) is not None and m.role == "prop" for p in args)  # "lifts the brass lantern"
        if held:  # "the lantern raised in her hand": the prop is what is lifted, by the last character
            draft.prop, actor = actor.label, self.actor or CastMember("", "character")
        if not self._arguments(draft, spec, args, lenient=held or named):
            self.unknown.append(text)
            return None
        draft.text = text
        draft.actor = actor.label
        self.last = actor
        if actor.role == "character":
            self.actor = actor
        return draft

    def _possessive(self, position: int) -> bool:
        """"her face", "Mara's face": a noun follows, not a verb."""
        token = self.tokens[position]
        owner = token.text.endswith("s") and token.text[:-1] in self.cast and token.lemma not in self.cast
        return owner or token.lemma in self.vocab.action_words["possessives"]

    def _report_unknown_verb(self, words: list[int], lemmas: list[str], actor: CastMember | None) -> None:
        """"Mara dances", "..., then dances": a verb the vocabulary lacks after a named actor, or opening a
        clause that continues someone's action."""
        suffixes = (*self.vocab.data["verb_suffixes"], "ed")

        def verb_like(position: int) -> bool:
            token = self.tokens[position]
            return (len(token.text) > 3 and token.text.endswith(suffixes) and token.lemma not in self.vocab.lexicon
                    and token.lemma not in self.vocab.fillers and self._member(position) is None)

        if actor is None:
            if words and self.last is not None and verb_like(words[0]):
                self.unknown.append(self.tokens[words[0]].text)
            return
        for k, position in enumerate(words[:-1]):
            if self._member(position) is not None:
                if verb_like(words[k + 1]):
                    self.unknown.append(f"{self.tokens[position].text} {self.tokens[words[k + 1]].text}")
                return

    def _arguments(self, draft: ActionDraft, spec: dict, args: list[int], *, lenient: bool = False) -> bool:
        """Places, turn targets and props after the verb; False when one is given but not understood."""
        vocab = self.vocab
        skip = vocab.action_words["argument_skip"]
        origins, destinations = vocab.action_words["origin_words"], vocab.action_words["destination_words"]
        turning = draft.kind == "turn"
        places = vocab.turn_targets if turning else vocab.places
        mode = ""
        for position in args:
            lemma = self.tokens[position].lemma
            if lemma in origins or lemma in destinations:
                mode = "origin" if lemma in origins else "target"
                continue
            if lemma in skip or vocab.match([lemma], 0) is not None:
                continue
            member = self._member(position)
            if draft.kind in ("lift", "carry") and member is not None and member.role == "prop":
                draft.prop = member.label
                self.prop = member
                continue
            place = places.get(lemma)
            if mode == "origin":
                if turning:
                    draft.target = draft.target or ("away" if place == "camera" else "")
                    draft.origin = "away" if place != "camera" else ""
                elif place is None:
                    return False
                else:
                    draft.origin = place
            elif place is not None and not draft.target:
                draft.target = place
            elif (mode == "target" or (draft.kind in ("lift", "carry") and not draft.prop)) and not lenient and not (
                    turning and draft.target):
                return False  # "walks to the lighthouse", "raises her hand"
            mode = ""
        if draft.kind == "enter" and not draft.origin and draft.target in ("left", "right"):
            draft.origin, draft.target = draft.target, ""  # "enters frame left": the side it comes in from
        draft.target = draft.target or spec.get("default", "")
        return not (turning and not draft.target)


def _longest(table: Mapping[tuple[str, ...], V], lemmas: list[str], i: int) -> tuple[V, int] | None:
    """The longest phrase of ``table`` starting at ``i``: (value, length)."""
    for length in range(min(4, len(lemmas) - i), 0, -1):
        key = tuple(lemmas[i:i + length])
        if key in table:
            return table[key], length
    return None


def _key_at(lemmas: list[str], i: int, length: int) -> tuple[str, ...]:
    return tuple(lemmas[i:i + length])
