"""A forgiving JSON reader for model outputs: every value it can make out, in order.

Model answers that are meant to be JSON arrive with code fences, parentheses for brackets,
doubled or missing commas, bare words, trailing garbage or a tail cut off mid-object. ``LenientJSON``
reads such text without raising and marks an object the text ended inside as ``partial``, so the
caller can keep the complete objects and count the rest. Used by ``detection.parse``; knows
nothing about boxes or labels.
"""

from __future__ import annotations

import json
import re

NUMBER_PATTERN = r"(?<![\w.])[-+]?(?>\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?![\w])"
"""A number as models write it (sign, decimals, exponent), not glued to a word or a dot."""
_NUM_RE = re.compile(NUMBER_PATTERN)


class JSONObject(dict):
    """A JSON object with its source text; ``partial`` when the text ended inside it."""

    text = ""
    partial = False


_BARE_WORD = re.compile(r"[A-Za-z_][^,:\[\]{}()\n\"']*")
_MAX_DEPTH = 24


class LenientJSON:
    """A forgiving JSON reader: returns every value it can make out, in order."""

    def __init__(self, text: str):
        self.s, self.i, self.n = text, 0, len(text)

    def top(self) -> list:
        out = []
        while self.i < self.n:
            c = self.s[self.i]
            if c in "{[(":
                v = self.value(0)
                if v is not None:
                    out.append(v)
            else:
                self.i += 1  # prose, fences and trailing garbage between values
        return out

    def _ws(self) -> None:
        while self.i < self.n and self.s[self.i] in " \t\r\n,":
            self.i += 1

    def value(self, depth: int):
        self._ws()
        if self.i >= self.n:
            return None
        c = self.s[self.i]
        if c in "{[(" and depth >= _MAX_DEPTH:
            self.i += 1
            return None
        if c == "{":
            return self._object(depth)
        if c in "[(":
            return self._array(depth)
        if c in "\"'":
            return self._string(c)
        m = _NUM_RE.match(self.s, self.i)
        if m:
            self.i = m.end()
            return float(m.group())
        m = _BARE_WORD.match(self.s, self.i)
        if m:
            self.i = m.end()
            word = m.group().strip()
            return {"true": True, "false": False, "null": None}.get(word, word)
        return None

    def _string(self, quote: str) -> str:
        # A string also ends at a newline: JSON strings never hold one, and an apostrophe in prose
        # must not swallow the rest of the answer.
        j, buf = self.i + 1, []
        while j < self.n and self.s[j] != quote and self.s[j] != "\n":
            ch = self.s[j]
            if ch == "\\" and j + 1 < self.n:
                buf.append(self.s[j:j + 2])
                j += 2
                continue
            buf.append('\\"' if ch == '"' else ch)
            j += 1
        self.i = j + 1 if j < self.n and self.s[j] == quote else j
        raw = "".join(buf)
        if "\\" not in raw:
            return raw
        try:
            return json.loads('"' + raw + '"', strict=False)
        except json.JSONDecodeError:
            return raw

    def _array(self, depth: int) -> list:
        self.i += 1
        out = []
        while True:
            self._ws()
            if self.i >= self.n:
                return out
            c = self.s[self.i]
            if c in "])":
                self.i += 1
                return out
            if c == "}":  # "[1, 2, 3, 4}": the array closes where the object does
                return out
            start = self.i
            v = self.value(depth + 1)
            if v is not None:
                out.append(v)
            if self.i == start:
                self.i += 1  # an unreadable character inside a list

    def _done(self, out: JSONObject, start: int, partial: bool = False) -> JSONObject:
        out.text, out.partial = self.s[start:self.i], partial
        return out

    def _object(self, depth: int) -> dict:
        begin = self.i
        self.i += 1
        out = JSONObject()
        while True:
            self._ws()
            if self.i >= self.n:
                return self._done(out, begin, partial=True)
            c = self.s[self.i]
            if c == "}":
                self.i += 1
                return self._done(out, begin)
            if c in "]){" and out:
                # A list closing, or the next object opening, before this one closed: its "}" is
                # missing, but what it holds is complete.
                return self._done(out, begin)
            start = self.i
            key = self.value(depth + 1)
            self._ws()
            if self.i < self.n and self.s[self.i] == ":":
                self.i += 1
                val = self.value(depth + 1)
                cut = self.i >= self.n
                # A number or string the text ends in may be cut short, so it is not kept; a list
                # or object keeps whatever complete parts it has.
                if isinstance(key, str) and not (cut and not isinstance(val, (list, dict))):
                    out[key] = val
                if cut:
                    return self._done(out, begin, partial=True)
            if self.i == start:
                self.i += 1
