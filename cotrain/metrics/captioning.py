"""Caption metrics as the COCO caption toolkit (coco-caption / ``pycocoevalcap``) computes them.

Owns: the PTB-style tokenisation coco applies before scoring (``ptb_tokenize``), corpus BLEU-1..4
("closest" reference length), METEOR, ROUGE-L (beta 1.2) and CIDEr-D (sigma 6, clipped, x10, IDF from
the evaluated corpus's references), and ``caption_scores`` which runs them all. Everything is pure
Python + numpy; no Java is needed.

Fidelity, measured against pycocoevalcap 1.2 (tests/cotrain/data/caption_golden.json):
- ``ptb_tokenize`` reproduces Stanford CoreNLP 3.4.1's ``PTBTokenizer -preserveLines -lowerCase``
  followed by coco's punctuation-token removal on the captions we test (plain English and
  remote-sensing captions). Quirks kept on purpose because coco has them: brackets become
  ``-lrb-``/``-rrb-``/``-lsb-``... and are *not* removed (coco's list holds the upper-case forms,
  the jar emits lower case); hyphenated words stay whole; "it's" -> "it 's", "don't" -> "do n't";
  periods inside numbers and acronyms stay. Rare constructs (URLs, exotic abbreviations) may differ.
- BLEU, ROUGE-L, CIDEr-D: same arithmetic as coco's Python code (1e-6 in the tests).
- METEOR: coco runs the Java METEOR 1.5 (``-l en -norm``: exact, Snowball stem, WordNet synonym and
  paraphrase matching). This module is "METEOR 1.5 without synonym/paraphrase tables": the same
  English ranking parameters (alpha 0.85, beta 0.2, gamma 0.6, delta 0.75), function-word list,
  beam-search aligner (width 40, its integer tie-breaking included), best-reference choice and
  corpus-level aggregation of sufficient statistics, with exact + Snowball-stem matching only.
  It equals the jar run with ``-m "exact stem"``; against full METEOR 1.5 it reads slightly lower
  whenever synonyms or paraphrases would have matched (gap reported by the tests).

Must not: run models, read prediction files, know benchmarks (``cotrain.eval`` wires this in).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

__all__ = ["ptb_tokenize", "bleu", "meteor", "rouge_l", "cider", "caption_scores"]

# --------------------------------------------------------------------------------------------
# PTB tokenisation
# --------------------------------------------------------------------------------------------

# Tokens coco drops after tokenising (pycocoevalcap/tokenizer/ptbtokenizer.py). The bracket
# forms are upper case there while the jar lower-cases them, so brackets survive in coco.
_COCO_PUNCT = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                         ".", "?", "!", ",", ":", "-", "--", "...", ";"])

# Unicode punctuation the Stanford lexer rewrites to its ASCII PTB forms.
_UNICODE_MAP = {
    "\u201c": ' " ', "\u201d": ' " ', "\u201e": ' " ', "\u00ab": ' " ', "\u00bb": ' " ',
    "\u2018": "'", "\u2019": "'", "\u201a": "'",
    "\u2014": " -- ", "\u2013": " -- ", "\u2012": " -- ", "\u2015": " -- ",
    "\u2026": " ... ", "\u00a0": " ",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE_MAP)))

_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}

# Abbreviations whose final period the lexer keeps (lower-cased; a subset of its list that
# occurs in captions). Acronyms such as "u.s." and "e.g." are recognised by shape instead.
_ABBREVIATIONS = frozenset("""mr mrs ms dr prof st jr sr vs etc inc ltd co corp mt ft ave blvd
rd dept est approx fig jan feb mar apr jun jul aug sep sept oct nov dec""".split())

# Whole-word splits the lexer applies (after lower-casing).
_SPECIAL_SPLITS = {
    "cannot": ["can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"],
    "wanna": ["wan", "na"], "lemme": ["lem", "me"], "gimme": ["gim", "me"],
    "'tis": ["'t", "is"], "'twas": ["'t", "was"],
}
_NT_SPECIAL = {"can't": ["ca", "n't"], "won't": ["wo", "n't"], "ain't": ["ai", "n't"]}
_ACRONYM_RE = re.compile(r"(?:[a-z]\.)+[a-z]")
_CLITIC_RE = re.compile(r"^(.+?)('s|'re|'ll|'m|'d|'ve|n't)$")

_TOKEN_RE = re.compile(
    r"""
    (?P<url>(?:https?://|www\.)[^\s]+[^\s.,;:!?'")\]])
  | (?P<tag>[#@][^\W_][\w]*)
  | (?P<decade>'\d+s?\b)
  | (?P<word>[^\W_]\w*(?:(?:[-'&]|[.:](?=\w)|/(?=\w)|,(?=\d))\w+)*)
  | (?P<dots>\.{2,})
  | (?P<bang>[!?]+)
  | (?P<dash>-{2,})
  | (?P<other>\S)
    """,
    re.VERBOSE,
)


def _split_word(word: str) -> list[str]:
    """Split one lexer word into PTB tokens (clitics, special words, abbreviation periods)."""
    if word in _SPECIAL_SPLITS:
        return list(_SPECIAL_SPLITS[word])
    if word in _NT_SPECIAL:
        return list(_NT_SPECIAL[word])
    if word == "rock'n'roll":
        return ["rock", "'n'", "roll"]
    # Clitics peel off from the right: "you'd've" -> "you 'd 've".
    tail: list[str] = []
    m = _CLITIC_RE.match(word)
    while m:
        word, clitic = m.group(1), m.group(2)
        if clitic == "n't" and word + clitic in _NT_SPECIAL:
            tail[:0] = _NT_SPECIAL[word + clitic]
            return tail
        tail.insert(0, clitic)
        m = _CLITIC_RE.match(word)
    return [word] + tail


def ptb_tokenize(text: str) -> str:
    """Tokenise one caption the way coco does: PTB split, lower case, punctuation tokens removed.

    Returns the tokens joined by single spaces ("" for an empty or all-punctuation caption).
    """
    if not isinstance(text, str):
        raise TypeError(f"ptb_tokenize expects str, got {type(text).__name__}")
    text = _UNICODE_RE.sub(lambda m: _UNICODE_MAP[m.group(0)], text.replace("\n", " ")).lower()
    out: list[str] = []
    pos, n = 0, len(text)
    while pos < n:
        if text[pos].isspace():
            pos += 1
            continue
        m = _TOKEN_RE.match(text, pos)
        kind, tok, pos = m.lastgroup, m.group(0), m.end()
        if kind == "word":
            # The lexer keeps the period of acronyms ("u.s.") and known abbreviations ("etc.")
            # on the word; any other trailing period is a token of its own (dropped by coco).
            if text.startswith(".", pos) and not text.startswith("..", pos) and (
                    _ACRONYM_RE.fullmatch(tok) or tok in _ABBREVIATIONS):
                tok += "."
                pos += 1
            out.extend(_split_word(tok))
        elif kind == "other":
            # A straight double quote becomes `` or '' in the jar; coco drops both.
            out.append("''" if tok == '"' else _BRACKETS.get(tok, tok))
        else:
            out.append(tok)
    return " ".join(t for t in out if t not in _COCO_PUNCT)


# --------------------------------------------------------------------------------------------
# Input checks shared by every metric
# --------------------------------------------------------------------------------------------

def _check_inputs(cands: Mapping[str, str], refs: Mapping[str, Sequence[str]]) -> list[str]:
    """Validate ids and types; returns the ids in a fixed order (coco iterates the dict order)."""
    missing_refs = [k for k in cands if k not in refs]
    missing_cands = [k for k in refs if k not in cands]
    if missing_refs or missing_cands:
        raise ValueError(
            "caption ids differ between candidates and references: "
            f"ids without references {sorted(map(str, missing_refs))[:20]}, "
            f"ids without a candidate {sorted(map(str, missing_cands))[:20]}. "
            "Score the same set of ids on both sides.")
    for k in cands:
        if not isinstance(cands[k], str):
            raise TypeError(f"candidate for id {k!r} must be one str, got {type(cands[k]).__name__}")
        r = refs[k]
        if isinstance(r, str) or len(r) == 0 or not all(isinstance(x, str) for x in r):
            raise ValueError(f"references for id {k!r} must be a non-empty list of str, got {r!r}")
    return list(cands)


def _ngrams(words: Sequence[str], n: int) -> Counter:
    counts: Counter = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return counts


# --------------------------------------------------------------------------------------------
# BLEU (coco's bleu_scorer with option "closest")
# --------------------------------------------------------------------------------------------

def bleu(cands: Mapping[str, str], refs: Mapping[str, Sequence[str]]) -> list[float]:
    """Corpus BLEU-1..4 as coco computes it: clipped n-gram counts and lengths summed over the
    corpus, effective reference length = the reference length closest to each candidate's."""
    ids = _check_inputs(cands, refs)
    n = 4
    tiny, small = 1e-15, 1e-9   # coco's guards: a zero match count gives ~0, never a crash
    guess, correct = [0] * n, [0] * n
    test_len = ref_len = 0
    for k in ids:
        words = cands[k].split()
        max_ref: dict = {}
        lens = []
        for r in refs[k]:
            rw = r.split()
            lens.append(len(rw))
            for g, c in _ngrams(rw, n).items():
                if c > max_ref.get(g, 0):
                    max_ref[g] = c
        t = len(words)
        test_len += t
        ref_len += min((abs(L - t), L) for L in lens)[1]
        for g, c in _ngrams(words, n).items():
            correct[len(g) - 1] += min(c, max_ref.get(g, 0))
        for j in range(n):
            guess[j] += max(t - j, 0)
    scores, prod = [], 1.0
    for j in range(n):
        prod *= (correct[j] + tiny) / (guess[j] + small)
        scores.append(prod ** (1.0 / (j + 1)))
    ratio = (test_len + tiny) / (ref_len + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


# --------------------------------------------------------------------------------------------
# ROUGE-L (coco's rouge.py)
# --------------------------------------------------------------------------------------------

def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(cands: Mapping[str, str], refs: Mapping[str, Sequence[str]], beta: float = 1.2) -> float:
    """Mean over samples of the LCS F-measure (beta 1.2) built from the best precision and the
    best recall over that sample's references, as coco does."""
    ids = _check_inputs(cands, refs)
    if not ids:
        return 0.0
    scores = []
    for k in ids:
        # coco splits on single spaces, not on whitespace runs; kept for identical numbers.
        c = cands[k].split(" ")
        precs, recs = [], []
        for r in refs[k]:
            rw = r.split(" ")
            lcs = _lcs(rw, c)
            precs.append(lcs / len(c))
            recs.append(lcs / len(rw))
        p, r = max(precs), max(recs)
        scores.append(((1 + beta ** 2) * p * r) / (r + beta ** 2 * p) if p != 0 and r != 0 else 0.0)
    return float(np.mean(scores))


# --------------------------------------------------------------------------------------------
# CIDEr-D (coco's cider_scorer)
# --------------------------------------------------------------------------------------------

def cider(cands: Mapping[str, str], refs: Mapping[str, Sequence[str]], sigma: float = 6.0) -> float:
    """CIDEr-D: tf-idf n-gram (1..4) cosine with clipping and a Gaussian length penalty, x10,
    averaged over references then samples; IDF comes from the references of this corpus."""
    ids = _check_inputs(cands, refs)
    if not ids:
        return 0.0
    n = 4
    ref_counts = {k: [_ngrams(r.split(), n) for r in refs[k]] for k in ids}
    df: Counter = Counter()
    for k in ids:
        df.update(set(g for c in ref_counts[k] for g in c))
    log_n_docs = math.log(float(len(ids)))

    def vec(counts: Counter):
        v = [dict() for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for g, tf in counts.items():
            j = len(g) - 1
            w = float(tf) * (log_n_docs - math.log(max(1.0, df[g])))
            v[j][g] = w
            norm[j] += w * w
            if j == 1:
                # coco measures length in bigrams; only the hyp/ref difference matters.
                length += tf
        return v, [math.sqrt(x) for x in norm], length

    def sim(vh, vr, nh, nr, lh, lr):
        delta = float(lh - lr)
        val = np.zeros(n)
        for j in range(n):
            for g, w in vh[j].items():
                wr = vr[j].get(g, 0.0)
                val[j] += min(w, wr) * wr
            if nh[j] != 0 and nr[j] != 0:
                val[j] /= nh[j] * nr[j]
            val[j] *= math.e ** (-(delta ** 2) / (2 * sigma ** 2))
        return val

    scores = []
    for k in ids:
        vh, nh, lh = vec(_ngrams(cands[k].split(), n))
        total = np.zeros(n)
        for rc in ref_counts[k]:
            vr, nr, lr = vec(rc)
            total += sim(vh, vr, nh, nr, lh, lr)
        scores.append(float(np.mean(total)) / len(ref_counts[k]) * 10.0)
    return float(np.mean(scores))


# --------------------------------------------------------------------------------------------
# METEOR 1.5 (exact + stem modules) -- see the module docstring for what is left out
# --------------------------------------------------------------------------------------------

# METEOR 1.5 English "rank" task: alpha, beta, gamma, delta and module weights (exact, stem).
_MET_ALPHA, _MET_BETA, _MET_GAMMA, _MET_DELTA = 0.85, 0.20, 0.60, 0.75
_MET_WEIGHTS = (1.0, 0.6)
# The aligner ranks partial alignments with its own weights (exact 1, others 0.5) accumulated in
# Java ints, so a one-word stem match adds int(0.5) = 0 there; reproduced in _align.
_MET_SEARCH_WEIGHTS = (1.0, 0.5)
_MET_BEAM = 40

# METEOR 1.5's English function-word list (function/english.words in its jar).
_MET_FUNCTION_WORDS = frozenset("""the , . to of and a in that for " is on 's it with was as said at
he by be from have has are his but an this not i will \u2019 they ) -rrb- ( -lrb- who their had we
which were been more or s its would about new one after you : also up when there than $ all out her
people she year two - can if last first \u201c over other \u201d into some what so -- no time years
could ? 't \u2014 '""".split())

# Letters as METEOR's normaliser defines them (ASCII, Latin-1/Extended-A, Cyrillic, ...).
_MET_ALPHA_CLS = "A-Za-z\u0160\u017d\u0161\u017e\u0178\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017e" \
    "\u0400-\u04ff\u0500-\u0527\ua640-\ua66e\ua67e-\ua697\u1d00-\u1d7f"
_MET_ALNUM_CLS = "0-9" + _MET_ALPHA_CLS
_MET_NBP = frozenset("""A B C D E F G H I J K L M N O P Q R S T U V W X Y Z Adj Adm Adv Asst Bart
Bldg Brig Bros Capt Cmdr Col Comdr Con Corp Cpl DR Dr Drs Ens Gen Gov Hon Hr Hosp Insp Lt MM MR MRS
MS Maj Messrs Mlle Mme Mr Mrs Ms Msgr Op Ord Pfc Ph Prof Pvt Rep Reps Res Rev Rt Sen Sens Sfc Sgt Sr
St Supt Surg v vs i.e rev e.g""".split())
_MET_NBP_NUMERIC = frozenset(["No", "Nos", "Art", "Nr", "pp"])

_MN = [
    (re.compile(f"([^{_MET_ALNUM_CLS}\\s.'`,\\-\u2018\u2019])"), r" \1 "),
    (re.compile(r"([^\d]),([^\d])"), r"\1 , \2"),
    (re.compile(r"(\d),([^\d])"), r"\1 , \2"),
    (re.compile(r"([^\d]),(\d)"), r"\1 , \2"),
    (re.compile("[`\u2018\u2019]"), "'"),
    (re.compile(f"([{_MET_ALNUM_CLS}.])-([{_MET_ALNUM_CLS}])"), r"\1 \2"),
    (re.compile(f"([^{_MET_ALPHA_CLS}])'([^{_MET_ALPHA_CLS}])"), r"\1 ' \2"),
    (re.compile(f"([^{_MET_ALPHA_CLS}\\d])'([{_MET_ALPHA_CLS}])"), r"\1 ' \2"),
    (re.compile(f"([{_MET_ALPHA_CLS}])'([^{_MET_ALPHA_CLS}])"), r"\1 ' \2"),
    (re.compile(f"([{_MET_ALPHA_CLS}])'([{_MET_ALPHA_CLS}])"), r"\1 '\2"),
    (re.compile(r"(\d)'(s)"), r"\1 '\2"),
]


def _meteor_normalize(text: str) -> list[str]:
    """METEOR's ``-norm`` step for text that is already PTB-tokenised, as word list.

    Covers what survives coco's tokeniser: symbols split off, hyphens between letters/digits
    become spaces, apostrophes split ("'s" -> "' s", "n't" -> "n 't"), acronym periods dropped.
    """
    s = f" {text} "
    for pat, rep in _MN:
        # Java's replaceAll does not re-scan overlapping matches; neither does re.sub, but
        # "a-b-c" needs two passes in both (the shared "b" is consumed by the first match).
        s = pat.sub(rep, s)
        if rep == r"\1 \2" or rep.endswith(r"' \2"):
            s = pat.sub(rep, s)
    words = s.split()
    out: list[str] = []
    for i, w in enumerate(words):
        if w.endswith(".") and len(w) > 1 and not w.endswith(".."):
            pre = w[:-1]
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if "." in pre and re.search(f"[{_MET_ALPHA_CLS}]", pre):
                w = w.replace(".", "")
            elif pre in _MET_NBP or (nxt and re.match(r"[a-z]", nxt)) or (
                    pre in _MET_NBP_NUMERIC and nxt[:1].isdigit()):
                pass
            else:
                out.extend([pre, "."])
                continue
        out.append(w)
    return [w.lower() for w in out]


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    try:
        import snowballstemmer
    except ImportError as exc:  # pragma: no cover - dependency is declared by the package
        raise ImportError(
            "cotrain.metrics.captioning.meteor needs the 'snowballstemmer' package (the English "
            "Snowball stemmer METEOR 1.5 uses): pip install snowballstemmer") from exc
    return _stemmer(snowballstemmer).stemWord(word)


@lru_cache(maxsize=1)
def _stemmer(mod):
    return mod.stemmer("english")


def _align(test: list[str], ref: list[str]) -> dict:
    """METEOR 1.5's aligner (exact, then stem candidates; fixed 1-1 matches; beam search)."""
    n1, n2 = len(test), len(ref)
    # matches[j] lists (module, i) for ref word j, exact ones first, each in test order.
    matches: list[list[tuple[int, int]]] = [[] for _ in range(n2)]
    cov1, cov2 = [0] * n1, [0] * n2
    for j in range(n2):
        for i in range(n1):
            if test[i] == ref[j]:
                matches[j].append((0, i))
                cov1[i] += 1
                cov2[j] += 1
    if not (n1 == n2 and test == ref):
        st1 = [_stem(w) for w in test]
        st2 = [_stem(w) for w in ref]
        for j in range(n2):
            for i in range(n1):
                if st1[i] == st2[j] and test[i] != ref[j]:
                    matches[j].append((1, i))
                    cov1[i] += 1
                    cov2[j] += 1
    fixed: list = [None] * n2
    used1, used2 = [False] * n1, [False] * n2
    for j in range(n2):
        if len(matches[j]) == 1:
            mod, i = matches[j][0]
            if cov2[j] == 1 and cov1[i] == 1:
                fixed[j] = (mod, i)
                used1[i] = used2[j] = True

    # A partial path: [matches, used1, used2, score, chunks, idx, last_end, distance]
    def key(p):
        return (-p[3], p[4], p[7])

    paths = [[fixed, used1, used2, 0, 0, 0, -1, 0]]
    for cur in range(n2 + 1):
        paths.sort(key=key)  # stable, like Java's Collections.sort
        nxt = []
        for p in paths[:_MET_BEAM]:
            if cur == n2:
                if p[6] != -1:
                    p[4] += 1
                nxt.append(p)
                continue
            if p[2][cur]:
                if cur < p[5]:
                    nxt.append(p)
                elif p[0][p[5]] is not None:
                    mod, i = p[0][p[5]]
                    p[3] += 2 * int(_MET_SEARCH_WEIGHTS[mod])
                    if p[6] != -1 and i != p[6]:
                        p[4] += 1
                    p[7] += abs(p[5] - i)
                    p[5], p[6] = p[5] + 1, i + 1
                    nxt.append(p)
                continue
            for mod, i in matches[cur]:
                if p[1][i]:
                    continue
                q = [list(p[0]), list(p[1]), list(p[2])] + p[3:]
                q[0][cur] = (mod, i)
                q[1][i] = q[2][cur] = True
                q[3] += 2 * int(_MET_SEARCH_WEIGHTS[mod])
                if q[6] != -1 and i != q[6]:
                    q[4] += 1
                q[5], q[6] = cur + 1, i + 1
                # METEOR 1.5 adds this distance to the parent path, not the new one.
                p[7] += abs(cur - i)
                nxt.append(q)
            if p[6] != -1:
                p[4] += 1
                p[6] = -1
            p[5] += 1
            nxt.append(p)
        if not nxt:
            nxt.append(paths[0])
        paths = nxt
    paths.sort(key=key)
    best = paths[0][0]

    func1 = [w in _MET_FUNCTION_WORDS for w in test]
    func2 = [w in _MET_FUNCTION_WORDS for w in ref]
    cm = [[0, 0], [0, 0]]   # [module][test, ref] content matches
    fm = [[0, 0], [0, 0]]   # [module][test, ref] function matches
    chunks, last_end, n_match = 0, -1, 0
    for j in range(n2):
        m = best[j]
        if m is None:
            if last_end != -1:
                chunks += 1
                last_end = -1
            continue
        mod, i = m
        n_match += 1
        (fm if func1[i] else cm)[mod][0] += 1
        (fm if func2[j] else cm)[mod][1] += 1
        if last_end != -1 and i != last_end:
            chunks += 1
        last_end = i + 1
    if last_end != -1:
        chunks += 1
    return {
        "test_len": n1, "ref_len": n2, "test_func": sum(func1), "ref_func": sum(func2),
        "content": cm, "function": fm, "chunks": chunks, "test_matches": n_match,
        "ref_matches": n_match,
    }


def _meteor_score(s: dict) -> float:
    d = _MET_DELTA
    t_wlen = d * (s["test_len"] - s["test_func"]) + (1 - d) * s["test_func"]
    r_wlen = d * (s["ref_len"] - s["ref_func"]) + (1 - d) * s["ref_func"]
    t_w = sum(s["content"][m][0] * _MET_WEIGHTS[m] * d + s["function"][m][0] * _MET_WEIGHTS[m] * (1 - d)
              for m in range(2))
    r_w = sum(s["content"][m][1] * _MET_WEIGHTS[m] * d + s["function"][m][1] * _MET_WEIGHTS[m] * (1 - d)
              for m in range(2))
    if t_wlen == 0 or r_wlen == 0 or t_w == 0 or r_w == 0:
        return 0.0   # Java yields NaN here and reports 0
    p, r = t_w / t_wlen, r_w / r_wlen
    fmean = 1.0 / ((1 - _MET_ALPHA) / p + _MET_ALPHA / r)
    if s["test_matches"] == s["test_len"] and s["ref_matches"] == s["ref_len"] and s["chunks"] == 1:
        frag = 0.0
    else:
        frag = s["chunks"] / ((s["test_matches"] + s["ref_matches"]) / 2)
    return max(fmean * (1 - _MET_GAMMA * frag ** _MET_BETA), 0.0)


def meteor(cands: Mapping[str, str], refs: Mapping[str, Sequence[str]]) -> float:
    """Corpus METEOR as coco reports it: per sample the best-scoring reference's statistics,
    summed over the corpus, one score from the sums. Exact + stem matching only (no synonym or
    paraphrase tables): equals METEOR 1.5 ``-l en -norm -m "exact stem"``."""
    ids = _check_inputs(cands, refs)
    total = {"test_len": 0, "ref_len": 0, "test_func": 0, "ref_func": 0,
             "content": [[0, 0], [0, 0]], "function": [[0, 0], [0, 0]], "chunks": 0,
             "test_matches": 0, "ref_matches": 0}
    for k in ids:
        test = _meteor_normalize(cands[k].replace("|||", "").replace("  ", " "))
        best, best_score = None, -1.0
        for r in refs[k]:
            st = _align(test, _meteor_normalize(r))
            sc = _meteor_score(st)
            if sc > best_score:
                best, best_score = st, sc
        for key_ in ("test_len", "ref_len", "test_func", "ref_func", "test_matches", "ref_matches"):
            total[key_] += best[key_]
        for m in range(2):
            for side in range(2):
                total["content"][m][side] += best["content"][m][side]
                total["function"][m][side] += best["function"][m][side]
        # METEOR's aggregation skips the chunk of a perfectly matched segment.
        perfect = (best["test_matches"] == best["test_len"] and best["ref_matches"] == best["ref_len"]
                   and best["chunks"] == 1)
        if not perfect:
            total["chunks"] += best["chunks"]
    return _meteor_score(total)


# --------------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------------

def caption_scores(cands: Mapping[str, str], refs: Mapping[str, Sequence[str]], *,
                   tokenize: bool = True) -> dict[str, float]:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr(-D) of a corpus, coco style.

    ``tokenize=True`` applies ``ptb_tokenize`` to candidates and references first (what coco's
    evaluation does); pass False when both sides are already tokenised.
    """
    _check_inputs(cands, refs)
    if tokenize:
        cands = {k: ptb_tokenize(v) for k, v in cands.items()}
        refs = {k: [ptb_tokenize(r) for r in v] for k, v in refs.items()}
    b = bleu(cands, refs)
    out = {f"BLEU-{i + 1}": float(b[i]) for i in range(4)}
    out["METEOR"] = float(meteor(cands, refs))
    out["ROUGE-L"] = rouge_l(cands, refs)
    out["CIDEr"] = cider(cands, refs)
    return out
