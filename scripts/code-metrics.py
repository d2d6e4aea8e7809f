#!/usr/bin/env python3
"""Size and structure metrics for the Rust sources of this crate (stdlib only).

    scripts/code-metrics.py [PATH ...] [--json] [--check] [--max-file-lines N]
                            [--max-fn-lines N] [--max-median N] [--self-test]

PATH defaults to `src/` (folders are searched recursively for `*.rs`). Three parts:

1. Files: lines of code = lines holding something other than whitespace and comments
   (`//`, `///`, `//!`, `/* */`, nested block comments), not counting inline test modules
   (`#[cfg(test)]` + `mod name { ... }`, up to the matching brace) or files that are
   `#[cfg(test)] mod name;` children. Files over --max-file-lines and the 10 largest.
2. Functions: every `fn` item with a body (free fns, methods, trait default methods, nested
   fns, async/const/unsafe/extern fns, generics with where-clauses), outside test modules.
   Length = physical lines from the line of the `fn` keyword to the line of the closing
   brace, inclusive (blank and comment lines inside the span count). Bodiless declarations
   (`fn f(&self);`) are not functions here.
3. Import graph: each file is a module (Rust 2018 layout: `lib.rs` = crate root,
   `a.rs` / `a/mod.rs` = `crate::a`, `a/b.rs` = `crate::a::b`; `main.rs` and `bin/**` are
   other crates and left out). References: `crate::`, `super::` and `self::` paths in `use`
   trees (nested braces, `self`, globs, `as`) and inline in code, plus paths starting with
   the name of a child module declared in the same module (`mod load;` ... `load::run()`).
   A reference goes to the longest prefix that is a module file. `mod` declarations are not
   edges; a child using its parent's items is. Test modules are left out. A path whose next
   segment is not a name that module defines or `use`s (`crate::gone::X` with no `gone`
   module found) is listed as unresolved instead of becoming an edge to an ancestor.
   Cycles = strongly connected components with more than one node, among top-level modules
   (`crate::<first segment>`, `crate` = lib.rs) and among files.

Strings (normal, raw `r#".."#`, byte, C), char literals (`'{'`, `'\\''`), lifetimes and
labels (`'a`), and comments are lexed first, so braces and paths inside them are ignored.

Exit status: 0, unless --check: then 1 if a file is over --max-file-lines, a function over
--max-fn-lines, the median function over --max-median, or top-level modules form a cycle
(file cycles inside one top-level module are only reported).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------------------
# Lexing: blank out comments and literal contents, keep every newline and every offset.
# --------------------------------------------------------------------------------------


def _is_ident_start(c: str) -> bool:
    return c == "_" or c.isalpha()


def _is_ident_char(c: str) -> bool:
    return c == "_" or c.isalnum()


@dataclass
class Lexed:
    text: str
    masked: str  # same length as text; comments -> spaces, literal contents -> spaces
    line_starts: list[int]
    code_line: list[bool]  # index = 1-based line number; True = has non-comment content

    @property
    def n_lines(self) -> int:
        return len(self.code_line) - 1

    def line_of(self, pos: int) -> int:
        return bisect.bisect_right(self.line_starts, pos)


def lex(text: str) -> Lexed:
    n = len(text)
    line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
    if text.endswith("\n"):
        line_starts.pop()  # no line after the final newline
    n_lines = len(line_starts) if text else 0
    code_line = [False] * (n_lines + 1)
    out = list(text)

    def blank(a: int, b: int) -> None:
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    def mark(a: int, b: int) -> None:
        """Marks the lines holding non-whitespace characters of text[a:b] as code."""
        ln = bisect.bisect_right(line_starts, a)
        for k in range(a, b):
            c = text[k]
            if c == "\n":
                ln += 1
            elif not c.isspace():
                code_line[ln] = True

    def literal(a: int, b: int, quote: str) -> None:
        mark(a, b)
        blank(a, b)
        out[a] = quote
        if b - 1 > a:
            out[b - 1] = quote

    def end_of_escaped_string(j: int) -> int:
        """j = index after the opening quote; returns the index after the closing quote."""
        while j < n:
            c = text[j]
            if c == "\\":
                j += 2
            elif c == '"':
                return j + 1
            else:
                j += 1
        return n

    def end_of_char(j: int) -> int | None:
        """j = index of an opening `'`; the index after the closing `'`, or None (lifetime)."""
        if j + 1 < n and text[j + 1] == "\\":
            close = text.find("'", j + 3)
            return n if close < 0 else close + 1
        if j + 2 < n and text[j + 2] == "'" and text[j + 1] != "\n":
            return j + 3
        return None

    i = 0
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
            continue
        if c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
            continue
        if _is_ident_start(c):
            j = i + 1
            while j < n and _is_ident_char(text[j]):
                j += 1
            word = text[i:j]
            if word in ("r", "br", "cr") and j < n and text[j] in '#"':
                k = j
                while k < n and text[k] == "#":
                    k += 1
                if k < n and text[k] == '"':  # raw string
                    term = '"' + "#" * (k - j)
                    end = text.find(term, k + 1)
                    end = n if end < 0 else end + len(term)
                    literal(i, end, '"')
                    i = end
                    continue
                if word == "r" and k == j + 1 and k < n and _is_ident_start(text[k]):
                    e = k + 1  # raw identifier r#name: keep as is
                    while e < n and _is_ident_char(text[e]):
                        e += 1
                    mark(i, e)
                    i = e
                    continue
            if word in ("b", "c") and j < n and text[j] == '"':
                end = end_of_escaped_string(j + 1)
                literal(i, end, '"')
                i = end
                continue
            if word == "b" and j < n and text[j] == "'":
                end = end_of_char(j)
                if end is not None:
                    literal(i, end, "'")
                    i = end
                    continue
            mark(i, j)
            i = j
            continue
        if c.isdigit():
            j = i + 1
            while j < n and _is_ident_char(text[j]):
                j += 1
            mark(i, j)
            i = j
            continue
        if c == '"':
            end = end_of_escaped_string(i + 1)
            literal(i, end, '"')
            i = end
            continue
        if c == "'":
            end = end_of_char(i)
            if end is not None:
                literal(i, end, "'")
                i = end
                continue
            j = i + 1  # lifetime or label: consume its name too
            while j < n and _is_ident_char(text[j]):
                j += 1
            mark(i, j)
            i = j
            continue
        if not c.isspace():
            code_line[bisect.bisect_right(line_starts, i)] = True
        i += 1
    return Lexed(text, "".join(out), line_starts, code_line)


def match_braces(masked: str) -> dict[int, int]:
    """Open-brace offset -> close-brace offset (unclosed braces close at the end)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for i, c in enumerate(masked):
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            pairs[stack.pop()] = i
    for o in stack:
        pairs[o] = len(masked) - 1
    return pairs


def scan_header(m: str, pos: int, braces: dict[int, int]) -> tuple[str | None, int]:
    """From inside an item header (after `fn name`, `impl`, ...), finds its body.

    Returns ("body", offset of `{`), ("decl", offset of `;`) or (None, offset)."""
    paren = angle = 0
    i, n = pos, len(m)
    while i < n:
        c = m[i]
        if c in "([":
            paren += 1
        elif c in ")]":
            paren = max(0, paren - 1)
        elif c == "<":
            angle += 1
        elif c == ">":
            if i > 0 and m[i - 1] == "-":
                pass  # `->`
            elif angle > 0:
                angle -= 1
        elif c == "{":
            if paren == 0 and angle == 0:
                return "body", i
            i = braces.get(i, n - 1) + 1  # const-generic block `{ N + 1 }`
            continue
        elif c == ";" and paren == 0:
            return "decl", i
        elif c == "}" and paren == 0:
            return None, i
        i += 1
    return None, n


# --------------------------------------------------------------------------------------
# Per-file analysis
# --------------------------------------------------------------------------------------

KW = r"(?<![\w#$])"  # keyword start: not inside an identifier, raw ident or macro var
RE_CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
RE_INNER_CFG_TEST = re.compile(r"#\s*!\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
RE_ATTR = re.compile(r"\s*#\s*\[")
RE_VIS_MOD = re.compile(
    r"\s*(?:pub\s*(?:\(\s*(?:crate|super|self|in\s+[\w:\s]+)\s*\)\s*)?)?mod\s+(?:r#)?([A-Za-z_]\w*)\s*([{;])"
)
RE_FN = re.compile(KW + r"fn\s+(?:r#)?([A-Za-z_]\w*)")
RE_IMPL = re.compile(KW + r"impl\b")
RE_TRAIT = re.compile(KW + r"trait\s+(?:r#)?([A-Za-z_]\w*)")
RE_MOD = re.compile(KW + r"mod\s+(?:r#)?([A-Za-z_]\w*)\s*([{;])")
RE_USE = re.compile(KW + r"use\b")
RE_PATH = re.compile(
    r"(?<![\w$#:.])((?:r#)?[A-Za-z_]\w*)((?:\s*::\s*(?:r#)?[A-Za-z_]\w*)+)"
)
RE_ITEM = re.compile(
    KW + r"(?:fn|struct|enum|union|trait|type|const|static|mod)\s+(?:mut\s+)?(?:r#)?([A-Za-z_]\w*)"
)
RE_MACRO_RULES = re.compile(KW + r"macro_rules\s*!\s*([A-Za-z_]\w*)")
RE_USE_TOKENS = re.compile(r"::|[{},*]|(?:r#)?[A-Za-z_]\w*")


@dataclass
class Block:
    kind: str  # fn | impl | trait | mod
    name: str
    kw_pos: int
    open: int
    close: int


@dataclass
class Function:
    name: str  # qualified by enclosing mod / impl type / trait / fn
    line: int
    end_line: int

    @property
    def length(self) -> int:
        return self.end_line - self.line + 1


@dataclass
class Ref:
    line: int
    segments: list[str]  # as written (may start with crate / super / self / child mod)
    module: tuple[str, ...]  # module of the referencing code (file module + inline mods)
    kind: str  # use | path


@dataclass
class FileInfo:
    path: Path
    display: str
    lx: Lexed
    test_ranges: list[tuple[int, int]] = field(default_factory=list)  # 1-based lines
    test_child_mods: list[str] = field(default_factory=list)
    child_mods: list[str] = field(default_factory=list)  # `mod x;` / `mod x {}` here
    whole_file_test: bool = False
    test_file: bool = False  # declared by a parent as `#[cfg(test)] mod x;`
    blocks: list[Block] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)
    refs: list[Ref] = field(default_factory=list)
    module: tuple[str, ...] | None = None
    root: Path | None = None
    names: set[str] = field(default_factory=set)  # items defined or `use`d at any level
    glob_use: bool = False  # a `use x::*` could bring in any name
    macros: set[str] = field(default_factory=set)  # macro_rules! names (crate-root if exported)

    def may_define(self, name: str, crate_macros: set[str]) -> bool:
        return self.glob_use or name in self.names or (self.module == () and name in crate_macros)

    @property
    def physical(self) -> int:
        return self.lx.n_lines

    def in_test(self, line: int) -> bool:
        return self.whole_file_test or any(a <= line <= b for a, b in self.test_ranges)

    @property
    def loc(self) -> int:
        if self.whole_file_test or self.test_file:
            return 0
        return sum(
            1 for ln in range(1, self.lx.n_lines + 1) if self.lx.code_line[ln] and not self.in_test(ln)
        )

    @property
    def test_lines(self) -> int:
        if self.whole_file_test or self.test_file:
            return self.physical
        return sum(b - a + 1 for a, b in self.test_ranges)


def skip_attrs(m: str, pos: int) -> int:
    """Skips whitespace and outer attributes `#[...]` from pos; returns the new offset."""
    while True:
        a = RE_ATTR.match(m, pos)
        if not a:
            return pos
        depth, i = 0, a.end() - 1
        while i < len(m):
            if m[i] == "[":
                depth += 1
            elif m[i] == "]":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        pos = i + 1


def prev_significant(m: str, pos: int) -> tuple[str, str]:
    """(previous non-space char, previous word) before pos."""
    i = pos - 1
    while i >= 0 and m[i].isspace():
        i -= 1
    if i < 0:
        return "", ""
    j = i
    while j >= 0 and _is_ident_char(m[j]):
        j -= 1
    return m[i], m[j + 1 : i + 1]


def impl_type_name(header: str) -> str:
    """`<T: X> fmt::Debug for Wrapper<T> where ...` -> `Wrapper`."""
    h = header.strip()
    if h.startswith("<"):  # impl generics
        depth = 0
        for k, c in enumerate(h):
            if c == "<":
                depth += 1
            elif c == ">" and (k == 0 or h[k - 1] != "-"):
                depth -= 1
                if depth == 0:
                    h = h[k + 1 :]
                    break
    # top-level ` for ` (not inside <...>, so `Fn() for` in bounds does not count)
    depth, target = 0, h
    for mt in re.finditer(r"[<>]|\bfor\b", h):
        t = mt.group()
        if t == "<":
            depth += 1
        elif t == ">" and h[mt.start() - 1] != "-":
            depth -= 1
        elif t == "for" and depth == 0:
            target = h[mt.end() :]
            break
    target = re.split(r"\bwhere\b", target)[0].strip()
    target = re.sub(r"^(?:&\s*(?:'\w+\s*)?(?:mut\s+)?|dyn\s+|unsafe\s+|!\s*)+", "", target)
    base = re.split(r"<", target, maxsplit=1)[0].strip()
    name = base.split("::")[-1].strip() if base else ""
    return name or re.sub(r"\s+", " ", target)[:40] or "?"


def analyze_file(path: Path, display: str) -> FileInfo:
    text = path.read_text(encoding="utf-8", errors="replace")
    lx = lex(text)
    m = lx.masked
    braces = match_braces(m)
    fi = FileInfo(path=path, display=display, lx=lx)

    for mt in RE_INNER_CFG_TEST.finditer(m):
        if m.count("{", 0, mt.start()) == m.count("}", 0, mt.start()):
            fi.whole_file_test = True

    # inline test modules (and `#[cfg(test)] mod x;` children)
    for mt in RE_CFG_TEST.finditer(m):
        p = skip_attrs(m, mt.end())
        mm = RE_VIS_MOD.match(m, p)
        if not mm:
            continue
        if mm.group(2) == ";":
            fi.test_child_mods.append(mm.group(1))
            continue
        close = braces.get(mm.end() - 1, len(m) - 1)
        fi.test_ranges.append((lx.line_of(mt.start()), lx.line_of(close)))

    # blocks: mod / trait / impl / fn
    for mt in RE_MOD.finditer(m):
        fi.child_mods.append(mt.group(1))
        if mt.group(2) == "{":
            o = mt.end() - 1
            fi.blocks.append(Block("mod", mt.group(1), mt.start(), o, braces.get(o, len(m) - 1)))
    for mt in RE_TRAIT.finditer(m):
        kind, o = scan_header(m, mt.end(), braces)
        if kind == "body":
            fi.blocks.append(Block("trait", mt.group(1), mt.start(), o, braces.get(o, len(m) - 1)))
    for mt in RE_IMPL.finditer(m):
        ch, word = prev_significant(m, mt.start())
        if not (ch in ("", ";", "{", "}", "]") or word in ("unsafe", "default")):
            continue  # `impl Trait` in type position
        kind, o = scan_header(m, mt.end(), braces)
        if kind == "body":
            name = impl_type_name(m[mt.end() : o])
            fi.blocks.append(Block("impl", name, mt.start(), o, braces.get(o, len(m) - 1)))
    fns: list[Block] = []
    for mt in RE_FN.finditer(m):
        kind, o = scan_header(m, mt.end(), braces)
        if kind == "body":
            b = Block("fn", mt.group(1), mt.start(), o, braces.get(o, len(m) - 1))
            fi.blocks.append(b)
            fns.append(b)
    fi.blocks.sort(key=lambda b: b.open)

    def enclosing(pos: int, exclude: Block | None = None) -> list[Block]:
        return [b for b in fi.blocks if b is not exclude and b.open < pos < b.close]

    for b in fns:
        line = lx.line_of(b.kw_pos)
        if fi.in_test(line) or fi.test_file:
            continue
        chain = [e.name for e in enclosing(b.kw_pos, b)]
        fi.functions.append(Function("::".join(chain + [b.name]), line, lx.line_of(b.close)))

    fi.names.update(mt.group(1) for mt in RE_ITEM.finditer(m))
    fi.macros.update(mt.group(1) for mt in RE_MACRO_RULES.finditer(m))
    fi.names.update(fi.macros)

    # references
    def inline_mods(pos: int) -> tuple[str, ...]:
        return tuple(e.name for e in enclosing(pos) if e.kind == "mod")

    use_spans: list[tuple[int, int]] = []
    for mt in RE_USE.finditer(m):
        semi = m.find(";", mt.end())
        if semi < 0:
            continue
        use_spans.append((mt.start(), semi))
        toks = RE_USE_TOKENS.findall(m[mt.end() : semi])
        fi.names.update(t.removeprefix("r#") for t in toks if t not in ("::", "{", "}", ",", "*"))
        fi.glob_use = fi.glob_use or "*" in toks
        line = lx.line_of(mt.start())
        if fi.in_test(line):
            continue
        for segs in parse_use_tree(m[mt.end() : semi]):
            fi.refs.append(Ref(line, segs, inline_mods(mt.start()), "use"))
    for mt in RE_PATH.finditer(m):
        if any(a <= mt.start() < b for a, b in use_spans):
            continue
        line = lx.line_of(mt.start())
        if fi.in_test(line):
            continue
        before = m[max(0, mt.start() - 40) : mt.start()]
        if re.search(r"\bin\s*$", before):  # pub(in crate::a)
            continue
        segs = [mt.group(1)] + [s.strip() for s in mt.group(2).split("::")[1:]]
        fi.refs.append(Ref(line, [s.removeprefix("r#") for s in segs], inline_mods(mt.start()), "path"))
    return fi


def parse_use_tree(text: str) -> list[list[str]]:
    """`crate::{a::B, c::{self, d as e}, f::*}` -> [[crate,a,B], [crate,c], [crate,c,d], [crate,f]]."""
    toks = [t.removeprefix("r#") for t in RE_USE_TOKENS.findall(text)]
    out: list[list[str]] = []

    def tree(i: int, prefix: list[str]) -> int:
        path = list(prefix)
        if i < len(toks) and toks[i] == "::":
            i += 1
        while i < len(toks):
            t = toks[i]
            if t == "{":
                i += 1
                while i < len(toks) and toks[i] != "}":
                    i = tree(i, path)
                    if i < len(toks) and toks[i] == ",":
                        i += 1
                return i + 1
            if t == "*":
                out.append(path)
                return i + 1
            if t in (",", "}", "::"):
                return i
            if t == "self" and prefix and path == prefix:
                out.append(path)
                i += 1
            else:
                path.append(t)
                i += 1
                if i < len(toks) and toks[i] == "::":
                    i += 1
                    continue
                out.append(path)
            if i < len(toks) and toks[i] == "as":
                i += 2
            return i
        if path != prefix:
            out.append(path)
        return i

    try:
        i = 0
        while i < len(toks):
            j = tree(i, [])
            i = j + 1 if j == i else j
    except IndexError:
        pass
    return [p for p in out if p]


# --------------------------------------------------------------------------------------
# Crate layout and the graph
# --------------------------------------------------------------------------------------


def crate_root(path: Path, fallback: Path) -> Path:
    for anc in path.parents:
        if anc.name == "src":
            return anc
        if anc == fallback:
            break
    return fallback


def module_of(rel: Path) -> tuple[str, ...] | None:
    parts = rel.parts
    if parts[0] == "bin" or rel.as_posix() == "main.rs":
        return None
    if rel.as_posix() == "lib.rs":
        return ()
    if parts[-1] == "mod.rs":
        return tuple(parts[:-1])
    return tuple(parts[:-1]) + (rel.stem,)


def resolve(ref: Ref, cur: tuple[str, ...], children: dict[tuple[str, ...], set[str]]) -> tuple[str, ...] | None:
    segs = ref.segments
    first = segs[0]
    if first == "crate":
        return tuple(segs[1:])
    if first in ("super", "self"):
        base = list(cur)
        k = 0
        while k < len(segs) and segs[k] in ("super", "self"):
            if segs[k] == "super":
                if not base:
                    return None
                base.pop()
            k += 1
        return tuple(base) + tuple(segs[k:])
    if first in children.get(cur, set()):  # 2018 relative path to a child module
        return cur + tuple(segs)
    return None


def tarjan(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return sorted(out)


def a_cycle(comp: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through comp[0] inside the component: [a, b, ..., a]."""
    start, inside = comp[0], set(comp)
    prev: dict[str, str] = {}
    frontier, seen = [start], {start}
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, ())):
                if w not in inside:
                    continue
                if w == start:  # close the loop: start -> ... -> v -> start
                    back = [v]
                    while back[-1] != start:
                        back.append(prev[back[-1]])
                    return list(reversed(back)) + [start]
                if w not in seen:
                    seen.add(w)
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp + [comp[0]]


def build_graph(files: list[FileInfo]) -> dict:
    by_root: dict[Path, dict[tuple[str, ...], FileInfo]] = {}
    for f in files:
        if f.module is not None and not f.test_file and not f.whole_file_test:
            by_root.setdefault(f.root, {})[f.module] = f
    multi = len(by_root) > 1

    def top(f: FileInfo) -> str:
        t = f.module[0] if f.module else "crate"
        return f"{f.root.parent.name}/{t}" if multi else t

    file_edges: dict[str, set[str]] = {}
    evidence: dict[tuple[str, str], list[str]] = {}
    nodes: list[str] = []
    unresolved: list[str] = []
    for root, mods in by_root.items():
        children: dict[tuple[str, ...], set[str]] = {}
        for mod, f in mods.items():
            # `mod x;` / `mod x {}` at the file's top level (inline mods' own children below)
            top_level = [b for b in f.blocks if b.kind == "mod"]
            nested = {b.name for b in top_level if any(e.open < b.open < e.close for e in top_level)}
            for c in f.child_mods:
                if c not in nested:
                    children.setdefault(mod, set()).add(c)
        for mod, f in mods.items():
            nodes.append(f.display)
            for b in f.blocks:
                if b.kind == "mod":
                    inner = [e.name for e in f.blocks if e.kind == "mod" and e.open < b.open < e.close]
                    children.setdefault(mod + tuple(inner), set()).add(b.name)
        macros = {n for f in mods.values() for n in f.macros}
        for mod, f in mods.items():
            for r in f.refs:
                cur = mod + r.module
                target = resolve(r, cur, children)
                if target is None:
                    continue
                for k in range(len(target), -1, -1):
                    g = mods.get(target[:k])
                    if g is not None:
                        break
                else:
                    continue
                if k < len(target) and not g.may_define(target[k], macros):
                    # e.g. `crate::gone::X` where no module `gone` was found: not an edge to
                    # the crate root (or to whichever ancestor matched), but worth a look
                    unresolved.append(f"{f.display}:{r.line} {'::'.join(r.segments)}")
                    continue
                if g is f:
                    continue
                file_edges.setdefault(f.display, set()).add(g.display)
                evidence.setdefault((f.display, g.display), []).append(
                    f"{f.display}:{r.line} {'::'.join(r.segments)}"
                )
    by_display = {f.display: f for mods in by_root.values() for f in mods.values()}
    top_edges: dict[str, set[str]] = {}
    top_evidence: dict[tuple[str, str], list[str]] = {}
    for a, bs in file_edges.items():
        for b in bs:
            ta, tb = top(by_display[a]), top(by_display[b])
            if ta != tb:
                top_edges.setdefault(ta, set()).add(tb)
                top_evidence.setdefault((ta, tb), []).extend(evidence[(a, b)])
    top_nodes = sorted({top(f) for f in by_display.values()})
    top_sccs = tarjan(top_nodes, top_edges)
    file_sccs = tarjan(nodes, file_edges)

    def describe(comp: list[str], edges, ev) -> dict:
        inside = set(comp)
        return {
            "members": comp,
            "cycle": a_cycle(comp, edges),
            "edges": [
                {"from": a, "to": b, "refs": ev[(a, b)]}
                for a in comp
                for b in sorted(edges.get(a, ()))
                if b in inside
            ],
        }

    file_cycles = []
    for comp in file_sccs:
        d = describe(comp, file_edges, evidence)
        d["within_one_top_level_module"] = len({top(by_display[x]) for x in comp}) == 1
        file_cycles.append(d)
    return {
        "nodes": sorted(nodes),
        "file_edges": [
            {"from": a, "to": b, "refs": evidence[(a, b)]}
            for a in sorted(file_edges)
            for b in sorted(file_edges[a])
        ],
        "top_level_edges": {a: sorted(bs) for a, bs in sorted(top_edges.items())},
        "unresolved_refs": unresolved,
        "top_level_cycles": [describe(c, top_edges, top_evidence) for c in top_sccs],
        "file_cycles": file_cycles,
    }


# --------------------------------------------------------------------------------------
# Collection and report
# --------------------------------------------------------------------------------------


def display_path(p: Path) -> str:
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def collect(paths: list[str]) -> list[FileInfo]:
    seen: dict[Path, FileInfo] = {}
    for arg in paths:
        a = Path(arg).resolve()
        if a.is_dir():
            found = sorted(p for p in a.rglob("*.rs") if p.is_file() and "target" not in p.relative_to(a).parts)
            fallback = a
        elif a.is_file():
            found, fallback = [a], a.parent
        else:
            print(f"code-metrics: no such file or directory: {arg}", file=sys.stderr)
            continue
        for p in found:
            if p in seen:
                continue
            fi = analyze_file(p, display_path(p))
            fi.root = crate_root(p, fallback)
            fi.module = module_of(p.relative_to(fi.root))
            seen[p] = fi
    files = list(seen.values())
    # `#[cfg(test)] mod x;` -> x.rs / x/mod.rs next to (or under) the declaring file
    for f in files:
        if not f.test_child_mods:
            continue
        d = f.path.parent if f.path.name in ("lib.rs", "main.rs", "mod.rs") else f.path.with_suffix("")
        for name in f.test_child_mods:
            for cand in (d / f"{name}.rs", d / name / "mod.rs"):
                if cand in seen:
                    seen[cand].test_file = True
                    seen[cand].functions = []
                    seen[cand].refs = []
    return sorted(files, key=lambda f: f.display)


def analyze(paths: list[str], max_file: int, max_fn: int, max_median: float, top_files: int = 10, top_fns: int = 15) -> dict:
    files = collect(paths)
    fns = [(f, fn) for f in files for fn in f.functions]
    lengths = [fn.length for _, fn in fns]
    median = statistics.median(lengths) if lengths else 0
    mean = statistics.fmean(lengths) if lengths else 0.0
    fn_rows = sorted(
        ({"file": f.display, "line": fn.line, "end_line": fn.end_line, "name": fn.name, "lines": fn.length} for f, fn in fns),
        key=lambda r: (-r["lines"], r["file"], r["line"]),
    )
    file_rows = sorted(
        (
            {
                "file": f.display,
                "loc": f.loc,
                "physical_lines": f.physical,
                "test_lines_excluded": f.test_lines,
                "test_file": f.test_file or f.whole_file_test,
                "functions": len(f.functions),
                "module": None if f.module is None else "::".join(("crate",) + f.module),
            }
            for f in files
        ),
        key=lambda r: (-r["loc"], r["file"]),
    )
    graph = build_graph(files)
    over_files = [r for r in file_rows if r["loc"] > max_file]
    over_fns = [r for r in fn_rows if r["lines"] > max_fn]
    failures = []
    if over_files:
        failures.append(f"{len(over_files)} file(s) over {max_file} lines of code")
    if over_fns:
        failures.append(f"{len(over_fns)} function(s) over {max_fn} lines")
    if median > max_median:
        failures.append(f"median function length {median} > {max_median}")
    if graph["top_level_cycles"]:
        failures.append(f"{len(graph['top_level_cycles'])} import cycle(s) among top-level modules")
    return {
        "conventions": {
            "file_loc": "non-blank lines that are not comment-only (// /// //! /* */), outside #[cfg(test)] mod blocks and #[cfg(test)] mod files",
            "fn_lines": "physical lines from the `fn` keyword line to the closing-brace line, inclusive (blank and comment lines in between count); fns in test modules and bodiless declarations excluded",
            "graph": "file -> file edges from crate::/super::/self:: paths and child-module-relative paths (use trees and inline), mapped to the longest module prefix; mod declarations are not edges; test modules left out; main.rs and bin/** left out",
        },
        "thresholds": {"max_file_lines": max_file, "max_fn_lines": max_fn, "max_median": max_median},
        "summary": {
            "files": len(files),
            "loc": sum(r["loc"] for r in file_rows),
            "physical_lines": sum(r["physical_lines"] for r in file_rows),
            "test_lines_excluded": sum(r["test_lines_excluded"] for r in file_rows),
            "functions": len(lengths),
            "fn_median": median,
            "fn_mean": round(mean, 2),
            "fn_max": max(lengths) if lengths else 0,
            "files_over_threshold": len(over_files),
            "functions_over_threshold": len(over_fns),
            "graph_nodes": len(graph["nodes"]),
            "graph_edges": len(graph["file_edges"]),
            "unresolved_refs": len(graph["unresolved_refs"]),
            "top_level_cycles": len(graph["top_level_cycles"]),
            "file_cycles": len(graph["file_cycles"]),
            "file_cycles_within_one_top_level_module": sum(1 for c in graph["file_cycles"] if c["within_one_top_level_module"]),
        },
        "files": file_rows,
        "files_over_threshold": over_files,
        "largest_files": file_rows[:top_files],
        "functions_over_threshold": over_fns,
        "longest_functions": fn_rows[:top_fns],
        "all_functions": fn_rows,
        "graph": graph,
        "check": {"ok": not failures, "failures": failures},
    }


def print_report(r: dict, out=sys.stdout) -> None:
    s, t = r["summary"], r["thresholds"]
    w = lambda *a: print(*a, file=out)  # noqa: E731
    w("Conventions:")
    w(f"  file LOC : {r['conventions']['file_loc']}")
    w(f"  fn lines : {r['conventions']['fn_lines']}")
    w(f"  graph    : {r['conventions']['graph']}")
    w()
    w("== Summary ==")
    w(f"files            {s['files']}  (LOC {s['loc']}, physical lines {s['physical_lines']}, test-module lines excluded {s['test_lines_excluded']})")
    w(f"files > {t['max_file_lines']} LOC  {s['files_over_threshold']}")
    w(f"functions        {s['functions']}  median {s['fn_median']}  mean {s['fn_mean']:.1f}  max {s['fn_max']}  (median limit {t['max_median']})")
    w(f"functions > {t['max_fn_lines']}   {s['functions_over_threshold']}")
    w(f"import graph     {s['graph_nodes']} files, {s['graph_edges']} file edges, {s['unresolved_refs']} unresolved references")
    w(f"cycles           {s['top_level_cycles']} among top-level modules, {s['file_cycles']} among files ({s['file_cycles_within_one_top_level_module']} inside one top-level module: info)")
    w()
    w(f"== Files over {t['max_file_lines']} lines of code ==")
    for f in r["files_over_threshold"]:
        w(f"  {f['loc']:5d}  {f['file']}")
    if not r["files_over_threshold"]:
        w("  none")
    w()
    w(f"== {len(r['largest_files'])} largest files (LOC / physical / test lines excluded / fns) ==")
    for f in r["largest_files"]:
        tag = "  [test file]" if f["test_file"] else ""
        w(f"  {f['loc']:5d} {f['physical_lines']:6d} {f['test_lines_excluded']:6d} {f['functions']:4d}  {f['file']}{tag}")
    w()
    w(f"== Functions over {t['max_fn_lines']} lines (fn line .. closing brace, inclusive) ==")
    for f in r["functions_over_threshold"]:
        w(f"  {f['lines']:5d}  {f['file']}:{f['line']}  {f['name']}")
    if not r["functions_over_threshold"]:
        w("  none")
    w()
    w(f"== {len(r['longest_functions'])} longest functions ==")
    for f in r["longest_functions"]:
        w(f"  {f['lines']:5d}  {f['file']}:{f['line']}  {f['name']}")
    w()
    g = r["graph"]
    w("== Import edges (file -> files it references) ==")
    grouped: dict[str, list[str]] = {}
    for e in g["file_edges"]:
        grouped.setdefault(e["from"], []).append(e["to"])
    for a in sorted(grouped):
        w(f"  {a} -> {', '.join(grouped[a])}")
    if not grouped:
        w("  none")
    w()
    if g["unresolved_refs"]:
        w(f"== References to no module found ({len(g['unresolved_refs'])}; not counted as edges) ==")
        for u in g["unresolved_refs"][:15]:
            w(f"  {u}")
        if len(g["unresolved_refs"]) > 15:
            w(f"  ... {len(g['unresolved_refs']) - 15} more (see --json)")
        w()
    w("== Top-level module edges ==")
    for a, bs in g["top_level_edges"].items():
        w(f"  {a} -> {', '.join(bs)}")
    w()
    w("== Cycles among top-level modules ==")
    if not g["top_level_cycles"]:
        w("  no import cycles")
    for c in g["top_level_cycles"]:
        w(f"  CYCLE {' -> '.join(c['cycle'])}   (component: {', '.join(c['members'])})")
        for e in c["edges"]:
            w(f"      {e['from']} -> {e['to']}: {'; '.join(e['refs'][:3])}{' ...' if len(e['refs']) > 3 else ''}")
    w()
    w("== Cycles among files ==")
    if not g["file_cycles"]:
        w("  no import cycles")
    for c in g["file_cycles"]:
        tag = "info (inside one top-level module)" if c["within_one_top_level_module"] else "CYCLE"
        w(f"  {tag}: {' -> '.join(c['cycle'])}   (component: {', '.join(c['members'])})")
        for e in c["edges"]:
            w(f"      {e['from']} -> {e['to']}: {'; '.join(e['refs'][:3])}{' ...' if len(e['refs']) > 3 else ''}")
    w()
    if r["check"]["ok"]:
        w("check: ok")
    else:
        w("check: FAIL - " + "; ".join(r["check"]["failures"]))


# --------------------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------------------

SELF_TEST_TRICKY = r'''//! Module docs { with a brace.
//! Second line.

use crate::other::{self, helper as h};

/* block comment with { braces
   still comment } /* nested */ still } */

/// Doc comment with a { brace.
pub fn braces_in_strings<'a>(x: &'a str) -> &'a str {
    let _a = "}";
    let _b = r#"{"#;
    let _c = '}';
    let _d = '{';
    let _e = b"}}";
    let _f = br##"}"#{"##;
    let _g = "escaped \" } quote";
    let _h = '\'';
    let _i = '\\';
    let _j = b'{';
    // a comment with { an unmatched brace

    'outer: loop { break 'outer; }
    x
}

pub(crate) async fn generic<T>(t: T) -> Option<T>
where
    T: Clone + Send,
{
    fn nested(v: u8) -> u8 { v + 1 }
    let _ = nested(1);
    Some(t)
}

pub trait Speaker {
    fn declared(&self) -> u32;
    fn default_method(&self) -> u32 {
        let arr: [u8; 2] = [1, 2];
        arr.len() as u32
    }
}

pub struct Thing;

impl<'a> Speaker for &'a Thing {
    fn declared(&self) -> u32 { 7 }
}

pub fn uses_inline() -> usize {
    let s = "crate::not_a_module::x }";
    crate::gone::f(s);
    crate::other::helper() + crate::other::deep::ZERO
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::other::deep;

    #[test]
    fn hidden() {
        let s = "{";
        assert_eq!(s, "{");
    }
}

pub fn after_tests() {}
'''

SELF_TEST_FILES = {
    "src/lib.rs": "pub mod other;\npub mod tricky;\n\npub fn install() {}\n",
    "src/tricky.rs": SELF_TEST_TRICKY,
    "src/other.rs": (
        "pub mod deep;\n#[cfg(test)]\nmod ext_tests;\n\n"
        "use crate::tricky::Thing;\n\n"
        "pub fn helper() -> usize {\n    crate::install();\n    let _t = Thing;\n    deep::ZERO // a path relative to the child module\n}\n"
    ),
    "src/other/deep.rs": (
        "use super::helper;\n"
        "pub const ZERO: usize = 0;\n"
        'pub const S: &str = "crate::tricky::braces_in_strings";\n'
        "pub fn f() -> usize {\n    helper()\n}\n"
    ),
    "src/other/ext_tests.rs": "use crate::tricky::Thing;\n\n#[test]\nfn t() {\n    let _ = Thing;\n}\n",
    "src/main.rs": "fn main() {\n    crate::x::y();\n}\n",
}


def self_test() -> int:
    errors: list[str] = []

    def expect(what: str, got, want) -> None:
        if got != want:
            errors.append(f"{what}: got {got!r}, want {want!r}")

    with tempfile.TemporaryDirectory() as tmp:
        for rel, body in SELF_TEST_FILES.items():
            p = Path(tmp) / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(body, encoding="utf-8")
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            r = analyze(["src"], max_file=400, max_fn=60, max_median=12)
        finally:
            os.chdir(cwd)
    files = {f["file"]: f for f in r["files"]}
    fns = {(f["file"], f["name"]): f for f in r["all_functions"]}

    # tricky.rs, counted by hand: 69 physical lines; the test module is lines 56..67 (12);
    # outside it 11 blank lines (3 5 8 22 26 35 43 45 49 55 68) and 6 comment-only lines
    # (1 2 6 7 9 21), so 69 - 12 - 11 - 6 = 40 lines of code.
    t = files["src/tricky.rs"]
    expect("tricky physical", t["physical_lines"], 69)
    expect("tricky test lines", t["test_lines_excluded"], 12)
    expect("tricky LOC", t["loc"], 40)
    want_fns = {  # name: (fn line, length); `fn declared(&self) -> u32;` has no body
        "braces_in_strings": (10, 16),
        "generic": (27, 8),
        "generic::nested": (31, 1),
        "Speaker::default_method": (38, 4),
        "Thing::declared": (47, 1),
        "uses_inline": (50, 5),
        "after_tests": (69, 1),
    }
    got_fns = {n: (f["line"], f["lines"]) for (file, n), f in fns.items() if file == "src/tricky.rs"}
    expect("tricky functions", got_fns, want_fns)
    expect("tricky fn count", t["functions"], 7)
    expect("hidden test fn excluded", ("src/tricky.rs", "tests::hidden") in fns, False)
    expect("ext_tests is a test file", files["src/other/ext_tests.rs"]["test_file"], True)
    expect("ext_tests LOC", files["src/other/ext_tests.rs"]["loc"], 0)
    expect("main.rs measured", files["src/main.rs"]["loc"], 3)
    expect("main.rs not in graph", "src/main.rs" in r["graph"]["nodes"], False)

    edges = {(e["from"], e["to"]) for e in r["graph"]["file_edges"]}
    expect(
        "file edges",
        sorted(edges),
        sorted(
            {
                ("src/tricky.rs", "src/other.rs"),
                ("src/tricky.rs", "src/other/deep.rs"),
                ("src/other.rs", "src/tricky.rs"),
                ("src/other.rs", "src/other/deep.rs"),
                ("src/other.rs", "src/lib.rs"),
                ("src/other/deep.rs", "src/other.rs"),
            }
        ),
    )
    expect("unresolved", r["graph"]["unresolved_refs"], ["src/tricky.rs:52 crate::gone::f"])
    expect("top-level cycles", [c["members"] for c in r["graph"]["top_level_cycles"]], [["other", "tricky"]])
    fc = [(c["members"], c["within_one_top_level_module"]) for c in r["graph"]["file_cycles"]]
    expect("file cycles", fc, [(["src/other.rs", "src/other/deep.rs", "src/tricky.rs"], False)])
    expect("check fails on cycle", r["check"]["ok"], False)

    # lexer unit checks
    snippet = (
        "let a = '}'; let b: &'a str = \"{\"; // }\n"
        "let c = '\\u{7d}'; let d = \"\\\\\"; let e = r\"\\\"; let f = b'\\'';\n"
        "fn x<'b,'c>(y: &'b u8) -> [u8; 2] where 'b: 'c { /* } */ let g = br#\"\"}\"#; }\n"
    )
    lx = lex(snippet)
    expect("masked braces", (lx.masked.count("{"), lx.masked.count("}")), (1, 1))
    expect("code lines", lx.code_line[1:], [True, True, True])
    expect("fn found", [m.group(1) for m in RE_FN.finditer(lx.masked)], ["x"])
    expect("fn body", scan_header(lx.masked, lx.masked.find("x<"), match_braces(lx.masked))[0], "body")
    lx = lex("/* a\n/* nested */\nstill comment */\n\nx; // c\n")
    expect("block comment lines", lx.code_line[1:], [False, False, False, False, True])
    expect("parse_use_tree", parse_use_tree("crate::{a::B, c::{self, d as e}, f::*}"),
           [["crate", "a", "B"], ["crate", "c"], ["crate", "c", "d"], ["crate", "f"]])

    if errors:
        print("self-test FAILED:")
        for e in errors:
            print("  " + e)
        return 1
    print("self-test ok")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", help="files or folders (default: src/)")
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--check", action="store_true", help="exit 1 when a limit is exceeded or top-level modules form a cycle")
    ap.add_argument("--max-file-lines", type=int, default=400)
    ap.add_argument("--max-fn-lines", type=int, default=60)
    ap.add_argument("--max-median", type=float, default=12)
    ap.add_argument("--top-files", type=int, default=10)
    ap.add_argument("--top-fns", type=int, default=15)
    ap.add_argument("--self-test", action="store_true", help="run the built-in checks on a handcrafted crate")
    a = ap.parse_args(argv)
    if a.self_test:
        return self_test()
    paths = a.paths
    if not paths:
        here = Path("src")
        paths = [str(here if here.is_dir() else Path(__file__).resolve().parent.parent / "src")]
    r = analyze(paths, a.max_file_lines, a.max_fn_lines, a.max_median, a.top_files, a.top_fns)
    if a.json:
        json.dump(r, sys.stdout, indent=2)
        print()
    else:
        print_report(r)
    return 1 if a.check and not r["check"]["ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
