"""Label normalisation: a raw label from model text -> a class of the evaluated list, or None.

Owns the synonym table (DOTA / FAIR1M / DIOR-R aliases), the broader-concept table and
``LabelNormaliser`` (case, separators, plurals, synonyms, opt-in fuzzy matching). The parser
(``detection.parse``) uses it; so does the harness's detection summary.
"""

from __future__ import annotations

import difflib
import re

from cotrain.errors import ConfigError

SYNONYMS: dict[str, str] = {
    # DOTA v1.0 / v1.5 (canonical names map to themselves automatically)
    "aircraft": "plane", "airplane": "plane", "aeroplane": "plane", "airliner": "plane", "jet": "plane",
    "vessel": "ship", "boat": "ship",
    "car": "small-vehicle", "small-car": "small-vehicle", "van": "small-vehicle",
    "truck": "large-vehicle", "bus": "large-vehicle", "lorry": "large-vehicle",
    "oil-tank": "storage-tank", "tank": "storage-tank",
    "harbour": "harbor", "port": "harbor",
    "baseball-field": "baseball-diamond",
    "track-field": "ground-track-field", "athletic-field": "ground-track-field",
    "soccer-field": "soccer-ball-field", "football-field": "soccer-ball-field",
    "traffic-circle": "roundabout",
    "pool": "swimming-pool",
    "crane": "container-crane",
    # FAIR1M fine-grained types -> the DOTA super-class
    "boeing737": "plane", "boeing747": "plane", "boeing777": "plane", "boeing787": "plane",
    "a220": "plane", "a321": "plane", "a330": "plane", "a350": "plane", "c919": "plane", "arj21": "plane",
    "other-airplane": "plane",
    "motorboat": "ship", "fishing-boat": "ship", "tugboat": "ship", "engineering-ship": "ship",
    "liquid-cargo-ship": "ship", "dry-cargo-ship": "ship", "warship": "ship", "passenger-ship": "ship",
    "other-ship": "ship",
    "cargo-truck": "large-vehicle", "dump-truck": "large-vehicle", "trailer": "large-vehicle",
    "truck-tractor": "large-vehicle", "tractor": "large-vehicle", "excavator": "large-vehicle",
    "other-vehicle": "vehicle",
    # DIOR-R spellings that differ from DOTA beyond separators
    "golf-course": "golffield", "train-station": "trainstation",
}
"""Built-in label synonyms: alias -> concept (the DOTA class name where DOTA has one).

Keys and values are compared without case, spaces, hyphens or underscores, so "Storage Tank",
"storage_tank" and DIOR-R's "storagetank" are one name. A label resolves to the class of the
evaluated list that has the same concept, so with DIOR-R classes "aircraft" becomes "airplane".
"""

PARENTS: dict[str, str] = {"small-vehicle": "vehicle", "large-vehicle": "vehicle"}
"""Concept -> broader concept, used when the class list only has the broad one (DIOR-R "vehicle")."""


def _compact(name: str) -> str:
    """Comparison key of a label: lower case without separators (space, hyphen, underscore)."""
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def _singular(key: str) -> str | None:
    """English singular of a compact key, or None when it does not look plural."""
    if key.endswith("ies") and len(key) > 4:
        return key[:-3] + "y"
    if key.endswith(("sses", "xes", "ches", "shes", "uses")):
        return key[:-2]
    if key.endswith("s") and not key.endswith("ss") and len(key) > 2:
        return key[:-1]
    return None


class LabelNormaliser:
    """Maps a raw label to a canonical class name (or None), with a cache; build once per run."""

    def __init__(self, classes=None, synonyms: dict | None = None, fuzzy_cutoff: float | None = None):
        if fuzzy_cutoff is not None and not 0.0 < float(fuzzy_cutoff) <= 1.0:
            raise ConfigError(f"fuzzy_cutoff must be in (0, 1] (difflib ratio), got {fuzzy_cutoff!r}; "
                              "use e.g. 0.8, or None to drop unknown labels")
        table = SYNONYMS if synonyms is None else synonyms
        self.concepts: dict[str, str] = {}
        for alias, target in table.items():
            self.concepts.setdefault(_compact(str(target)), str(target))
        for alias, target in table.items():
            self.concepts[_compact(str(alias))] = str(target)
        self.classes = None if classes is None else [str(c) for c in classes]
        self.fuzzy_cutoff = fuzzy_cutoff
        self._cache: dict[str, tuple[str | None, bool]] = {}
        if self.classes is not None:
            self._by_key = {}
            self._by_concept = {}
            for c in self.classes:
                self._by_key.setdefault(_compact(c), c)
                self._by_concept.setdefault(_compact(self.concepts.get(_compact(c), c)), c)

    def __call__(self, raw: str) -> tuple[str | None, bool]:
        """(canonical class or None if unknown, whether it was a fuzzy match)."""
        if raw not in self._cache:
            if len(self._cache) > 100_000:  # generated junk labels must not grow memory without bound
                self._cache.clear()
            self._cache[raw] = self._resolve(raw)
        return self._cache[raw]

    def _resolve(self, raw: str) -> tuple[str | None, bool]:
        key = _compact(raw)
        if not key:
            return None, False
        keys = [key] + ([s] if (s := _singular(key)) else [])
        if self.classes is None:
            for k in keys:
                if k in self.concepts:
                    return self.concepts[k], False
            return re.sub(r"[\s_\-]+", "-", raw.strip().lower()), False
        for k in keys:  # the name itself, up to separators, case and plural
            if k in self._by_key:
                return self._by_key[k], False
        for k in keys:  # same concept, then a broader concept the class list has
            concept = self.concepts.get(k)
            if concept is None:
                continue
            ck = _compact(concept)
            if ck in self._by_concept:
                return self._by_concept[ck], False
            parent = PARENTS.get(concept)
            if parent is not None and _compact(parent) in self._by_concept:
                return self._by_concept[_compact(parent)], False
        if self.fuzzy_cutoff is not None:
            best, best_ratio = None, -1.0
            for ck, c in self._by_key.items():
                ratio = difflib.SequenceMatcher(None, key, ck).ratio()
                if ratio > best_ratio:  # strict: ties keep the earlier class, so the choice is stable
                    best, best_ratio = c, ratio
            if best is not None and best_ratio >= self.fuzzy_cutoff:
                return best, True
        return None, False
