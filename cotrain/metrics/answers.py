"""Scoring of short text answers: classification, VQA, yes/no, multiple choice and counting.

This module owns how a model's free text is read as an answer (normalisation, option letters,
yes/no, counts) and the per-task summaries built from those readings. Every function that takes
model text is pure and total: empty, garbage, unicode or megabyte-long text is scored (usually
as wrong or "not parsed") and never raises. Summaries raise ``ValueError`` only for caller bugs
(lists of different lengths, a ground truth that is not a valid answer).

It must not run models, read files, know about benchmarks or parse boxes (``cotrain.boxes`` and
``cotrain.metrics.grounding`` do that).

Decisions
---------
* Strict matching (``classification_match``, ``vqa_match``) is exact equality after
  ``normalise_answer``; an empty label or answer never matches, so an empty response cannot be
  credited by an empty ground truth.
* Lenient classification ("contains") credits a response that names the label as a whole-word
  phrase and names no OTHER class of ``classes`` outside that phrase: "it is a forest" is
  credited for "forest", "forest or river" is not, and neither is "forests" (no stemming).
  Negations ("not a forest") are credited too; that is the known price of "contains" scoring,
  which is why strict is the default.
* Counting: an unparsed answer is scored as a count of 0 in ``mae``/``rmse`` (the model "counted
  nothing"), and is always wrong in ``exact``. ``mae_parsed``/``rmse_parsed`` cover only the parsed
  answers, and ``parse_rate``/``n_unparsed`` say how many were left out, so neither number can
  hide unparsed answers on its own. Consequence to keep in mind: an unparsed answer on a
  question whose truth is 0 adds no error to ``mae`` (but still fails ``exact``).
* A mean over an empty set is ``None`` (not NaN, which JSON reports cannot hold).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

__all__ = ["normalise_answer", "classification_match", "vqa_match", "yes_no_of", "extract_choice",
           "parse_count", "counting_summary", "mcq_summary", "yes_no_summary"]


def normalise_answer(text: str) -> str:
    """Lower-case, unify separators, drop surrounding spaces/quotes and a trailing full stop."""
    t = text.strip().lower()
    t = re.sub(r"[_\-]+", " ", t)
    t = re.sub(r"\s+", " ", t)
    return t.strip(" .\"'")


# Letters and digits of any script are word characters; everything else (punctuation, "_") splits.
_NON_WORD = re.compile(r"[\W_]+")


def _words(text: str) -> list[str]:
    """The words of ``text`` after ``normalise_answer``, punctuation removed."""
    return [w for w in _NON_WORD.split(normalise_answer(text)) if w]


def _phrase_spans(words: list[str], phrase: list[str]) -> list[tuple[int, int]]:
    """Word-index spans ``[start, end)`` where ``phrase`` occurs as consecutive whole words."""
    n = len(phrase)
    if n == 0:
        return []
    return [(i, i + n) for i in range(len(words) - n + 1) if words[i:i + n] == phrase]


def classification_match(response: str, label: str, *, lenient: bool = False,
                         classes: Sequence[str] | None = None) -> bool:
    """Whether ``response`` names the class ``label``.

    strict (default): ``normalise_answer(response) == normalise_answer(label)``, label non-empty.
    lenient: the label's words occur as a consecutive whole-word phrase in the response, and no
    other class of ``classes`` occurs anywhere outside the label's own occurrences (so a class
    that is part of the label, "river" inside "river bank", does not disqualify it; a response
    that hedges between classes, "forest or river", is not credited). Without ``classes`` only
    the first condition applies.
    """
    target = normalise_answer(label)
    if not target:
        return False
    if not lenient:
        return normalise_answer(response) == target
    words, label_words = _words(response), _words(label)
    spans = _phrase_spans(words, label_words)
    if not spans:
        return False
    for other in classes or ():
        other_words = _words(other)
        if not other_words or other_words == label_words:
            continue
        for start, end in _phrase_spans(words, other_words):
            if not any(s <= start and end <= e for s, e in spans):
                return False
    return True


def vqa_match(response: str, answer: str) -> bool:
    """Normalised exact match (strict; an empty answer never matches). Use ``yes_no_of`` for yes/no."""
    target = normalise_answer(str(answer))
    return bool(target) and normalise_answer(response) == target


_YES_NO = ("yes", "no")


def yes_no_of(text: str) -> str | None:
    """``"yes"`` or ``"no"`` when the answer's first word is one of them, else None.

    "Yes.", "yes, there is one", "NO" read as answers; "I think yes" does not (the first word
    decides, so a reasoning preamble is not mined for a verdict). A first word immediately
    followed by the other one, alone or after "or"/"and" ("yes/no", "yes or no", "No and yes"),
    is ambiguous and gives None.
    """
    words = _words(text)
    if not words or words[0] not in _YES_NO:
        return None
    other = "no" if words[0] == "yes" else "yes"
    if words[1:2] == [other] or (len(words) > 2 and words[1] in ("or", "and") and words[2] == other):
        return None
    return words[0]


def extract_choice(text: str, choices: list[str]) -> int | None:
    """Index of the option the answer names, or None when none or several can be read from it.

    Accepted: exactly one option text; a bare letter (``B``, ``B.``, ``(B)``, ``B)``); or a
    letter followed by that same option's text (``B. forest``). Anything else (``A river`` when
    "A river" is not option A's text, ``I am not sure``, ``C and D``) extracts nothing.
    """
    t = text.strip()
    norm = normalise_answer(t)
    hits = [i for i, c in enumerate(choices) if normalise_answer(c) == norm]
    if len(hits) == 1:
        return hits[0]
    letters = [chr(ord("A") + i) for i in range(len(choices))]
    m = re.fullmatch(r"\(?([A-Z])\)?[.:)]?", t)
    if m and m.group(1) in letters:
        return letters.index(m.group(1))
    m = re.fullmatch(r"\(?([A-Z])\)?[.:)]?\s+(.+)", t, flags=re.S)
    if m and m.group(1) in letters:
        i = letters.index(m.group(1))
        if normalise_answer(m.group(2)) == normalise_answer(choices[i]):
            return i
    return None


_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
# "There are no planes" counts zero; "a"/"an" do not count one (too often an article, "a group of").
_ZERO_WORDS = {"no", "none", "nothing", "zero"}
# More digits than any object count; also keeps int() clear of Python's 4300-digit limit.
_MAX_DIGITS = 12
# A digit run with optional thousands groups and decimals, not glued to letters ("737-800" still
# splits, "b52" does not count). A leading "-" marks a negative number, which is not a count.
# ASCII digits only: a Unicode digit of another script is read as nothing rather than guessed at.
_DIGITS = re.compile(r"(?<![\w.])(-?)([0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(\.[0-9]+)?(?![\w])")


def parse_count(text: str) -> int | None:
    """The count an answer states, or None when it states none, several or an impossible one.

    Reads ASCII digits ("3", "3.", "1,200", "3.0"), number words up to ninety-nine ("three",
    "twenty-one", "twenty one") and zero words ("no", "none", "nothing", "zero"). The same number
    stated twice is fine ("3 planes, 3 in total"); different numbers ("2 or 3", "no, 3"), a
    negative or fractional number, or none at all give None.
    """
    values: set[int] = set()
    for m in _DIGITS.finditer(text):
        sign, digits, frac = m.groups()
        digits = digits.replace(",", "")
        if sign or len(digits) > _MAX_DIGITS or (frac and set(frac[1:]) != {"0"}):
            return None
        values.add(int(digits))
    words = _words(text)
    i = 0
    while i < len(words):
        w = words[i]
        if w in _TENS:
            unit = _UNITS.get(words[i + 1], 0) if i + 1 < len(words) else 0
            if 0 < unit < 10:
                values.add(_TENS[w] + unit)
                i += 2
                continue
            values.add(_TENS[w])
        elif w in _UNITS:
            values.add(_UNITS[w])
        elif w in _ZERO_WORDS:
            values.add(0)
        i += 1
    return values.pop() if len(values) == 1 else None


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _check_lengths(**lists: Sequence) -> int:
    lengths = {name: len(v) for name, v in lists.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"metric inputs must have one entry per sample; got lengths {lengths}")
    return next(iter(lengths.values()))


def counting_summary(preds: Sequence[int | None], truths: Sequence[int]) -> dict:
    """Counting metrics over all questions; ``preds[i]`` is ``parse_count`` of answer i (None: unparsed).

    Keys: ``n``, ``n_unparsed``, ``parse_rate``; ``exact`` (share of ALL answers equal to the
    truth, unparsed ones wrong); ``mae``/``rmse`` over ALL answers with an unparsed answer scored
    as the count 0 (error ``truth``); ``mae_parsed``/``rmse_parsed`` over parsed answers only.
    Means over nothing are None.
    """
    n = _check_lengths(preds=preds, truths=truths)
    errs_all = [float(abs((p if p is not None else 0) - t)) for p, t in zip(preds, truths)]
    errs_parsed = [float(abs(p - t)) for p, t in zip(preds, truths) if p is not None]
    exact = [p is not None and p == t for p, t in zip(preds, truths)]
    rmse = _mean([e * e for e in errs_all])
    rmse_p = _mean([e * e for e in errs_parsed])
    return {"n": n, "n_unparsed": n - len(errs_parsed),
            "parse_rate": len(errs_parsed) / n if n else None,
            "exact": _mean([float(e) for e in exact]),
            "mae": _mean(errs_all), "rmse": math.sqrt(rmse) if rmse is not None else None,
            "mae_parsed": _mean(errs_parsed), "rmse_parsed": math.sqrt(rmse_p) if rmse_p is not None else None}


def mcq_summary(extracted: Sequence[int | None], answers: Sequence[int], n_choices: Sequence[int]) -> dict:
    """Multiple-choice metrics; ``extracted[i]`` is ``extract_choice`` of answer i.

    ``accuracy``: share of questions whose extracted option is the answer (nothing extracted is
    wrong); ``instruction_following``: share with an option extracted; ``chance``: the expected
    accuracy of a uniform random pick, mean of ``1 / n_choices``; ``n``.
    """
    n = _check_lengths(extracted=extracted, answers=answers, n_choices=n_choices)
    if any(k < 1 for k in n_choices):
        raise ValueError(f"every question needs at least one choice; got n_choices {list(n_choices)}")
    return {"accuracy": _mean([float(e is not None and e == a) for e, a in zip(extracted, answers)]),
            "instruction_following": _mean([float(e is not None) for e in extracted]),
            "chance": _mean([1.0 / k for k in n_choices]), "n": n}


def yes_no_summary(responses: Sequence[str], answers: Sequence[str]) -> dict:
    """Accuracy on yes/no questions, reading each response with ``yes_no_of``.

    Keys: ``accuracy`` (a response reading as neither is wrong), ``neither`` (share of responses
    that read as neither yes nor no), ``majority_baseline`` (share of the most common truth:
    yes/no sets are often unbalanced, so accuracy alone can flatter "always yes"), ``n``.
    Raises ValueError when a ground-truth answer is not yes or no (a caller bug: route such
    questions to ``vqa_match``).
    """
    n = _check_lengths(responses=responses, answers=answers)
    truths = []
    for i, a in enumerate(answers):
        t = yes_no_of(str(a))
        if t is None:
            raise ValueError(f"yes_no_summary: answer {i} is {a!r}, not yes/no; score it with vqa_match instead")
        truths.append(t)
    read = [yes_no_of(r) for r in responses]
    majority = Counter(truths).most_common(1)[0][1] / n if n else None
    return {"accuracy": _mean([float(r == t) for r, t in zip(read, truths)]),
            "neither": _mean([float(r is None) for r in read]), "majority_baseline": majority, "n": n}
