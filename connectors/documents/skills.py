"""Skills matching against the shipped taxonomy (data/skills.tsv, from O*NET and ESCO: data/SOURCE.md).

One compiled pattern of every canonical name and alias, longest first, so "Node.js" wins over
"Node" and "Ruby on Rails" over "Ruby". A match never starts or ends inside a word: "Java" is not
found in "JavaScript", nor "R" in "React", nor "C" in "C++" (the + and # belong to the name).
Names that are also everyday words match only as written ("case": Excel, not "excel at"), and the
shortest ones ("list": Go, R, C) only as items of a list ("Python, Go, SQL"), not as a verb.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TAXONOMY = Path(__file__).parent / "data" / "skills.tsv"
# a list item is bounded by these (bullets, separators, line ends)
LIST_BEFORE = re.compile(r"(?:^|[,;:/|(•·.\-\u2013*]|\band|\bor)\s*$")
LIST_SEPARATOR_AFTER = re.compile(r"^\s*[,;/|)]")
# "Excel at", "Swift in": the word, not the name
VERB_AFTER = re.compile(r"^\s+(?:at|in|to|with)\b")
LIST_AFTER = re.compile(r"^\s*(?:$|[,;/|)•·.]|\band\b|\bor\b)")


@dataclass(frozen=True)
class Skill:
    name: str
    source: str
    uri: str
    mode: str  # plain | case | list


@dataclass(frozen=True)
class Found:
    """A skill found in a document: the first place (page, character span on that page) and how often."""

    skill: str
    page: int
    start: int
    end: int
    text: str
    mentions: int


def _key(s: str) -> str:
    return " ".join(s.split()).lower()


class Matcher:
    def __init__(self, rows: list[tuple[str, list[str], str, str, str]]) -> None:
        self.skills: dict[str, Skill] = {}
        # folded spelling -> (skill name, the spelling as written in the taxonomy)
        self.spellings: dict[str, tuple[str, str]] = {}
        for name, _aliases, source, uri, mode in rows:
            self.skills[name] = Skill(name, source, uri, mode)
            self.spellings[_key(name)] = (name, name)
        # a skill's own name wins over the same words listed as another skill's alias
        for name, aliases, *_ in rows:
            for spelling in aliases:
                self.spellings.setdefault(_key(spelling), (name, spelling))
        body = _trie_pattern(self.spellings)
        # not inside a word: no letter/digit before; after, no letter/digit nor a name's + or #
        self.pattern = re.compile(rf"(?<![\w+#.])(?:{body})(?![\w+#])|(?<=\w\.)(?:{body})(?![\w+#])", re.IGNORECASE)

    def _accept(self, text: str, m: re.Match, name: str, spelling: str) -> bool:
        skill = self.skills[name]
        if skill.mode == "plain":
            return True
        if " " in spelling.strip() or spelling != name:
            # an alias of several words ("Microsoft Excel", "Golang") is unambiguous
            return True
        if m.group(0) != name:
            return False
        if skill.mode == "case":
            return not VERB_AFTER.match(text[m.end() :])
        line_start = text.rfind("\n", 0, m.start()) + 1
        line_end = text.find("\n", m.end())
        before = text[line_start : m.start()]
        after = text[m.end() : len(text) if line_end < 0 else line_end]
        if LIST_SEPARATOR_AFTER.match(after):
            # 'Statistics in R, SAS': a separator after it is enough
            return True
        return bool(LIST_BEFORE.search(before)) and bool(LIST_AFTER.match(after))

    def find(self, pages: list[str]) -> list[Found]:
        """Skills in the pages' text, in order of first appearance."""
        first: dict[str, Found] = {}
        counts: dict[str, int] = {}
        for page_no, text in enumerate(pages, start=1):
            for m in self.pattern.finditer(text):
                # '.NET' after a letter is part of 'ASP.NET'
                if m.group(0).startswith(".") and m.start() and text[m.start() - 1].isalnum():
                    continue
                if not m.group(0).startswith(".") and m.start() and text[m.start() - 1] == ".":
                    continue
                hit = self.spellings.get(_key(m.group(0)))
                if hit is None:
                    continue
                name, spelling = hit
                if not self._accept(text, m, name, spelling):
                    continue
                counts[name] = counts.get(name, 0) + 1
                if name not in first:
                    first[name] = Found(name, page_no, m.start(), m.end(), m.group(0), 0)
        return [
            Found(f.skill, f.page, f.start, f.end, f.text, counts[f.skill])
            for f in sorted(first.values(), key=lambda f: (f.page, f.start))
        ]


def _trie_pattern(keys: Iterable[str]) -> str:
    """One pattern matching any of KEYS (words separated by any whitespace), as a trie of characters.

    It matches what the alternation of the keys, longest first, matches (at most one branch can go on
    at each character, and the longer branch is tried before stopping), but tries a position in one
    pass instead of once per key: a large taxonomy is matched several times faster.
    """
    trie: dict[str, dict] = {}
    for key in keys:
        node = trie
        for ch in " ".join(key.split()):
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict[str, dict]) -> str:
        branches = [(r"\s+" if ch == " " else re.escape(ch)) + emit(child) for ch, child in node.items() if ch]
        if not branches:
            return ""
        body = "|".join(branches)
        if "" in node:
            return f"(?:{body})?"
        return body if len(branches) == 1 else f"(?:{body})"

    return emit(trie)


def load_rows(path: Path = TAXONOMY) -> list[tuple[str, list[str], str, str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return [
            (r["name"], [a for a in r["aliases"].split("|") if a], r["source"], r["uri"], r["match"])
            for r in csv.DictReader(f, delimiter="\t")
        ]


@cache
def matcher() -> Matcher:
    """The matcher of the shipped taxonomy (built once per process)."""
    return Matcher(load_rows())


@cache
def taxonomy() -> dict[str, Skill]:
    """The shipped taxonomy's skills by canonical name, without compiling the matcher's pattern."""
    return {name: Skill(name, source, uri, mode) for name, _, source, uri, mode in load_rows()}
